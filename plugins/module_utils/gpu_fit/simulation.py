# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollout simulation: the Deployment, ReplicaSet and scheduler controllers, one sync ("wave") at a time."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.objects import (
    GpuFitError,
    KubeObject,
    deployment_template_spec,
    pod_request,
    pod_spec_request,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.scheduling import (
    Toleration,
    parse_tolerations,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import (
    condition_true,
    get_path,
    name as object_name,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.strategy import (
    DEFAULT_MAX_SURGE,
    DEFAULT_MAX_UNAVAILABLE,
    RECREATE,
    ROLLING_UPDATE,
    IntOrPercent,
    StrategyError,
    check_strategy,
    resolve_fenceposts,
    scaled_value as _scaled_value,
)


def scaled_value(value: IntOrPercent, total: int, round_up: bool, what: str = "value") -> int:
    """Kubernetes ``GetScaledValueFromIntOrPercent``: a percentage of ``total``, rounded up or down."""
    try:
        return _scaled_value(value, total, round_up, what)
    except StrategyError as exc:
        raise GpuFitError(str(exc)) from None


@dataclass(frozen=True)
class RolloutStrategy:
    """A Deployment strategy: ``RollingUpdate`` (with maxSurge/maxUnavailable) or ``Recreate``."""

    type: str = ROLLING_UPDATE
    max_surge: IntOrPercent = DEFAULT_MAX_SURGE
    max_unavailable: IntOrPercent = DEFAULT_MAX_UNAVAILABLE

    def __post_init__(self) -> None:
        try:
            check_strategy(self.type, self.max_surge, self.max_unavailable)
        except StrategyError as exc:
            raise GpuFitError(str(exc)) from None

    @classmethod
    def from_deployment(cls, deployment: KubeObject) -> "RolloutStrategy":
        """The strategy of a Deployment object (API defaults: RollingUpdate 25%/25%)."""
        strategy = get_path(deployment, "spec", "strategy") or {}
        kind = strategy.get("type") or ROLLING_UPDATE
        if kind == RECREATE:
            return cls(type=RECREATE)
        rolling = strategy.get("rollingUpdate") or {}
        surge = rolling.get("maxSurge")
        unavailable = rolling.get("maxUnavailable")
        return cls(
            type=kind,
            max_surge=DEFAULT_MAX_SURGE if surge is None else surge,
            max_unavailable=DEFAULT_MAX_UNAVAILABLE if unavailable is None else unavailable,
        )

    def resolve(self, replicas: int) -> Tuple[int, int]:
        """``(surge, unavailable)`` pods for ``replicas`` (see :func:`strategy.resolve_fenceposts`)."""
        return resolve_fenceposts(self.type, self.max_surge, self.max_unavailable, replicas)

    def describe(self) -> str:
        if self.type == RECREATE:
            return RECREATE
        return "RollingUpdate maxSurge {0}, maxUnavailable {1}".format(self.max_surge, self.max_unavailable)


OLD = "old"
NEW = "new"


def pod_is_ready(pod: KubeObject) -> bool:
    """Whether the pod's Ready condition is True (what makes it available, with minReadySeconds 0)."""
    return condition_true(pod, "Ready")


@dataclass(frozen=True)
class OldPod:
    """A current pod of the Deployment, replaced (and its GPUs freed) by the rollout."""

    name: str
    node: Optional[str]
    gpus: int
    created: str = ""
    ready: bool = True

    @classmethod
    def from_pod(cls, pod: KubeObject, resource: str) -> "OldPod":
        return cls(
            name=object_name(pod),
            node=get_path(pod, "spec", "nodeName"),
            gpus=pod_request(pod, resource),
            created=str(get_path(pod, "metadata", "creationTimestamp") or ""),
            ready=pod_is_ready(pod),
        )


@dataclass
class CurrentDeployment:
    """The existing Deployment the rollout starts from: its replica count and its pod template.

    The old pod template matters when the replica count changes: the
    Deployment controller first scales the old ReplicaSet to the new count
    (a "scaling event"), so old pods may be created before any new one.
    """

    replicas: int
    gpus_per_pod: int
    node_selector: Dict[str, str] = field(default_factory=dict)
    tolerations: List[Toleration] = field(default_factory=list)

    @classmethod
    def from_deployment(cls, deployment: KubeObject, resource: str) -> "CurrentDeployment":
        spec = deployment_template_spec(deployment)
        replicas = get_path(deployment, "spec", "replicas")
        return cls(
            replicas=1 if replicas is None else int(replicas),
            gpus_per_pod=pod_spec_request(spec, resource),
            node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
            tolerations=parse_tolerations(spec.get("tolerations")),
        )


@dataclass
class Wave:
    """One sync of the controllers: the ReplicaSets' sizes, then the pods removed, created (or refused) and placed."""

    index: int
    old_replicas: int
    new_replicas: int
    removed: int = 0
    created: int = 0
    refused: int = 0
    placed: int = 0
    pending: int = 0
    freed_gpus: int = 0
    new_gpus: int = 0
    net_gpus: int = 0
    pods: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "index": self.index,
            "old_replicas": self.old_replicas,
            "new_replicas": self.new_replicas,
            "removed": self.removed,
            "created": self.created,
            "refused": self.refused,
            "placed": self.placed,
            "pending": self.pending,
            "freed_gpus": self.freed_gpus,
            "new_gpus": self.new_gpus,
            "net_gpus": self.net_gpus,
            "pods": self.pods,
        }


@dataclass
class RolloutPlan:
    """The rollout as :func:`simulate_rollout` plays it, until it completes or nothing moves any more."""

    strategy: RolloutStrategy
    replicas: int
    max_surge: int
    max_unavailable: int
    old_pods: int
    old_gpus: int
    waves: List[Wave]
    completed: bool
    peak_pods: int
    peak_net_gpus: int
    new_created: int = 0
    new_pending: int = 0
    refused: int = 0
    stuck_wave: Optional[Wave] = None
    needed: Optional[int] = None

    @property
    def surge_pods(self) -> int:
        """Pods above both the desired and the starting count at the peak (the rollout's own surge)."""
        return max(0, self.peak_pods - max(self.replicas, self.old_pods))

    @property
    def node_failure(self) -> Optional[Wave]:
        """The wave that created the first new pod still waiting for a node when the rollout stopped."""
        return self.stuck_wave if (not self.completed and self.new_pending) else None


@dataclass
class _SimPod:
    rs: str
    gpus: int
    node: Optional[str]
    ready: bool
    order: int
    wave: int = 0
    never_ready: bool = False  # a current pod that is bound but not Ready (failing probes...) stays so


_ANY_NODE = ""  # where pods go when node capacity is not limited


class _Rollout:
    """The Deployment, ReplicaSet and scheduler controllers, one sync at a time (see :func:`simulate_rollout`)."""

    def __init__(
        self,
        replicas: int,
        gpus: int,
        strategy: RolloutStrategy,
        old_pods: Sequence[OldPod],
        free: Optional[Mapping[str, int]],
        headroom: Optional[int],
        current: Optional[CurrentDeployment],
        old_free: Optional[Mapping[str, int]],
    ) -> None:
        self.replicas = replicas
        self.gpus = gpus
        self.strategy = strategy
        surge, unavailable = strategy.resolve(replicas)
        self.surge = surge
        self.unavailable = min(unavailable, replicas)  # MaxUnavailable() caps it at the replica count
        self.limited = free is not None
        self.room: Dict[str, int] = {}
        if free is not None:
            self.room.update(old_free if old_free is not None else free)
            self.room.update(free)
        self.eligible = {NEW: set(free or ()), OLD: set(old_free if old_free is not None else (free or ()))}
        self.quota = headroom
        self.pods: List[_SimPod] = []
        for order, pod in enumerate(sorted(old_pods, key=lambda p: (p.created, p.name))):
            node = pod.node
            if node is not None and not self.limited:
                node = _ANY_NODE
            ready = pod.ready and node is not None
            self.pods.append(_SimPod(OLD, pod.gpus, node, ready, order, never_ready=node is not None and not ready))
        self.order = len(self.pods)
        self.old_spec = len(self.pods) if current is None else current.replicas
        if current is not None:
            self.old_gpus = current.gpus_per_pod
        else:
            self.old_gpus = max([p.gpus for p in old_pods] or [gpus])
        self.new_spec = 0
        self.new_exists = False
        self.first = True
        self.usage = 0
        self.peak_usage = 0
        self.peak_pods = len(self.pods)

    # -- the Deployment controller (pkg/controller/deployment)

    def _new_rs_replicas(self) -> int:
        """``NewRSNewReplicas``: scale the new ReplicaSet up to at most R + maxSurge pods in all."""
        max_total = self.replicas + self.surge
        current = self.old_spec + self.new_spec
        if current >= max_total:
            return self.new_spec
        return self.new_spec + min(max_total - current, self.replicas - self.new_spec)

    def count(self, rs: str, ready: Optional[bool] = None) -> int:
        """Pods of the old or new ReplicaSet (only the Ready ones, or only the others)."""
        return sum(1 for p in self.pods if p.rs == rs and (ready is None or p.ready == ready))

    def sync_deployment(self) -> None:
        """One ``syncDeployment``: the scaling event, or Recreate's or RollingUpdate's sizing of the ReplicaSets."""
        replicas = self.replicas
        if self.first:
            self.first = False
            if self.old_spec > 0 and self.old_spec != replicas:
                # isScalingEvent(): the only active ReplicaSet (the old one) takes the new count first.
                self.old_spec = replicas
                self.peak_pods = max(self.peak_pods, self.old_spec)
                return
        if self.strategy.type == RECREATE:
            if self.old_spec > 0:
                self.old_spec = 0
            elif not self.count(OLD):
                self.new_exists = True
                self.new_spec = replicas
            return
        scaled_up = False
        if not self.new_exists:
            self.new_exists = True  # created with its first size; the old ones are reconciled in the same sync
            self.new_spec = self._new_rs_replicas()
        elif self.new_spec < replicas:
            target = self._new_rs_replicas()
            scaled_up = target != self.new_spec
            self.new_spec = target
        self.peak_pods = max(self.peak_pods, self.old_spec + self.new_spec)
        if scaled_up or self.old_spec == 0:
            return
        # reconcileOldReplicaSets: unhealthy old pods first, then as many as availability allows.
        min_available = replicas - self.unavailable
        new_available = self.count(NEW, ready=True)
        old_available = self.count(OLD, ready=True)
        max_down = self.old_spec + self.new_spec - min_available - (self.new_spec - new_available)
        if max_down <= 0:
            return
        self.old_spec -= min(max_down, max(0, self.old_spec - old_available))
        available = old_available + new_available
        if available > min_available:
            self.old_spec -= min(self.old_spec, available - min_available)

    # -- the ReplicaSet controller, quota admission and the scheduler

    def _density(self) -> Dict[Optional[str], int]:
        density: Dict[Optional[str], int] = {}
        for pod in self.pods:
            density[pod.node] = density.get(pod.node, 0) + 1
        return density

    def sync_replicasets(self, wave: Wave) -> None:
        """Delete surplus pods (ranked like ``getPodsToDelete``), then create missing ones through the quota."""
        for rs, spec in ((OLD, self.old_spec), (NEW, self.new_spec)):
            mine = [p for p in self.pods if p.rs == rs]
            surplus = len(mine) - spec
            if surplus <= 0:
                continue
            density = self._density()
            # unscheduled < scheduled, not ready < ready, more of the Deployment's pods on the node first, newer first
            mine.sort(key=lambda p: (p.node is not None, p.ready, -density[p.node], -p.order))
            gone = mine[:surplus]
            gone_ids = set(id(p) for p in gone)
            self.pods = [p for p in self.pods if id(p) not in gone_ids]
            for pod in gone:
                wave.removed += 1
                wave.freed_gpus += pod.gpus
                self.usage -= pod.gpus
                if self.quota is not None:
                    self.quota += pod.gpus
                if pod.node is not None and pod.node in self.room:
                    self.room[pod.node] += pod.gpus
        for rs, spec, gpus in ((OLD, self.old_spec, self.old_gpus), (NEW, self.new_spec, self.gpus)):
            for _missing in range(spec - self.count(rs)):
                if self.quota is not None and gpus > self.quota:
                    wave.refused += 1  # "exceeded quota": retried at the next sync
                    continue
                if self.quota is not None:
                    self.quota -= gpus
                self.usage += gpus
                self.peak_usage = max(self.peak_usage, self.usage)
                self.pods.append(_SimPod(rs, gpus, None, False, self.order, wave.index))
                self.order += 1
                wave.created += 1
                wave.new_gpus += gpus
        self.peak_pods = max(self.peak_pods, len(self.pods))

    def schedule(self, wave: Wave) -> None:
        """Bind pending pods, oldest first; a node is chosen the way the default scheduler spreads them.

        Extended resources do not weigh in the default scoring; pod topology
        spreading does: the node with the fewest pods of the same ReplicaSet,
        then of the Deployment, wins (ties by name).
        """
        pending = [p for p in self.pods if p.node is None]
        if not pending:
            return
        if not self.limited:
            for pod in pending:
                pod.node = _ANY_NODE
                wave.placed += 1
            return
        for rs in (OLD, NEW):
            group = sorted((p for p in pending if p.rs == rs), key=lambda p: p.order)
            if not group:
                continue
            size = group[0].gpus
            same: Dict[str, int] = {}
            everyone: Dict[str, int] = {}
            for pod in self.pods:
                if pod.node is not None:
                    everyone[pod.node] = everyone.get(pod.node, 0) + 1
                    if pod.rs == rs:
                        same[pod.node] = same.get(pod.node, 0) + 1
            heap = [
                (same.get(name, 0), everyone.get(name, 0), name)
                for name in self.eligible[rs]
                if self.room.get(name, 0) >= size
            ]
            heapq.heapify(heap)
            for pod in group:
                if not heap:
                    break
                count_same, count_all, name = heapq.heappop(heap)
                pod.node = name
                self.room[name] -= size
                wave.placed += 1
                if self.room[name] >= size:
                    heapq.heappush(heap, (count_same + 1, count_all + 1, name))

    def done(self) -> bool:
        """The new ReplicaSet has all its pods bound and no old pod is left."""
        return (
            self.new_exists
            and self.new_spec == self.replicas
            and self.old_spec == 0
            and not self.count(OLD)
            and sum(1 for p in self.pods if p.rs == NEW and p.node is not None) == self.replicas
        )

    def state(self) -> Tuple[Any, ...]:
        """Everything a later wave depends on: equal states before and after a wave mean it is stuck."""
        return (
            self.old_spec,
            self.new_spec,
            self.new_exists,
            tuple(sorted((p.rs, p.order, p.node or "", p.ready) for p in self.pods)),
        )


def simulate_rollout(
    replicas: int,
    gpus_per_replica: int,
    strategy: RolloutStrategy,
    old_pods: Sequence[OldPod],
    free: Optional[Mapping[str, int]],
    headroom: Optional[int] = None,
    current: Optional[CurrentDeployment] = None,
    old_free: Optional[Mapping[str, int]] = None,
) -> RolloutPlan:
    """Play the rollout one controller sync ("wave") at a time, until it completes or stops moving.

    ``free``: free units per node eligible for the new pods (``None``: node
    capacity is not limited); ``old_free`` the same for the old pod template
    (default: the same nodes). ``headroom``: the tightest quota's ``hard -
    used`` (``None``: no quota). ``current``: the existing Deployment (its
    replica count and old template); by default the old pods themselves.

    Each wave: the Deployment controller syncs (the scaling event first when
    the replica count changes; then Recreate's scale-down/scale-up or
    RollingUpdate's ``reconcileNewReplicaSet``/``reconcileOldReplicaSets``,
    which count only Ready pods as available); the pods bound in the previous
    wave become Ready; the ReplicaSet controller deletes surplus pods and
    creates missing ones, each admitted only if the quota has room; the
    scheduler binds pending pods to nodes with room. A refused or pending pod
    is retried at every later wave, as the real controllers do. The rollout
    completes when the new ReplicaSet has all its pods bound and no old pod is
    left; it is stuck when a wave changes nothing.
    """
    if replicas < 0:
        raise GpuFitError("replicas must not be negative, got {0}".format(replicas))
    if gpus_per_replica < 0:
        raise GpuFitError("gpus_per_replica must not be negative, got {0}".format(gpus_per_replica))
    sim = _Rollout(replicas, gpus_per_replica, strategy, old_pods, free, headroom, current, old_free)
    waves: List[Wave] = []
    completed = sim.done()
    refused = 0
    limit = 8 * (replicas + len(old_pods) + sim.old_spec) + 16
    while not completed and len(waves) < limit:
        before = sim.state()
        sizes = (sim.old_spec, sim.new_spec)
        wave = Wave(index=len(waves) + 1, old_replicas=0, new_replicas=0)
        sim.sync_deployment()
        for pod in sim.pods:
            if pod.node is not None and not pod.never_ready:
                pod.ready = True
        sim.sync_replicasets(wave)
        sim.schedule(wave)
        wave.old_replicas, wave.new_replicas = sim.old_spec, sim.new_spec
        wave.net_gpus = sim.usage
        wave.pods = len(sim.pods)
        wave.pending = sum(1 for p in sim.pods if p.node is None)
        completed = sim.done()
        refused = wave.refused
        if sim.state() == before:
            break  # stuck: a wave that changes nothing changes nothing at the next one either
        if (wave.old_replicas, wave.new_replicas) != sizes or wave.removed or wave.created or wave.placed:
            waves.append(wave)  # waves in which pods only became Ready are not listed
    new_pending = [p for p in sim.pods if p.rs == NEW and p.node is None]
    stuck: Optional[Wave] = None
    if not completed and waves:
        first = min((p.wave for p in new_pending), default=0)
        stuck = next((w for w in waves if w.index == first), waves[-1])
    return RolloutPlan(
        strategy=strategy,
        replicas=replicas,
        max_surge=sim.surge,
        max_unavailable=sim.unavailable,
        old_pods=len(old_pods),
        old_gpus=sum(p.gpus for p in old_pods),
        waves=waves,
        completed=completed,
        peak_pods=sim.peak_pods,
        peak_net_gpus=sim.peak_usage,
        new_created=sim.count(NEW),
        new_pending=len(new_pending),
        refused=0 if completed else refused,
        stuck_wave=stuck,
    )
