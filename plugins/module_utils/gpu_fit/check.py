# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The check: quota, nodes and the rollout together, with the largest count that fits and the advice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.messages import (
    end_state_message,
    failure_message,
    fits_message,
    plural,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.objects import (
    DEFAULT_RESOURCE,
    GpuFitError,
    KubeObject,
    pod_is_terminated,
    pod_is_terminating,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.quota import QuotaReport, evaluate_quotas
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.scheduling import (
    NodeReport,
    Toleration,
    evaluate_nodes,
    node_ineligibility,
    replica_slots,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.simulation import (
    RECREATE,
    ROLLING_UPDATE,
    CurrentDeployment,
    OldPod,
    RolloutPlan,
    SIMULATED_PODS_LIMIT,
    RolloutStrategy,
    first_rollout,
    simulate_rollout,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import name as object_name


@dataclass
class FitRequest:
    """What to check: ``replicas`` × ``gpus_per_replica`` of ``resource`` in ``namespace``."""

    replicas: int
    gpus_per_replica: int
    resource: str = DEFAULT_RESOURCE
    namespace: str = "default"
    strategy: RolloutStrategy = field(default_factory=RolloutStrategy)
    node_selector: Dict[str, str] = field(default_factory=dict)
    tolerations: List[Toleration] = field(default_factory=list)
    deployment: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.replicas, int) or self.replicas < 0:
            raise GpuFitError("replicas must be a non-negative integer, got {0!r}".format(self.replicas))
        if not isinstance(self.gpus_per_replica, int) or self.gpus_per_replica < 0:
            raise GpuFitError(
                "gpus_per_replica must be a non-negative integer, got {0!r}".format(self.gpus_per_replica)
            )
        if not self.resource or "/" not in self.resource:
            raise GpuFitError(
                "resource_name must be an extended resource like nvidia.com/gpu, got {0!r}".format(self.resource)
            )


@dataclass
class FitResult:
    """The outcome of :func:`check_fit`; :meth:`to_dict` is the module's return value."""

    fits: bool
    msg: str
    request: FitRequest
    quotas: List[QuotaReport]
    nodes: List[NodeReport]
    nodes_without_resource: int
    plan: RolloutPlan
    max_replicas: Optional[int]
    eligible_free: int
    alternative: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        req = self.request
        return {
            "fits": self.fits,
            "msg": self.msg,
            "resource_name": req.resource,
            "namespace": req.namespace,
            "replicas": req.replicas,
            "gpus_per_replica": req.gpus_per_replica,
            "max_replicas": self.max_replicas,
            "surge_pods": self.plan.surge_pods,
            "quota": [q.to_dict() for q in self.quotas],
            "nodes": [n.to_dict(req.gpus_per_replica) for n in self.nodes],
            "nodes_without_resource": self.nodes_without_resource,
            "eligible_free": self.eligible_free,
            "rollout": {
                "deployment": req.deployment,
                "strategy": self.plan.strategy.type,
                "max_surge": self.plan.max_surge,
                "max_unavailable": self.plan.max_unavailable,
                "old_pods": self.plan.old_pods,
                "old_gpus": self.plan.old_gpus,
                "peak_pods": self.plan.peak_pods,
                "needed": self.plan.needed or 0,
                "waves": [w.to_dict() for w in self.plan.waves],
                "alternative": self.alternative,
            },
        }


Simulate = Callable[..., RolloutPlan]


def check_fit(
    request: FitRequest,
    nodes: Iterable[KubeObject],
    pods: Iterable[KubeObject],
    quotas: Iterable[KubeObject],
    current_pods: Iterable[KubeObject] = (),
    current: Optional[CurrentDeployment] = None,
) -> FitResult:
    """Check whether the Deployment described by ``request`` fits, rollout included.

    ``nodes``: all Node objects. ``pods``: the non-terminated pods of the
    cluster (all namespaces; terminated ones are skipped anyway). ``quotas``:
    the ResourceQuotas of ``request.namespace``. ``current_pods``: the pods of
    the existing Deployment that the rollout replaces (see
    :func:`deployment_pods`); empty for a new Deployment. These are also in
    ``pods`` and in the quotas' ``used``. ``current``: the existing
    Deployment's replica count and pod template (see
    :class:`CurrentDeployment`); by default, the current pods' count and size.
    """
    resource = request.resource
    g = request.gpus_per_replica
    node_list = list(nodes)
    old = [OldPod.from_pod(p, resource) for p in current_pods if not pod_is_terminated(p) and not pod_is_terminating(p)]
    node_reports, without = evaluate_nodes(
        node_list, list(pods), resource, request.node_selector, request.tolerations, old
    )
    quota_reports = evaluate_quotas(quotas, resource)
    free = {n.name: max(n.free, 0) for n in node_reports if n.eligible}
    eligible_free = sum(free.values())
    old_free: Optional[Dict[str, int]] = None
    if current is not None and (
        current.node_selector != request.node_selector or current.tolerations != request.tolerations
    ):
        reported = {n.name: n for n in node_reports}
        old_free = {
            object_name(node): max(reported[object_name(node)].free, 0)
            for node in node_list
            if object_name(node) in reported and node_ineligibility(node, current.node_selector, current.tolerations) is None
        }
    applying = [q for q in quota_reports if q.applies]
    headroom = min(q.headroom for q in applying) if applying else None
    starts_empty = not old and (current is None or current.replicas == 0)
    if not starts_empty and max(request.replicas, len(old), current.replicas if current else 0) > SIMULATED_PODS_LIMIT:
        return _check_unplayed(request, quota_reports, node_reports, without, old, eligible_free)

    def simulate(
        replicas: int,
        strategy: RolloutStrategy,
        quota: bool = True,
        node_limits: bool = True,
        room: Optional[int] = None,
    ) -> RolloutPlan:
        """The rollout of ``replicas``; ``room`` replaces the quota headroom, ``quota``/``node_limits`` drop a limit."""
        if starts_empty:  # one wave, computed at any size
            return first_rollout(
                replicas, g, strategy, free if node_limits else None, room if room is not None else (headroom if quota else None)
            )
        return simulate_rollout(
            replicas,
            g,
            strategy,
            old,
            free if node_limits else None,
            room if room is not None else (headroom if quota else None),
            current,
            old_free if node_limits else None,
        )

    plan = simulate(request.replicas, request.strategy)
    unconstrained = simulate(request.replicas, request.strategy, quota=False, node_limits=False)
    plan.peak_pods = unconstrained.peak_pods
    plan.needed = _quota_need(simulate, request, old, current, unconstrained)
    for quota in quota_reports:
        quota.needed = plan.needed
    fits = plan.completed

    if g == 0:
        msg = "{0} request no {1}: nothing to check, it fits".format(plural(request.replicas, "replica"), resource)
        return FitResult(True, msg, request, quota_reports, node_reports, without, plan, None, eligible_free)

    max_replicas = _max_replicas(request, simulate, quota_reports, node_reports, old, fits, starts_empty)
    alternative: Optional[str] = None
    if fits:
        # Headroom below the surge's peak: some new pods wait for old ones to go.
        peak = unconstrained.peak_net_gpus
        throttled = headroom if headroom is not None and peak > max(headroom, 0) else None
        msg = fits_message(request, plan, max_replicas, throttled, unconstrained.peak_net_gpus)
    else:
        if request.strategy.type == ROLLING_UPDATE and (old or not starts_empty):
            alternative = _alternative(request, simulate, plan)
        nodes_only = plan if headroom is None else simulate(request.replicas, request.strategy, quota=False)
        msg = failure_message(request, plan, nodes_only, quota_reports, node_reports, max_replicas, alternative)
    return FitResult(
        fits, msg, request, quota_reports, node_reports, without, plan, max_replicas, eligible_free, alternative
    )


def _quota_need(
    simulate: Simulate,
    request: FitRequest,
    old: Sequence[OldPod],
    current: Optional[CurrentDeployment],
    unconstrained: RolloutPlan,
) -> Optional[int]:
    """The least quota headroom with which the rollout completes (nodes not limiting); ``None``: admits nothing.

    It can be below the rollout's peak usage (a refused surge pod may only
    slow the rollout down) and below 0 (a scale-down under a quota that is
    already exceeded). Found by bisection: more headroom never stops a
    rollout that completes with less.
    """
    g = request.gpus_per_replica
    if request.replicas == 0 or g == 0:
        return None
    if not old and (current is None or current.replicas == 0):
        return request.replicas * g
    freeable = sum(p.gpus for p in old)
    low = g - freeable - 1  # not even every old pod gone makes room for one new pod: never completes
    high = max(unconstrained.peak_net_gpus, low + 1)
    while high - low > 1:
        mid = (low + high) // 2
        if simulate(request.replicas, request.strategy, node_limits=False, room=mid).completed:
            high = mid
        else:
            low = mid
    return high


def _end_state_bound(
    request: FitRequest, quotas: Sequence[QuotaReport], nodes: Sequence[NodeReport], old: Sequence[OldPod]
) -> int:
    """The most replicas the end state (old pods gone) has room for: in every quota that applies, and on the nodes."""
    g = request.gpus_per_replica
    old_gpus = sum(p.gpus for p in old)
    bounds = [q.headroom + old_gpus for q in quotas if q.applies]
    upper = min([max(b, 0) // g for b in bounds] or [10**9])
    node_room = [max(n.free, 0) + n.deployment_gpus for n in nodes if n.eligible]
    return min(upper, replica_slots(node_room, g) if node_room else 0)


def _check_unplayed(
    request: FitRequest,
    quotas: List[QuotaReport],
    nodes: List[NodeReport],
    without: int,
    old: Sequence[OldPod],
    eligible_free: int,
) -> FitResult:
    """An existing Deployment's rollout with more pods than are played one by one (``SIMULATED_PODS_LIMIT``).

    No GPU, or an end state that does not fit, are answered exactly without
    playing it; a rollout whose end state fits is refused with the limit.
    """
    g = request.gpus_per_replica
    old_gpus = sum(p.gpus for p in old)
    surge, unavailable = request.strategy.resolve(request.replicas)
    needed = request.replicas * g - old_gpus if g else None
    plan = RolloutPlan(
        strategy=request.strategy, replicas=request.replicas, max_surge=surge,
        max_unavailable=min(unavailable, request.replicas), old_pods=len(old), old_gpus=old_gpus, waves=[],
        completed=g == 0, peak_pods=max(request.replicas, len(old)), peak_net_gpus=0, needed=needed,
    )
    for quota in quotas:
        quota.needed = needed
    if g == 0:
        msg = "{0} request no {1}: nothing to check, it fits".format(
            plural(request.replicas, "replica"), request.resource)
        return FitResult(True, msg, request, quotas, nodes, without, plan, None, eligible_free)
    upper = _end_state_bound(request, quotas, nodes, old)
    if request.replicas <= upper:
        raise GpuFitError(
            "replicas {0}: the GPU check plays the rollout of an existing Deployment pod by pod up to {1} pods, and "
            "this one has {0} (its current pods: {2}); its end state would fit {3}, but whether the rollout does is "
            "not computed: lower replicas to at most {1}".format(request.replicas, SIMULATED_PODS_LIMIT, len(old), upper)
        )
    msg = end_state_message(request, quotas, nodes, old_gpus, upper)
    return FitResult(False, msg, request, quotas, nodes, without, plan, upper, eligible_free)


def _max_replicas(
    request: FitRequest,
    simulate: Simulate,
    quotas: Sequence[QuotaReport],
    nodes: Sequence[NodeReport],
    old: Sequence[OldPod],
    fits_now: bool,
    starts_empty: bool,
) -> int:
    """The largest replica count whose rollout (same strategy) completes.

    Bounded by the end state (old pods gone): quota headroom plus the old
    pods' GPUs, and the slots of the eligible nodes once the old pods' GPUs are
    back. A new Deployment is created in one step, so that bound is the answer;
    otherwise it is found by bisection, assuming that if R replicas fit, fewer
    do too (percent fenceposts can break this in rare corner cases; the
    requested count itself is always classified exactly).
    """
    upper = _end_state_bound(request, quotas, nodes, old)
    if starts_empty:
        return upper
    upper = min(upper, SIMULATED_PODS_LIMIT)  # rollouts are played up to that size only

    def ok(replicas: int) -> bool:
        return simulate(replicas, request.strategy).completed

    if fits_now:
        low, high = request.replicas, max(upper, request.replicas)
    else:
        low, high = 0, min(upper, request.replicas - 1)
    if high <= low:
        return low
    if ok(high):  # the common case on a roomy cluster: one rollout played, not a dozen
        return high
    high -= 1
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _alternative(request: FitRequest, simulate: Simulate, plan: RolloutPlan) -> Optional[str]:
    """When only the surge breaks the fit: the strategy that would fit, as advice."""
    if not simulate(request.replicas, RolloutStrategy(type=RECREATE)).completed:
        return None  # even the end state does not fit: not a surge problem
    unavailable = max(1, plan.max_unavailable)
    no_surge = RolloutStrategy(type=ROLLING_UPDATE, max_surge=0, max_unavailable=unavailable)
    if simulate(request.replicas, no_surge).completed:
        return "maxSurge: 0 with maxUnavailable: {0}".format(unavailable)
    return "strategy Recreate (downtime: every old pod stops first)"
