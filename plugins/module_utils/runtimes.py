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

Plain Python: no Ansible, no cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import smoke as _smoke

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


PROBE_KINDS = ("startup", "readiness", "liveness")


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

    @property
    def role(self) -> str:
        return self.name

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


TF_SERVING = Runtime(
    name="tf_serving",
    title="TensorFlow Serving",
    container_name="tf-serving",
    command=lambda knobs: ["tensorflow_model_server"],
    args=_tf_serving_args,
    ports=(Port("grpc", "grpc_port"), Port("rest", "rest_port")),
    probes=lambda model, knobs: {kind: _tf_serving_health(model, knobs) for kind in PROBE_KINDS},
    metrics=HttpPath("/monitoring/prometheus/metrics", "rest"),
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


CUSTOM_PYTHON = Runtime(
    name="custom_python",
    title="custom_server (the collection's FastAPI server)",
    container_name="model-server",
    command=lambda knobs: ["python", "-m", str(knobs["server_module"])],
    args=lambda model, knobs: list(_section(model, "custom_python").get("extra_args") or []),
    ports=(Port("http", "port"), Port("grpc", "grpc_port")),
    probes=_custom_python_probes,
    metrics=HttpPath("/metrics", "http"),
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


# ---- the registry ----

REGISTRY: Dict[str, Runtime] = {record.name: record for record in (TF_SERVING, TORCHSERVE, TRITON, CUSTOM_PYTHON)}


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
    )
