# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.model_manifests: on the controller, no module run."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import manifests, runtimes

_SETTINGS = ("namespace", "service_account_name", "pod_labels", "pod_annotations", "service_monitor",
             "service_monitor_labels", "termination_grace_period_seconds", "pre_stop_sleep_seconds",
             "progress_deadline_seconds", "model_fetch_images")


def _settings(values: Dict[str, Any]) -> manifests.Settings:
    unknown = sorted(set(values) - set(_SETTINGS))
    if unknown:
        raise AnsibleActionFail("settings has %s, which model_manifests does not know: it takes %s"
                                % (", ".join(unknown), ", ".join(_SETTINGS)))
    if not values.get("namespace"):
        raise AnsibleActionFail("settings.namespace is required: the namespace of the model's objects")
    kwargs: Dict[str, Any] = dict(values)
    for key in ("termination_grace_period_seconds", "pre_stop_sleep_seconds", "progress_deadline_seconds"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    if "service_monitor" in kwargs:
        kwargs["service_monitor"] = str(kwargs["service_monitor"]).lower() in ("1", "true", "yes", "on")
    return manifests.Settings(**kwargs)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=manifests.ARGUMENT_SPEC)[1]
        try:
            model = args["model"]
            spec = runtimes.server_spec(args["runtime"], model, args["knobs"])
            settings = _settings(args["settings"])
            name = manifests.configmap_name(model, args["config_files"], generator=args["configmap_generator"])
            replicas = (args["replicas"] if args["replicas"] is not None
                        else manifests.replica_count(model, args["current_replicas"]))
            node_selector, tolerations = manifests.scheduling(model)
            result.update({
                "changed": False,
                "server": {
                    "container_name": spec.container_name, "command": spec.command, "args": spec.args,
                    "working_dir": spec.working_dir, "ports": spec.ports, "env": manifests.env(spec, model),
                    "probe_paths": spec.probe_paths, "probe_timing": manifests.probe_timing(spec, model),
                    "metrics": spec.metrics, "smoke_paths": spec.smoke_paths, "writable_paths": spec.writable_paths,
                    "model_mount_path": manifests.model_mount_path(spec, model),
                    "config_mount_path": spec.config_mount_path, "run_as_user": spec.run_as_user,
                    "image": manifests.image_reference(model), "labels": manifests.labels(model, spec.runtime),
                    "selector": manifests.selector(model), "pod_labels": manifests.pod_labels(spec, model, settings),
                },
                "node_selector": node_selector,
                "tolerations": tolerations,
                "configmap_name": name,
                "replicas": replicas,
            })
            if args["objects"]:
                result["objects"] = manifests.objects(spec, model, settings, args["config_files"], replicas, name,
                                                      args["service_monitor_api"])
        except (runtimes.UnknownRuntimeError, KeyError, TypeError, ValueError) as err:
            raise AnsibleActionFail("model_manifests could not build %s's objects: %s"
                                    % (args["model"].get("name", "(no name)"), err)) from err
        return result
