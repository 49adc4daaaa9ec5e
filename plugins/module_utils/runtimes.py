# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The runtimes a model can be served with, one data record each.

A record says everything that differs between runtimes: the container's command
and arguments, its ports and which ones the Service publishes, probe paths and
their timing defaults, writable paths, the configuration files the role renders,
the Dockerfile template, the catalog section's JSON Schema and the smoke check's
requests. ``manifests.py`` turns a record, a catalog entry and the knobs into
Kubernetes objects; ``catalog.py`` takes the list of runtimes and each section's
schema from here. Nothing else names the runtimes.

Knobs: a runtime's own settings are the role's ``<runtime>_<knob>`` variables;
``knobs`` here are their defaults (the role's defaults/main.yml must agree, a
unit test checks it), and the record's functions receive them without prefix.

Adding a runtime: a record in ``REGISTRY``, ``roles/<name>/`` (tasks/main.yml
entry point, defaults, meta/argument_specs.yml, templates/Dockerfile.j2) and one
row of the docs' runtime table.

Objects beside the Deployment are data too: a record may ask for periodic checks
(:class:`PeriodicCheck`: a CronJob, its script's ConfigMap, a ServiceAccount and a
Role that lets it write its report and nothing else), ConfigMaps another workload
keeps its data in (:class:`SharedConfigMap`, with the Role that lets it), and what
the server must hold after the rollout (:class:`EnsurePresent`). ``manifests.py``
and the deploy build and run them without knowing which runtime asked.

Plain Python: no Ansible, no cluster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import smoke as _smoke
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.quantity import QuantityError, parse_quantity

Knobs = Mapping[str, Any]
Model = Mapping[str, Any]


# ---- JSON Schema pieces of the sections (the dialect catalog.py validates with) ----

SERVER_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def schema_string(pattern: Optional[str] = None, expected: str = "", **extra: Any) -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern:
        schema["pattern"] = pattern
    if expected:
        schema["x-expected"] = expected
    schema.update(extra)
    return schema


def schema_integer(minimum: int = 0, **extra: Any) -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "integer", "minimum": minimum}
    schema.update(extra)
    return schema


def schema_object(properties: Dict[str, Any], required: Sequence[str] = (), **extra: Any) -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


ABSOLUTE_PATH = schema_string(r"^/", "an absolute path inside the container (starting with /)")
EXTRA_ARGS = {"type": "array", "items": {"type": "string"}}
LABEL_KEY = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
             r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A pod's placement, as the catalog gives it for the model's server and a section for a check's pod.
NODE_SELECTOR = {
    "type": "object",
    "propertyNames": schema_string(LABEL_KEY, "a label key such as node.kubernetes.io/instance-type", maxLength=317),
    "additionalProperties": {"type": "string", "pattern": LABEL_VALUE, "maxLength": 63,
                             "x-expected": "a label value (at most 63 letters, digits, - _ .)"},
}
TOLERATIONS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "operator": {"enum": ["Exists", "Equal"]},
            "value": {"type": "string"},
            "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
            "tolerationSeconds": {"type": "integer"},
        },
        "additionalProperties": False,
    },
}


# ---- the record ----


@dataclass(frozen=True)
class Port:
    """A container port; ``knob`` names the role variable holding its number."""

    name: str
    knob: str
    service: bool = True


@dataclass(frozen=True)
class HttpPath:
    """An HTTP path on a named port (probes, metrics, smoke requests)."""

    path: str
    port: str


@dataclass(frozen=True)
class Writable:
    """An emptyDir mounted where the server writes (the root filesystem is read-only)."""

    path: str
    medium: str = ""
    size_limit: str = ""


@dataclass(frozen=True)
class GrpcCheck:
    """A grpc.health.v1 check of ``service`` on a named port: a Kubernetes gRPC probe."""

    service: str
    port: str


@dataclass(frozen=True)
class PeriodicCheck:
    """A CronJob that checks the server from inside the cluster through its Service.

    ``script`` is mounted from a ConfigMap at /scripts/``script_file`` and run by
    ``image``'s /bin/sh; ``env`` is its configuration (manifests.py adds
    SERVER_URL, NAMESPACE and REPORT_CONFIGMAP). With ``reports``, the job writes
    its last report into a ConfigMap of its own, which is all its ServiceAccount may
    touch (get, patch); without, the pod gets no API token at all.
    """

    name: str
    schedule: str
    image: str
    script_file: str
    script: str
    port: str
    env: Dict[str, str]
    reports: bool = True
    deadline_seconds: int = 1800
    run_as_user: int = 65534
    # Where its pod runs; None: where the model's server may run (manifests.check_scheduling).
    node_selector: Optional[Dict[str, str]] = None
    tolerations: Optional[List[Dict[str, Any]]] = None


@dataclass(frozen=True)
class SharedConfigMap:
    """A ConfigMap another workload keeps its data in: created with ``data`` when missing and never
    overwritten by a deploy (the other workload writes it); a Role lets ``service_account`` get,
    update and patch that ConfigMap only."""

    name: str
    data: Dict[str, str]
    service_account: str
    verbs: Tuple[str, ...] = ("get", "update", "patch")


@dataclass(frozen=True)
class EnsurePresent:
    """What each serving pod must hold after the rollout, through the server's own API.

    ``list_path`` (GET) lists what the server has (``list_key`` of the JSON answer,
    each item's ``item_key``); ``fetch_path`` (POST, body ``fetch_body`` with the
    item's name under ``fetch_name_key``) fetches a missing one, within
    ``timeout_seconds`` per item. Names without a tag get ``default_tag``.
    """

    what: str
    wanted: Tuple[str, ...]
    port: str
    list_path: str
    list_key: str
    item_key: str
    fetch_path: str
    fetch_name_key: str
    fetch_body: Dict[str, Any]
    timeout_seconds: int
    default_tag: str = ""


@dataclass(frozen=True)
class Series:
    """Samples of one metric in the server's Prometheus exposition: ``name`` as exposed (a histogram's
    family name: its ``_bucket`` samples are read), kept when every ``match`` label's value fully matches its
    regular expression and no ``exclude`` label's value does (a missing label reads as "")."""

    name: str
    match: Tuple[Tuple[str, str], ...] = ()
    exclude: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RequestMetrics:
    """Where a canary analysis reads a server's requests: the counters of answered requests (summed), those of
    failed ones (a subset of them), and the latency histogram (``latency_unit``: seconds per unit of its ``le``),
    None when the server exposes none. ``source`` says where the names come from (the docs show it)."""

    requests: Tuple[Series, ...]
    errors: Tuple[Series, ...]
    latency: Optional[Series]
    source: str
    latency_unit: float = 1.0
    # The answered requests the server refused as the client's fault (4xx): a canary refusing what the stable
    # version accepts is a regression (a model that raises on every input is answered 400 by some servers).
    rejected: Tuple[Series, ...] = ()


PROBE_KINDS = ("startup", "readiness", "liveness")


def _no_objects(model: Model, knobs: Knobs) -> List[Any]:
    return []


def _probe_timing(startup: Tuple[int, int, int], readiness: Tuple[int, int, int],
                  liveness: Tuple[int, int, int]) -> Dict[str, Dict[str, int]]:
    """(period, timeout, failure threshold) per probe kind."""
    return {kind: {"period_seconds": values[0], "timeout_seconds": values[1], "failure_threshold": values[2]}
            for kind, values in zip(PROBE_KINDS, (startup, readiness, liveness))}


@dataclass(frozen=True)
class Runtime:
    """Everything a runtime differs in. The callables take the resolved catalog
    entry and the runtime's knobs (unprefixed) and return plain data."""

    name: str
    title: str
    container_name: str
    command: Callable[[Knobs], List[str]]
    args: Callable[[Model, Knobs], List[str]]
    ports: Tuple[Port, ...]
    probes: Callable[[Model, Knobs], Dict[str, Any]]  # kind -> HttpPath or GrpcCheck
    metrics: HttpPath
    smoke: Callable[[Model, Knobs], List[HttpPath]]
    section_schema: Dict[str, Any]
    knobs: Dict[str, Any]
    env: Callable[[Model, Knobs], Dict[str, str]] = lambda model, knobs: {}
    working_dir: Callable[[Knobs], str] = lambda knobs: ""
    writable: Callable[[Knobs], List[Writable]] = lambda knobs: [Writable("/tmp")]
    # Where the model is mounted when the catalog's model.mount_path says nothing.
    model_mount_path: Callable[[Knobs], str] = lambda knobs: "/models"
    # The configuration files the role renders (templates/<name>.j2), mounted here.
    config_files: Tuple[str, ...] = ()
    config_mount_path: str = ""
    dockerfile_template: str = "Dockerfile.j2"
    read_only_root_filesystem: bool = True
    # The server writes into its model directory (it pulls models): the claim is mounted read-write
    # unless the catalog says otherwise, and without a claim the directory is an emptyDir.
    writes_models: bool = False
    periodic_checks: Callable[[Model, Knobs], List[Any]] = _no_objects
    shared_configmaps: Callable[[Model, Knobs], List[Any]] = _no_objects
    ensure_present: Callable[[Model, Knobs], Optional[EnsurePresent]] = lambda model, knobs: None
    # Rules of the catalog section that its schema cannot express: (path, message) pairs.
    section_rules: Callable[[Mapping[str, Any]], List[Tuple[Tuple[Any, ...], str]]] = lambda entry: []
    # Why the GPUs of one replica must be on one node, beyond Kubernetes' own reason (the preflight says it).
    gpus_on_one_node: str = ""
    # Where a canary's analysis reads requests, errors and latency in the server's own metrics; None: nowhere.
    request_metrics: Optional[RequestMetrics] = None

    @property
    def role(self) -> str:
        return self.name

    @property
    def adds_objects(self) -> bool:
        """Whether the record may add checks or shared ConfigMaps (a deploy then reads those kinds to remove
        what a catalog change switched off)."""
        return self.periodic_checks is not _no_objects or self.shared_configmaps is not _no_objects

    def port_numbers(self, knobs: Knobs) -> List[Dict[str, Any]]:
        """The ports with their numbers, as _common takes them."""
        out: List[Dict[str, Any]] = []
        for port in self.ports:
            item: Dict[str, Any] = {"name": port.name, "port": int(knobs[port.knob])}
            if not port.service:
                item["service"] = False
            out.append(item)
        return out

    def with_defaults(self, knobs: Optional[Knobs] = None) -> Dict[str, Any]:
        """The record's knob defaults with ``knobs`` over them."""
        merged = dict(self.knobs)
        merged.update(knobs or {})
        return merged


def _section(model: Model, runtime: str) -> Mapping[str, Any]:
    return model.get(runtime) or {}


def _mount_path(model: Model, default: str) -> str:
    return (model.get("model") or {}).get("mount_path") or default


# ---- TensorFlow Serving ----

_TF_CONFIG_DIR = "/etc/tf-serving"


def _tf_serving_health(model: Model, knobs: Knobs) -> HttpPath:
    # The REST path that answers once the model is loaded.
    return HttpPath("/v1/models/%s" % _section(model, "tf_serving").get("model_name", ""), "rest")


def _tf_serving_args(model: Model, knobs: Knobs) -> List[str]:
    section = _section(model, "tf_serving")
    return (["--port=%s" % knobs["grpc_port"], "--rest_api_port=%s" % knobs["rest_port"],
             "--model_config_file=%s/models.config" % _TF_CONFIG_DIR,
             "--monitoring_config_file=%s/monitoring.config" % _TF_CONFIG_DIR]
            + (["--enable_batching=true"] if section.get("enable_batching") else [])
            + list(section.get("extra_args") or []))


# TensorFlow Serving's own metrics (monitoring.config's prometheus_config): /tensorflow/serving/... exposed
# with ":" for "/"; status is "OK" or the error's text; the latency histogram counts microseconds.
_TF_SERVING_REQUESTS = RequestMetrics(
    requests=(Series(":tensorflow:serving:request_count"),),
    errors=(Series(":tensorflow:serving:request_count", exclude=(("status", "OK"),)),),
    latency=Series(":tensorflow:serving:request_latency"),
    latency_unit=1e-6,
    source="TensorFlow Serving's request_count (status) and request_latency (microseconds)",
)

TF_SERVING = Runtime(
    name="tf_serving",
    title="TensorFlow Serving",
    container_name="tf-serving",
    command=lambda knobs: ["tensorflow_model_server"],
    args=_tf_serving_args,
    ports=(Port("grpc", "grpc_port"), Port("rest", "rest_port")),
    probes=lambda model, knobs: {kind: _tf_serving_health(model, knobs) for kind in PROBE_KINDS},
    metrics=HttpPath("/monitoring/prometheus/metrics", "rest"),
    request_metrics=_TF_SERVING_REQUESTS,
    smoke=lambda model, knobs: [_tf_serving_health(model, knobs)],
    config_files=("models.config", "monitoring.config"),
    config_mount_path=_TF_CONFIG_DIR,
    knobs={"grpc_port": 8500, "rest_port": 8501, "run_as_user": 1000,
           "base_image": "tensorflow/serving:2.15.0-gpu",
           "probes": _probe_timing((10, 5, 30), (10, 5, 3), (20, 5, 3))},
    section_schema=schema_object({
        "model_name": schema_string(SERVER_MODEL_NAME, "a TF Serving model name (letters, digits, _ . -)"),
        "model_base_path": ABSOLUTE_PATH,
        "model_platform": schema_string(default="tensorflow"),
        "version_policy": schema_object({
            "type": {"enum": ["latest", "all", "specific"], "default": "latest"},
            "num_versions": schema_integer(1),
            "versions": {"type": "array", "items": schema_integer(0), "minItems": 1, "uniqueItems": True},
        }, required=["type"], allOf=[{
            "if": {"properties": {"type": {"const": "specific"}}, "required": ["type"]},
            "then": {"required": ["versions"], "x-because": "version_policy.type is specific"},
        }]),
        "enable_batching": {"type": "boolean", "default": False},
        "extra_args": EXTRA_ARGS,
    }, required=["model_name", "model_base_path"]),
)


# ---- TorchServe ----

_TORCHSERVE_HOME = "/home/model-server"


def _torchserve_store(model: Model, knobs: Knobs) -> str:
    return _mount_path(model, knobs["model_store"])


def torchserve_load(model: Model) -> str:
    """TorchServe's --models value (and load_models in config.properties)."""
    section = _section(model, "torchserve")
    return "%s=%s" % (section.get("model_name", ""), section.get("mar_file", ""))


def _torchserve_args(model: Model, knobs: Knobs) -> List[str]:
    return (["--start", "--foreground", "--ncs", "--ts-config=%s/config/config.properties" % _TORCHSERVE_HOME,
             "--model-store=%s" % _torchserve_store(model, knobs), "--models", torchserve_load(model)]
            + list(_section(model, "torchserve").get("extra_args") or []))


# TorchServe's health check is on the inference API (not the management one). Since 0.10 /ping
# means the models are loaded: it answers 500 "Unhealthy" until every model has its minimum
# workers healthy (ApiUtils.isModelHealthy in 0.12's frontend), so readiness waits for the model.
_TORCHSERVE_PING = HttpPath("/ping", "inference")

# TorchServe's frontend counts answers per status class; it has no latency histogram (its latency metrics are
# running totals), so a canary of TorchServe can bound errors only.
_TORCHSERVE_REQUESTS = RequestMetrics(
    requests=(Series("Requests2XX"), Series("Requests4XX"), Series("Requests5XX")),
    errors=(Series("Requests5XX"),),
    rejected=(Series("Requests4XX"),),
    latency=None,
    source="TorchServe's Requests2XX, Requests4XX and Requests5XX",
)

TORCHSERVE = Runtime(
    name="torchserve",
    title="TorchServe",
    container_name="torchserve",
    command=lambda knobs: ["torchserve"],
    args=_torchserve_args,
    # The management API is reached with kubectl port-forward, not through the Service.
    ports=(Port("inference", "inference_port"), Port("management", "management_port", service=False),
           Port("metrics", "metrics_port")),
    probes=lambda model, knobs: {kind: _TORCHSERVE_PING for kind in PROBE_KINDS},
    metrics=HttpPath("/metrics", "metrics"),
    request_metrics=_TORCHSERVE_REQUESTS,
    smoke=lambda model, knobs: [_TORCHSERVE_PING],
    env=lambda model, knobs: {"LOG_LOCATION": _TORCHSERVE_HOME + "/logs", "METRICS_LOCATION": _TORCHSERVE_HOME + "/logs",
                              "TEMP": _TORCHSERVE_HOME + "/tmp", "PYTHONDONTWRITEBYTECODE": "1"},
    # The temporary directory is also where TorchServe writes key files.
    working_dir=lambda knobs: _TORCHSERVE_HOME + "/tmp",
    writable=lambda knobs: [Writable("/tmp"), Writable(_TORCHSERVE_HOME + "/logs"), Writable(_TORCHSERVE_HOME + "/tmp")],
    model_mount_path=lambda knobs: knobs["model_store"],
    config_files=("config.properties",),
    config_mount_path=_TORCHSERVE_HOME + "/config",
    knobs={"inference_port": 8080, "management_port": 8081, "metrics_port": 8082,
           "model_store": _TORCHSERVE_HOME + "/model-store", "run_as_user": 1000,
           "base_image": "python:3.11-slim-bookworm",
           "probes": _probe_timing((10, 5, 30), (15, 5, 3), (30, 5, 3))},
    section_schema=schema_object({
        "model_name": schema_string(SERVER_MODEL_NAME, "a TorchServe model name (letters, digits, _ . -)"),
        "mar_file": schema_string(r"^[^/]+\.mar$", "a model archive file name in the model store, ending in .mar"),
        "config_properties": {
            "type": "object",
            "propertyNames": schema_string(r"^[A-Za-z][A-Za-z0-9_.]*$", "a config.properties key such as job_queue_size"),
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "extra_args": EXTRA_ARGS,
    }, required=["model_name", "mar_file"]),
)


# ---- Triton Inference Server ----


def _triton_args(model: Model, knobs: Knobs) -> List[str]:
    section = _section(model, "triton")
    mode = section.get("model_control_mode", "none")
    args = ["--model-repository=%s" % _mount_path(model, knobs["model_repository"]),
            "--http-port=%s" % knobs["http_port"], "--grpc-port=%s" % knobs["grpc_port"],
            "--metrics-port=%s" % knobs["metrics_port"], "--model-control-mode=%s" % mode]
    if mode == "explicit":
        args += ["--load-model=%s" % item["name"] for item in section.get("models") or []]
    if "repository_poll_secs" in section:
        args.append("--repository-poll-secs=%s" % section["repository_poll_secs"])
    if "strict_model_config" in section:
        args.append("--strict-model-config=%s" % str(section["strict_model_config"]).lower())
    return args + list(section.get("extra_args") or [])


def _triton_smoke(model: Model, knobs: Knobs) -> List[HttpPath]:
    # The server, then each model of the collection (the catalog's version, else the model).
    paths = [HttpPath("/v2/health/ready", "http")]
    for item in _section(model, "triton").get("models") or []:
        version = ("/versions/%s" % item["version"]) if "version" in item else ""
        paths.append(HttpPath("/v2/models/%s%s/ready" % (item["name"], version), "http"))
    return paths


# Triton counts successes and failures per model; its request durations are running totals, not a histogram, so
# a canary of Triton can bound errors only.
_TRITON_REQUESTS = RequestMetrics(
    requests=(Series("nv_inference_request_success"), Series("nv_inference_request_failure")),
    errors=(Series("nv_inference_request_failure"),),
    latency=None,
    source="Triton's nv_inference_request_success and nv_inference_request_failure",
)

TRITON = Runtime(
    name="triton",
    title="Triton Inference Server",
    container_name="triton",
    command=lambda knobs: ["tritonserver"],
    args=_triton_args,
    ports=(Port("http", "http_port"), Port("grpc", "grpc_port"), Port("metrics", "metrics_port")),
    probes=lambda model, knobs: {"startup": HttpPath("/v2/health/ready", "http"),
                                 "readiness": HttpPath("/v2/health/ready", "http"),
                                 "liveness": HttpPath("/v2/health/live", "http")},
    metrics=HttpPath("/metrics", "metrics"),
    request_metrics=_TRITON_REQUESTS,
    smoke=_triton_smoke,
    # The Python backend and the shared memory protocol use /dev/shm.
    writable=lambda knobs: [Writable("/tmp"), Writable("/dev/shm", "Memory", str(knobs["shm_size"]))],
    model_mount_path=lambda knobs: knobs["model_repository"],
    # The models' config.pbtxt live in the model repository.
    config_mount_path="/etc/triton",
    knobs={"http_port": 8000, "grpc_port": 8001, "metrics_port": 8002, "model_repository": "/models",
           "shm_size": "1Gi", "run_as_user": 1000, "base_image": "python:3.11-slim-bookworm",
           "probes": _probe_timing((10, 5, 30), (10, 5, 3), (20, 5, 3))},
    section_schema=schema_object({
        "models": {
            "type": "array",
            "minItems": 1,
            "items": schema_object({
                "name": schema_string(SERVER_MODEL_NAME, "a Triton model directory name (letters, digits, _ . -)"),
                "version": schema_integer(1),
            }, required=["name"]),
        },
        "model_control_mode": {"enum": ["none", "poll", "explicit"], "default": "none"},
        "repository_poll_secs": schema_integer(1),
        "strict_model_config": {"type": "boolean"},
        "extra_args": EXTRA_ARGS,
    }, required=["models"]),
)


# ---- the collection's own FastAPI server (custom_server) ----

# What custom_server loads (MODEL_FORMAT); anything else (transformers...) is a python model class.
CUSTOM_PYTHON_FORMATS = ("sklearn", "onnx", "torchscript", "python")


def _truthy(value: Any) -> bool:
    # A role passes a knob through a template: a boolean may arrive as the string "False".
    return str(value).strip().lower() in ("true", "yes", "on", "1")


def _custom_python_probes(model: Model, knobs: Knobs) -> Dict[str, Any]:
    # The server's grpc.health.v1 services: "live" while it serves, "ready" once the model is loaded.
    if _truthy(knobs["grpc_probes"]):
        return {"startup": GrpcCheck("ready", "grpc"), "readiness": GrpcCheck("ready", "grpc"),
                "liveness": GrpcCheck("live", "grpc")}
    return {"startup": HttpPath("/health/ready", "http"), "readiness": HttpPath("/health/ready", "http"),
            "liveness": HttpPath("/health/live", "http")}


def _custom_python_env(model: Model, knobs: Knobs) -> Dict[str, str]:
    # The server's contract; what the model does not use is left out rather than set empty.
    section = _section(model, "custom_python")
    env = {
        "MODEL_PATH": str(section.get("model_path", "")),
        "MODEL_CLASS": str(section.get("model_class", "")),
        "MODEL_NAME": str(model.get("name", "")),
        "MODEL_FORMAT": str(section.get("model_format", "")),
        "PORT": str(knobs["port"]),
        "GRPC_PORT": str(knobs["grpc_port"]),
        "WORKERS": str(section.get("workers", 1)),
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return {key: value for key, value in env.items() if value != ""}


# custom_server's metrics (custom_server/src/custom_server/metrics.py): the endpoint label is the route template;
# only inference counts (health checks and scrapes would dilute the error ratio). gRPC calls carry HTTP codes.
_CUSTOM_SERVER_INFERENCE = (("endpoint", r"/predict|/v2/models/\{model_name\}(/versions/\{model_version\})?/infer"
                                         r"|/inference\.GRPCInferenceService/ModelInfer"),)
_CUSTOM_PYTHON_REQUESTS = RequestMetrics(
    requests=(Series("custom_server_requests_total", match=_CUSTOM_SERVER_INFERENCE),),
    errors=(Series("custom_server_requests_total", match=_CUSTOM_SERVER_INFERENCE + (("code", "5[0-9][0-9]"),)),),
    rejected=(Series("custom_server_requests_total", match=_CUSTOM_SERVER_INFERENCE + (("code", "4[0-9][0-9]"),)),),
    latency=Series("custom_server_request_duration_seconds", match=_CUSTOM_SERVER_INFERENCE),
    source="custom_server_requests_total (code) and custom_server_request_duration_seconds of the inference endpoints",
)

CUSTOM_PYTHON = Runtime(
    name="custom_python",
    title="custom_server (the collection's FastAPI server)",
    container_name="model-server",
    command=lambda knobs: ["python", "-m", str(knobs["server_module"])],
    args=lambda model, knobs: list(_section(model, "custom_python").get("extra_args") or []),
    ports=(Port("http", "port"), Port("grpc", "grpc_port")),
    probes=_custom_python_probes,
    metrics=HttpPath("/metrics", "http"),
    request_metrics=_CUSTOM_PYTHON_REQUESTS,
    smoke=lambda model, knobs: [HttpPath("/health/live", "http"), HttpPath("/health/ready", "http")],
    env=_custom_python_env,
    model_mount_path=lambda knobs: knobs["model_dir"],
    config_mount_path="/etc/custom-server",
    knobs={"port": 8080, "grpc_port": 8081, "grpc_probes": False, "server_module": "custom_server", "model_dir": "/models", "run_as_user": 10001,
           "base_image": "python:3.11-slim",
           "probes": _probe_timing((5, 5, 60), (10, 5, 3), (20, 5, 3))},
    section_schema=schema_object({
        "model_format": {"enum": list(CUSTOM_PYTHON_FORMATS)},
        "model_path": ABSOLUTE_PATH,
        "model_class": schema_string(r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_.]*$",
                                     "module:attr or /path/file.py:attr (the server's MODEL_CLASS)"),
        "pip_packages": {"type": "array", "items": schema_string(expected="a pip requirement such as transformers>=4.40")},
        "workers": schema_integer(1, default=1),
        "extra_args": EXTRA_ARGS,
    }, required=["model_format"]),
)


# ---- Ollama ----

# An Ollama model name: [host[:port]/][namespace/]model[:tag] (llama3:8b, nomic-embed-text,
# 127.0.0.1:5000/library/tiny:latest).
OLLAMA_MODEL_NAME = (r"^([A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?/)?([a-z0-9][a-z0-9_.-]*/)?"
                     r"[A-Za-z0-9][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")
CRON_SCHEDULE = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+( +\S+){4})$"
_DEFAULT_CHECK = {"enabled": True, "schedule": "*/5 * * * *", "auto_pull": True, "test_inference": False,
                  "report_status": True}

# Seed 004's check-models.sh, on the busybox shell and curl of a small image: server, expected
# models against /api/tags, pulls of the missing ones (AUTO_PULL), a one-token inference
# (TEST_INFERENCE), the report (the job's log; REPORT_STATUS: the check's ConfigMap too).
OLLAMA_CHECK_SCRIPT = r"""#!/bin/sh
# Model check of an Ollama server (written by creativeflow.ai_serving; edits are overwritten).
# Exit status: 0 when every expected model is present at the end, 1 otherwise.
set -u
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*"; }
with_tag() { case "${1##*/}" in *:*) echo "$1" ;; *) echo "$1:latest" ;; esac; }
names() { grep -o '"name":"[^"]*"' | sed 's/^"name":"//; s/"$//'; }
state=ok
missing=""
pulled=""
failed=""
inference=skipped

log "step 1: server ${SERVER_URL}"
if version=$(curl -fsS -m 10 "${SERVER_URL}/api/version"); then
  log "server answers: ${version}"
else
  # No cluster DNS (the local cluster has none): the Service's address from the
  # variables Kubernetes gives every pod; a reference it could not expand stays $(...).
  case "${SERVER_ADDRESS_URL:-}" in
    "" | *'$('*) state=down ;;
    *)
      if version=$(curl -fsS -m 10 "${SERVER_ADDRESS_URL}/api/version"); then
        SERVER_URL=${SERVER_ADDRESS_URL}
        log "server answers at ${SERVER_URL}: ${version}"
      else
        state=down
      fi
      ;;
  esac
  [ "${state}" = down ] && log "server does not answer"
fi

if [ "${state}" = ok ]; then
  log "step 2: expected models: ${EXPECTED_MODELS}"
  available=$(curl -fsS -m 30 "${SERVER_URL}/api/tags" | names)
  log "step 3: available models: $(echo ${available})"
  for model in ${EXPECTED_MODELS}; do
    wanted=$(with_tag "${model}")
    echo "${available}" | grep -qxF "${wanted}" || missing="${missing} ${wanted}"
  done
  log "step 4: missing models:${missing:- none}"
  for model in ${missing}; do
    if [ "${AUTO_PULL}" != true ]; then
      failed="${failed} ${model}"
      continue
    fi
    log "step 5: pulling ${model} (up to ${PULL_TIMEOUT} s)"
    answer=$(curl -sS -m "${PULL_TIMEOUT}" -X POST -H 'Content-Type: application/json' \
      -d "{\"model\":\"${model}\",\"stream\":false,\"insecure\":${INSECURE_REGISTRY}}" "${SERVER_URL}/api/pull")
    case "${answer}" in
      *'"status":"success"'*) pulled="${pulled} ${model}"; log "pulled ${model}" ;;
      *) failed="${failed} ${model}"; log "pull of ${model} failed: ${answer}" ;;
    esac
  done
  [ -n "${failed}" ] && state=missing
  if [ "${TEST_INFERENCE}" = true ] && [ "${state}" = ok ]; then
    first=$(with_tag "${EXPECTED_MODELS%% *}")
    log "step 6: one-token inference on ${first}"
    if curl -fsS -m 300 -X POST -H 'Content-Type: application/json' \
        -d "{\"model\":\"${first}\",\"prompt\":\"ping\",\"stream\":false,\"options\":{\"num_predict\":1}}" \
        "${SERVER_URL}/api/generate" >/dev/null; then
      inference=passed
    else
      inference=failed
      state=inference-failed
    fi
  fi
fi

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
report="{\"time\":\"${now}\",\"state\":\"${state}\",\"missing\":\"${missing# }\",\"pulled\":\"${pulled# }\""
report="${report},\"failed\":\"${failed# }\",\"inference\":\"${inference}\"}"
log "report: ${report}"
if [ "${REPORT_STATUS}" = true ] && [ -n "${REPORT_CONFIGMAP:-}" ]; then
  account=/var/run/secrets/kubernetes.io/serviceaccount
  escaped=$(echo "${report}" | sed 's/"/\\"/g')
  curl -fsS -m 20 -o /dev/null --cacert "${account}/ca.crt" -H "Authorization: Bearer $(cat "${account}/token")" \
    -X PATCH -H 'Content-Type: application/merge-patch+json' -d "{\"data\":{\"last_report\":\"${escaped}\"}}" \
    "https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}/api/v1/namespaces/${NAMESPACE}/configmaps/${REPORT_CONFIGMAP}" \
    || log "could not write the report into ConfigMap ${REPORT_CONFIGMAP}"
fi
[ "${state}" = ok ]
"""


def _ollama_check(model: Model) -> Dict[str, Any]:
    merged = dict(_DEFAULT_CHECK)
    merged.update(_section(model, "ollama").get("model_check") or {})
    return merged


def _ollama_models(model: Model) -> Tuple[str, ...]:
    return tuple(str(name) for name in _section(model, "ollama").get("models") or [])


def _ollama_env(model: Model, knobs: Knobs) -> Dict[str, str]:
    section = _section(model, "ollama")
    env = {
        "OLLAMA_HOST": "0.0.0.0:%s" % knobs["port"],
        "OLLAMA_MODELS": _mount_path(model, knobs["models_dir"]),
        # Ollama writes its key pair under $HOME/.ollama: an emptyDir, the root is read-only.
        "HOME": "/tmp",
    }
    for key, variable in (("keep_alive", "OLLAMA_KEEP_ALIVE"), ("num_parallel", "OLLAMA_NUM_PARALLEL"),
                          ("max_loaded_models", "OLLAMA_MAX_LOADED_MODELS")):
        if key in section:
            env[variable] = str(section[key])
    return env


def _ollama_checks(model: Model, knobs: Knobs) -> List[PeriodicCheck]:
    check = _ollama_check(model)
    if not check.get("enabled"):
        return []
    section = _section(model, "ollama")
    return [PeriodicCheck(
        name="model-check",
        schedule=str(check["schedule"]),
        image=str(section.get("check_image", knobs["check_image"])),
        script_file="check-models.sh",
        script=OLLAMA_CHECK_SCRIPT,
        port="http",
        env={"EXPECTED_MODELS": " ".join(_ollama_models(model)),
             "AUTO_PULL": str(bool(check["auto_pull"])).lower(),
             "TEST_INFERENCE": str(bool(check["test_inference"])).lower(),
             "REPORT_STATUS": str(bool(check["report_status"])).lower(),
             "PULL_TIMEOUT": str(section.get("pull_timeout", knobs["pull_timeout"])),
             "INSECURE_REGISTRY": str(bool(section.get("insecure_registry", False))).lower()},
        reports=bool(check["report_status"]),
        node_selector=check.get("node_selector"),
        tolerations=check.get("tolerations"),
    )]


def _ollama_usage_stats(model: Model, knobs: Knobs) -> List[SharedConfigMap]:
    stats = _section(model, "ollama").get("usage_stats") or {}
    if not stats.get("enabled"):
        return []
    return [SharedConfigMap("usage-stats", {"usage_data": "{}"}, str(stats.get("service_account", "model-manager")))]


def _ollama_ensure(model: Model, knobs: Knobs) -> Optional[EnsurePresent]:
    section = _section(model, "ollama")
    wanted = _ollama_models(model)
    if not wanted:
        return None
    return EnsurePresent(what="model", wanted=wanted, port="http", list_path="/api/tags", list_key="models",
                         item_key="name", fetch_path="/api/pull", fetch_name_key="model",
                         fetch_body={"stream": False, "insecure": bool(section.get("insecure_registry", False))},
                         timeout_seconds=int(section.get("pull_timeout", knobs["pull_timeout"])), default_tag="latest")


def _ollama_rules(entry: Mapping[str, Any]) -> List[Tuple[Tuple[Any, ...], str]]:
    section = _section(entry, "ollama")
    problems: List[Tuple[Tuple[Any, ...], str]] = []
    models = section.get("models")
    if isinstance(models, list):
        seen: Dict[str, int] = {}
        for index, name in enumerate(models):
            if not isinstance(name, str):
                continue
            tagged = name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"
            if tagged in seen:
                problems.append((("ollama", "models", index), "%r is listed twice (as item %d too)"
                                 % (name, seen[tagged])))
            seen.setdefault(tagged, index)
    check = section.get("model_check") or {}
    if isinstance(check, Mapping) and check.get("test_inference") is True and check.get("enabled") is False:
        problems.append((("ollama", "model_check", "test_inference"),
                         "is true but model_check.enabled is false: no check runs; enable the check or remove it"))
    return problems


OLLAMA = Runtime(
    name="ollama",
    title="Ollama",
    container_name="ollama",
    command=lambda knobs: ["ollama"],
    args=lambda model, knobs: ["serve"],
    ports=(Port("http", "port"),),
    # "/" answers "Ollama is running" once the server listens; /api/tags reads the models directory.
    probes=lambda model, knobs: {"startup": HttpPath("/", "http"), "readiness": HttpPath("/api/tags", "http"),
                                 "liveness": HttpPath("/api/version", "http")},
    # Ollama has no Prometheus endpoint: no ServiceMonitor.
    metrics=HttpPath("", ""),
    smoke=lambda model, knobs: [HttpPath("/api/version", "http"), HttpPath("/api/tags", "http")],
    env=_ollama_env,
    model_mount_path=lambda knobs: knobs["models_dir"],
    writes_models=True,
    periodic_checks=_ollama_checks,
    shared_configmaps=_ollama_usage_stats,
    ensure_present=_ollama_ensure,
    section_rules=_ollama_rules,
    knobs={"port": 11434, "models_dir": "/models", "run_as_user": 1000, "base_image": "ollama/ollama:0.5.7",
           "check_image": "curlimages/curl:8.10.1", "pull_timeout": 1800,
           "probes": _probe_timing((5, 5, 60), (10, 5, 3), (20, 5, 3))},
    section_schema=schema_object({
        "models": {"type": "array", "minItems": 1, "x-expected": "a list of Ollama model names such as [llama3:8b]",
                   "items": schema_string(OLLAMA_MODEL_NAME, "an Ollama model name such as llama3:8b or "
                                                             "host:5000/library/tiny:latest")},
        "insecure_registry": {"type": "boolean", "default": False},
        "pull_timeout": schema_integer(1),
        "check_image": schema_string(r"^\S+$", "an image reference with a shell and curl, such as curlimages/curl:8.10.1"),
        "keep_alive": schema_string(r"^-?[0-9]+(\.[0-9]+)?(ms|s|m|h)?$", "a duration such as 5m, 1h or -1 (for ever)"),
        "num_parallel": schema_integer(1),
        "max_loaded_models": schema_integer(1),
        "model_check": schema_object({
            "enabled": {"type": "boolean", "default": True},
            "schedule": schema_string(CRON_SCHEDULE, "a cron schedule such as */5 * * * *"),
            "auto_pull": {"type": "boolean", "default": True},
            "test_inference": {"type": "boolean", "default": False},
            "report_status": {"type": "boolean", "default": True},
            # Where the check's pod runs, instead of where the server may run (without the GPU's label).
            "node_selector": NODE_SELECTOR,
            "tolerations": TOLERATIONS,
        }),
        "usage_stats": schema_object({
            "enabled": {"type": "boolean", "default": False},
            "service_account": schema_string(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                                             "a ServiceAccount name (the model manager's)", default="model-manager"),
        }, required=["enabled"]),
    }, required=["models"]),
)


# ---- vLLM (OpenAI-compatible server) ----

_VLLM_DTYPES = ["auto", "half", "float16", "bfloat16", "float", "float32"]


def vllm_model_path(model: Model, knobs: Knobs) -> str:
    """The --model value: the section's path (absolute, or relative to the model's mount path), else the mount path."""
    mount = _mount_path(model, knobs["model_dir"])
    path = str(_section(model, "vllm").get("model") or "")
    if not path:
        return mount
    return path if path.startswith("/") else mount.rstrip("/") + "/" + path


def _vllm_args(model: Model, knobs: Knobs) -> List[str]:
    section = _section(model, "vllm")
    gpus = int((model.get("gpu") or {}).get("count", 0))
    args = ["--host=0.0.0.0", "--port=%s" % knobs["port"], "--model=%s" % vllm_model_path(model, knobs),
            "--served-model-name=%s" % section.get("served_model_name", model.get("name", ""))]
    if gpus > 0:
        # One replica's GPUs are one tensor-parallel group.
        args.append("--tensor-parallel-size=%d" % gpus)
    for key, flag in (("max_model_len", "--max-model-len"), ("gpu_memory_utilization", "--gpu-memory-utilization"),
                      ("dtype", "--dtype")):
        if key in section:
            args.append("%s=%s" % (flag, section[key]))
    if "kv_cache_memory" in section:
        # vLLM takes bytes (or its own 1M/1G notation): the catalog's Kubernetes quantity, converted.
        args.append("--kv-cache-memory-bytes=%d" % int(parse_quantity(section["kv_cache_memory"])))
    return args + list(section.get("extra_args") or [])


def _vllm_rules(entry: Mapping[str, Any]) -> List[Tuple[Tuple[Any, ...], str]]:
    """vLLM on CPU: the KV cache must be sized, and fit the pod's memory limit.

    Without a size, vLLM's CPU worker takes gpu_memory_utilization (0.9 by default) of the memory of the node
    (its NUMA node, read from the host, not the cgroup): the worker fails at startup or the pod is OOM-killed.
    """
    section = _section(entry, "vllm")
    gpu = entry.get("gpu") or {}
    if not isinstance(section, Mapping) or not isinstance(gpu, Mapping) or gpu.get("count", 0) != 0:
        return []
    extra = section.get("extra_args") or []
    by_flag = isinstance(extra, list) and any(str(arg).split("=", 1)[0] == "--kv-cache-memory-bytes" for arg in extra)
    size = section.get("kv_cache_memory")
    if size is None:
        if by_flag:
            return []
        return [(("vllm", "kv_cache_memory"),
                 "is not set and gpu.count is 0: vLLM on CPU would size its KV cache as gpu_memory_utilization "
                 "(0.9 by default) of the node's memory, not of the pod's limit, and fail or be OOM-killed; set "
                 "kv_cache_memory (such as 256Mi) below resources.limits.memory")]
    limit = ((entry.get("resources") or {}).get("limits") or {}).get("memory")
    try:
        kv, most = parse_quantity(size), parse_quantity(limit) if limit is not None else None
    except QuantityError:
        return []  # the schema reports what is not a quantity
    if kv < 1024 * 1024:
        return [(("vllm", "kv_cache_memory"), "%s is less than 1Mi: vLLM needs room for at least one block of "
                                              "tokens; give it a size such as 64Mi" % size)]
    if most is not None and kv >= most:
        return [(("vllm", "kv_cache_memory"),
                 "%s is not below resources.limits.memory (%s), and the server itself needs memory beside its KV "
                 "cache (about 2 GiB for vLLM's three processes on CPU): raise the limit or shrink the cache"
                 % (size, limit))]
    return []


# vLLM's API server: HTTP answers by status class (prometheus-fastapi-instrumentator, "2xx"...) and its own
# end-to-end latency histogram of the requests it finished.
_VLLM_INFERENCE = (("handler", r"/v1/(chat/completions|completions|embeddings)"),)
_VLLM_REQUESTS = RequestMetrics(
    requests=(Series("http_requests_total", match=_VLLM_INFERENCE),),
    errors=(Series("http_requests_total", match=_VLLM_INFERENCE + (("status", "5.."),)),),
    rejected=(Series("http_requests_total", match=_VLLM_INFERENCE + (("status", "4.."),)),),
    latency=Series("vllm:e2e_request_latency_seconds"),
    source="http_requests_total (status) of the OpenAI endpoints and vllm:e2e_request_latency_seconds",
)

VLLM = Runtime(
    name="vllm",
    title="vLLM (OpenAI-compatible)",
    container_name="vllm",
    command=lambda knobs: ["python3", "-m", "vllm.entrypoints.openai.api_server"],
    args=_vllm_args,
    ports=(Port("http", "port"),),
    # The server listens only once the weights are loaded: the startup probe allows the long load.
    probes=lambda model, knobs: {"startup": HttpPath("/health", "http"), "readiness": HttpPath("/v1/models", "http"),
                                 "liveness": HttpPath("/health", "http")},
    metrics=HttpPath("/metrics", "http"),
    request_metrics=_VLLM_REQUESTS,
    smoke=lambda model, knobs: [HttpPath("/health", "http"), HttpPath("/v1/models", "http")],
    env=lambda model, knobs: {"HOME": "/tmp", "HF_HOME": "/tmp/huggingface", "VLLM_NO_USAGE_STATS": "1",
                              "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"},
    # Tensor-parallel workers exchange tensors through shared memory.
    writable=lambda knobs: [Writable("/tmp"), Writable("/dev/shm", "Memory", str(knobs["shm_size"]))],
    model_mount_path=lambda knobs: knobs["model_dir"],
    gpus_on_one_node="vLLM runs the GPUs of a replica as one tensor-parallel group (--tensor-parallel-size = gpu.count)",
    section_rules=_vllm_rules,
    knobs={"port": 8000, "model_dir": "/models", "shm_size": "2Gi", "run_as_user": 1000,
           "base_image": "vllm/vllm-openai:v0.6.6",
           "probes": _probe_timing((10, 5, 180), (10, 5, 3), (20, 5, 3))},
    section_schema=schema_object({
        "model": schema_string(expected="the model's directory: absolute, or relative to the model's mount path"),
        "served_model_name": schema_string(r"^[A-Za-z0-9][A-Za-z0-9_./:-]*$", "a model name clients send"),
        "max_model_len": schema_integer(1),
        "gpu_memory_utilization": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                                   "x-expected": "a fraction of each GPU's memory, above 0 and at most 1"},
        "dtype": {"enum": _VLLM_DTYPES},
        # --kv-cache-memory-bytes: required on CPU (gpu.count 0), where vLLM would otherwise size it from the node.
        "kv_cache_memory": schema_string(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$",
                                         "a memory size (a Kubernetes quantity) such as 256Mi or 2Gi"),
        "extra_args": EXTRA_ARGS,
    }),
)


# ---- the registry ----

REGISTRY: Dict[str, Runtime] = {record.name: record for record in (TF_SERVING, TORCHSERVE, TRITON, CUSTOM_PYTHON, OLLAMA,
                                                                   VLLM)}


class UnknownRuntimeError(ValueError):
    """A runtime name that has no record."""


def names() -> Tuple[str, ...]:
    """The runtimes, in the registry's order."""
    return tuple(REGISTRY)


def get(name: str) -> Runtime:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownRuntimeError("runtime %r has no record: the runtimes are %s" % (name, ", ".join(REGISTRY)))


def section_schemas() -> Dict[str, Dict[str, Any]]:
    """Each runtime's catalog section schema, keyed by the runtime (the section's name)."""
    return {name: record.section_schema for name, record in REGISTRY.items()}


@dataclass(frozen=True)
class ServerSpec:
    """What the manifests need from the runtime, worked out for one model."""

    runtime: str
    container_name: str
    command: List[str]
    args: List[str]
    working_dir: str
    ports: List[Dict[str, Any]]
    env: Dict[str, str]
    probe_paths: Dict[str, Dict[str, str]]
    probe_defaults: Dict[str, Dict[str, int]]
    metrics: Dict[str, str]
    # The health paths, then the catalog's smoke inference (smoke.inference_request) if any.
    smoke_paths: List[Dict[str, Any]]
    writable_paths: List[Dict[str, str]]
    model_mount_path: str
    config_mount_path: str
    read_only_root_filesystem: bool
    run_as_user: int
    extra: Dict[str, Any] = field(default_factory=dict)
    writes_models: bool = False
    # The record's PeriodicCheck, SharedConfigMap and EnsurePresent as plain dicts (JSON for the plan).
    periodic_checks: List[Dict[str, Any]] = field(default_factory=list)
    shared_configmaps: List[Dict[str, Any]] = field(default_factory=list)
    ensure: Dict[str, Any] = field(default_factory=dict)
    gpus_on_one_node: str = ""


def _path(item: Any) -> Dict[str, str]:
    if isinstance(item, GrpcCheck):
        return {"grpc_service": item.service, "port": item.port}
    return {"path": item.path, "port": item.port}


def _smoke_paths(record: Runtime, model: Model, knobs: Knobs) -> List[Dict[str, Any]]:
    paths: List[Dict[str, Any]] = [_path(item) for item in record.smoke(model, knobs)]
    inference = _smoke.inference_request(model, [port.name for port in record.ports if port.service])
    return paths + ([inference] if inference else [])


def server_spec(name: str, model: Model, knobs: Optional[Knobs] = None) -> ServerSpec:
    """The runtime ``name``'s server for the catalog entry ``model`` with the role's ``knobs`` (unprefixed)."""
    record = get(name)
    values = record.with_defaults(knobs)
    writable = []
    for item in record.writable(values):
        entry = {"path": item.path}
        if item.medium:
            entry["medium"] = item.medium
        if item.size_limit:
            entry["size_limit"] = item.size_limit
        writable.append(entry)
    return ServerSpec(
        runtime=record.name,
        container_name=record.container_name,
        command=record.command(values),
        args=record.args(model, values),
        working_dir=record.working_dir(values),
        ports=record.port_numbers(values),
        env=record.env(model, values),
        probe_paths={kind: _path(item) for kind, item in record.probes(model, values).items()},
        probe_defaults=values["probes"],
        metrics=_path(record.metrics),
        smoke_paths=_smoke_paths(record, model, values),
        writable_paths=writable,
        model_mount_path=record.model_mount_path(values),
        config_mount_path=record.config_mount_path,
        read_only_root_filesystem=record.read_only_root_filesystem,
        run_as_user=int(values["run_as_user"]),
        writes_models=record.writes_models,
        periodic_checks=[asdict(item) for item in record.periodic_checks(model, values)],
        shared_configmaps=[asdict(item) for item in record.shared_configmaps(model, values)],
        ensure=_ensure(record.ensure_present(model, values)),
        gpus_on_one_node=record.gpus_on_one_node,
    )


def _ensure(item: Optional[EnsurePresent]) -> Dict[str, Any]:
    if item is None:
        return {}
    out = asdict(item)
    out["wanted"] = list(item.wanted)
    return out
