# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.model_manifests: on the controller, no module run."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import manifests, runtimes


def _settings(values: Dict[str, Any]) -> manifests.Settings:
    try:
        return manifests.settings_from(values)
    except ValueError as err:
        raise AnsibleActionFail(str(err)) from err


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
                "server": manifests.server_view(spec, model, settings),
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
