# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's input checks, before the cluster is asked anything.

Each raises :class:`DeployError` with the message the role's preflight gave
(the variable named with the runtime's prefix, the value, the fix); nothing
has been applied when one fails.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import NODE_PORT_RANGE
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import DeployError

LABEL_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                          r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

#: Labels the objects get from the role; a pod label may not override them.
RESERVED_LABELS = (
    "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
    "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
    "creativeflow.ai/runtime", "creativeflow.ai/model-name",
)
#: URI schemes the model fetch init container has a command for (manifests.FETCH_SCRIPTS).
FETCH_SCHEMES = ("s3", "gs", "https", "http")


def check_entry(model: Mapping[str, Any], runtime: str) -> None:
    name = model.get("name")
    if not isinstance(name, str) or model.get("runtime", "") != runtime:
        raise DeployError(
            "The model handed to the {rt} role must be a catalog entry with its name (what "
            "creativeflow.ai_serving.model_catalog returns as 'model') and runtime '{rt}'; got name '{name}' and runtime "
            "'{got}'. Deploy through playbooks/deploy_model.yml -e model=NAME, which picks the role from the catalog."
            .format(rt=runtime, name=name if name is not None else "(none)", got=model.get("runtime") or "(none)"))


def check_namespace(namespace: Any, prefix: str) -> None:
    if not isinstance(namespace, str) or not DNS_LABEL_RE.match(namespace):
        raise DeployError(
            "{p}_namespace '{ns}' is not a namespace name (a DNS label: lower-case letters, digits and '-', at most 63). "
            "Set {p}_namespace, or ai_namespace_name in the inventory, to the namespace playbooks/bootstrap_cluster.yml "
            "made (e.g. 'ai-serving').".format(p=prefix, ns=namespace))


def check_pod_labels(pod_labels: Mapping[str, Any], prefix: str) -> None:
    for key, value in pod_labels.items():
        fine = (isinstance(key, str) and LABEL_KEY_RE.match(key) and value is not None and not isinstance(value, bool)
                and LABEL_VALUE_RE.match(str(value)) and key not in RESERVED_LABELS)
        if fine:
            continue
        why = ("is set by the role ({0}); choose another key".format(", ".join(RESERVED_LABELS))
               if key in RESERVED_LABELS else
               "Kubernetes rejects: a value has at most 63 letters, digits, - _ . (quote true/false), a key is an "
               "optional DNS prefix and / followed by such a name")
        raise DeployError("{p}_pod_labels has '{k}: {v}', which {why}.".format(p=prefix, k=key, v=value, why=why))


def check_keys(values: Mapping[str, Any], where: str) -> None:
    """Annotation and ServiceMonitor label keys (any value but none)."""
    for key, value in values.items():
        if not (isinstance(key, str) and LABEL_KEY_RE.match(key)) or value is None:
            raise DeployError(
                "'{k}' ({where}) is not a valid key (an optional DNS prefix and / followed by at most 63 letters, "
                "digits, - _ .), or its value is empty.".format(k=key, where=where))


def check_timing(prefix: str, rollout_timeout: int, rollout_fail_fast: int, progress_deadline_seconds: int,
                 pre_stop_sleep_seconds: int, termination_grace_period_seconds: int) -> None:
    if (rollout_timeout >= 1 and rollout_fail_fast >= 0 and progress_deadline_seconds >= 1
            and pre_stop_sleep_seconds >= 0 and termination_grace_period_seconds > pre_stop_sleep_seconds):
        return
    raise DeployError(
        "{p}_rollout_timeout ({rt}) and {p}_progress_deadline_seconds ({pd}) must be at least 1, {p}_rollout_fail_fast "
        "({ff}) and {p}_pre_stop_sleep_seconds ({ps}) at least 0, {p}_termination_grace_period_seconds ({tg}) more than "
        "the preStop sleep (else the drain is cut short).".format(
            p=prefix, rt=rollout_timeout, pd=progress_deadline_seconds, ff=rollout_fail_fast, ps=pre_stop_sleep_seconds,
            tg=termination_grace_period_seconds))


def check_run_as_user(run_as_user: Any, prefix: str) -> None:
    try:
        fine = int(run_as_user) >= 1
    except (TypeError, ValueError):
        fine = False
    if not fine:
        raise DeployError("{p}_run_as_user ({u}) must be a non-root uid (1 or more): the pods run under Pod Security "
                          "restricted.".format(p=prefix, u=run_as_user))


def check_fetch(model: Mapping[str, Any], fetch_images: Mapping[str, Any], prefix: str) -> None:
    source = model.get("model") or {}
    if source.get("source") != "uri":
        return
    uri = str(source.get("uri") or "")
    scheme = re.sub(r"://.*$", "", uri)
    if scheme in fetch_images and scheme in FETCH_SCHEMES:
        return
    why = ("no fetch image: add it to {0}_model_fetch_images".format(prefix) if scheme in FETCH_SCHEMES else
           "no fetch command: use s3://, gs://, http:// or https://, or bake the model into the image "
           "(model.source: image)")
    raise DeployError("model.uri of {n} is '{u}': scheme '{s}' has {why}.".format(
        n=model.get("name"), u=uri, s=scheme, why=why))


def wants_build(model: Mapping[str, Any], image_build: bool) -> bool:
    """Whether the deploy builds the image: the catalog has image.build (not disabled) and the role's switch is on."""
    build = (model.get("image") or {}).get("build")
    return isinstance(build, Mapping) and bool(build.get("enabled", True)) and bool(image_build)


def build_context(model: Mapping[str, Any], base_dir: str) -> str:
    """The build context's path: absolute as written, else from ``base_dir`` (the directory above the playbook's)."""
    context = str(model["image"]["build"]["context"])
    return context if os.path.isabs(context) else os.path.realpath(os.path.join(base_dir, context))


def check_build_context(model: Mapping[str, Any], base_dir: str, prefix: str, image: str) -> Optional[str]:
    path = build_context(model, base_dir)
    if os.path.isdir(path):
        return path
    raise DeployError(
        "image.build.context of {n} is '{c}', which is not a directory ({path}). A relative context is taken from the "
        "directory above the playbook's (the repository root for playbooks/deploy_model.yml). Fix it in the catalog, or "
        "set {p}_image_build=false to deploy {img} as it is.".format(
            n=model["name"], c=model["image"]["build"]["context"], path=path, p=prefix, img=image))


def settings_checks(settings: Dict[str, Any], prefix: str) -> None:
    """The checks of the shared settings that do not need the runtime's record."""
    check_namespace(settings.get("namespace"), prefix)
    check_pod_labels(settings.get("pod_labels") or {}, prefix)
    check_keys(settings.get("pod_annotations") or {}, prefix + "_pod_annotations")
    check_keys(settings.get("service_monitor_labels") or {}, prefix + "_service_monitor_labels")


#: The API server's default --service-node-port-range (the catalog checks it first).
DEFAULT_NODE_PORT_RANGE = NODE_PORT_RANGE
_NODE_PORT_RANGE_FLAG = re.compile(r"^--service-node-port-range=([0-9]+)(?:-([0-9]+)|\+([0-9]+))?$")


def node_port_range(apiserver_pods: Iterable[Mapping[str, Any]]) -> Tuple[int, int, str]:
    """(first, last, where it comes from): the --service-node-port-range of the API server's pod (kubeadm's static
    pod shows its flags), else the default. ``first-last`` or ``first+size`` as the API server takes it."""
    for pod in apiserver_pods:
        for container in ((pod.get("spec") or {}).get("containers") or []):
            for arg in list(container.get("command") or []) + list(container.get("args") or []):
                found = _NODE_PORT_RANGE_FLAG.match(str(arg))
                if not found:
                    continue
                first = int(found.group(1))
                last = int(found.group(2)) if found.group(2) else first + int(found.group(3) or 1) - 1
                return first, last, "the API server's --service-node-port-range (pod {0})".format(
                    (pod.get("metadata") or {}).get("name", "?"))
    return DEFAULT_NODE_PORT_RANGE[0], DEFAULT_NODE_PORT_RANGE[1], (
        "the API server's default range (its --service-node-port-range is not readable here)")


def node_ports_outside(model: Mapping[str, Any], port_range: Tuple[int, int, str]) -> str:
    """A message when a node port of the catalog is outside the cluster's range, else ``""``."""
    first, last, source = port_range
    ports = ((model.get("service") or {}).get("node_ports") or {})
    outside = ["{0} {1}".format(name, number) for name, number in sorted(ports.items())
               if not first <= int(number) <= last]
    if not outside:
        return ""
    return ("service.node_ports of {n} ({o}) {verb} outside the cluster's NodePort range {f}-{l} ({src}): pick ports "
            "in it, or leave them out and the cluster picks them. Nothing was applied.".format(
                n=model.get("name"), o=", ".join(outside), verb="is" if len(outside) == 1 else "are", f=first, l=last,
                src=source))


def one_node_message(result: Mapping[str, Any], gpus: int, resource: str, why: str = "") -> str:
    """When no eligible node has ``gpus`` of ``resource`` at all: all of a replica's GPUs must be on one node
    (a pod is never split), so no rollout order helps; ``""`` otherwise (the GPU check's message says the rest)."""
    nodes: Sequence[Mapping[str, Any]] = [n for n in result.get("nodes") or [] if n.get("eligible")]
    largest = max((int(n.get("allocatable") or 0) for n in nodes), default=0)
    if gpus <= largest:
        return ""
    where = ("the largest eligible node ({0}) has {1}".format(
        ", ".join(sorted(str(n["name"]) for n in nodes if int(n.get("allocatable") or 0) == largest)), largest)
        if nodes else "no eligible node advertises {0}".format(resource))
    return ("gpu.count {g} {r} per replica: all of a replica's GPUs must be on one node{why}, and {where}. Lower "
            "gpu.count to at most {largest}, or pin the model to bigger nodes (gpu.product, node_selector)".format(
                g=gpus, r=resource, why=" (" + why + ")" if why else "", where=where, largest=largest))
