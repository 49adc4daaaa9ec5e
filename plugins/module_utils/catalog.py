# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The model catalog: its schema, validation, environment merge and look-up.

The catalog is the inventory variable ``ai_serving_models``: a dict keyed by
model name (a DNS-1035 label) whose values describe how to serve the model
(runtime, image, resources, GPUs, replicas, autoscaling, runtime settings...)
plus per-environment overrides under ``environments``. ``docs/model_catalog.md``
documents every field.

Everything here is plain Python: no Ansible runtime, no cluster. Problems are
raised as typed exceptions (``CatalogError`` and subclasses); modules turn them
into failures. ``jsonschema`` (>= 4.0, for Draft 2020-12) is required to
validate; the import is guarded so that this file always imports and the module
can report the missing library with ``missing_required_lib``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
import traceback
from collections.abc import Mapping
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import DEFAULT_GPU_RESOURCE
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.strategy import (
    DEFAULT_MAX_SURGE,
    DEFAULT_MAX_UNAVAILABLE,
    MAX_REPLICAS,
    RECREATE,
    ROLLING_UPDATE,
    StrategyError,
    min_available_during_update,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils import runtimes as _runtimes
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import CANARY_SCHEMA, canary_rules
from ansible_collections.creativeflow.ai_serving.plugins.module_utils import knobs as _knobs
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.smoke import SMOKE_SCHEMA
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.quantity import QuantityError, parse_quantity  # noqa: F401 (re-exported)

try:
    import jsonschema.validators
    from jsonschema import Draft202012Validator
except ImportError:
    HAS_JSONSCHEMA = False
    JSONSCHEMA_IMPORT_ERROR: Optional[str] = traceback.format_exc()
else:
    HAS_JSONSCHEMA = True
    JSONSCHEMA_IMPORT_ERROR = None

# The runtimes a model can be served with (the records of runtimes.py); each
# has a settings section of the same name in the entry.
RUNTIMES = _runtimes.names()
# The environments an entry may carry overrides for (ai_serving_environment).
ENVIRONMENTS = ("local", "dev", "prod")
# Container resources a catalog entry may request/limit. GPUs are not among
# them: they come from the `gpu` section, which also drives node selection.
CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")

# What resolve_model() fills in where the entry (after the environment merge)
# says nothing. Everything else is left to the runtime roles' defaults.
DEFAULTS: dict[str, Any] = {
    "replicas": 1,
    "image": {"pull_policy": "IfNotPresent"},
    "gpu": {"count": 0, "resource": DEFAULT_GPU_RESOURCE},
    "autoscaling": {"enabled": False},
    "pdb": {"enabled": False},
    "strategy": {"type": "RollingUpdate"},
    "env": {},
    "env_from_secrets": [],
    "model": {"source": "image"},
}

# The API server's default --service-node-port-range (the deploy checks the cluster's own when it can read it).
NODE_PORT_RANGE = (30000, 32767)

# strategy.downtime: what validation does with an update that leaves no replica available.
DOWNTIME_CHOICES = ("warn", "refuse", "accept")

# Entry keys an environment's overrides may not set.
_NOT_OVERRIDABLE = ("runtime", "environments")

ProblemPath = Tuple[Union[str, int], ...]
Problem = Tuple[ProblemPath, str]


class CatalogError(Exception):
    """The catalog (or the model asked for) is not usable.

    ``problems`` holds one message per problem, each naming the model, the
    path of the field, the bad value and what is expected.
    """

    def __init__(self, problems: Sequence[str], summary: str = "") -> None:
        self.problems = list(problems)
        if not summary:
            count = len(self.problems)
            summary = "the model catalog (ai_serving_models) has %d problem%s" % (count, "" if count == 1 else "s")
        self.summary = summary
        if self.problems and self.problems != [summary]:
            summary += ":\n  " + "\n  ".join(self.problems)
        super().__init__(summary)


class UnknownModelError(CatalogError):
    """The model asked for is not in the catalog."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        message = "model %r is not in the catalog (ai_serving_models); known models: %s" % (
            name, ", ".join(self.known) if self.known else "none (the catalog is empty)")
        super().__init__([message], summary=message)


class UnknownEnvironmentError(CatalogError):
    """The environment asked for is not one the catalog knows."""

    def __init__(self, environment: str, known: Iterable[str]) -> None:
        self.environment = environment
        self.known = list(known)
        message = "environment %r is unknown (ai_serving_environment); expected one of: %s" % (
            environment, ", ".join(self.known))
        super().__init__([message], summary=message)


class MissingDependencyError(CatalogError):
    """The jsonschema library is not installed."""

    def __init__(self) -> None:
        message = "validating the model catalog needs the Python library jsonschema (>= 4.0)"
        super().__init__([message], summary=message)


# --------------------------------------------------------------------------
# Merging and look-up
# --------------------------------------------------------------------------

def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged over it; neither is modified.

    Dicts merge key by key, recursively; lists and scalars in ``override``
    replace those in ``base``; a key whose override value is ``None`` (YAML
    ``~`` or an empty value) is removed from the result.
    """
    result: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def model_names(catalog: Mapping[str, Any]) -> list[str]:
    """The catalog's model names, sorted."""
    return sorted(str(name) for name in catalog)


def unnamed_model_message(value: Any, catalog: Mapping[str, Any]) -> Optional[str]:
    """Why ``value`` (``-e model=...``) names no model: missing, empty or not a string; None when it is a name."""
    if isinstance(value, str) and value:
        return None
    prefix = ""
    if value is not None and not isinstance(value, str):
        kind = "dict" if isinstance(value, Mapping) else "list" if isinstance(value, (list, tuple)) else \
            type(value).__name__
        prefix = "model must be a string, the key of a catalog entry; got a {0}. ".format(kind)
    return "{0}Name the model with -e model=NAME. The catalog (ai_serving_models) of this inventory has: {1}.".format(
        prefix, ", ".join(model_names(catalog)) or "(no model)")


def merge_environment(entry: Mapping[str, Any], environment: Optional[str]) -> dict[str, Any]:
    """The entry with its ``environments[environment]`` overrides merged in.

    The ``environments`` key is removed. No environment, or one the entry has
    no overrides for, gives the entry as written.
    """
    base = {key: value for key, value in entry.items() if key != "environments"}
    overrides = entry.get("environments") or {}
    override = overrides.get(environment) if environment is not None and isinstance(overrides, Mapping) else None
    if isinstance(override, Mapping):
        return deep_merge(base, override)
    return copy.deepcopy(base)


def resolve_model(catalog: Mapping[str, Any], name: str, environment: Optional[str] = None,
                  environments: Sequence[str] = ENVIRONMENTS) -> dict[str, Any]:
    """The deployable description of model ``name`` in ``environment``.

    The entry's ``environments[environment]`` overrides are deep-merged over
    it, ``environments`` is dropped, ``DEFAULTS`` fill what is unset and
    ``name`` is added. Raises UnknownModelError (listing the known models),
    UnknownEnvironmentError, or CatalogError when that entry or its overrides
    for ``environment`` are invalid.
    """
    if not isinstance(catalog, Mapping):
        raise CatalogError(["models: %s is not a dict of model name to model entry" % _show(catalog)])
    if environment is not None and environment not in environments:
        raise UnknownEnvironmentError(environment, environments)
    if name not in catalog:
        raise UnknownModelError(name, model_names(catalog))
    problems = _entry_problems(name, catalog[name], environments, merged_with=[environment] if environment else [])
    if problems:
        raise CatalogError(problems, summary="model %r is not valid in the catalog (ai_serving_models)" % name)
    resolved: dict[str, Any] = {"name": name}
    resolved.update(_with_defaults(merge_environment(catalog[name], environment), DEFAULTS))
    return resolved


def _with_defaults(data: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the keys it lacks taken from ``defaults`` (recursively, after its own keys)."""
    result = copy.deepcopy(dict(data))
    for key, value in defaults.items():
        if key not in result:
            result[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(result[key], Mapping):
            result[key] = _with_defaults(result[key], value)
    return result


# --------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------

DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
_PERCENT_PATTERN = r"^(100|[1-9]?[0-9])%$"
_EXTENDED_RESOURCE = (r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+"
                      r"/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_KEY = _runtimes.LABEL_KEY
_LABEL_VALUE = _runtimes.LABEL_VALUE
_IMAGE_REPOSITORY = (r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(:[0-9]+)?/)?"
                     r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
_IMAGE_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_IMAGE_DIGEST = r"^[a-z0-9]+([+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$"
_SERVER_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


def _string(pattern: Optional[str] = None, expected: str = "", max_length: Optional[int] = None,
            **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern:
        schema["pattern"] = pattern
    if max_length:
        schema["maxLength"] = max_length
    if expected:
        schema["x-expected"] = expected
    schema.update(extra)
    return schema


def _integer(minimum: int = 0, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    schema.update(extra)
    return schema


def _object(properties: dict[str, Any], required: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


_ABSOLUTE_PATH = _string(r"^/", "an absolute path inside the container (starting with /)")
_QUANTITY = {
    "anyOf": [{"type": "string", "pattern": _QUANTITY_PATTERN}, {"type": "number", "minimum": 0}],
    "x-expected": "a non-negative Kubernetes quantity such as 500m, 2, 1.5, 512Mi or 4Gi",
}
_INT_OR_PERCENT = {
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": _PERCENT_PATTERN}],
    "x-expected": "a non-negative integer or a percentage such as 25%",
}
_DNS_SUBDOMAIN = _string(DNS_1123_SUBDOMAIN, "a Kubernetes object name (lowercase DNS-1123 subdomain)", 253)
_EXTRA_ARGS = {"type": "array", "items": {"type": "string"}}
# What custom_server loads (MODEL_FORMAT).
CUSTOM_PYTHON_FORMATS = _runtimes.CUSTOM_PYTHON_FORMATS
_PROBE = _object({
    "initial_delay_seconds": _integer(0),
    "period_seconds": _integer(1),
    "timeout_seconds": _integer(1),
    "failure_threshold": _integer(1),
})
_RESOURCE_LIST = _object({name: _QUANTITY for name in CONTAINER_RESOURCES})

# all (every cluster of the run), the named clusters, or the first N clusters where the model fits.
_PLACEMENT = {
    "anyOf": [
        {"const": "all"},
        _object({"clusters": {"type": "array", "minItems": 1, "uniqueItems": True, "items": _string()}},
                required=["clusters"]),
        _object({"fit": _integer(1)}, required=["fit"]),
    ],
    "x-expected": "all, {clusters: [cluster names]} (each once) or {fit: N} (N >= 1)",
}

# Each runtime's section, from its record.
_RUNTIME_SCHEMAS: dict[str, dict[str, Any]] = _runtimes.section_schemas()


def _entry_properties(environments: Sequence[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "description": {"type": "string"},
        "runtime": {"enum": list(RUNTIMES)},
        "image": _object({
            "repository": _string(_IMAGE_REPOSITORY, "an image repository such as nvcr.io/nvidia/tritonserver (no tag)"),
            "tag": _string(_IMAGE_TAG, "an image tag (letters, digits, _ . -; at most 128 characters)"),
            "digest": _string(_IMAGE_DIGEST, "an image digest such as sha256:<64 hex digits>"),
            "pull_policy": {"enum": ["Always", "IfNotPresent", "Never"], "default": "IfNotPresent"},
            "pull_secrets": {"type": "array", "items": _DNS_SUBDOMAIN, "uniqueItems": True},
            "build": _object({
                "enabled": {"type": "boolean", "default": True},
                "context": _string(),
                "base_image": _string(),
                "args": {
                    "type": "object",
                    "propertyNames": _string(r"^[A-Za-z_][A-Za-z0-9_]*$", "a build argument name"),
                    "additionalProperties": {"type": ["string", "number"]},
                },
                "push": {"type": "boolean", "default": True},
            }, required=["context"]),
        }, required=["repository"], anyOf=[{"required": ["tag"]}, {"required": ["digest"]}],
            **{"x-message": "has neither tag nor digest: set image.tag (or image.digest to pin it)"}),
        "replicas": _integer(0, default=1),
        "resources": _object({
            "requests": _object({name: _QUANTITY for name in CONTAINER_RESOURCES}, required=["cpu", "memory"]),
            "limits": _RESOURCE_LIST,
        }, required=["requests"]),
        "gpu": _object({
            "count": _integer(0, default=0),
            "resource": _string(_EXTENDED_RESOURCE, "an extended resource name such as nvidia.com/gpu or nvidia.com/mig-1g.10gb",
                                253, default=DEFAULT_GPU_RESOURCE),
            "product": _string(_LABEL_VALUE, "a GPU product label value such as NVIDIA-A100-SXM4-80GB", 63),
        }),
        "autoscaling": _object({
            "enabled": {"type": "boolean"},
            "min_replicas": _integer(1, default=1),
            "max_replicas": _integer(1),
            "target_cpu_utilization": _integer(1),
            "target_memory_utilization": _integer(1),
            "metrics": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"enum": ["Resource", "ContainerResource", "Pods", "Object", "External"]}},
                },
            },
            "behavior": {"type": "object"},
        }, required=["enabled"], allOf=[{
            "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
            "then": {"required": ["max_replicas"], "x-because": "autoscaling is enabled"},
        }]),
        "pdb": _object({
            "enabled": {"type": "boolean"},
            "min_available": _INT_OR_PERCENT,
            "max_unavailable": _INT_OR_PERCENT,
        }, required=["enabled"]),
        "strategy": _object({
            "type": {"enum": ["RollingUpdate", "Recreate"], "default": "RollingUpdate"},
            "max_surge": _INT_OR_PERCENT,
            "max_unavailable": _INT_OR_PERCENT,
            # what an update that leaves no replica available gets: a warning, a refusal, or nothing (deliberate)
            "downtime": {"enum": list(DOWNTIME_CHOICES), "default": "warn"},
            # progressive delivery: steps of traffic, each judged by the canary's metrics (canary/spec.py)
            "canary": CANARY_SCHEMA,
        }),
        "env": {
            "type": "object",
            "propertyNames": _string(_ENV_NAME, "an environment variable name (letters, digits, _ . -; not starting with a digit)"),
            "additionalProperties": {"type": ["string", "number"]},
        },
        "env_from_secrets": {"type": "array", "items": _DNS_SUBDOMAIN, "uniqueItems": True},
        "model": _object({
            "source": {"enum": ["image", "pvc", "uri"], "default": "image"},
            "mount_path": _ABSOLUTE_PATH,
            "pvc": _object({
                "claim_name": _DNS_SUBDOMAIN,
                "sub_path": _string(r"^[^/]", "a path relative to the volume's root"),
                # default: true, false for a runtime that writes its models (ollama pulls into it)
                "read_only": {"type": "boolean"},
                # The deploy creates the claim (and undeploy deletes it); without, the claim must exist.
                "create": _object({
                    "size": _string(_QUANTITY_PATTERN, "a storage size (a Kubernetes quantity) such as 100Gi"),
                    "storage_class": _DNS_SUBDOMAIN,
                    "access_modes": {"type": "array", "minItems": 1, "uniqueItems": True,
                                     "items": {"enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany",
                                                        "ReadWriteOncePod"]}},
                }, required=["size"]),
            }, required=["claim_name"]),
            "uri": _string(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$", "a URI such as s3://bucket/path or https://host/path"),
            "credentials_secret": _DNS_SUBDOMAIN,
        }, allOf=[
            {"if": {"properties": {"source": {"const": "pvc"}}, "required": ["source"]},
             "then": {"required": ["pvc"], "x-because": "model.source is pvc"}},
            {"if": {"properties": {"source": {"const": "uri"}}, "required": ["source"]},
             "then": {"required": ["uri"], "x-because": "model.source is uri"}},
        ]),
        "probes": _object({"readiness": _PROBE, "liveness": _PROBE, "startup": _PROBE}),
        "node_selector": _runtimes.NODE_SELECTOR,
        "tolerations": _runtimes.TOLERATIONS,
        # How the Service is reached: inside the cluster (ClusterIP), on every node's port, or a load balancer.
        "service": _object({
            "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"], "default": "ClusterIP"},
            "node_ports": {
                "type": "object",
                "propertyNames": _string(expected="the name of a port of the runtime's Service"),
                "additionalProperties": {"type": "integer",
                                         "x-expected": "a port number in the cluster's NodePort range (30000-32767)"},
            },
            "load_balancer_source_ranges": {"type": "array", "items": _string(
                r"^[0-9a-fA-F.:]+/[0-9]{1,3}$", "a CIDR such as 203.0.113.0/24")},
            "annotations": {"type": "object", "propertyNames": _string(_LABEL_KEY, "an annotation key", 317),
                            "additionalProperties": {"type": "string"}},
        }),
        # The post-deploy check's inference through the Service (module_utils/smoke.py).
        "smoke": SMOKE_SCHEMA,
        # The shared knobs this model sets for itself (module_utils/knobs.py).
        "deploy": _knobs.catalog_schema(),
        # Which of the inventory's clusters run the model (module_utils/clusters.py checks the names and N
        # against the run's clusters).
        "placement": _PLACEMENT,
        "environments": {
            "type": "object",
            "propertyNames": {"enum": list(environments)},
            "additionalProperties": {"type": "object"},
        },
    }
    properties.update(_RUNTIME_SCHEMAS)
    return properties


def entry_schema(environments: Sequence[str] = ENVIRONMENTS) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of one catalog entry."""
    return _object(
        _entry_properties(environments),
        required=["runtime", "image", "resources"],
        allOf=[{
            "if": {"properties": {"runtime": {"const": runtime}}, "required": ["runtime"]},
            "then": {"required": [runtime], "x-because": "runtime is %s" % runtime},
        } for runtime in RUNTIMES],
        **{"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )


def catalog_schema(environments: Sequence[str] = ENVIRONMENTS) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of the whole catalog (ai_serving_models)."""
    entry = entry_schema(environments)
    del entry["$schema"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "propertyNames": _string(DNS_1035_LABEL, "a DNS-1035 label", 63),
        "additionalProperties": entry,
    }


ENTRY_SCHEMA = entry_schema()
CATALOG_SCHEMA = catalog_schema()


@functools.lru_cache(maxsize=8)
def _validator(environments: Tuple[str, ...]) -> Any:
    if not HAS_JSONSCHEMA:
        raise MissingDependencyError()

    def is_integer(checker: Any, instance: Any) -> bool:
        # JSON Schema counts 1.0 as an integer; Kubernetes does not.
        return isinstance(instance, int) and not isinstance(instance, bool)

    type_checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", is_integer)
    strict = jsonschema.validators.extend(Draft202012Validator, type_checker=type_checker)
    return strict(entry_schema(environments))


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

def validate_catalog(catalog: Any, environments: Sequence[str] = ENVIRONMENTS) -> list[str]:
    """Every problem of the catalog, as messages; an empty list when it is valid.

    Each entry is checked against the schema and the rules the schema cannot
    express (requests <= limits, autoscaling min <= max, the runtime section
    matching the runtime...), then once more for each environment with that
    environment's overrides merged in. Each message reads
    ``models.<name>.<path>: <bad value> <what is expected>``.
    """
    if not isinstance(catalog, Mapping):
        return ["models: %s is not a dict of model name to model entry" % _show(catalog)]
    problems: list[str] = []
    for name in sorted(catalog, key=str):
        problems.extend(_entry_problems(name, catalog[name], environments))
    return problems


def check_catalog(catalog: Any, environments: Sequence[str] = ENVIRONMENTS) -> None:
    """Raise CatalogError listing every problem of the catalog, if it has any."""
    problems = validate_catalog(catalog, environments)
    if problems:
        raise CatalogError(problems)


def _entry_problems(name: Any, entry: Any, environments: Sequence[str],
                    merged_with: Optional[Iterable[str]] = None) -> list[str]:
    """Problems of one entry: the entry itself, then the entry merged with each
    environment's overrides (those of ``merged_with`` only, when given)."""
    label = "models.%s" % name
    if not isinstance(name, str) or not re.match(DNS_1035_LABEL, name) or len(name) > 63:
        return ["models.%s: the model name %s is not a DNS-1035 label (at most 63 lowercase letters, digits and -, "
                "starting with a letter)" % (name, _show(name))]
    if not isinstance(entry, Mapping):
        return ["%s: %s is not a dict describing the model" % (label, _show(entry))]
    validator = _validator(tuple(environments))
    base_problems = _problems(validator, entry)
    messages = [_locate(label, path, message) for path, message in base_problems]
    known = set(base_problems)

    overrides = entry.get("environments")
    if not isinstance(overrides, Mapping):
        return messages
    wanted = None if merged_with is None else set(merged_with)
    for environment in sorted(overrides, key=str):
        if wanted is not None and environment not in wanted:
            continue
        override = overrides[environment]
        if environment not in environments or not isinstance(override, Mapping):
            continue  # reported by the schema already
        where = ("environments", environment)
        for key in _NOT_OVERRIDABLE:
            if key in override:
                message = "%s cannot be overridden per environment; set it in the model's entry" % _show(override[key])
                messages.append(_locate(label, where + (key,), message))
        merged = deep_merge(entry, {key: value for key, value in override.items() if key not in _NOT_OVERRIDABLE})
        for path, message in _problems(validator, merged):
            if (path, message) in known or path[:1] == ("environments",):
                continue
            if _has_path(override, path):
                messages.append(_locate(label, where + path, message))
            else:
                messages.append(_locate(label, path, message, note="with environments.%s" % environment))
    return messages


def _problems(validator: Any, entry: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for error in validator.iter_errors(entry):
        problems.extend(_explain(error))
    problems.extend(_semantic_problems(entry))
    unique: list[Problem] = []
    for problem in problems:
        if problem not in unique:
            unique.append(problem)
    return sorted(unique, key=lambda problem: ([str(part) for part in problem[0]], problem[1]))


def _explain(error: Any) -> list[Problem]:
    """Turn one jsonschema error into (path, message) problems users can act on."""
    path: ProblemPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    expected = schema.get("x-expected")
    instance = error.instance
    if error.validator == "required":
        because = schema.get("x-because")
        suffix = " (required because %s)" % because if because else ""
        missing = [key for key in error.validator_value if isinstance(instance, Mapping) and key not in instance]
        return [(path + (key,), "required field is missing%s" % suffix) for key in missing]
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = list(schema.get("properties", {}))
        problems: list[Problem] = []
        for key in instance:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            if path[:1] == ("resources",) and "/" in str(key):
                hint = "GPUs and other extended resources are set with gpu.count and gpu.resource"
            elif close:
                hint = "did you mean %r?" % close[0]
            else:
                hint = "known fields: %s" % ", ".join(known)
            problems.append((path + (key,), "unknown field (%s)" % hint))
        return problems
    if schema.get("x-message"):
        return [(path, schema["x-message"])]
    if "propertyNames" in error.absolute_schema_path:
        return [(path, "key %s is not %s" % (_show(instance), expected or _expected_from(error)))]
    if expected and (error.validator in ("pattern", "anyOf", "oneOf", "minLength", "maxLength")
                     or (error.validator in ("type", "minimum", "maximum", "exclusiveMinimum") and schema.get("type") != "string")):
        return [(path, "%s is not %s" % (_show(instance), expected))]
    return [(path, error.message)]


def _expected_from(error: Any) -> str:
    if error.validator == "enum":
        return "one of: %s" % ", ".join(str(value) for value in error.validator_value)
    return "valid: %s" % error.message


def _semantic_problems(entry: Mapping[str, Any]) -> list[Problem]:
    """The rules a JSON Schema cannot express. Values of the wrong type are skipped
    (the schema reports them)."""
    problems: list[Problem] = []
    for check in _SEMANTIC_CHECKS:
        problems.extend(check(entry))
    return problems


def _runtime_sections(entry: Mapping[str, Any]) -> list[Problem]:
    runtime = entry.get("runtime")
    if runtime not in RUNTIMES:
        return []
    return [((other,), "section does not apply to runtime %s; remove it (or set runtime: %s)" % (runtime, other))
            for other in RUNTIMES if other != runtime and other in entry]


def _custom_python_rules(entry: Mapping[str, Any]) -> list[Problem]:
    # The server refuses to start without what its format needs (MODEL_CLASS or MODEL_PATH).
    settings = _dict_at(entry, "custom_python")
    model_format = settings.get("model_format")
    if model_format == "python" and "model_class" not in settings:
        return [(("custom_python", "model_class"), "is required with model_format python: name the class as "
                                                   "module:attr or /path/file.py:attr")]
    if model_format in CUSTOM_PYTHON_FORMATS and model_format != "python" and "model_path" not in settings:
        return [(("custom_python", "model_path"), "is required with model_format %s: the model file's absolute path"
                 % model_format)]
    return []


def _requests_within_limits(entry: Mapping[str, Any]) -> list[Problem]:
    requests = _dict_at(entry, "resources", "requests")
    limits = _dict_at(entry, "resources", "limits")
    problems: list[Problem] = []
    for resource in CONTAINER_RESOURCES:
        if resource not in requests or resource not in limits:
            continue
        try:
            request, limit = parse_quantity(requests[resource]), parse_quantity(limits[resource])
        except QuantityError:
            continue  # reported by the schema
        if request > limit:
            problems.append((("resources", "requests", resource),
                             "%s is more than the limit %s (resources.limits.%s); a request must not exceed its limit"
                             % (_show(requests[resource]), _show(limits[resource]), resource)))
    return problems


def _autoscaling_bounds(entry: Mapping[str, Any]) -> list[Problem]:
    autoscaling = _dict_at(entry, "autoscaling")
    low, high = autoscaling.get("min_replicas", 1), autoscaling.get("max_replicas")
    problems: list[Problem] = []
    if _is_int(low) and _is_int(high) and low > high:
        problems.append((("autoscaling", "min_replicas"), "%d is more than max_replicas %d" % (low, high)))
    if autoscaling.get("enabled") is True and not any(
            key in autoscaling for key in ("target_cpu_utilization", "target_memory_utilization", "metrics")):
        problems.append((("autoscaling",), "enabled without a target: set target_cpu_utilization, "
                                           "target_memory_utilization or metrics"))
    return problems


def _pdb_rules(entry: Mapping[str, Any]) -> list[Problem]:
    pdb = _dict_at(entry, "pdb")
    if pdb.get("enabled") is not True:
        return []
    has_min, has_max = "min_available" in pdb, "max_unavailable" in pdb
    if has_min == has_max:
        return [(("pdb",), "enabled with %s of min_available and max_unavailable: set exactly one (null removes a "
                           "key in an environment override)" % ("both" if has_min else "neither"))]
    autoscaling = _dict_at(entry, "autoscaling")
    if autoscaling.get("enabled") is True:
        replicas, source = autoscaling.get("min_replicas", 1), "autoscaling.min_replicas"
    else:
        replicas, source = entry.get("replicas", DEFAULTS["replicas"]), "replicas"
    if not _is_int(replicas) or replicas == 0:
        return []
    if has_min:
        value = pdb["min_available"]
        if (_is_int(value) and value >= replicas) or value == "100%":
            return [(("pdb", "min_available"), "%s leaves no pod evictable with %s %d: node drains would block; lower it "
                                               "or use max_unavailable" % (_show(value), source, replicas))]
    elif pdb["max_unavailable"] in (0, "0%"):
        return [(("pdb", "max_unavailable"), "%s leaves no pod evictable: node drains would block; use at least 1"
                 % _show(pdb["max_unavailable"]))]
    return []


def _strategy_rules(entry: Mapping[str, Any]) -> list[Problem]:
    strategy = _dict_at(entry, "strategy")
    if strategy.get("type") == RECREATE:
        return [(("strategy", key), "%s does not apply to strategy type Recreate; remove it" % _show(strategy[key]))
                for key in ("max_surge", "max_unavailable") if key in strategy]
    if strategy.get("max_surge") in (0, "0%") and strategy.get("max_unavailable") in (0, "0%"):
        return [(("strategy",), "max_surge %s and max_unavailable %s cannot both be 0: the rollout could never proceed"
                 % (_show(strategy["max_surge"]), _show(strategy["max_unavailable"])))]
    return []


def _replica_limits(entry: Mapping[str, Any]) -> list[Problem]:
    # The GPU preflight plays a rollout pod by pod; far beyond any model fleet, a count is a typo.
    autoscaling = _dict_at(entry, "autoscaling")
    found = [(("replicas",), entry.get("replicas"))]
    found += [(("autoscaling", key), autoscaling.get(key)) for key in ("min_replicas", "max_replicas")]
    return [(path, "%d is more than %d, the most replicas a model may have: lower it (a typo? several models "
                   "sharing the load are several catalog entries)" % (value, MAX_REPLICAS))
            for path, value in found if _is_int(value) and value > MAX_REPLICAS]


def update_availability(entry: Mapping[str, Any]) -> Optional[Tuple[int, int, str]]:
    """``(fewest available, replicas, strategy text)`` while an update of ``entry`` rolls; None when not computable.

    The replica count is the fewest the Deployment runs with: ``autoscaling.min_replicas`` when autoscaling is
    enabled, else ``replicas``. Unset maxSurge/maxUnavailable are the API's 25%.
    """
    strategy = _dict_at(entry, "strategy")
    autoscaling = _dict_at(entry, "autoscaling")
    if autoscaling.get("enabled") is True:
        replicas, source = autoscaling.get("min_replicas", 1), "autoscaling.min_replicas"
    else:
        replicas, source = entry.get("replicas", DEFAULTS["replicas"]), "replicas"
    kind = strategy.get("type", ROLLING_UPDATE)
    if not _is_int(replicas) or replicas == 0:
        return None
    try:
        if kind == RECREATE:
            fewest = min_available_during_update(replicas, RECREATE)
            return fewest, replicas, "%s %d, strategy Recreate" % (source, replicas)
        surge, unavailable = strategy.get("max_surge", DEFAULT_MAX_SURGE), strategy.get("max_unavailable", DEFAULT_MAX_UNAVAILABLE)
        fewest = min_available_during_update(replicas, kind, surge, unavailable)
    except StrategyError:
        return None  # reported by the schema or the strategy rules
    return fewest, replicas, "%s %d, max_surge %s, max_unavailable %s" % (
        source, replicas, _show(surge), _show(unavailable))


def _downtime_advice(entry: Mapping[str, Any], replicas: int) -> str:
    if _dict_at(entry, "strategy").get("type") == RECREATE:
        return "use strategy type RollingUpdate with max_surge 1 and max_unavailable 0"
    if replicas == 1:
        return "set max_surge 1 and max_unavailable 0 (a surge pod: the old pod serves until its successor is Ready)"
    return "lower max_unavailable below %d or set max_surge 1 and max_unavailable 0" % replicas


def _availability_rules(entry: Mapping[str, Any]) -> list[Problem]:
    strategy = _dict_at(entry, "strategy")
    if strategy.get("downtime") != "refuse":
        return []
    found = update_availability(entry)
    if found is None or found[0] > 0:
        return []
    return [(("strategy", "downtime"), "is refuse, and an update leaves no replica available (%s): %s" % (
        found[2], _downtime_advice(entry, found[1])))]


def availability_warnings(catalog: Any, environments: Sequence[str] = ENVIRONMENTS, model: Optional[str] = None,
                          environment: Optional[str] = None) -> list[str]:
    """One warning per entry (and environment) whose update leaves no replica available, unless
    ``strategy.downtime`` says to accept it (or to refuse it: then validation refuses it).

    With ``model``, only that model in ``environment`` (or as written); otherwise every entry, as written and with
    each environment's overrides. Entries that do not validate are skipped (validation reports them).
    """
    if not isinstance(catalog, Mapping):
        return []
    warnings: list[str] = []
    names = [model] if model is not None else sorted(catalog, key=str)
    for name in names:
        entry = catalog.get(name)
        if not isinstance(entry, Mapping):
            continue
        overrides = entry.get("environments") if isinstance(entry.get("environments"), Mapping) else {}
        if model is not None:
            cases = [environment]
        else:
            cases = [None] + [env for env in sorted(overrides, key=str) if env in environments]
        seen: set[Tuple[int, int, str]] = set()  # an environment that changes nothing here is not repeated
        for case in cases:
            merged = merge_environment(entry, case)
            found = update_availability(merged)
            if found is None or found[0] > 0 or _dict_at(merged, "strategy").get("downtime", "warn") != "warn":
                continue
            if found in seen:
                continue
            seen.add(found)
            where = "models.%s" % name + (" (with environments.%s)" % case if case and case in overrides else "")
            message = ("%s: an update leaves no replica available (%s): every update stops serving until the new "
                       "pod is Ready; %s, or set strategy.downtime: accept if that is deliberate (refuse makes it an "
                       "error)" % (where, found[2], _downtime_advice(merged, found[1])))
            if message not in warnings:
                warnings.append(message)
    return warnings


def _gpu_rules(entry: Mapping[str, Any]) -> list[Problem]:
    gpu = _dict_at(entry, "gpu")
    if "product" in gpu and gpu.get("count", 0) == 0:
        return [(("gpu", "product"), "%s pins the pod to GPU nodes but gpu.count is 0: request a GPU or remove the "
                                     "product (null in an environment override)" % _show(gpu["product"]))]
    return []


def _image_rules(entry: Mapping[str, Any]) -> list[Problem]:
    image = _dict_at(entry, "image")
    build = _dict_at(entry, "image", "build")
    if build and build.get("enabled", True) is True and "digest" in image:
        return [(("image", "digest"), "%s cannot be known before the image is built: use a tag with image.build, or "
                                      "disable the build" % _show(image["digest"]))]
    return []


def _model_storage_rules(entry: Mapping[str, Any]) -> list[Problem]:
    model = _dict_at(entry, "model")
    source = model.get("source", DEFAULTS["model"]["source"])
    problems: list[Problem] = []
    for key, needs in (("pvc", "pvc"), ("uri", "uri"), ("credentials_secret", "uri")):
        if key in model and source != needs:
            problems.append((("model", key), "%s does not apply to model.source %s; remove it (null in an environment "
                                             "override)" % (_show(model[key]), source)))
    return problems


def _runtime_settings_rules(entry: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    policy = _dict_at(entry, "tf_serving", "version_policy")
    policy_type = policy.get("type")
    if "num_versions" in policy and policy_type != "latest":
        problems.append((("tf_serving", "version_policy", "num_versions"),
                         "%s applies only to version_policy.type latest, not %s" % (_show(policy["num_versions"]), policy_type)))
    if "versions" in policy and policy_type != "specific":
        problems.append((("tf_serving", "version_policy", "versions"),
                         "%s applies only to version_policy.type specific, not %s" % (_show(policy["versions"]), policy_type)))
    triton = _dict_at(entry, "triton")
    if "repository_poll_secs" in triton and triton.get("model_control_mode") != "poll":
        problems.append((("triton", "repository_poll_secs"), "%s applies only to model_control_mode poll, not %s"
                         % (_show(triton["repository_poll_secs"]), triton.get("model_control_mode", "none"))))
    models = triton.get("models")
    if isinstance(models, list):
        seen: set[str] = set()
        for index, model in enumerate(models):
            model_name = model.get("name") if isinstance(model, Mapping) else None
            if isinstance(model_name, str) and model_name in seen:
                problems.append((("triton", "models", index, "name"), "%s is listed twice" % _show(model_name)))
            elif isinstance(model_name, str):
                seen.add(model_name)
    return problems


def _smoke_rules(entry: Mapping[str, Any]) -> list[Problem]:
    # The smoke inference goes to a port the Service publishes (the record's port names).
    smoke = _dict_at(entry, "smoke")
    runtime = entry.get("runtime")
    port = smoke.get("port")
    if runtime not in RUNTIMES or not isinstance(port, str):
        return []
    names = [item.name for item in _runtimes.get(runtime).ports if item.service]
    if port in names:
        return []
    message = "%s is not a port of %s's Service: name one of %s" % (_show(port), runtime, ", ".join(names))
    return [(("smoke", "port"), message)]


def _pvc_rules(entry: Mapping[str, Any]) -> list[Problem]:
    create = _dict_at(entry, "model", "pvc", "create")
    size = create.get("size")
    if not isinstance(size, str):
        return []
    try:
        positive = parse_quantity(size) > 0
    except QuantityError:
        return []  # reported by the schema
    if positive:
        return []
    return [(("model", "pvc", "create", "size"), "%s is not a storage size above 0: write one such as 100Gi"
             % _show(size))]


def _service_rules(entry: Mapping[str, Any]) -> list[Problem]:
    service = _dict_at(entry, "service")
    kind = service.get("type", "ClusterIP")
    node_ports = _dict_at(entry, "service", "node_ports")
    problems: list[Problem] = []
    if node_ports and kind == "ClusterIP":
        problems.append((("service", "node_ports"), "apply only to service.type NodePort or LoadBalancer, not "
                                                    "ClusterIP: set the type or remove them"))
    if "load_balancer_source_ranges" in service and kind != "LoadBalancer":
        problems.append((("service", "load_balancer_source_ranges"), "apply only to service.type LoadBalancer, not %s"
                         % kind))
    runtime = entry.get("runtime")
    names = ([item.name for item in _runtimes.get(runtime).ports if item.service] if runtime in RUNTIMES else None)
    low, high = NODE_PORT_RANGE
    seen: dict[int, str] = {}
    for port_name, number in node_ports.items():
        where = ("service", "node_ports", port_name)
        if names is not None and port_name not in names:
            problems.append((where, "%s is not a port of %s's Service: name one of %s"
                             % (_show(port_name), runtime, ", ".join(names))))
        if not _is_int(number):
            continue  # reported by the schema
        if not low <= number <= high:
            problems.append((where, "%d is outside the NodePort range %d-%d (the API server's "
                                    "--service-node-port-range): pick a port in it, or leave it out and the cluster "
                                    "picks one" % (number, low, high)))
        elif number in seen:
            problems.append((where, "%d is also the node port of %s: each port needs its own" % (number, seen[number])))
        seen.setdefault(number, str(port_name))
    return problems


def _record_rules(entry: Mapping[str, Any]) -> list[Problem]:
    # The runtime's own rules (its record's section_rules), and the names of the objects it adds.
    runtime = entry.get("runtime")
    if runtime not in RUNTIMES:
        return []
    record = _runtimes.get(runtime)
    problems: list[Problem] = list(record.section_rules(entry))
    create = _dict_at(entry, "model", "pvc", "create")
    modes = create.get("access_modes") or ["ReadWriteOnce"]
    autoscaling = _dict_at(entry, "autoscaling")
    most = max([value for value in (entry.get("replicas", 1), autoscaling.get("max_replicas", 1)
                                    if autoscaling.get("enabled") is True else 1) if _is_int(value)], default=1)
    writes = record.writes_models and _dict_at(entry, "model", "pvc").get("read_only") is not True
    if create and writes and most > 1 and isinstance(modes, list) and "ReadWriteMany" not in modes:
        problems.append((("model", "pvc", "create", "access_modes"),
                         "%s lets one node write the claim, and %d replicas of %s write their models into it: use "
                         "[ReadWriteMany] (a storage class that offers it), or one replica"
                         % (_show(modes), most, runtime)))
    return problems


_SEMANTIC_CHECKS: tuple[Callable[[Mapping[str, Any]], List[Problem]], ...] = (
    _runtime_sections,
    _smoke_rules,
    _custom_python_rules,
    _requests_within_limits,
    _autoscaling_bounds,
    _pdb_rules,
    _strategy_rules,
    canary_rules,
    _availability_rules,
    _replica_limits,
    _gpu_rules,
    _image_rules,
    _model_storage_rules,
    _runtime_settings_rules,
    _pvc_rules,
    _service_rules,
    _record_rules,
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _dict_at(data: Any, *keys: str) -> Mapping[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, Mapping) else None
    return data if isinstance(data, Mapping) else {}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_path(data: Any, path: ProblemPath) -> bool:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def format_path(path: Iterable[Union[str, int]]) -> str:
    """``("resources", "requests", "cpu")`` -> ``resources.requests.cpu``; list indexes as ``[0]``."""
    text = ""
    for part in path:
        text += "[%d]" % part if isinstance(part, int) else ("." if text else "") + str(part)
    return text


def _locate(label: str, path: ProblemPath, message: str, note: str = "") -> str:
    location = label + ("." + format_path(path) if path else "")
    if note:
        location += " (%s)" % note
    return "%s: %s" % (location.replace(".[", "["), message)


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
