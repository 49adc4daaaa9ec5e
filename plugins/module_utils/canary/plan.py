# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A canary's plan: the traffic split the cluster gets, then per step how many pods of each version run and which
weight that expresses, and the most pods (so GPUs) the progression holds at once.

The splits:

- ``replicas``: the canary's Deployment ``<model>-canary`` runs beside the stable one, both behind the model's one
  Service; the share of the canary is its share of the ready pods (kube-proxy picks endpoints evenly). The replica
  count ``N`` is shared: the canary gets ``weight x N / 100`` pods rounded to the nearest (a tie to the fewer: a
  canary errs on less traffic), at least 1, and the stable version the
  rest, at least 1 below 100% (so with ``N = 1`` a step below 100% runs 1 + 1 pods: 50%). What a step cannot express
  exactly (10% of 3 replicas) is said, with the weight it gets instead.
- ``gateway`` (Gateway API ``HTTPRoute`` backend weights) and ``istio`` (``VirtualService`` weights over
  ``DestinationRule`` subsets, and A/B by header): the proxy splits requests, so every weight is exact; the stable
  version keeps its ``N`` pods (an abort only moves the weights back) and the canary gets enough pods for its share,
  ``ceil(weight x N / 100)``, at least 1.

Pure functions: what the cluster serves and the stable version's facts come in as arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import Canary, format_seconds

#: The kinds each split needs the API server to serve, as (apiVersion, kind); Istio's v1 came with 1.22, v1beta1 before.
GATEWAY_KINDS = (("gateway.networking.k8s.io/v1", "HTTPRoute"),)
ISTIO_VERSIONS = ("networking.istio.io/v1", "networking.istio.io/v1beta1")
ISTIO_KINDS = ("VirtualService", "DestinationRule")


class CanaryPlanError(ValueError):
    """The canary cannot run on this cluster as asked: the message says why and what to change."""


def istio_api_version(served: Iterable[Tuple[str, str]]) -> Optional[str]:
    """The newest Istio networking version whose VirtualService and DestinationRule are both served, or None."""
    found = set(served)
    for version in ISTIO_VERSIONS:
        if all((version, kind) in found for kind in ISTIO_KINDS):
            return version
    return None


def resolve_split(requested: str, served: Iterable[Tuple[str, str]]) -> Tuple[str, str]:
    """``(split, why)``: the split a canary gets on a cluster serving ``served`` ((apiVersion, kind) pairs).

    ``auto`` takes Istio when its kinds are served, else Gateway API, else the replica ratio; a forced split whose
    kinds are not served is refused (CanaryPlanError), never silently replaced.
    """
    found = set(served)
    has_istio = istio_api_version(found) is not None
    has_gateway = all(kind in found for kind in GATEWAY_KINDS)
    if requested == "replicas":
        return "replicas", "split replicas (the catalog's)"
    if requested == "istio":
        if not has_istio:
            raise CanaryPlanError("split istio needs Istio's VirtualService and DestinationRule (networking.istio.io v1 "
                                  "or v1beta1), which this cluster does not serve: install Istio, or set split to "
                                  "gateway, replicas or auto. Nothing was applied.")
        return "istio", "split istio (the catalog's)"
    if requested == "gateway":
        if not has_gateway:
            raise CanaryPlanError("split gateway needs Gateway API's HTTPRoute (gateway.networking.k8s.io/v1), which "
                                  "this cluster does not serve: install the Gateway API CRDs and an implementation, or "
                                  "set split to istio, replicas or auto. Nothing was applied.")
        return "gateway", "split gateway (the catalog's)"
    if has_istio:
        return "istio", "split auto: the cluster serves Istio's VirtualService and DestinationRule"
    if has_gateway:
        return "gateway", "split auto: the cluster serves Gateway API's HTTPRoute (and no Istio)"
    return "replicas", "split auto: the cluster serves neither Istio nor Gateway API: the replica ratio"


@dataclass(frozen=True)
class ReplicaSplit:
    """Pods of each version and the canary's share of the traffic they give, in percent."""

    canary: int
    stable: int
    share: Fraction

    @property
    def exact_for(self) -> int:
        """The weight this split expresses exactly, or -1 when its share is not a whole percentage."""
        return int(self.share) if self.share.denominator == 1 else -1


def replica_split(weight: int, replicas: int) -> ReplicaSplit:
    """The replica-ratio split of ``replicas`` pods for ``weight`` percent: the closest share with at least one pod of
    each version below 100% (one more pod than ``replicas`` when there is only one)."""
    if replicas < 1:
        raise CanaryPlanError("a canary needs a stable version that serves: replicas is %d" % replicas)
    if weight >= 100:
        return ReplicaSplit(replicas, 0, Fraction(100))
    if replicas == 1:
        return ReplicaSplit(1, 1, Fraction(50))
    # Nearest, a tie to the fewer pods (not Python's half to even): 50% of 3 replicas runs 1 canary pod, not 2.
    canary = math.ceil(Fraction(weight * replicas, 100) - Fraction(1, 2))
    canary = min(max(canary, 1), replicas - 1)
    stable = replicas - canary
    return ReplicaSplit(canary, stable, Fraction(100 * canary, canary + stable))


def weighted_canary_replicas(weight: int, replicas: int) -> int:
    """Canary pods for ``weight`` percent of what ``replicas`` stable pods serve (gateway and istio splits)."""
    return max(1, math.ceil(weight * replicas / 100))


@dataclass
class StepPlan:
    """One step: pods of each version, the weight asked and the weight the split gives."""

    number: int
    weight: int
    pause_seconds: float
    canary_replicas: int
    stable_replicas: int
    expressed_weight: float
    exact: bool
    note: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {"step": self.number, "weight": self.weight, "pause_seconds": self.pause_seconds,
                "canary_replicas": self.canary_replicas, "stable_replicas": self.stable_replicas,
                "expressed_weight": self.expressed_weight, "exact": self.exact, "note": self.note}


@dataclass
class CanaryPlan:
    """The steps, then the promotion; ``peak_pods``: the most pods of the model at once (both versions, the
    promotion's rolling update included), what the GPU preflight must find room for."""

    split: str
    why: str
    replicas: int
    steps: List[StepPlan]
    peak_pods: int
    promote: str
    header: Optional[Tuple[str, str]] = None
    warnings: List[str] = field(default_factory=list)

    @property
    def extra_pods(self) -> int:
        """Pods beyond ``replicas`` the canary needs at its peak."""
        return self.peak_pods - self.replicas

    def to_dict(self) -> Dict[str, Any]:
        return {"split": self.split, "why": self.why, "replicas": self.replicas,
                "steps": [step.to_dict() for step in self.steps], "peak_pods": self.peak_pods,
                "extra_pods": self.extra_pods, "promote": self.promote,
                "header": {"name": self.header[0], "value": self.header[1]} if self.header else None,
                "warnings": list(self.warnings)}

    def lines(self) -> List[str]:
        """The plan as the deploy's step ``Preflight | Canary plan`` prints it, one line per step."""
        out = ["%s; %d replica(s); at most %d pods at once (%d more than the replicas)"
               % (self.why, self.replicas, self.peak_pods, self.extra_pods)]
        if self.header:
            out.append("A/B: requests with header %s: %s always go to the canary" % self.header)
        for step in self.steps:
            weight = "%d%%" % step.weight if step.exact else "%d%% asked, %s%% expressed" % (
                step.weight, _percent(step.expressed_weight))
            line = "step %d: %s for %s: canary %d pod(s), stable %d pod(s)" % (
                step.number, weight, format_seconds(step.pause_seconds), step.canary_replicas, step.stable_replicas)
            out.append(line + (" - " + step.note if step.note else ""))
        out.append("then promote: " + self.promote)
        return out + ["warning: " + warning for warning in self.warnings]


def _percent(value: float) -> str:
    return ("%.1f" % value).rstrip("0").rstrip(".")


def plan_canary(canary: Canary, replicas: int, split: str, why: str = "", surge: int = 1) -> CanaryPlan:
    """The plan of ``canary`` for ``replicas`` stable pods with ``split`` (after :func:`resolve_split`); ``surge``:
    the extra pods the stable Deployment's own rolling update adds at promotion (its resolved maxSurge)."""
    if replicas < 1:
        raise CanaryPlanError("a canary needs a stable version that serves: replicas is %d" % replicas)
    steps: List[StepPlan] = []
    warnings: List[str] = []
    before = (0, replicas)  # canary, stable pods before the step
    peak = replicas
    for number, step in enumerate(canary.steps, start=1):
        if split == "replicas":
            pods = replica_split(step.weight, replicas)
            canary_pods, stable_pods = pods.canary, pods.stable
            expressed = float(pods.share)
            exact = pods.share == step.weight
            note = "" if exact else _inexact_note(step.weight, replicas, pods)
        else:
            canary_pods, stable_pods = weighted_canary_replicas(step.weight, replicas), replicas
            expressed, exact, note = float(step.weight), True, ""
        if steps and (canary_pods, stable_pods) == (steps[-1].canary_replicas, steps[-1].stable_replicas):
            note = (note + "; " if note else "") + "the same pods as step %d: only its pause adds" % steps[-1].number
        # The canary is scaled up before the stable version is scaled down: capacity never drops.
        peak = max(peak, canary_pods + before[1], canary_pods + stable_pods)
        before = (canary_pods, stable_pods)
        steps.append(StepPlan(number, step.weight, step.pause_seconds, canary_pods, stable_pods,
                              round(expressed, 1), exact, note))
    if split == "replicas":
        # The stable Deployment takes the new version at its current size (its own rolling update), then grows to
        # the replica count while the canary shrinks, one pod each way.
        promote = ("the stable Deployment takes the new version (rolling update of its %d pod(s)), then grows to %d "
                   "while the canary's %d pod(s) go, one by one" % (before[1], replicas, before[0]))
        peak = max(peak, before[0] + before[1] + max(surge if before[1] else 0, 1))
    else:
        promote = ("every request goes to the model's Service (both versions' pods), the stable Deployment takes the "
                   "new version (rolling update of its %d pod(s)), then the route and the canary's %d pod(s) go"
                   % (replicas, before[0]))
        peak = max(peak, before[0] + replicas + surge)
    if split == "replicas" and any(not step.exact for step in steps):
        warnings.append("the replica ratio of %d replica(s) cannot express every weight; more replicas, or split "
                        "gateway or istio (exact weights), follow the steps closer" % replicas)
    if canary.bounds.min_requests == 0:
        warnings.append("analysis.min_requests is 0: a step passes without any canary request (its pause is all "
                        "it proves); set it above 0 wherever traffic reaches the model")
    if canary.gateway and split != "gateway":
        warnings.append("strategy.canary.gateway (%s) is not used: the split is %s" % (canary.gateway.get("name"), split))
    return CanaryPlan(split, why or "split " + split, replicas, steps, peak, promote, canary.header, warnings)


def _inexact_note(weight: int, replicas: int, pods: ReplicaSplit) -> str:
    total = pods.canary + pods.stable
    if replicas == 1:
        return ("%d%% is not expressible with 1 replica: 1 canary pod beside the stable one takes 50%% (one pod more "
                "than the replicas)" % weight)
    return ("%d%% is not expressible with %d replicas: %d of %d pods take %s%%"
            % (weight, replicas, pods.canary, total, _percent(float(pods.share))))
