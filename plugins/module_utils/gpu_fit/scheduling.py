# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduling: tolerations against taints, node eligibility, free units per node, replica slots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TYPE_CHECKING

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.objects import (
    GpuFitError,
    KubeObject,
    parse_count,
    pod_request,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import (
    condition_true,
    get_path,
    name as object_name,
    pod_is_terminated,
)

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.simulation import OldPod

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


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
    return condition_true(node, "Ready")


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
    if get_path(node, "spec", "unschedulable"):
        cordon = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
        if not any(tol.tolerates(cordon) for tol in tolerations):
            return "cordoned (spec.unschedulable)"
    labels = get_path(node, "metadata", "labels") or {}
    for key, value in sorted(node_selector.items()):
        if labels.get(key) != str(value):
            return "node selector {0}={1} does not match".format(key, value)
    taint = untolerated_taint(get_path(node, "spec", "taints"), tolerations)
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
        node_name = get_path(pod, "spec", "nodeName")
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
        allocatable = parse_count((get_path(node, "status", "allocatable") or {}).get(resource), resource)
        if allocatable <= 0:
            without += 1
            continue
        name = object_name(node)
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
