# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Objects and quantities: what a pod requests, which pods are the Deployment's, the error type."""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable, List, Optional, Union

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import (
    DEFAULT_GPU_RESOURCE,
    KubeObject,
    get_path,
    owned_by_uid,
    pod_is_terminated,
    pod_is_terminating,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.quantity import (
    QuantityError,
    parse_quantity as _parse_quantity,
)

DEFAULT_RESOURCE = DEFAULT_GPU_RESOURCE

__all__ = [
    "DEFAULT_RESOURCE", "GpuFitError", "KubeObject", "container_request", "deployment_pods",
    "deployment_template_spec", "label_selector_string", "parse_count", "parse_quantity", "pod_is_terminated",
    "pod_is_terminating", "pod_request", "pod_spec_request",
]


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


def container_request(container: KubeObject, resource: str) -> int:
    """A container's request for ``resource``; its limit when no request is set.

    The API server defaults an extended resource's request to its limit (the
    two must be equal), so the limit is what the scheduler counts.
    """
    requests = get_path(container, "resources", "requests") or {}
    if resource in requests:
        return parse_count(requests[resource], resource)
    limits = get_path(container, "resources", "limits") or {}
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


def deployment_pods(
    deployment: KubeObject, replicasets: Iterable[KubeObject], pods: Iterable[KubeObject]
) -> List[KubeObject]:
    """The Deployment's current pods: owned by one of its ReplicaSets, neither terminated nor terminating.

    Ownership is followed through ``metadata.ownerReferences`` (Deployment ->
    ReplicaSet -> Pod), as the controllers do; pods that merely match the
    selector are not the Deployment's.
    """
    dep_uid = get_path(deployment, "metadata", "uid")
    rs_uids = [get_path(rs, "metadata", "uid") for rs in replicasets if dep_uid and owned_by_uid(rs, [dep_uid])]
    return [
        pod
        for pod in pods
        if owned_by_uid(pod, rs_uids)
        and not pod_is_terminated(pod)
        and not pod_is_terminating(pod)
    ]


def deployment_template_spec(deployment: Optional[KubeObject]) -> KubeObject:
    """``spec.template.spec`` of a Deployment ({} when absent)."""
    return get_path(deployment, "spec", "template", "spec") or {}
