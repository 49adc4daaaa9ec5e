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
    MAX_REPLICAS,
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
#: The most pods (desired or current) :func:`simulate_rollout` plays one by one.
SIMULATED_PODS_LIMIT = MAX_REPLICAS


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


@dataclass(eq=False)
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
    """The Deployment, ReplicaSet and scheduler controllers, one sync at a time (see :func:`simulate_rollout`).

    The pods are kept in indexes (pending pods in creation order, Ready pods
    per node, counters per ReplicaSet and per node) updated as pods come and
    go, and the scheduler's and the ReplicaSet controller's choices of a node
    come from heaps that are updated lazily (an entry that no longer matches
    the node's counters is skipped). A wave costs what it changes, times a
    logarithm: a rollout that replaces one pod per wave on a thousand nodes
    stays fast.
    """

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
        self.eligible = {NEW: sorted(free or ()), OLD: sorted(old_free if old_free is not None else (free or ()))}
        self.quota = headroom
        # indexes of the pods, per ReplicaSet
        self.total = {OLD: 0, NEW: 0}
        self.ready_count = {OLD: 0, NEW: 0}
        self.bound_count = {OLD: 0, NEW: 0}
        self.pending: Dict[str, List[_SimPod]] = {OLD: [], NEW: []}  # creation order
        self.unready: Dict[str, List[_SimPod]] = {OLD: [], NEW: []}  # bound, never Ready
        self.ready_at: Dict[str, Dict[str, List[_SimPod]]] = {OLD: {}, NEW: {}}  # per node, creation order
        self.fresh: List[_SimPod] = []  # bound since the last readiness step
        self.on_node: Dict[str, int] = {}  # bound pods per node, both ReplicaSets
        self.on_node_rs: Dict[str, Dict[str, int]] = {OLD: {}, NEW: {}}
        # lazy heaps: (same-ReplicaSet pods, all pods, node) where a pod may be bound, per ReplicaSet and pod size,
        # and (-pods on the node, -order of its newest Ready pod, node, 0) for the deletion ranking
        self.place_heap: Dict[str, List[Tuple[int, int, str]]] = {OLD: [], NEW: []}
        self.place_size: Dict[str, Optional[int]] = {OLD: None, NEW: None}
        self.eligible_set = {rs: set(names) for rs, names in self.eligible.items()}
        self.delete_heap: Dict[str, List[Tuple[int, int, str, int]]] = {OLD: [], NEW: []}
        self.order = 0
        for pod in sorted(old_pods, key=lambda p: (p.created, p.name)):
            node = pod.node
            if node is not None and not self.limited:
                node = _ANY_NODE
            ready = pod.ready and node is not None
            sim = _SimPod(OLD, pod.gpus, node, ready, self.order, never_ready=node is not None and not ready)
            self.order += 1
            self.total[OLD] += 1
            if node is None:
                self.pending[OLD].append(sim)
                continue
            self._bind(sim, node)
            if ready:
                self._mark_ready(sim)
            else:
                self.unready[OLD].append(sim)
        self.old_spec = self.total[OLD] if current is None else current.replicas
        if current is not None:
            self.old_gpus = current.gpus_per_pod
        else:
            self.old_gpus = max([p.gpus for p in old_pods] or [gpus])
        self.new_spec = 0
        self.new_exists = False
        self.first = True
        self.usage = 0
        self.peak_usage = 0
        self.peak_pods = self.total[OLD]

    # -- the indexes

    def _touch(self, node: str) -> None:
        """Push the node's current entries into the heaps (older entries for it become stale)."""
        count = self.on_node.get(node, 0)
        for rs in (OLD, NEW):
            size = self.place_size[rs]
            if size is not None and node in self.eligible_set[rs] and self.room.get(node, 0) >= size:
                heapq.heappush(self.place_heap[rs], (self.on_node_rs[rs].get(node, 0), count, node))
            ready = self.ready_at[rs].get(node)
            if ready:
                heapq.heappush(self.delete_heap[rs], (-count, -ready[-1].order, node, 0))

    def _bind(self, pod: _SimPod, node: str) -> None:
        pod.node = node
        self.bound_count[pod.rs] += 1
        self.on_node[node] = self.on_node.get(node, 0) + 1
        per_rs = self.on_node_rs[pod.rs]
        per_rs[node] = per_rs.get(node, 0) + 1
        self._touch(node)

    def _mark_ready(self, pod: _SimPod) -> None:
        pod.ready = True
        self.ready_count[pod.rs] += 1
        pods = self.ready_at[pod.rs].setdefault(str(pod.node), [])
        pods.append(pod)
        if len(pods) > 1 and pods[-2].order > pod.order:
            pods.sort(key=_by_order)  # a pod that waited Pending became Ready after a younger one
        self._touch(str(pod.node))

    def _forget(self, pod: _SimPod) -> None:
        """Take a deleted pod out of the indexes."""
        rs = pod.rs
        self.total[rs] -= 1
        if pod.node is None:
            _remove(self.pending[rs], pod)
            return
        self.bound_count[rs] -= 1
        self.on_node[pod.node] -= 1
        self.on_node_rs[rs][pod.node] -= 1
        if pod.ready:
            self.ready_count[rs] -= 1
            _remove(self.ready_at[rs][pod.node], pod)
        else:
            self.unready[rs].remove(pod)
        self._touch(pod.node)

    def pods(self) -> int:
        return self.total[OLD] + self.total[NEW]

    def pending_pods(self) -> int:
        return len(self.pending[OLD]) + len(self.pending[NEW])

    def make_ready(self) -> int:
        """Pods bound in the previous wave pass their readiness probe; how many did."""
        fresh, self.fresh = self.fresh, []
        for pod in fresh:
            self._mark_ready(pod)
        return len(fresh)

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
        if ready is None:
            return self.total[rs]
        return self.ready_count[rs] if ready else self.total[rs] - self.ready_count[rs]

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

    def _surplus(self, rs: str, surplus: int) -> List[_SimPod]:
        """The ``surplus`` pods ``getPodsToDelete`` ranks first.

        Unscheduled before scheduled, not Ready before Ready, more of the
        Deployment's pods on the node first (counted before any is deleted),
        newer first.
        """
        gone: List[_SimPod] = list(reversed(self.pending[rs][-surplus:]))
        if len(gone) < surplus:
            unready = sorted(self.unready[rs], key=lambda p: (-self.on_node.get(str(p.node), 0), -p.order))
            gone.extend(unready[:surplus - len(gone)])
        if len(gone) < surplus:
            gone.extend(self._newest_ready(rs, surplus - len(gone)))
        return gone

    def _delete_entry_valid(self, rs: str, entry: Tuple[int, int, str, int]) -> bool:
        ready = self.ready_at[rs].get(entry[2])
        return bool(ready) and entry[0] == -self.on_node.get(entry[2], 0) and entry[1] == -ready[-1].order

    def _newest_ready(self, rs: str, wanted: int) -> List[_SimPod]:
        """The ``wanted`` Ready pods ranked first: most pods on their node, then newest.

        The node counts are those before any of them is deleted. Entries for
        the nodes picked here are left popped: deleting the pods pushes new ones.
        """
        heap = self.delete_heap[rs]
        picked: List[Tuple[int, int, str, int]] = []  # the next pod of a node already picked from
        gone: List[_SimPod] = []
        seen = set()  # nodes picked from: their later pods come from ``picked``, duplicates in the heap are skipped
        while len(gone) < wanted:
            while heap and (heap[0][2] in seen or not self._delete_entry_valid(rs, heap[0])):
                heapq.heappop(heap)
            if heap and (not picked or heap[0][:2] < picked[0][:2]):
                density, _order, node, _index = heapq.heappop(heap)
                index = len(self.ready_at[rs][node]) - 1
            elif picked:
                density, _order, node, index = heapq.heappop(picked)
            else:
                break
            seen.add(node)
            pods = self.ready_at[rs][node]
            gone.append(pods[index])
            if index > 0:
                heapq.heappush(picked, (density, -pods[index - 1].order, node, index - 1))
        return gone

    def sync_replicasets(self, wave: Wave) -> None:
        """Delete surplus pods (ranked like ``getPodsToDelete``), then create missing ones through the quota."""
        for rs, spec in ((OLD, self.old_spec), (NEW, self.new_spec)):
            surplus = self.total[rs] - spec
            if surplus <= 0:
                continue
            for pod in self._surplus(rs, surplus):
                node = pod.node
                self._forget(pod)
                wave.removed += 1
                wave.freed_gpus += pod.gpus
                self.usage -= pod.gpus
                if self.quota is not None:
                    self.quota += pod.gpus
                if node is not None and node in self.room:
                    self.room[node] += pod.gpus
                    self._touch(node)
        for rs, spec, gpus in ((OLD, self.old_spec, self.old_gpus), (NEW, self.new_spec, self.gpus)):
            missing = spec - self.total[rs]
            if missing <= 0:
                continue
            # "exceeded quota": what the quota refuses is retried at the next sync
            admitted = missing if self.quota is None else min(missing, _fits_in(self.quota, gpus))
            wave.refused += missing - admitted
            if self.quota is not None:
                self.quota -= admitted * gpus
            for _new in range(admitted):
                self.pending[rs].append(_SimPod(rs, gpus, None, False, self.order, wave.index))
                self.order += 1
            self.total[rs] += admitted
            self.usage += admitted * gpus
            self.peak_usage = max(self.peak_usage, self.usage)
            wave.created += admitted
            wave.new_gpus += admitted * gpus
        self.peak_pods = max(self.peak_pods, self.pods())

    def schedule(self, wave: Wave) -> None:
        """Bind pending pods, oldest first; a node is chosen the way the default scheduler spreads them.

        Extended resources do not weigh in the default scoring; pod topology
        spreading does: the node with the fewest pods of the same ReplicaSet,
        then of the Deployment, wins (ties by name).
        """
        for rs in (OLD, NEW):
            group = self.pending[rs]
            if not group:
                continue
            placed = 0
            if not self.limited:
                for pod in group:
                    self._bind(pod, _ANY_NODE)
                    self.fresh.append(pod)
                placed = len(group)
            else:
                size = group[0].gpus
                heap = self.place_heap[rs]
                if size != self.place_size[rs]:
                    self.place_size[rs] = size
                    heap[:] = [
                        (self.on_node_rs[rs].get(name, 0), self.on_node.get(name, 0), name)
                        for name in self.eligible[rs]
                        if self.room.get(name, 0) >= size
                    ]
                    heapq.heapify(heap)
                for pod in group:
                    while heap and not self._place_entry_valid(rs, heap[0], size):
                        heapq.heappop(heap)
                    if not heap:
                        break
                    name = heapq.heappop(heap)[2]
                    self.room[name] -= size
                    self._bind(pod, name)
                    self.fresh.append(pod)
                    placed += 1
            wave.placed += placed
            self.pending[rs] = group[placed:]

    def _place_entry_valid(self, rs: str, entry: Tuple[int, int, str], size: int) -> bool:
        same, count, name = entry
        return (
            self.room.get(name, 0) >= size
            and same == self.on_node_rs[rs].get(name, 0)
            and count == self.on_node.get(name, 0)
        )

    def done(self) -> bool:
        """The new ReplicaSet has all its pods bound and no old pod is left."""
        return (
            self.new_exists
            and self.new_spec == self.replicas
            and self.old_spec == 0
            and not self.total[OLD]
            and self.bound_count[NEW] == self.replicas
        )


def _remove(pods: List[_SimPod], pod: _SimPod) -> None:
    """Remove ``pod`` (by identity); deletions take the newest, usually the last."""
    if pods and pods[-1] is pod:
        pods.pop()
    else:
        pods.remove(pod)


def _by_order(pod: _SimPod) -> int:
    return pod.order


def _fits_in(room: int, size: int) -> int:
    """How many pods of ``size`` a quota with ``room`` left admits one by one."""
    if size <= 0:
        return 0 if room < 0 else 10**18
    return max(room, 0) // size


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
        before = (sim.old_spec, sim.new_spec, sim.new_exists)
        sizes = (sim.old_spec, sim.new_spec)
        wave = Wave(index=len(waves) + 1, old_replicas=0, new_replicas=0)
        sim.sync_deployment()
        became_ready = sim.make_ready()
        sim.sync_replicasets(wave)
        sim.schedule(wave)
        wave.old_replicas, wave.new_replicas = sim.old_spec, sim.new_spec
        wave.net_gpus = sim.usage
        wave.pods = sim.pods()
        wave.pending = sim.pending_pods()
        completed = sim.done()
        refused = wave.refused
        moved = wave.removed or wave.created or wave.placed
        if not moved and not became_ready and (sim.old_spec, sim.new_spec, sim.new_exists) == before:
            break  # stuck: a wave that changes nothing changes nothing at the next one either
        if (wave.old_replicas, wave.new_replicas) != sizes or moved:
            waves.append(wave)  # waves in which pods only became Ready are not listed
    new_pending = sim.pending[NEW]
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


def first_rollout(
    replicas: int,
    gpus_per_replica: int,
    strategy: RolloutStrategy,
    free: Optional[Mapping[str, int]],
    headroom: Optional[int] = None,
) -> RolloutPlan:
    """The rollout of a Deployment that has no pod yet, computed rather than played: the same plan, at any size.

    Its first sync sizes the new ReplicaSet at ``replicas`` (no old pod to
    keep available, so neither strategy holds anything back); the quota
    admits ``headroom // g`` pods of ``g`` one by one; the scheduler binds
    ``sum(free_i // g)`` of them, one node per pod. Nothing is freed later,
    so a second sync would change nothing: it completes in that one wave or
    never.
    """
    if replicas < 0:
        raise GpuFitError("replicas must not be negative, got {0}".format(replicas))
    if gpus_per_replica < 0:
        raise GpuFitError("gpus_per_replica must not be negative, got {0}".format(gpus_per_replica))
    surge, unavailable = strategy.resolve(replicas)
    g = gpus_per_replica
    created = replicas if headroom is None else min(replicas, _fits_in(headroom, g))
    if free is None:
        placed = created
    elif g == 0:
        placed = created if free else 0
    else:
        placed = min(created, sum(max(room, 0) // g for room in free.values()))
    completed = placed == replicas
    waves: List[Wave] = []
    if replicas:
        waves.append(Wave(
            index=1, old_replicas=0, new_replicas=replicas, created=created, refused=replicas - created,
            placed=placed, pending=created - placed, new_gpus=created * g, net_gpus=created * g, pods=created,
        ))
    return RolloutPlan(
        strategy=strategy,
        replicas=replicas,
        max_surge=surge,
        max_unavailable=min(unavailable, replicas),
        old_pods=0,
        old_gpus=0,
        waves=waves,
        completed=completed,
        # Recreate sizes the ReplicaSet and counts its pods; RollingUpdate also counts the ReplicaSet's size
        peak_pods=created if strategy.type == RECREATE else max(replicas, created),
        peak_net_gpus=created * g,
        new_created=created,
        new_pending=created - placed,
        refused=0 if completed else replicas - created,
        stuck_wave=None if completed or not waves else waves[0],
    )
