# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The catalog's ``strategy.canary``: schema, rules, durations, and the checked settings.

```yaml
strategy:
  canary:
    steps: [{weight: 10, pause: 2m}, {weight: 50, pause: 5m}]   # then promote: 100%
    split: auto                  # auto | replicas | gateway | istio
    header: {name: x-canary, value: "1"}    # A/B (istio): these requests always go to the canary
    analysis:
      metrics: pods              # the pods' own /metrics through the API server; or prometheus (inventory URL)
      interval: 15s              # how often a step's figures are read during its pause
      min_requests: 20           # fewer canary requests in a step: no verdict yet
      error_ratio: {max: 0.02, max_increase: 0.01}      # absolute; above the stable version's, in ratio points
      p99_latency: {max: 800ms, max_factor: 1.5}        # absolute; times the stable version's p99
    on_failure: abort
```

The catalog (``catalog.py``) puts :data:`CANARY_SCHEMA` under ``strategy`` and adds :func:`canary_rules` to its
semantic checks, so a bad canary fails the catalog check and the deploy's input check, before anything is applied.
:func:`canary_of` turns a valid entry into :class:`Canary` for the planning and the analysis.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import runtimes as _runtimes

SPLITS = ("auto", "replicas", "gateway", "istio")
METRIC_SOURCES = ("pods", "prometheus")
ON_FAILURE = ("abort",)
DEFAULT_SPLIT = "auto"
DEFAULT_METRICS = "pods"
DEFAULT_INTERVAL = "15s"
DEFAULT_MIN_REQUESTS = 20

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Go's duration syntax without the units no pause needs (ns, us): 90s, 2m, 1h30m, 1.5s, 500ms.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
DURATION_EXPECTED = "a duration such as 30s, 2m or 1h30m (or whole seconds)"
# Istio matches header names in lowercase; Gateway API names are case-insensitive tokens.
HEADER_NAME_PATTERN = r"^[a-z0-9][-a-z0-9_.]*$"

Problem = Tuple[Tuple[Union[str, int], ...], str]
_CANARY = ("strategy", "canary")


class DurationError(ValueError):
    """A value that is not a duration."""


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"2m"``, ``"1h30m"``, ``"500ms"``; DurationError otherwise."""
    if isinstance(value, bool):
        raise DurationError("%r is not %s" % (value, DURATION_EXPECTED))
    if isinstance(value, int):
        if value < 0:
            raise DurationError("%r is negative: write %s" % (value, DURATION_EXPECTED))
        return float(value)
    if isinstance(value, float):
        if value < 0 or math.isnan(value):
            raise DurationError("%r is not %s" % (value, DURATION_EXPECTED))
        return value
    if not isinstance(value, str) or not re.match(DURATION_PATTERN, value):
        raise DurationError("%r is not %s" % (value, DURATION_EXPECTED))
    return sum(float(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(value))


def format_seconds(seconds: float) -> str:
    """``120.0`` -> ``2m``, ``90`` -> ``1m30s``, ``0.25`` -> ``250ms``: how the plan shows a pause or a latency."""
    if seconds < 1:
        return "%gms" % round(seconds * 1000, 3)
    whole = int(seconds)
    if whole != seconds:
        return "%gs" % round(seconds, 3)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = ("%dh" % hours if hours else "") + ("%dm" % minutes if minutes else "") + ("%ds" % secs if secs else "")
    return text or "0s"


# ---- schema (the catalog's dialect: x-expected makes its messages) ----

_DURATION = {
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}],
    "x-expected": DURATION_EXPECTED,
}
_LATENCY = {
    "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}],
    "x-expected": "a latency such as 250ms or 1.5s (or seconds as a number above 0)",
}
_RATIO = {"type": "number", "minimum": 0, "maximum": 1,
          "x-expected": "a ratio from 0 to 1 (0.01 is 1% of the requests)"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
         "x-expected": "a Kubernetes object name"}


def _object(properties: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    schema.update(extra)
    return schema


CANARY_SCHEMA: Dict[str, Any] = _object({
    "steps": {"type": "array", "minItems": 1, "items": _object({
        "weight": {"type": "integer", "minimum": 1, "maximum": 100,
                   "x-expected": "a traffic percentage, a whole number from 1 to 100"},
        "pause": _DURATION,
    }, required=["weight", "pause"])},
    "split": {"enum": list(SPLITS), "default": DEFAULT_SPLIT},
    "header": _object({
        "name": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": HEADER_NAME_PATTERN,
                 "x-expected": "a lowercase HTTP header name such as x-canary"},
        "value": {"type": "string", "minLength": 1, "x-expected": "the header's exact value, not empty"},
    }, required=["name"]),
    "analysis": _object({
        "metrics": {"enum": list(METRIC_SOURCES), "default": DEFAULT_METRICS},
        "interval": _DURATION,
        # 0: no minimum, a step passes without a request (a cluster no request reaches, such as a test of the
        # route objects); the plan warns.
        "min_requests": {"type": "integer", "minimum": 0, "default": DEFAULT_MIN_REQUESTS,
                         "x-expected": "a count of canary requests (0: none needed)"},
        "error_ratio": _object({"max": _RATIO, "max_increase": _RATIO}),
        "p99_latency": _object({
            "max": _LATENCY,
            "max_factor": {"type": "number", "minimum": 1,
                           "x-expected": "a factor of the stable version's p99 of at least 1 (1.5: 50% slower)"},
        }),
    }),
    "on_failure": {"enum": list(ON_FAILURE), "default": "abort"},
    # The Gateway an HTTPRoute attaches to (split gateway); without, the route attaches to the model's Service
    # (Gateway API for meshes, GAMMA).
    "gateway": _object({"name": _NAME, "namespace": _NAME, "section_name": _NAME}, required=["name"]),
}, required=["steps"])


# ---- rules the schema cannot express ----

def _dict(data: Any, *keys: str) -> Mapping[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, Mapping) else None
    return data if isinstance(data, Mapping) else {}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _step_rules(steps: Any) -> List[Problem]:
    problems: List[Problem] = []
    if not isinstance(steps, list):
        return problems
    before: Optional[Tuple[int, int]] = None  # (index, weight) of the step before
    for index, step in enumerate(steps):
        if not isinstance(step, Mapping):
            continue
        weight, pause = step.get("weight"), step.get("pause")
        where = _CANARY + ("steps", index)
        if _is_int(weight) and 1 <= weight <= 100:
            if before is not None and weight <= before[1]:
                problems.append((where + ("weight",), "%d is not more than the step before (steps[%d].weight %d): "
                                                      "weights must increase step by step, e.g. 10, 50, 100"
                                 % (weight, before[0], before[1])))
            before = (index, weight)
        if pause is not None:
            try:
                seconds = parse_duration(pause)
            except DurationError:
                continue  # reported by the schema
            if seconds < 1:
                problems.append((where + ("pause",), "%r is shorter than 1s: a step needs time for requests to reach "
                                                     "the canary; write %s" % (pause, DURATION_EXPECTED)))
    return problems


def _analysis_rules(entry: Mapping[str, Any], canary: Mapping[str, Any]) -> List[Problem]:
    analysis = canary.get("analysis")
    where = _CANARY + ("analysis",)
    if not isinstance(analysis, Mapping) or not (_dict(analysis, "error_ratio") or _dict(analysis, "p99_latency")):
        return [(where, "has no metric to judge the canary by: set error_ratio.max (e.g. 0.01) and/or p99_latency.max "
                        "(e.g. 500ms), or their bounds relative to the stable version (error_ratio.max_increase, "
                        "p99_latency.max_factor)")]
    problems: List[Problem] = []
    interval = analysis.get("interval")
    if interval is not None:
        try:
            if parse_duration(interval) < 1:
                problems.append((where + ("interval",), "%r is shorter than 1s: the pods would be scraped "
                                                        "continuously; write %s" % (interval, DURATION_EXPECTED)))
        except DurationError:
            pass  # reported by the schema
    runtime = entry.get("runtime")
    if runtime not in _runtimes.REGISTRY:
        return problems
    found = _runtimes.get(runtime).request_metrics
    if found is None:
        problems.append((where, "%s exposes no request metrics to judge a canary by: deploy it without "
                                "strategy.canary (a rolling update)" % runtime))
    elif found.latency is None and _dict(analysis, "p99_latency"):
        problems.append((where + ("p99_latency",), "%s exposes no latency histogram (its request metrics: %s): remove "
                                                   "p99_latency and bound error_ratio only" % (runtime, found.source)))
    return problems


def _split_rules(canary: Mapping[str, Any]) -> List[Problem]:
    split = canary.get("split", DEFAULT_SPLIT)
    problems: List[Problem] = []
    header = canary.get("header")
    if isinstance(header, Mapping):
        if "value" not in header:
            problems.append((_CANARY + ("header", "value"), "is missing: A/B sends the requests whose header %s has "
                                                            "this exact value to the canary; set it"
                             % header.get("name", "")))
        if split in SPLITS and split != "istio":
            problems.append((_CANARY + ("header",), "A/B by header needs split istio (a VirtualService routes by "
                                                    "header), and split is %s: set split: istio, or remove header"
                             % split))
    if "gateway" in canary and split in ("replicas", "istio"):
        problems.append((_CANARY + ("gateway",), "applies to split gateway (the HTTPRoute's parent), and split is %s: "
                                                 "remove it, or set split: gateway" % split))
    return problems


def _entry_rules(entry: Mapping[str, Any]) -> List[Problem]:
    problems: List[Problem] = []
    replicas = entry.get("replicas", 1)
    if _is_int(replicas) and replicas == 0:
        problems.append((_CANARY, "needs a stable version that serves: replicas is 0; set replicas to 1 or more, or "
                                  "remove strategy.canary"))
    if _dict(entry, "autoscaling").get("enabled") is True:
        # The HPA scales the stable Deployment only: the replica ratio, and the canary's share, would drift.
        problems.append((_CANARY, "cannot run with autoscaling enabled yet (the autoscaler would resize the stable "
                                  "version under the canary's steps): disable autoscaling for the canary's "
                                  "environment, or remove strategy.canary"))
    return problems


def canary_rules(entry: Mapping[str, Any]) -> List[Problem]:
    """Problems of the entry's ``strategy.canary`` the schema cannot express, as ``(path, message)``; values of the
    wrong type are left to the schema."""
    canary = _dict(entry, *_CANARY)
    if not canary:
        return []
    return (_step_rules(canary.get("steps")) + _analysis_rules(entry, canary) + _split_rules(canary)
            + _entry_rules(entry))


# ---- the checked settings ----

@dataclass(frozen=True)
class Step:
    weight: int
    pause_seconds: float


@dataclass(frozen=True)
class Bounds:
    """What a step's canary must stay within; None: not bounded."""

    min_requests: int = DEFAULT_MIN_REQUESTS
    max_error_ratio: Optional[float] = None
    max_error_ratio_increase: Optional[float] = None
    max_p99_seconds: Optional[float] = None
    max_p99_factor: Optional[float] = None


@dataclass(frozen=True)
class Canary:
    steps: Tuple[Step, ...]
    split: str
    bounds: Bounds
    metrics: str = DEFAULT_METRICS
    interval_seconds: float = 15.0
    header: Optional[Tuple[str, str]] = None
    on_failure: str = "abort"
    gateway: Optional[Dict[str, str]] = None


def canary_of(entry: Mapping[str, Any]) -> Optional[Canary]:
    """The entry's canary as :class:`Canary`, None without one. The entry must have passed the catalog check."""
    canary = _dict(entry, *_CANARY)
    if not canary:
        return None
    analysis = _dict(canary, "analysis")
    errors, latency = _dict(analysis, "error_ratio"), _dict(analysis, "p99_latency")
    bounds = Bounds(
        min_requests=int(analysis.get("min_requests", DEFAULT_MIN_REQUESTS)),
        max_error_ratio=_float(errors.get("max")),
        max_error_ratio_increase=_float(errors.get("max_increase")),
        max_p99_seconds=None if latency.get("max") is None else parse_duration(latency["max"]),
        max_p99_factor=_float(latency.get("max_factor")),
    )
    header = _dict(canary, "header")
    return Canary(
        steps=tuple(Step(int(step["weight"]), parse_duration(step["pause"])) for step in canary["steps"]),
        split=str(canary.get("split", DEFAULT_SPLIT)),
        bounds=bounds,
        metrics=str(analysis.get("metrics", DEFAULT_METRICS)),
        interval_seconds=parse_duration(analysis.get("interval", DEFAULT_INTERVAL)),
        header=(str(header["name"]), str(header["value"])) if header else None,
        on_failure=str(canary.get("on_failure", "abort")),
        gateway=dict(canary["gateway"]) if isinstance(canary.get("gateway"), Mapping) else None,
    )


def _float(value: Any) -> Optional[float]:
    return None if value is None else float(value)
