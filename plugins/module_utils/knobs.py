# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's shared knobs, declared once: name, type, default, bounds, and where they can be set.

Every runtime deploys the same way, so what tunes the deploy (rollout timeout,
rollback, smoke check, grace periods, labels...) is one list, here, not a copy
per runtime role. A knob ``X`` is read, most specific first, from:

1. ``-e ai_serving_X=...`` on the command line (or an AWX extra variable): the
   operator's choice for this run;
2. the model's catalog entry, ``deploy: {X: ...}`` (after its environment's
   overrides), for knobs marked ``per_model``;
3. ``ai_serving_X`` wherever else Ansible has it (inventory, group_vars, play);
4. the old name ``<runtime>_X`` (one release, with a deprecation warning);
5. the default below (some default to another variable, e.g. the namespace to
   ``ai_namespace_name``, which bootstrap_cluster.yml uses too).

Plain Python: :func:`resolve` takes the variables as a mapping and returns
the values with the warnings; the caller (an action plugin) passes its task
variables and the extra variables of the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

PREFIX = "ai_serving_"
#: The release after which the old per-runtime names stop working.
LEGACY_REMOVED_IN = "2.0.0"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


@dataclass(frozen=True)
class Knob:
    name: str
    type: str  # int, bool, str, dict, list
    default: Any
    description: str
    #: Settable per model in the catalog entry's ``deploy`` section.
    per_model: bool = False
    minimum: Optional[int] = None
    choices: Tuple[str, ...] = ()
    pattern: Optional[str] = None
    #: Variables whose value is the default when set (the first one set wins).
    default_from: Tuple[str, ...] = ()
    #: Values never printed (the registry credentials).
    no_log: bool = False
    #: A str knob that may be empty (empty: not set, e.g. no Prometheus URL).
    empty_ok: bool = False

    @property
    def variable(self) -> str:
        return PREFIX + self.name


KNOBS: Tuple[Knob, ...] = (
    Knob("namespace", "str", "ai-serving",
         "Namespace of the model's objects. It must exist, with its baseline (playbooks/bootstrap_cluster.yml).",
         pattern=_DNS_LABEL, default_from=("ai_namespace_name",)),
    Knob("service_account_name", "str", "model-server-sa",
         "ServiceAccount of the pods (the ai_namespace role makes model-server-sa).",
         per_model=True, default_from=("ai_namespace_service_account_name",)),
    Knob("pod_labels", "dict", {},
         "Extra labels of the pod template (a service mesh, cost allocation). The labels the deploy sets "
         "(app.kubernetes.io/*, creativeflow.ai/runtime, creativeflow.ai/model-name) cannot be overridden. On the "
         "local kwok cluster, sim.creativeflow.ai/fault (not-ready, crash-loop, image-pull) makes the pods fail.",
         per_model=True),
    Knob("pod_annotations", "dict", {}, "Annotations of the pod template.", per_model=True),
    Knob("termination_grace_period_seconds", "int", 60,
         "The pods' terminationGracePeriodSeconds; more than pre_stop_sleep_seconds, else the drain is cut short.",
         per_model=True, minimum=1),
    Knob("pre_stop_sleep_seconds", "int", 10,
         "Seconds the preStop hook sleeps before the server gets SIGTERM, so the endpoint leaves the Service first "
         "and no request is cut (a graceful drain).", per_model=True, minimum=0),
    Knob("progress_deadline_seconds", "int", 600, "The Deployment's spec.progressDeadlineSeconds.", per_model=True,
         minimum=1),
    Knob("gpu_preflight", "bool", True,
         "Before applying, prove that the replicas' GPUs fit the namespace quota and the eligible nodes at every "
         "step of the rollout (gpu_capacity_check). false skips it (e.g. when a cluster autoscaler adds GPU nodes); "
         "a rollout that then stays Pending is rolled back.", per_model=True),
    Knob("rollout_timeout", "int", 600, "Seconds to wait for the rollout, and for the rollback after a failure.",
         per_model=True, minimum=1),
    Knob("rollout_fail_fast", "int", 60,
         "Seconds after which a reason waiting does not cure (CrashLoopBackOff, ImagePullBackOff...) fails the "
         "rollout; 0 waits for rollout_timeout.", per_model=True, minimum=0),
    Knob("rollback_on_failure", "bool", True,
         "When the rollout fails, put the previous revision back (and the Service, HPA, PDB and ServiceMonitor as they "
         "were; on a first deploy, remove what was created), wait until it is available, then fail with the reason. "
         "false leaves the failed rollout in place for inspection.", per_model=True),
    Knob("smoke_check", "bool", True,
         "After the rollout, wait for ready endpoints behind the Service and ask the server through the API server's "
         "service proxy (its health paths, and the catalog entry's smoke inference).",
         per_model=True),
    Knob("service_monitor", "bool", True,
         "A ServiceMonitor for the metrics endpoint when the Prometheus Operator's CRD (monitoring.coreos.com/v1) "
         "is served; removed again when false. render_model.yml never writes one.", per_model=True),
    Knob("service_monitor_labels", "dict", {},
         "Extra labels of the ServiceMonitor, for the Prometheus' serviceMonitorSelector (e.g. release=prometheus).",
         per_model=True),
    Knob("image_build", "bool", True,
         "Build and push the image before deploying when the catalog entry has image.build (not disabled); skipped "
         "when the registry has the tag already. false deploys image.repository:image.tag as it is.", per_model=True),
    Knob("image_builder", "str", "docker",
         "docker (community.docker) or podman (containers.podman) builds and pushes. Log in to the registry first.",
         choices=("docker", "podman")),
    Knob("image_registry", "dict", {},
         "Access to the registry for the tag look-up before a build - username, password (never printed), insecure "
         "(plain HTTP; automatic for localhost), validate_certs. Pushes use the builder's own login.", no_log=True),
    Knob("model_fetch_images", "dict", {
        "s3": "amazon/aws-cli:2.17.50",
        "gs": "gcr.io/google.com/cloudsdktool/google-cloud-cli:494.0.0-slim",
        "https": "curlimages/curl:8.10.1",
        "http": "curlimages/curl:8.10.1",
    }, ("Image of the init container that fetches model.uri into an emptyDir, per URI scheme (s3, gs, http, https); "
        "the Secret of model.credentials_secret becomes its environment.")),
    Knob("api_retry_seconds", "int", 60,
         "Seconds an API server that does not answer (a control plane restarting) is retried, with backoff, before "
         "the deploy fails saying what was in progress; 0 fails at once.", minimum=0),
    Knob("lock_wait", "int", 0,
         "Seconds to wait for another run's deploy of the same model (its Lease) before failing with its holder; 0 "
         "fails at once.", minimum=0),
    Knob("continue_forward", "bool", False,
         "When the model is found in the middle of a failed or interrupted rollout, deploy over it instead of "
         "putting the last good version back first."),
    Knob("canary_action", "str", "none",
         "What a deploy of a model with strategy.canary does to the canary a run left - none runs or continues its "
         "steps, promote promotes it now (skipping the steps left), abort removes it and gives the stable version its "
         "replicas back. playbooks/canary.yml sets it.", choices=("none", "promote", "abort")),
    Knob("canary_prometheus_url", "str", "",
         "URL of the Prometheus that the canary analysis queries when strategy.canary.analysis.metrics is prometheus "
         "(for example http://prometheus.monitoring:9090, reached from the controller); it must scrape the model's "
         "pods with namespace and pod labels. Empty - such a canary is refused before anything is applied; a URL "
         "where no Prometheus answers a query stops the canary before its first step.",
         empty_ok=True),
)

BY_NAME: Dict[str, Knob] = {knob.name: knob for knob in KNOBS}
PER_MODEL: Tuple[str, ...] = tuple(knob.name for knob in KNOBS if knob.per_model)


class KnobError(ValueError):
    """A knob's value is not usable; the message names the variable, the value and what is expected."""


def catalog_schema() -> Dict[str, Any]:
    """The JSON Schema of a catalog entry's ``deploy`` section (the per-model knobs)."""
    properties: Dict[str, Any] = {}
    for knob in KNOBS:
        if not knob.per_model:
            continue
        schema: Dict[str, Any] = {"type": {"int": "integer", "bool": "boolean", "str": "string",
                                           "dict": "object", "list": "array"}[knob.type]}
        if knob.minimum is not None:
            schema["minimum"] = knob.minimum
        if knob.choices:
            schema["enum"] = list(knob.choices)
        if knob.pattern:
            schema["pattern"] = knob.pattern
        properties[knob.name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _describe(value: Any) -> str:
    return "'{0}'".format(value) if isinstance(value, str) else repr(value)


def _coerce(knob: Knob, value: Any, where: str) -> Any:
    """``value`` as the knob's type. Strings from ``-e X=Y`` are taken for ints and bools, as Ansible's own bool does."""
    bad = "{0} is {1}: expected {2}".format
    if knob.type == "int":
        if isinstance(value, bool):
            raise KnobError(bad(where, _describe(value), "a whole number"))
        try:
            number = int(value) if not isinstance(value, float) or value.is_integer() else None
        except (TypeError, ValueError):
            number = None
        if number is None:
            raise KnobError(bad(where, _describe(value), "a whole number"))
        if knob.minimum is not None and number < knob.minimum:
            raise KnobError(bad(where, number, "at least {0}".format(knob.minimum)))
        return number
    if knob.type == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise KnobError(bad(where, _describe(value), "true or false"))
    if knob.type == "str":
        if not isinstance(value, str) or not (value or knob.empty_ok):
            raise KnobError(bad(where, _describe(value), "a non-empty string"))
        if knob.choices and value not in knob.choices:
            raise KnobError(bad(where, _describe(value), "one of " + ", ".join(knob.choices)))
        if knob.pattern and not re.match(knob.pattern, value):
            raise KnobError(bad(where, _describe(value), "a DNS label (lower-case letters, digits and '-', at most 63)"))
        return value
    if knob.type == "dict":
        if not isinstance(value, Mapping):
            raise KnobError(bad(where, "a " + type(value).__name__, "a mapping"))
        return dict(value)
    if not isinstance(value, (list, tuple)):
        raise KnobError(bad(where, "a " + type(value).__name__, "a list"))
    return list(value)


@dataclass
class Resolved:
    values: Dict[str, Any]
    #: Knob name -> where its value came from (for --diff and the step lines).
    sources: Dict[str, str]
    warnings: List[str]


def resolve(runtime: str, variables: Mapping[str, Any], extra_vars: Mapping[str, Any],
            model_deploy: Optional[Mapping[str, Any]] = None, names: Optional[Sequence[str]] = None) -> Resolved:
    """The value of every knob (or of ``names``) for a model of ``runtime``.

    ``variables``: every variable the task sees (``task_vars``); ``extra_vars``: the run's ``-e`` variables
    (also in ``variables``, which is why they are passed apart: they outrank the catalog); ``model_deploy``: the
    catalog entry's ``deploy`` section, already validated against :func:`catalog_schema`.
    """
    model_deploy = model_deploy or {}
    values: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    warnings: List[str] = []
    for name in names or [knob.name for knob in KNOBS]:
        knob = BY_NAME[name]
        legacy = "{0}_{1}".format(runtime, name)
        if knob.variable in extra_vars:
            value, where = extra_vars[knob.variable], "-e " + knob.variable
        elif legacy in extra_vars:
            value, where = extra_vars[legacy], "-e " + legacy
        elif knob.per_model and name in model_deploy:
            value, where = model_deploy[name], "deploy.{0} of the catalog entry".format(name)
        elif knob.variable in variables:
            value, where = variables[knob.variable], knob.variable
        elif legacy in variables:
            value, where = variables[legacy], legacy
        else:
            value, where = knob.default, "default"
            for other in knob.default_from:
                if variables.get(other) not in (None, ""):
                    value, where = variables[other], other
                    break
        if where.endswith(legacy):
            instead = knob.variable + (" (every model) or deploy.{0} in the model's catalog entry".format(name)
                                       if knob.per_model else "")
            warnings.append("{0} is deprecated: set {1} instead; the old name stops working in {2}.".format(
                legacy, instead, LEGACY_REMOVED_IN))
        values[name] = _coerce(knob, value, where)
        sources[name] = where
    if "termination_grace_period_seconds" in values and "pre_stop_sleep_seconds" in values:
        grace, sleep = values["termination_grace_period_seconds"], values["pre_stop_sleep_seconds"]
        if grace <= sleep:
            raise KnobError(
                "termination_grace_period_seconds ({0}, from {1}) must be more than pre_stop_sleep_seconds ({2}, from "
                "{3}): else the drain is cut short".format(grace, sources["termination_grace_period_seconds"], sleep,
                                                           sources["pre_stop_sleep_seconds"]))
    return Resolved(values, sources, warnings)


def redacted(resolved: Resolved) -> Dict[str, Any]:
    """The values with the ``no_log`` knobs' secrets masked, for output."""
    out = dict(resolved.values)
    for name, value in out.items():
        if BY_NAME[name].no_log and isinstance(value, Mapping):
            out[name] = {key: ("********" if key in ("password", "token") else item) for key, item in value.items()}
    return out
