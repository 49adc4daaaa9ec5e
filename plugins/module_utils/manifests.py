# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A model's Kubernetes objects, built by small pure functions (one per kind).

Input: the resolved catalog entry (``model_catalog``'s ``model``), the runtime's
server as ``runtimes.server_spec`` works it out, and the deploy's shared settings
(``Settings``). Output: plain dicts ready for server-side apply. Deploy, render
(kustomize export) and the GPU check's view of the pod (``scheduling``) all come
from here, so tolerations, node selectors and GPU requests have one source.

Plain Python: no Ansible, no cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.runtimes import ServerSpec
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.strategy import (
    DEFAULT_MAX_SURGE,
    DEFAULT_MAX_UNAVAILABLE,
    RECREATE,
    ROLLING_UPDATE,
)


# The options of creativeflow.ai_serving.model_manifests: the action validates its arguments with
# this, and the module that documents it declares the same (ansible-test checks docs against it).
ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = {
    "runtime": {"type": "str", "required": True},
    "model": {"type": "dict", "required": True},
    "knobs": {"type": "dict", "default": {}},
    "settings": {"type": "dict", "required": True},
    "config_files": {"type": "dict", "default": {}},
    "objects": {"type": "bool", "default": False},
    "replicas": {"type": "int"},
    "current_replicas": {"type": "int"},
    "configmap_generator": {"type": "bool", "default": False},
    "service_monitor_api": {"type": "bool", "default": False},
}

Obj = Dict[str, Any]
Model = Mapping[str, Any]

MANAGED_BY = "creativeflow.ai_serving"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# Labels the role sets; extra pod labels may not use these keys.
RESERVED_LABELS = (
    "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
    "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
    "creativeflow.ai/runtime", "creativeflow.ai/model-name",
)
# Shell run by the model fetch init container, per URI scheme.
_FETCH_HTTP = ('curl -fsSL --retry 3 -o /tmp/model.download "$MODEL_URI" && case "$MODEL_URI" in '
               '*.tar.gz|*.tgz) tar -xzf /tmp/model.download -C "$MODEL_DIR" ;; '
               '*.tar) tar -xf /tmp/model.download -C "$MODEL_DIR" ;; '
               '*) mv /tmp/model.download "$MODEL_DIR/${MODEL_URI##*/}" ;; esac')
FETCH_SCRIPTS: Dict[str, str] = {
    "s3": 'aws s3 sync "$MODEL_URI" "$MODEL_DIR" --only-show-errors',
    "gs": 'gcloud storage rsync --recursive "$MODEL_URI" "$MODEL_DIR"',
    "https": _FETCH_HTTP,
    "http": _FETCH_HTTP,
}
_PROBE_TIMING_KEYS = {"initial_delay_seconds": "initialDelaySeconds", "period_seconds": "periodSeconds",
                      "timeout_seconds": "timeoutSeconds", "failure_threshold": "failureThreshold"}
_RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
#: Objects with this annotation are created when missing and never updated: another workload writes their data.
CREATE_ONLY_ANNOTATION = "creativeflow.ai/apply"
CREATE_ONLY = "create-only"
#: Resources of a periodic check's pod (seed 004's health checker).
CHECK_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}}


@dataclass(frozen=True)
class Settings:
    """The deploy's shared settings (the same for every runtime)."""

    namespace: str
    service_account_name: str = "model-server-sa"
    pod_labels: Dict[str, Any] = field(default_factory=dict)
    pod_annotations: Dict[str, Any] = field(default_factory=dict)
    service_monitor: bool = True
    service_monitor_labels: Dict[str, Any] = field(default_factory=dict)
    termination_grace_period_seconds: int = 60
    pre_stop_sleep_seconds: int = 10
    progress_deadline_seconds: int = 600
    model_fetch_images: Dict[str, str] = field(default_factory=dict)


SETTINGS_KEYS = ("namespace", "service_account_name", "pod_labels", "pod_annotations", "service_monitor",
                 "service_monitor_labels", "termination_grace_period_seconds", "pre_stop_sleep_seconds",
                 "progress_deadline_seconds", "model_fetch_images")


def settings_from(values: Mapping[str, Any]) -> Settings:
    """:class:`Settings` from the role's values (numbers and switches as Ansible templated them)."""
    unknown = sorted(set(values) - set(SETTINGS_KEYS))
    if unknown:
        raise ValueError("settings has %s, which model_manifests does not know: it takes %s"
                         % (", ".join(unknown), ", ".join(SETTINGS_KEYS)))
    if not values.get("namespace"):
        raise ValueError("settings.namespace is required: the namespace of the model's objects")
    kwargs: Dict[str, Any] = dict(values)
    for key in ("termination_grace_period_seconds", "pre_stop_sleep_seconds", "progress_deadline_seconds"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    if "service_monitor" in kwargs:
        kwargs["service_monitor"] = str(kwargs["service_monitor"]).lower() in ("1", "true", "yes", "on")
    return Settings(**kwargs)


# ---- what the objects share ----


def labels(model: Model, runtime: str, component: str = "model-server") -> Dict[str, str]:
    """The labels of the model's objects; objects beside the server (its checks) have their own component, so
    the Service and the rollout never count their pods."""
    name = model["name"]
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "ai-serving",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "creativeflow.ai/runtime": runtime,
        "creativeflow.ai/model-name": name,
    }


def selector(model: Model) -> Dict[str, str]:
    return {"app.kubernetes.io/component": "model-server", "creativeflow.ai/model-name": model["name"]}


def version_label(model: Model) -> str:
    """A label value: the image tag, else the digest's first 12 hex digits."""
    image = model["image"]
    value = str(image["tag"]) if "tag" in image else re.sub(r"^[^:]*:", "", str(image["digest"]))[:12]
    return re.sub(r"[^A-Za-z0-9]+$", "", value[:63])


def image_reference(model: Model) -> str:
    image = model["image"]
    return (image["repository"] + (":%s" % image["tag"] if "tag" in image else "")
            + ("@%s" % image["digest"] if "digest" in image else ""))


def _strings(values: Mapping[str, Any]) -> Dict[str, str]:
    # Label, annotation and env values are strings for Kubernetes (2 -> "2").
    return {key: str(value) for key, value in values.items()}


def scheduling(model: Model) -> Tuple[Dict[str, str], List[Dict[str, Any]]]:
    """The pod's node selector and tolerations: GPU Feature Discovery's product label
    pins the GPU model (the catalog's node_selector adds to it); GPU pods tolerate
    the GPU Operator's nvidia.com/gpu taint (MIG nodes too)."""
    gpu = model.get("gpu") or {}
    node_selector = {GPU_PRODUCT_LABEL: gpu["product"]} if "product" in gpu else {}
    node_selector.update(model.get("node_selector") or {})
    tolerations = ([{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
                   if int(gpu.get("count", 0)) > 0 else [])
    return node_selector, tolerations + list(model.get("tolerations") or [])


def check_scheduling(model: Model, check: Mapping[str, Any]) -> Tuple[Dict[str, str], List[Dict[str, Any]]]:
    """Where a periodic check's pod runs: on any node the model's server may run on. It takes no GPU, so
    the catalog's node_selector without the GPU product label, but every toleration of the server (a GPU
    pool's taint included), so that a selector naming the server's pool never leaves it Pending. The
    check's own node_selector and tolerations, where set, replace these ({}: any node; []: no taint)."""
    node_selector = dict(model.get("node_selector") or {})
    tolerations = scheduling(model)[1]
    if check.get("node_selector") is not None:
        node_selector = dict(check["node_selector"])
    if check.get("tolerations") is not None:
        tolerations = list(check["tolerations"])
    return node_selector, tolerations


def gpu_request(model: Model) -> Dict[str, str]:
    """The GPUs of one pod, requested and limited alike."""
    gpu = model.get("gpu") or {}
    count = int(gpu.get("count", 0))
    return {gpu["resource"]: str(count)} if count > 0 else {}


def env(spec: ServerSpec, model: Model) -> Dict[str, str]:
    """The runtime's variables, then the catalog's (which win)."""
    merged = dict(spec.env)
    merged.update(model.get("env") or {})
    return _strings(merged)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def probe_timing(spec: ServerSpec, model: Model) -> Dict[str, Any]:
    """The runtime's probe timing with the catalog's merged over it."""
    return _merge(spec.probe_defaults, model.get("probes") or {})


def model_mount_path(spec: ServerSpec, model: Model) -> str:
    return (model.get("model") or {}).get("mount_path") or spec.model_mount_path


def configmap_name(model: Model, config_files: Mapping[str, str], generator: bool = False) -> str:
    """The configuration ConfigMap's name: a hash of the content (like kustomize's
    configMapGenerator), so a change rolls the pods and the ReplicaSet of an earlier
    revision keeps its own (a rollback restores the configuration too). With
    ``generator`` (kustomize export), the name without the hash that kustomize adds."""
    if not config_files:
        return ""
    if generator:
        return "%s-config" % model["name"]
    digest = hashlib.sha256(json.dumps(dict(config_files), sort_keys=True).encode("utf-8")).hexdigest()
    return "%s-config-%s" % (model["name"], digest[:10])


def replica_count(model: Model, current: Optional[int] = None) -> int:
    """The Deployment's replicas: the catalog's, or with autoscaling the current count kept within the HPA's bounds."""
    autoscaling = model.get("autoscaling") or {}
    if not autoscaling.get("enabled"):
        return int(model.get("replicas", 1))
    low, high = int(autoscaling.get("min_replicas", 1)), int(autoscaling.get("max_replicas", 1))
    return min(max(int(current if current is not None else low), low), high)


def _metadata(model: Model, settings: Settings, name: str, object_labels: Mapping[str, str]) -> Obj:
    return {"name": name, "namespace": settings.namespace, "labels": dict(object_labels)}


def server_view(spec: ServerSpec, model: Model, settings: Settings) -> Dict[str, Any]:
    """What the runtime's record makes of the entry: the container, ports, probes, smoke paths, image, labels."""
    return {
        "container_name": spec.container_name, "command": spec.command, "args": spec.args,
        "working_dir": spec.working_dir, "ports": spec.ports, "env": env(spec, model),
        "probe_paths": spec.probe_paths, "probe_timing": probe_timing(spec, model),
        "metrics": spec.metrics, "smoke_paths": spec.smoke_paths, "writable_paths": spec.writable_paths,
        "model_mount_path": model_mount_path(spec, model),
        "config_mount_path": spec.config_mount_path, "run_as_user": spec.run_as_user,
        "image": image_reference(model), "labels": labels(model, spec.runtime),
        "selector": selector(model), "pod_labels": pod_labels(spec, model, settings),
        "ensure": spec.ensure, "gpus_on_one_node": spec.gpus_on_one_node,
    }


# ---- one function per kind ----


def configmap(spec: ServerSpec, model: Model, settings: Settings, config_files: Mapping[str, str], name: str) -> List[Obj]:
    if not config_files:
        return []
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": _metadata(model, settings, name, labels(model, spec.runtime)), "data": dict(config_files)}]


def service(spec: ServerSpec, model: Model, settings: Settings) -> List[Obj]:
    """The Service: ClusterIP, or what the catalog's ``service`` asks (NodePort with fixed node ports, LoadBalancer)."""
    exposure = model.get("service") or {}
    kind = exposure.get("type", "ClusterIP")
    node_ports = exposure.get("node_ports") or {}
    ports = []
    for port in spec.ports:
        if not port.get("service", True):
            continue
        item: Obj = {"name": port["name"], "port": int(port["port"]), "targetPort": port["name"], "protocol": "TCP"}
        if kind != "ClusterIP" and port["name"] in node_ports:
            item["nodePort"] = int(node_ports[port["name"]])
        ports.append(item)
    service_spec: Obj = {"type": kind, "selector": selector(model), "ports": ports}
    if kind == "LoadBalancer" and exposure.get("load_balancer_source_ranges"):
        service_spec["loadBalancerSourceRanges"] = list(exposure["load_balancer_source_ranges"])
    metadata = _metadata(model, settings, model["name"], labels(model, spec.runtime))
    if exposure.get("annotations"):
        metadata["annotations"] = _strings(exposure["annotations"])
    return [{"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": service_spec}]


def service_url(spec: ServerSpec, model: Model, port_name: str) -> str:
    """The Service's in-cluster URL on a named port; $(NAMESPACE) is the pod's (its env sets it first)."""
    number = [port["port"] for port in spec.ports if port["name"] == port_name][0]
    return "http://%s.$(NAMESPACE).svc:%d" % (model["name"], int(number))


def service_address_url(model: Model, port_name: str) -> str:
    """The Service's URL from the variables Kubernetes gives every pod of the namespace (enableServiceLinks,
    on by default) for the Services that exist when it starts: no cluster DNS needed. The kubelet expands
    $(VAR) references to them; one that does not exist stays as written."""
    prefix = re.sub(r"[^A-Z0-9]", "_", str(model["name"]).upper())
    return "http://$(%s_SERVICE_HOST):$(%s_SERVICE_PORT_%s)" % (prefix, prefix, re.sub(r"[^A-Z0-9]", "_", port_name.upper()))


def pvc(spec: ServerSpec, model: Model, settings: Settings) -> List[Obj]:
    """The model's PersistentVolumeClaim, when the catalog asks the deploy to create it (model.pvc.create)."""
    source = model.get("model") or {}
    claim = source.get("pvc") or {}
    create = claim.get("create")
    if source.get("source") != "pvc" or not create:
        return []
    claim_spec: Obj = {"accessModes": list(create.get("access_modes") or ["ReadWriteOnce"]),
                       "resources": {"requests": {"storage": str(create["size"])}}}
    if create.get("storage_class"):
        claim_spec["storageClassName"] = str(create["storage_class"])
    return [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": _metadata(model, settings, claim["claim_name"], labels(model, spec.runtime, "model-storage")),
             "spec": claim_spec}]


def _role(name: str, object_labels: Mapping[str, str], settings: Settings, rules: List[Obj],
          subject: str) -> List[Obj]:
    """A Role and the RoleBinding that gives it to one ServiceAccount of the namespace."""
    meta = {"name": name, "namespace": settings.namespace, "labels": dict(object_labels)}
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": dict(meta), "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": settings.namespace}]}]


def check_names(model: Model, check: Mapping[str, Any]) -> Dict[str, str]:
    """The names of a periodic check's objects."""
    base = "%s-%s" % (model["name"], check["name"])
    return {"cronjob": base, "service_account": base, "role": base, "script": base + "-script",
            "report": base + "-report"}


def periodic_check(spec: ServerSpec, model: Model, settings: Settings, check: Mapping[str, Any]) -> List[Obj]:
    """One periodic check: its script's ConfigMap, the ConfigMap it reports into, its ServiceAccount and Role
    (get and patch of that ConfigMap only; no token at all when it does not report), and the CronJob."""
    names = check_names(model, check)
    object_labels = labels(model, spec.runtime, check["name"])
    reports = bool(check.get("reports"))
    env: List[Obj] = [{"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                      {"name": "SERVER_URL", "value": service_url(spec, model, check["port"])},
                      # Where cluster DNS does not answer (the local cluster has none).
                      {"name": "SERVER_ADDRESS_URL", "value": service_address_url(model, check["port"])}]
    if reports:
        env.append({"name": "REPORT_CONFIGMAP", "value": names["report"]})
    env += [{"name": key, "value": str(value)} for key, value in sorted((check.get("env") or {}).items())]
    uid = int(check.get("run_as_user", 65534))
    pod: Obj = {
        "serviceAccountName": names["service_account"],
        "automountServiceAccountToken": reports,
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "check",
            "image": str(check["image"]),
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "/scripts/%s" % check["script_file"]],
            "env": env,
            "resources": CHECK_RESOURCES,
            "securityContext": dict(_RESTRICTED_CONTAINER, readOnlyRootFilesystem=True),
            "volumeMounts": [{"name": "script", "mountPath": "/scripts", "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "script", "configMap": {"name": names["script"], "defaultMode": 0o555}},
                    {"name": "tmp", "emptyDir": {}}],
    }
    node_selector, tolerations = check_scheduling(model, check)
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    out: List[Obj] = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": _metadata(model, settings, names["service_account"], object_labels),
         "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(model, settings, names["script"], object_labels),
         "data": {check["script_file"]: check["script"]}},
    ]
    if reports:
        # Labels only: the job writes data.last_report; a deploy never takes it back.
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": _metadata(model, settings, names["report"], object_labels)})
        out += _role(names["role"], object_labels, settings,
                     [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [names["report"]],
                       "verbs": ["get", "patch"]}], names["service_account"])
    out.append({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": _metadata(model, settings, names["cronjob"], object_labels),
        "spec": {
            "schedule": str(check["schedule"]),
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": dict(object_labels)},
                "spec": {"backoffLimit": 0, "activeDeadlineSeconds": int(check.get("deadline_seconds", 1800)),
                         "template": {"metadata": {"labels": dict(object_labels)}, "spec": pod}},
            },
        },
    })
    return out


def shared_configmap(spec: ServerSpec, model: Model, settings: Settings, shared: Mapping[str, Any]) -> List[Obj]:
    """A ConfigMap another workload keeps its data in (created once, never overwritten), and its Role."""
    name = "%s-%s" % (model["name"], shared["name"])
    object_labels = labels(model, spec.runtime, shared["name"])
    metadata = _metadata(model, settings, name, object_labels)
    metadata["annotations"] = {CREATE_ONLY_ANNOTATION: CREATE_ONLY}
    return ([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(shared["data"])}]
            + _role(name, object_labels, settings, [{"apiGroups": [""], "resources": ["configmaps"],
                                                    "resourceNames": [name], "verbs": list(shared["verbs"])}],
                    str(shared["service_account"])))


def extras(spec: ServerSpec, model: Model, settings: Settings) -> List[Obj]:
    """The objects the record asks for beside the server, in apply order."""
    out: List[Obj] = []
    for shared in spec.shared_configmaps:
        out += shared_configmap(spec, model, settings, shared)
    for check in spec.periodic_checks:
        out += periodic_check(spec, model, settings, check)
    return out


def is_create_only(obj: Mapping[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(CREATE_ONLY_ANNOTATION) == CREATE_ONLY


def _strategy(model: Model) -> Obj:
    # Both RollingUpdate numbers are always set, so they are ours and a switch to Recreate removes them.
    strategy = model.get("strategy") or {}
    if strategy.get("type") == RECREATE:
        return {"type": RECREATE}
    rolling = {"maxSurge": strategy.get("max_surge", DEFAULT_MAX_SURGE),
               "maxUnavailable": strategy.get("max_unavailable", DEFAULT_MAX_UNAVAILABLE)}
    return {"type": ROLLING_UPDATE, "rollingUpdate": rolling}


def _resources(model: Model) -> Obj:
    resources = model.get("resources") or {}
    requests = _strings(resources.get("requests") or {})
    limits = _strings(resources.get("limits") or {})
    requests.update(gpu_request(model))
    limits.update(gpu_request(model))
    return {"requests": requests, **({"limits": limits} if limits else {})}


def _probes(spec: ServerSpec, model: Model) -> Obj:
    timing = probe_timing(spec, model)
    probes: Obj = {}
    for kind in ("startup", "readiness", "liveness"):
        if kind not in spec.probe_paths:
            continue
        item = spec.probe_paths[kind]
        if "grpc_service" in item:
            # grpc.health.v1; Kubernetes takes the port's number here, not its name
            number = [port["port"] for port in spec.ports if port["name"] == item["port"]][0]
            probe: Obj = {"grpc": {"port": int(number), "service": item["grpc_service"]}}
        else:
            probe = {"httpGet": {"path": item["path"], "port": item["port"]}}
        for key, value in (timing.get(kind) or {}).items():
            if key in _PROBE_TIMING_KEYS:
                probe[_PROBE_TIMING_KEYS[key]] = int(value)
        probes[kind + "Probe"] = probe
    return probes


def _volumes(spec: ServerSpec, model: Model, settings: Settings,
             config_name: str) -> Tuple[List[Obj], List[Obj], List[Obj]]:
    """The pod's volumes, the server's mounts and the init containers (the model fetch)."""
    volumes: List[Obj] = []
    mounts: List[Obj] = []
    init: List[Obj] = []
    if config_name:
        volumes.append({"name": "config", "configMap": {"name": config_name}})
        mounts.append({"name": "config", "mountPath": spec.config_mount_path, "readOnly": True})
    for index, writable in enumerate(spec.writable_paths):
        empty_dir: Obj = {}
        if writable.get("medium"):
            empty_dir["medium"] = writable["medium"]
        if writable.get("size_limit"):
            empty_dir["sizeLimit"] = str(writable["size_limit"])
        volumes.append({"name": "writable-%d" % index, "emptyDir": empty_dir})
        mounts.append({"name": "writable-%d" % index, "mountPath": writable["path"]})
    source = model.get("model") or {}
    mount_path = model_mount_path(spec, model)
    if source.get("source") == "pvc":
        claim = source["pvc"]
        read_only = bool(claim.get("read_only", not spec.writes_models))
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": claim["claim_name"], "readOnly": read_only}})
        mount: Obj = {"name": "model", "mountPath": mount_path, "readOnly": read_only}
        if "sub_path" in claim:
            mount["subPath"] = claim["sub_path"]
        mounts.append(mount)
    elif source.get("source") == "uri":
        scheme = re.sub(r"://.*$", "", source["uri"])
        volumes += [{"name": "model", "emptyDir": {}}, {"name": "fetch-tmp", "emptyDir": {}}]
        mounts.append({"name": "model", "mountPath": mount_path, "readOnly": True})
        fetch: Obj = {
            "name": "fetch-model",
            "image": settings.model_fetch_images[scheme],
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", FETCH_SCRIPTS[scheme]],
            "env": [{"name": "MODEL_URI", "value": source["uri"]}, {"name": "MODEL_DIR", "value": mount_path},
                    {"name": "HOME", "value": "/tmp"}, {"name": "CLOUDSDK_CONFIG", "value": "/tmp/gcloud"}],
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": dict(_RESTRICTED_CONTAINER, readOnlyRootFilesystem=True),
            "volumeMounts": [{"name": "model", "mountPath": mount_path}, {"name": "fetch-tmp", "mountPath": "/tmp"}],
        }
        if "credentials_secret" in source:
            fetch["envFrom"] = [{"secretRef": {"name": source["credentials_secret"]}}]
        init.append(fetch)
    elif spec.writes_models:
        # No claim: the server's models live as long as the pod (the deploy's after-rollout step fetches them).
        volumes.append({"name": "model", "emptyDir": {}})
        mounts.append({"name": "model", "mountPath": mount_path})
    return volumes, mounts, init


def pod_labels(spec: ServerSpec, model: Model, settings: Settings) -> Dict[str, str]:
    out = labels(model, spec.runtime)
    out["app.kubernetes.io/version"] = version_label(model)
    out.update(_strings(settings.pod_labels))
    return out


def deployment(spec: ServerSpec, model: Model, settings: Settings, replicas: int, config_name: str = "") -> List[Obj]:
    volumes, mounts, init = _volumes(spec, model, settings, config_name)
    container: Obj = {
        "name": spec.container_name,
        "image": image_reference(model),
        "imagePullPolicy": model["image"].get("pull_policy", "IfNotPresent"),
        "resources": _resources(model),
        "securityContext": dict(_RESTRICTED_CONTAINER, readOnlyRootFilesystem=bool(spec.read_only_root_filesystem)),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(settings.pre_stop_sleep_seconds)]}}},
        "ports": [{"name": port["name"], "containerPort": int(port["port"]), "protocol": "TCP"} for port in spec.ports],
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    variables = env(spec, model)
    if variables:
        container["env"] = [{"name": name, "value": variables[name]} for name in sorted(variables)]
    if model.get("env_from_secrets"):
        container["envFrom"] = [{"secretRef": {"name": name}} for name in model["env_from_secrets"]]
    container.update(_probes(spec, model))
    if mounts:
        container["volumeMounts"] = mounts
    uid = int(spec.run_as_user)
    pod: Obj = {
        "serviceAccountName": settings.service_account_name,
        "terminationGracePeriodSeconds": int(settings.termination_grace_period_seconds),
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector(model)}},
        }]}},
        "containers": [container],
    }
    if init:
        pod["initContainers"] = init
    if volumes:
        pod["volumes"] = volumes
    node_selector, tolerations = scheduling(model)
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    if model["image"].get("pull_secrets"):
        pod["imagePullSecrets"] = [{"name": name} for name in model["image"]["pull_secrets"]]
    template_meta: Obj = {"labels": pod_labels(spec, model, settings)}
    if settings.pod_annotations:
        template_meta["annotations"] = _strings(settings.pod_annotations)
    deployment_labels = labels(model, spec.runtime)
    deployment_labels["app.kubernetes.io/version"] = version_label(model)
    return [{
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(model, settings, model["name"], deployment_labels),
        "spec": {
            "replicas": int(replicas),
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": int(settings.progress_deadline_seconds),
            "selector": {"matchLabels": selector(model)},
            "strategy": _strategy(model),
            "template": {"metadata": template_meta, "spec": pod},
        },
    }]


def hpa(spec: ServerSpec, model: Model, settings: Settings) -> List[Obj]:
    autoscaling = model.get("autoscaling") or {}
    if not autoscaling.get("enabled"):
        return []
    metrics: List[Obj] = [
        {"type": "Resource", "resource": {"name": resource, "target": {
            "type": "Utilization", "averageUtilization": int(autoscaling["target_%s_utilization" % resource])}}}
        for resource in ("cpu", "memory") if "target_%s_utilization" % resource in autoscaling]
    hpa_spec: Obj = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": model["name"]},
        "minReplicas": int(autoscaling.get("min_replicas", 1)),
        "maxReplicas": int(autoscaling["max_replicas"]),
        "metrics": metrics + list(autoscaling.get("metrics") or []),
    }
    if "behavior" in autoscaling:
        hpa_spec["behavior"] = autoscaling["behavior"]
    return [{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
             "metadata": _metadata(model, settings, model["name"], labels(model, spec.runtime)), "spec": hpa_spec}]


def pdb(spec: ServerSpec, model: Model, settings: Settings) -> List[Obj]:
    budget = model.get("pdb") or {}
    if not budget.get("enabled"):
        return []
    pdb_spec: Obj = {"selector": {"matchLabels": selector(model)}}
    if "min_available" in budget:
        pdb_spec["minAvailable"] = budget["min_available"]
    else:
        pdb_spec["maxUnavailable"] = budget.get("max_unavailable")
    # A pod that is not Ready (crash-looping, model not loaded) may be evicted: it
    # serves nothing, and keeping it would block node drains.
    pdb_spec["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    return [{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
             "metadata": _metadata(model, settings, model["name"], labels(model, spec.runtime)), "spec": pdb_spec}]


def service_monitor(spec: ServerSpec, model: Model, settings: Settings, api_served: bool) -> List[Obj]:
    """Only when the Prometheus Operator's CRD is served and the runtime has a metrics endpoint."""
    if not (settings.service_monitor and api_served and spec.metrics.get("port")):
        return []
    monitor_labels = labels(model, spec.runtime)
    monitor_labels.update(_strings(settings.service_monitor_labels))
    return [{"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
             "metadata": _metadata(model, settings, model["name"], monitor_labels),
             "spec": {"selector": {"matchLabels": selector(model)},
                      "endpoints": [{"port": spec.metrics["port"], "path": spec.metrics["path"], "interval": "30s"}]}}]


def objects(spec: ServerSpec, model: Model, settings: Settings, config_files: Mapping[str, str], replicas: int,
            config_name: str, service_monitor_api: bool = False) -> List[Obj]:
    """Every object of the model, in apply order (the claim and the ConfigMaps before the Deployment and the
    CronJobs that mount them)."""
    return (pvc(spec, model, settings)
            + configmap(spec, model, settings, config_files, config_name)
            + extras(spec, model, settings)
            + service(spec, model, settings)
            + deployment(spec, model, settings, replicas, config_name)
            + hpa(spec, model, settings)
            + pdb(spec, model, settings)
            + service_monitor(spec, model, settings, service_monitor_api))
