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

import heapq
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
    needed: Optional[int] = 0

    @property
    def headroom(self) -> int:
        return self.hard - self.used

    @property
    def fits(self) -> bool:
        return (not self.applies) or self.needed is None or self.needed <= self.headroom

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "hard": self.hard,
            "used": self.used,
            "headroom": self.headroom,
            "needed": self.needed if (self.applies and self.needed is not None) else 0,
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

OLD = "old"
NEW = "new"


def pod_is_ready(pod: KubeObject) -> bool:
    """Whether the pod's Ready condition is True (what makes it available, with minReadySeconds 0)."""
    for condition in _get(pod, "status", "conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


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
            name=_name(pod),
            node=_get(pod, "spec", "nodeName"),
            gpus=pod_request(pod, resource),
            created=str(_get(pod, "metadata", "creationTimestamp") or ""),
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
        replicas = _get(deployment, "spec", "replicas")
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
            _name(node): max(reported[_name(node)].free, 0)
            for node in node_list
            if _name(node) in reported and node_ineligibility(node, current.node_selector, current.tolerations) is None
        }
    applying = [q for q in quota_reports if q.applies]
    headroom = min(q.headroom for q in applying) if applying else None

    def simulate(
        replicas: int,
        strategy: RolloutStrategy,
        quota: bool = True,
        node_limits: bool = True,
        room: Optional[int] = None,
    ) -> RolloutPlan:
        """The rollout of ``replicas``; ``room`` replaces the quota headroom, ``quota``/``node_limits`` drop a limit."""
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
        msg = "{0} request no {1}: nothing to check, it fits".format(_plural(request.replicas, "replica"), resource)
        return FitResult(True, msg, request, quota_reports, node_reports, without, plan, None, eligible_free)

    starts_empty = not old and (current is None or current.replicas == 0)
    max_replicas = _max_replicas(request, simulate, quota_reports, node_reports, old, fits, starts_empty)
    alternative: Optional[str] = None
    if fits:
        msg = _fits_message(request, plan, max_replicas)
    else:
        if request.strategy.type == ROLLING_UPDATE and (old or not starts_empty):
            alternative = _alternative(request, simulate, plan)
        nodes_only = plan if headroom is None else simulate(request.replicas, request.strategy, quota=False)
        msg = _failure_message(request, plan, nodes_only, quota_reports, node_reports, max_replicas, alternative)
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
    g = request.gpus_per_replica
    old_gpus = sum(p.gpus for p in old)
    bounds = [q.headroom + old_gpus for q in quotas if q.applies]
    upper = min([max(b, 0) // g for b in bounds] or [10**9])
    node_room = [max(n.free, 0) + n.deployment_gpus for n in nodes if n.eligible]
    upper = min(upper, replica_slots(node_room, g) if node_room else 0)
    if starts_empty:
        return upper

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


def _fits_message(request: FitRequest, plan: RolloutPlan, max_replicas: int) -> str:
    res = request.resource
    text = "{0} × {1} {2} fit".format(_plural(request.replicas, "replica"), request.gpus_per_replica, res)
    if plan.old_pods:
        text += " (rollout peak: {0}, {1}, needs {2} {3} beyond what the Deployment holds)".format(
            _plural(plan.peak_pods, "pod"), _plural(plan.surge_pods, "surge pod"), max(plan.needed or 0, 0), res
        )
    return "{0}; up to {1} would fit".format(text, _plural(max_replicas, "replica"))


def _failure_message(
    request: FitRequest,
    plan: RolloutPlan,
    nodes_only: RolloutPlan,
    quotas: Sequence[QuotaReport],
    nodes: Sequence[NodeReport],
    max_replicas: int,
    alternative: Optional[str],
) -> str:
    res = request.resource
    g = request.gpus_per_replica
    needed = plan.needed or 0
    problems: List[str] = []
    short = [q for q in quotas if not q.fits]
    if short:
        if needed > 0:
            what = "needs {0} {1}".format(needed, res)
            if plan.surge_pods:
                what += " at the rollout's peak ({0})".format(_plural(plan.surge_pods, "surge pod"))
            elif plan.old_pods:
                what += " beyond the GPUs the Deployment's current pods free"
            problems.append(
                "{0}, {1}".format(
                    what, " and ".join("quota {0} has {1} free".format(q.name, q.headroom) for q in short)
                )
            )
        else:
            problems.append(
                " and ".join(
                    "quota {0} is over its limit ({1} used of {2}) and the rollout needs {3} at its peak".format(
                        q.name, q.used, q.hard, q.used + needed
                    )
                    for q in short
                )
            )
    eligible = [n for n in nodes if n.eligible]
    failure = nodes_only.node_failure if not nodes_only.completed else None
    if failure is not None:
        text = "{0} of {1} new pods ({2} {3} each){4} fit on no eligible node".format(
            nodes_only.new_pending,
            nodes_only.new_created,
            g,
            res,
            " in rollout wave {0}".format(failure.index) if plan.old_pods else "",
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
    elif not short:
        last = plan.waves[-1] if plan.waves else None
        problems.append(
            "the rollout stops at wave {0}: {1} new pods wait for a node and {2} are refused by the quota "
            "(the quota and the nodes together leave no room)".format(
                last.index if last else 1, plan.new_pending, plan.refused
            )
        )

    remedies: List[str] = []
    if alternative:
        remedies.append("the end state fits, only the rollout's surge does not: {0} would fit".format(alternative))
    if max_replicas > 0:
        remedies.append("lower replicas to {0}".format(max_replicas))
    elif not alternative:
        problems.append("no replica fits")
    capacity: List[str] = []
    if len(short) == 1:
        capacity.append("raise requests.{0} to {1}".format(res, short[0].used + needed))
    elif short:
        capacity.append(
            "raise requests.{0} to {1}".format(
                res, " and ".join("{0} in quota {1}".format(q.used + needed, q.name) for q in short)
            )
        )
    if failure is not None and not alternative:
        capacity.append("free or add eligible nodes with {0} {1} each".format(g, res))
    if capacity:
        remedies.append(" and ".join(capacity))
    return "{0}: {1}".format("; ".join(problems), " or ".join(remedies))
