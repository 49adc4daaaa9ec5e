# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure GPU capacity fit logic for the ``gpu_capacity_check`` module.

Nothing here talks to a cluster or to Ansible: every function takes Kubernetes
objects as plain dicts and returns plain values or dataclasses, so the whole
computation is unit tested without either.

Object form
    Every object is the **JSON form with camelCase keys**, exactly what
    ``kubectl get -o json`` prints and what the dynamic client's
    ``ResourceInstance.to_dict()`` returns (``spec.nodeName``,
    ``status.allocatable``, ``metadata.deletionTimestamp``...). The
    snake_case form of the typed client's ``to_dict()`` is *not* accepted.

The reasoning (quota, nodes, rollout peak) is described in
``docs/gpu_capacity_check.md``; :func:`check_fit` is the entry point.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.quantity import QuantityError, parse_quantity as _parse_quantity

DEFAULT_RESOURCE = "nvidia.com/gpu"
ROLLING_UPDATE = "RollingUpdate"
RECREATE = "Recreate"
DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
# Quota scopes a Deployment's pods never match: they have no
# activeDeadlineSeconds (Terminating), and a BestEffort-scoped quota can only
# track the ``pods`` count, never an extended resource.
_NON_MATCHING_SCOPES = frozenset(["Terminating", "BestEffort"])
# How many nodes a message names before it says "and N more".
_MSG_NODES = 4

IntOrPercent = Union[int, str]
KubeObject = Mapping[str, Any]


class GpuFitError(ValueError):
    """Input that cannot be checked: a malformed quantity, strategy or toleration."""


# --------------------------------------------------------------------------- quantities

def parse_quantity(value: Union[str, int, float]) -> Fraction:
    """Parse a Kubernetes resource quantity (``"4"``, ``"500m"``, ``"2Gi"``, ``"1e3"``)."""
    try:
        return _parse_quantity(value)
    except QuantityError:
        raise GpuFitError("invalid quantity {0!r}".format(value)) from None


def parse_count(value: Union[str, int, float, None], what: str = "quantity") -> int:
    """Parse a whole-number quantity such as a GPU count; ``None`` is 0.

    Extended resources (``nvidia.com/gpu``, MIG profiles...) can only be
    requested in whole units, so a fractional value is an error.
    """
    if value is None:
        return 0
    quantity = parse_quantity(value)
    if quantity.denominator != 1:
        raise GpuFitError("{0} {1!r} is not a whole number".format(what, value))
    return int(quantity)


# --------------------------------------------------------------------------- small helpers


def _get(obj: Optional[KubeObject], *path: str) -> Any:
    """``obj[path[0]][path[1]]...``; ``None`` as soon as a level is missing or null."""
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
        if cur is None:
            return None
    return cur


def _name(obj: KubeObject) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _plural(count: int, word: str) -> str:
    return "{0} {1}{2}".format(count, word, "" if count == 1 else "s")


def _list_names(items: Sequence[str], limit: int = _MSG_NODES) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += " and {0} more".format(len(items) - limit)
    return shown


# --------------------------------------------------------------------------- pods


def container_request(container: KubeObject, resource: str) -> int:
    """A container's request for ``resource``; its limit when no request is set.

    The API server defaults an extended resource's request to its limit (the
    two must be equal), so the limit is what the scheduler counts.
    """
    requests = _get(container, "resources", "requests") or {}
    if resource in requests:
        return parse_count(requests[resource], resource)
    limits = _get(container, "resources", "limits") or {}
    return parse_count(limits.get(resource), resource)


def pod_spec_request(spec: Optional[KubeObject], resource: str) -> int:
    """Effective request of a pod spec, computed the way the scheduler does.

    ``max(sum(containers) + sum(sidecars), max over init containers)`` where an
    init container also counts the sidecars (``restartPolicy: Always`` init
    containers) started before it, plus ``spec.overhead``.
    """
    if not spec:
        return 0
    total = sum(container_request(c, resource) for c in spec.get("containers") or [])
    sidecars = 0
    init_peak = 0
    for init in spec.get("initContainers") or []:
        request = container_request(init, resource)
        if init.get("restartPolicy") == "Always":
            total += request
            sidecars += request
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, request + sidecars)
    overhead = parse_count((spec.get("overhead") or {}).get(resource), resource)
    return max(total, init_peak) + overhead


def pod_request(pod: KubeObject, resource: str) -> int:
    """Effective request of a pod for ``resource`` (see :func:`pod_spec_request`)."""
    return pod_spec_request(pod.get("spec"), resource)


def pod_is_terminated(pod: KubeObject) -> bool:
    """True for pods in phase Succeeded or Failed: they hold no resources."""
    return _get(pod, "status", "phase") in ("Succeeded", "Failed")


def pod_is_terminating(pod: KubeObject) -> bool:
    """True once the pod has a deletionTimestamp (it still holds its resources)."""
    return bool(_get(pod, "metadata", "deletionTimestamp"))


# --------------------------------------------------------------------------- tolerations


@dataclass(frozen=True)
class Toleration:
    """A pod toleration (``key``, ``operator``, ``value``, ``effect``)."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    @classmethod
    def from_dict(cls, data: KubeObject) -> "Toleration":
        """Build and validate a toleration from its camelCase/API dict form."""
        if not isinstance(data, Mapping):
            raise GpuFitError("a toleration must be a dict, got {0!r}".format(data))
        key = str(data.get("key") or "")
        operator = str(data.get("operator") or "Equal")
        value = str(data.get("value") or "")
        effect = str(data.get("effect") or "")
        if operator not in ("Equal", "Exists"):
            raise GpuFitError("toleration {0!r}: operator must be Equal or Exists, got {1!r}".format(key, operator))
        if operator == "Exists" and value:
            raise GpuFitError("toleration {0!r}: operator Exists takes no value (got {1!r})".format(key, value))
        if not key and operator != "Exists":
            raise GpuFitError("a toleration with an empty key needs operator Exists")
        if effect not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise GpuFitError(
                "toleration {0!r}: effect must be NoSchedule, PreferNoSchedule or NoExecute, "
                "got {1!r}".format(key, effect)
            )
        return cls(key=key, operator=operator, value=value, effect=effect)

    def tolerates(self, taint: KubeObject) -> bool:
        """Whether this toleration tolerates ``taint`` (Kubernetes ``ToleratesTaint``)."""
        if self.effect and self.effect != taint.get("effect"):
            return False
        if self.key and self.key != taint.get("key"):
            return False
        if self.operator == "Exists":
            return True
        return self.value == str(taint.get("value") or "")


def parse_tolerations(items: Optional[Iterable[KubeObject]]) -> List[Toleration]:
    """Tolerations from their dict form; ``None`` is no toleration."""
    return [Toleration.from_dict(item) for item in items or []]


def untolerated_taint(
    taints: Optional[Iterable[KubeObject]], tolerations: Sequence[Toleration]
) -> Optional[KubeObject]:
    """The first NoSchedule/NoExecute taint no toleration tolerates (PreferNoSchedule is a preference)."""
    for taint in taints or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tol.tolerates(taint) for tol in tolerations):
            return taint
    return None


def _taint_text(taint: KubeObject) -> str:
    value = taint.get("value")
    return "{0}{1}:{2}".format(taint.get("key"), "=" + str(value) if value else "", taint.get("effect"))


# --------------------------------------------------------------------------- rollout strategy


def _parse_int_or_percent(value: IntOrPercent, what: str) -> Tuple[int, bool]:
    """``(number, is_percent)`` from ``3``, ``"3"`` or ``"25%"``."""
    if isinstance(value, bool):
        raise GpuFitError("{0} must be an integer or a percentage like '25%', got {1!r}".format(what, value))
    if isinstance(value, int):
        number, percent = value, False
    else:
        text = str(value).strip()
        percent = text.endswith("%")
        digits = text[:-1] if percent else text
        if not re.match(r"^[0-9]+$", digits):
            raise GpuFitError(
                "{0} must be a non-negative integer or a percentage like '25%', got {1!r}".format(what, value)
            )
        number = int(digits)
    if number < 0:
        raise GpuFitError("{0} must not be negative, got {1!r}".format(what, value))
    return number, percent


def scaled_value(value: IntOrPercent, total: int, round_up: bool, what: str = "value") -> int:
    """Kubernetes ``GetScaledValueFromIntOrPercent``: a percentage of ``total``, rounded up or down."""
    number, percent = _parse_int_or_percent(value, what)
    if not percent:
        return number
    scaled = Decimal(number) * Decimal(total) / Decimal(100)
    return int(math.ceil(scaled)) if round_up else int(math.floor(scaled))


@dataclass(frozen=True)
class RolloutStrategy:
    """A Deployment strategy: ``RollingUpdate`` (with maxSurge/maxUnavailable) or ``Recreate``."""

    type: str = ROLLING_UPDATE
    max_surge: IntOrPercent = DEFAULT_MAX_SURGE
    max_unavailable: IntOrPercent = DEFAULT_MAX_UNAVAILABLE

    def __post_init__(self) -> None:
        if self.type not in (ROLLING_UPDATE, RECREATE):
            raise GpuFitError("strategy must be RollingUpdate or Recreate, got {0!r}".format(self.type))
        if self.type == RECREATE:
            return
        surge, _percent = _parse_int_or_percent(self.max_surge, "max_surge")
        unavailable, unavailable_percent = _parse_int_or_percent(self.max_unavailable, "max_unavailable")
        if unavailable_percent and unavailable > 100:
            raise GpuFitError("max_unavailable must not exceed 100%, got {0!r}".format(self.max_unavailable))
        if surge == 0 and unavailable == 0:
            raise GpuFitError("max_surge and max_unavailable cannot both be 0: the rollout could never make progress")

    @classmethod
    def from_deployment(cls, deployment: KubeObject) -> "RolloutStrategy":
        """The strategy of a Deployment object (API defaults: RollingUpdate 25%/25%)."""
        strategy = _get(deployment, "spec", "strategy") or {}
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
        """``(surge, unavailable)`` pods for ``replicas`` (Kubernetes ``ResolveFenceposts``).

        maxSurge rounds up, maxUnavailable rounds down; when both resolve to 0
        (a percentage rounded down) Kubernetes uses maxUnavailable 1. Recreate
        resolves to ``(0, replicas)``: every old pod goes before a new one starts.
        """
        if self.type == RECREATE:
            return 0, replicas
        surge = scaled_value(self.max_surge, replicas, True, "max_surge")
        unavailable = scaled_value(self.max_unavailable, replicas, False, "max_unavailable")
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    def describe(self) -> str:
        if self.type == RECREATE:
            return RECREATE
        return "RollingUpdate maxSurge {0}, maxUnavailable {1}".format(self.max_surge, self.max_unavailable)


# --------------------------------------------------------------------------- Deployment helpers


def label_selector_string(selector: Optional[KubeObject]) -> str:
    """A LabelSelector (matchLabels/matchExpressions) as a list-call ``labelSelector`` string."""
    parts: List[str] = []
    for key, value in sorted(((selector or {}).get("matchLabels") or {}).items()):
        parts.append("{0}={1}".format(key, value))
    for expr in (selector or {}).get("matchExpressions") or []:
        key, operator = expr.get("key"), expr.get("operator")
        values = ",".join(expr.get("values") or [])
        if operator == "In":
            parts.append("{0} in ({1})".format(key, values))
        elif operator == "NotIn":
            parts.append("{0} notin ({1})".format(key, values))
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append("!{0}".format(key))
        else:
            raise GpuFitError("unknown label selector operator {0!r}".format(operator))
    return ",".join(parts)


def _owned_by(obj: KubeObject, uids: Iterable[str]) -> bool:
    wanted = set(uids)
    return any(ref.get("uid") in wanted for ref in _get(obj, "metadata", "ownerReferences") or [])


def deployment_pods(
    deployment: KubeObject, replicasets: Iterable[KubeObject], pods: Iterable[KubeObject]
) -> List[KubeObject]:
    """The Deployment's current pods: owned by one of its ReplicaSets, neither terminated nor terminating.

    Ownership is followed through ``metadata.ownerReferences`` (Deployment ->
    ReplicaSet -> Pod), as the controllers do; pods that merely match the
    selector are not the Deployment's.
    """
    dep_uid = _get(deployment, "metadata", "uid")
    rs_uids = [_get(rs, "metadata", "uid") for rs in replicasets if dep_uid and _owned_by(rs, [dep_uid])]
    return [
        pod
        for pod in pods
        if _owned_by(pod, [uid for uid in rs_uids if uid])
        and not pod_is_terminated(pod)
        and not pod_is_terminating(pod)
    ]


def deployment_template_spec(deployment: Optional[KubeObject]) -> KubeObject:
    """``spec.template.spec`` of a Deployment ({} when absent)."""
    return _get(deployment, "spec", "template", "spec") or {}


# --------------------------------------------------------------------------- nodes


@dataclass
class NodeReport:
    """One node that advertises the resource, as the check sees it."""

    name: str
    allocatable: int
    requested: int
    free: int
    eligible: bool
    reason: Optional[str] = None
    deployment_gpus: int = 0

    def to_dict(self, gpus_per_replica: int) -> Dict[str, Any]:
        return {
            "name": self.name,
            "allocatable": self.allocatable,
            "requested": self.requested,
            "free": self.free,
            "eligible": self.eligible,
            "reason": self.reason,
            "deployment_gpus": self.deployment_gpus,
            "replica_slots": (max(self.free, 0) // gpus_per_replica) if (self.eligible and gpus_per_replica > 0) else 0,
        }


def node_is_ready(node: KubeObject) -> bool:
    """Whether the node's Ready condition is True."""
    for condition in _get(node, "status", "conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def node_ineligibility(
    node: KubeObject, node_selector: Mapping[str, str], tolerations: Sequence[Toleration]
) -> Optional[str]:
    """Why a new replica cannot be scheduled on ``node``; ``None`` when it can.

    Checks, in order: Ready condition, cordon (``spec.unschedulable``, unless
    the pod tolerates the ``node.kubernetes.io/unschedulable`` taint like the
    scheduler's NodeUnschedulable plugin allows), node selector, NoSchedule and
    NoExecute taints.
    """
    if not node_is_ready(node):
        return "NotReady"
    if _get(node, "spec", "unschedulable"):
        cordon = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
        if not any(tol.tolerates(cordon) for tol in tolerations):
            return "cordoned (spec.unschedulable)"
    labels = _get(node, "metadata", "labels") or {}
    for key, value in sorted(node_selector.items()):
        if labels.get(key) != str(value):
            return "node selector {0}={1} does not match".format(key, value)
    taint = untolerated_taint(_get(node, "spec", "taints"), tolerations)
    if taint is not None:
        return "untolerated taint {0}".format(_taint_text(taint))
    return None


def evaluate_nodes(
    nodes: Iterable[KubeObject],
    pods: Iterable[KubeObject],
    resource: str,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Toleration],
    old_pods: Sequence["OldPod"] = (),
) -> Tuple[List[NodeReport], int]:
    """Per-node allocatable/requested/free for ``resource`` and eligibility.

    ``requested`` sums the effective requests of the non-terminated pods
    (phase not Succeeded/Failed, terminating ones included: they still hold
    their devices) bound to the node. Only nodes that advertise the resource
    (allocatable > 0) are reported; the second value counts the others.
    """
    requested: Dict[str, int] = {}
    for pod in pods:
        node_name = _get(pod, "spec", "nodeName")
        if not node_name or pod_is_terminated(pod):
            continue
        requested[node_name] = requested.get(node_name, 0) + pod_request(pod, resource)
    held: Dict[str, int] = {}
    for old in old_pods:
        if old.node:
            held[old.node] = held.get(old.node, 0) + old.gpus
    reports: List[NodeReport] = []
    without = 0
    for node in nodes:
        allocatable = parse_count((_get(node, "status", "allocatable") or {}).get(resource), resource)
        if allocatable <= 0:
            without += 1
            continue
        name = _name(node)
        used = requested.get(name, 0)
        reason = node_ineligibility(node, node_selector, tolerations)
        reports.append(
            NodeReport(
                name=name,
                allocatable=allocatable,
                requested=used,
                free=allocatable - used,
                eligible=reason is None,
                reason=reason,
                deployment_gpus=held.get(name, 0),
            )
        )
    reports.sort(key=lambda r: r.name)
    return reports, without


def replica_slots(free: Iterable[int], gpus_per_replica: int) -> int:
    """How many equal replicas fit: ``sum(free_i // gpus_per_replica)``.

    Each replica must fit on one node. For equal items this count is exact
    (first-fit decreasing finds the same number).
    """
    if gpus_per_replica <= 0:
        raise GpuFitError("gpus_per_replica must be positive to count slots")
    return sum(max(f, 0) // gpus_per_replica for f in free)


# --------------------------------------------------------------------------- quotas


@dataclass
class QuotaReport:
    """One ResourceQuota of the namespace with a hard limit on the resource."""

    name: str
    key: str
    hard: int
    used: int
    applies: bool
    scopes: List[str] = field(default_factory=list)
    note: Optional[str] = None
    needed: int = 0

    @property
    def headroom(self) -> int:
        return self.hard - self.used

    @property
    def fits(self) -> bool:
        return (not self.applies) or self.needed <= self.headroom

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "hard": self.hard,
            "used": self.used,
            "headroom": self.headroom,
            "needed": self.needed if self.applies else 0,
            "fits": self.fits,
            "applies": self.applies,
            "scopes": list(self.scopes),
            "note": self.note,
        }


def _quota_scopes(quota: KubeObject) -> List[str]:
    scopes = [str(s) for s in _get(quota, "spec", "scopes") or []]
    for expr in _get(quota, "spec", "scopeSelector", "matchExpressions") or []:
        scopes.append(str(expr.get("scopeName")))
    return scopes


def evaluate_quotas(quotas: Iterable[KubeObject], resource: str) -> List[QuotaReport]:
    """The quotas that name ``resource``.

    Only ``requests.<resource>`` is enforced for an extended resource: the
    quota system tracks extended resources only under ``requests.``. A
    ``limits.<resource>`` or bare ``<resource>`` entry is accepted by the API
    but never counted, so it is reported with ``applies: false`` and a note.
    A quota whose scopes a Deployment's pods never match (Terminating,
    BestEffort) does not apply; other scopes (NotTerminating, NotBestEffort,
    PriorityClass...) are assumed to match, which is the safe side.
    """
    reports: List[QuotaReport] = []
    enforced = "requests." + resource
    for quota in quotas:
        hard = _get(quota, "spec", "hard") or {}
        used = _get(quota, "status", "used") or {}
        scopes = _quota_scopes(quota)
        for key in (enforced, "limits." + resource, resource):
            if key not in hard:
                continue
            note = None
            applies = True
            if key != enforced:
                applies = False
                note = "{0} is not enforced for extended resources: Kubernetes only counts {1}".format(key, enforced)
            elif _NON_MATCHING_SCOPES.intersection(scopes):
                applies = False
                note = "scope {0} never matches a Deployment's GPU pods".format(
                    ",".join(sorted(_NON_MATCHING_SCOPES.intersection(scopes)))
                )
            reports.append(
                QuotaReport(
                    name=_name(quota),
                    key=key,
                    hard=parse_count(hard[key], key),
                    used=parse_count(used.get(key), key),
                    applies=applies,
                    scopes=scopes,
                    note=note,
                )
            )
    reports.sort(key=lambda q: (q.name, q.key))
    return reports


# --------------------------------------------------------------------------- rollout simulation


@dataclass(frozen=True)
class OldPod:
    """A current pod of the Deployment, replaced (and its GPUs freed) by the rollout."""

    name: str
    node: Optional[str]
    gpus: int
    created: str = ""

    @classmethod
    def from_pod(cls, pod: KubeObject, resource: str) -> "OldPod":
        return cls(
            name=_name(pod),
            node=_get(pod, "spec", "nodeName"),
            gpus=pod_request(pod, resource),
            created=str(_get(pod, "metadata", "creationTimestamp") or ""),
        )


@dataclass
class Wave:
    """One step of the rollout: old pods removed and new pods created before the new ones are Ready."""

    index: int
    removed: int
    created: int
    freed_gpus: int
    new_gpus: int
    net_gpus: int
    pods: int
    placed: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "index": self.index,
            "removed": self.removed,
            "created": self.created,
            "freed_gpus": self.freed_gpus,
            "new_gpus": self.new_gpus,
            "net_gpus": self.net_gpus,
            "pods": self.pods,
            "placed": self.placed,
        }


@dataclass
class RolloutPlan:
    """The rollout's waves and its peak as :func:`simulate_rollout` models them."""

    strategy: RolloutStrategy
    replicas: int
    max_surge: int
    max_unavailable: int
    old_pods: int
    old_gpus: int
    waves: List[Wave]
    peak_net_gpus: int
    peak_pods: int
    node_failure: Optional[Wave] = None

    @property
    def surge_pods(self) -> int:
        """Pods above both the desired and the starting count at the peak (the rollout's own surge)."""
        return max(0, self.peak_pods - max(self.replicas, self.old_pods))

    def quota_fits(self, quotas: Sequence[QuotaReport]) -> bool:
        return all(self.peak_net_gpus <= q.headroom for q in quotas if q.applies)

    def fits(self, quotas: Sequence[QuotaReport]) -> bool:
        return self.node_failure is None and self.quota_fits(quotas)


def _wave_sizes(replicas: int, old: int, new: int, surge: int, unavailable: int) -> Tuple[int, int]:
    """``(created, removed)`` by one sync of the Deployment controller (all new pods Ready).

    Scale up: ``min(R - new, R + S - (new + old))``. Scale down, while the pods
    just created are not yet Ready: ``allPods - (R - U) - newUnavailable``
    which simplifies to ``new + old - (R - U)``.
    """
    created = max(0, min(replicas - new, replicas + surge - (new + old)))
    removed = max(0, min(old, new + old - (replicas - unavailable)))
    return created, removed


def simulate_rollout(
    replicas: int,
    gpus_per_replica: int,
    strategy: RolloutStrategy,
    old_pods: Sequence[OldPod],
    free: Mapping[str, int],
) -> RolloutPlan:
    """Step the rollout wave by wave and check that every new pod finds GPUs.

    ``free`` maps each *eligible* node to its free GPUs now (old pods still
    counted as requested). Each wave the controller removes old pods and
    creates new ones (RollingUpdate: see :func:`_wave_sizes`; Recreate: remove
    all, then create all); removed pods free their GPUs (on their node, if it
    is eligible), then the new pods are placed best-fit, one node each. The
    net GPU need (created minus freed, cumulative) at its peak is what the
    quota must have free. Placement stops at the first wave whose pods do not
    all fit (``node_failure``); the waves go on for the quota arithmetic.
    """
    if replicas < 0:
        raise GpuFitError("replicas must not be negative, got {0}".format(replicas))
    if gpus_per_replica < 0:
        raise GpuFitError("gpus_per_replica must not be negative, got {0}".format(gpus_per_replica))
    surge, unavailable = strategy.resolve(replicas)
    # Old pods per node (None: not scheduled), oldest first so pop() takes the newest.
    old_on: Dict[Optional[str], List[OldPod]] = {}
    for pod in sorted(old_pods, key=lambda p: (p.created, p.name)):
        old_on.setdefault(pod.node, []).append(pod)
    remaining = len(old_pods)
    node_free = dict(free)
    new_on: Dict[str, int] = {}
    waves: List[Wave] = []
    new = 0
    net = 0
    peak_net = 0
    peak_pods = remaining
    failure: Optional[Wave] = None
    while new < replicas or remaining:
        if strategy.type == RECREATE:
            created, removed = (0, remaining) if remaining else (replicas - new, 0)
        else:
            created, removed = _wave_sizes(replicas, remaining, new, surge, unavailable)
        if created == 0 and removed == 0:  # cannot happen with valid fenceposts; guards the loop
            break
        peak_pods = max(peak_pods, new + created + remaining)
        gone = _remove_old(old_on, new_on, removed)
        remaining -= removed
        freed = sum(p.gpus for p in gone)
        for pod in gone:
            if pod.node in node_free:
                node_free[pod.node] += pod.gpus
        net += created * gpus_per_replica - freed
        peak_net = max(peak_net, net)
        wave = Wave(
            index=len(waves) + 1,
            removed=removed,
            created=created,
            freed_gpus=freed,
            new_gpus=created * gpus_per_replica,
            net_gpus=net,
            pods=new + created + remaining,
        )
        if failure is None:
            wave.placed = _place(created, gpus_per_replica, node_free, new_on)
            if wave.placed < created:
                failure = wave
        waves.append(wave)
        new += created
    return RolloutPlan(
        strategy=strategy,
        replicas=replicas,
        max_surge=surge,
        max_unavailable=unavailable,
        old_pods=len(old_pods),
        old_gpus=sum(p.gpus for p in old_pods),
        waves=waves,
        peak_net_gpus=peak_net,
        peak_pods=peak_pods,
        node_failure=failure,
    )


def _remove_old(old_on: Dict[Optional[str], List[OldPod]], new_on: Mapping[str, int], count: int) -> List[OldPod]:
    """Take ``count`` old pods the way the ReplicaSet controller ranks them for deletion.

    Unscheduled pods first, then pods on the nodes where the Deployment has the
    most pods (old and new), newest first on a node. Ranks are computed once
    per scale-down, like the controller does.
    """
    if count <= 0:
        return []
    density = {node: len(pods) + new_on.get(node or "", 0) for node, pods in old_on.items() if pods}
    order = sorted(density, key=lambda node: (node is not None, -density[node], node or ""))
    gone: List[OldPod] = []
    for node in order:
        pods = old_on[node]
        while pods and len(gone) < count:
            gone.append(pods.pop())
        if len(gone) >= count:
            break
    return gone


def _place(count: int, size: int, node_free: Dict[str, int], new_on: Dict[str, int]) -> int:
    """Place ``count`` pods of ``size`` GPUs best-fit (the fullest node that still fits); how many fit."""
    if size <= 0:
        return count
    placed = 0
    for _index in range(count):
        best: Optional[str] = None
        for name, room in node_free.items():
            if room < size:
                continue
            if best is None or room < node_free[best] or (room == node_free[best] and name < best):
                best = name
        if best is None:
            break
        node_free[best] -= size
        new_on[best] = new_on.get(best, 0) + 1
        placed += 1
    return placed


# --------------------------------------------------------------------------- the check


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
                "needed": self.plan.peak_net_gpus,
                "waves": [w.to_dict() for w in self.plan.waves],
                "alternative": self.alternative,
            },
        }


def check_fit(
    request: FitRequest,
    nodes: Iterable[KubeObject],
    pods: Iterable[KubeObject],
    quotas: Iterable[KubeObject],
    current_pods: Iterable[KubeObject] = (),
) -> FitResult:
    """Check whether the Deployment described by ``request`` fits, rollout included.

    ``nodes``: all Node objects. ``pods``: the non-terminated pods of the
    cluster (all namespaces; terminated ones are skipped anyway). ``quotas``:
    the ResourceQuotas of ``request.namespace``. ``current_pods``: the pods of
    the existing Deployment that the rollout replaces (see
    :func:`deployment_pods`); empty for a new Deployment. These are also in
    ``pods`` and in the quotas' ``used``.
    """
    resource = request.resource
    old = [OldPod.from_pod(p, resource) for p in current_pods if not pod_is_terminated(p) and not pod_is_terminating(p)]
    node_reports, without = evaluate_nodes(nodes, list(pods), resource, request.node_selector, request.tolerations, old)
    quota_reports = evaluate_quotas(quotas, resource)
    free = {n.name: max(n.free, 0) for n in node_reports if n.eligible}
    eligible_free = sum(free.values())

    def plan_for(replicas: int, strategy: RolloutStrategy) -> RolloutPlan:
        return simulate_rollout(replicas, request.gpus_per_replica, strategy, old, free)

    plan = plan_for(request.replicas, request.strategy)
    for quota in quota_reports:
        quota.needed = plan.peak_net_gpus
    fits = plan.fits(quota_reports)

    if request.gpus_per_replica == 0:
        msg = "{0} request no {1}: nothing to check, it fits".format(_plural(request.replicas, "replica"), resource)
        return FitResult(True, msg, request, quota_reports, node_reports, without, plan, None, eligible_free)

    max_replicas = _max_replicas(request, plan_for, quota_reports, node_reports, old, fits)
    alternative: Optional[str] = None
    if fits:
        msg = _fits_message(request, plan, max_replicas)
    else:
        if request.strategy.type == ROLLING_UPDATE and old:
            alternative = _alternative(request, plan_for, quota_reports, plan)
        msg = _failure_message(request, plan, quota_reports, node_reports, max_replicas, alternative)
    return FitResult(
        fits, msg, request, quota_reports, node_reports, without, plan, max_replicas, eligible_free, alternative
    )


def _max_replicas(
    request: FitRequest,
    plan_for: Callable[[int, RolloutStrategy], RolloutPlan],
    quotas: Sequence[QuotaReport],
    nodes: Sequence[NodeReport],
    old: Sequence[OldPod],
    fits_now: bool,
) -> int:
    """The largest replica count whose rollout (same strategy) fits.

    Bounded by the end state (old pods gone): quota headroom plus the old
    pods' GPUs, and the slots of the eligible nodes once the old pods' GPUs are
    back. Found by bisection, assuming that if R replicas fit, fewer do too
    (percent fenceposts can break this in rare corner cases; the requested
    count itself is always classified exactly).
    """
    g = request.gpus_per_replica
    old_gpus = sum(p.gpus for p in old)
    bounds = [q.headroom + old_gpus for q in quotas if q.applies]
    upper = min([max(b, 0) // g for b in bounds] or [10**9])
    node_room = [max(n.free, 0) + n.deployment_gpus for n in nodes if n.eligible]
    upper = min(upper, replica_slots(node_room, g) if node_room else 0)

    def ok(replicas: int) -> bool:
        return plan_for(replicas, request.strategy).fits(quotas)

    if fits_now:
        low, high = request.replicas, max(upper, request.replicas)
    else:
        low, high = 0, min(upper, request.replicas - 1)
    if high <= low:
        return low
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _alternative(
    request: FitRequest,
    plan_for: Callable[[int, RolloutStrategy], RolloutPlan],
    quotas: Sequence[QuotaReport],
    plan: RolloutPlan,
) -> Optional[str]:
    """When only the surge breaks the fit: the strategy that would fit, as advice."""
    if not plan_for(request.replicas, RolloutStrategy(type=RECREATE)).fits(quotas):
        return None  # even the end state does not fit: not a surge problem
    unavailable = max(1, plan.max_unavailable)
    no_surge = RolloutStrategy(type=ROLLING_UPDATE, max_surge=0, max_unavailable=unavailable)
    if plan_for(request.replicas, no_surge).fits(quotas):
        return "maxSurge: 0 with maxUnavailable: {0}".format(unavailable)
    return "strategy Recreate (downtime: every old pod stops first)"


def _fits_message(request: FitRequest, plan: RolloutPlan, max_replicas: int) -> str:
    res = request.resource
    text = "{0} × {1} {2} fit".format(_plural(request.replicas, "replica"), request.gpus_per_replica, res)
    if plan.old_pods:
        text += " (rollout peak: {0}, {1}, needs {2} {3} beyond what the Deployment holds)".format(
            _plural(plan.peak_pods, "pod"), _plural(plan.surge_pods, "surge pod"), plan.peak_net_gpus, res
        )
    return "{0}; up to {1} would fit".format(text, _plural(max_replicas, "replica"))


def _failure_message(
    request: FitRequest,
    plan: RolloutPlan,
    quotas: Sequence[QuotaReport],
    nodes: Sequence[NodeReport],
    max_replicas: int,
    alternative: Optional[str],
) -> str:
    res = request.resource
    g = request.gpus_per_replica
    problems: List[str] = []
    short = [q for q in quotas if q.applies and not q.fits]
    if short:
        what = "needs {0} {1}".format(plan.peak_net_gpus, res)
        if plan.surge_pods:
            what += " at the rollout's peak ({0})".format(_plural(plan.surge_pods, "surge pod"))
        elif plan.old_pods:
            what += " beyond the GPUs the Deployment's current pods free"
        problems.append(
            "{0}, {1}".format(what, " and ".join("quota {0} has {1} free".format(q.name, q.headroom) for q in short))
        )
    failure = plan.node_failure
    if failure is not None:
        eligible = [n for n in nodes if n.eligible]
        text = "{0} of {1} new pods ({2} {3} each){4} fit on no eligible node".format(
            failure.created - failure.placed,
            failure.created,
            g,
            res,
            " in rollout wave {0}".format(failure.index) if len(plan.waves) > 1 else "",
        )
        if eligible:
            text += " (free: {0})".format(_list_names(["{0} {1}".format(n.name, max(n.free, 0)) for n in eligible]))
        else:
            text += " (no node is eligible)"
        excluded = [n for n in nodes if not n.eligible]
        if excluded:
            text += "; not eligible: {0}".format(_list_names(["{0} ({1})".format(n.name, n.reason) for n in excluded]))
        if not nodes:
            text += "; no node advertises {0}".format(res)
        problems.append(text)

    remedies: List[str] = []
    if alternative:
        remedies.append("the end state fits, only the rollout's surge does not: {0} would fit".format(alternative))
    if max_replicas > 0:
        remedies.append("lower replicas to {0}".format(max_replicas))
    elif not alternative:
        problems.append("no replica fits")
    capacity: List[str] = []
    if len(short) == 1:
        capacity.append("raise requests.{0} to {1}".format(res, short[0].used + plan.peak_net_gpus))
    elif short:
        capacity.append(
            "raise requests.{0} to {1}".format(
                res, " and ".join("{0} in quota {1}".format(q.used + plan.peak_net_gpus, q.name) for q in short)
            )
        )
    if failure is not None and not alternative:
        capacity.append("free or add eligible nodes with {0} {1} each".format(g, res))
    if capacity:
        remedies.append(" and ".join(capacity))
    return "{0}: {1}".format("; ".join(problems), " or ".join(remedies))
