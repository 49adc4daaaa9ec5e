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

One module per concern:

- :mod:`.objects`: quantities, pod requests, the Deployment's pods, :class:`GpuFitError`;
- :mod:`.scheduling`: tolerations and taints, node eligibility, free units and slots;
- :mod:`.quota`: the ResourceQuotas that apply;
- :mod:`.simulation`: the strategy and the rollout, played one controller sync at a time;
- :mod:`.messages`: the verdict in words;
- :mod:`.check`: :func:`check_fit`, the entry point, which puts them together.

The public names are re-exported here, so callers import them from the package.
The reasoning (quota, nodes, rollout peak) is described in ``docs/gpu_capacity_check.md``.
"""

from __future__ import annotations

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.check import (
    FitRequest,
    FitResult,
    check_fit,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.objects import (
    DEFAULT_RESOURCE,
    GpuFitError,
    container_request,
    deployment_pods,
    deployment_template_spec,
    label_selector_string,
    parse_count,
    parse_quantity,
    pod_is_terminated,
    pod_is_terminating,
    pod_request,
    pod_spec_request,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.quota import QuotaReport, evaluate_quotas
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.scheduling import (
    UNSCHEDULABLE_TAINT,
    NodeReport,
    Toleration,
    evaluate_nodes,
    node_ineligibility,
    node_is_ready,
    parse_tolerations,
    replica_slots,
    untolerated_taint,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.simulation import (
    DEFAULT_MAX_SURGE,
    DEFAULT_MAX_UNAVAILABLE,
    RECREATE,
    ROLLING_UPDATE,
    CurrentDeployment,
    OldPod,
    RolloutPlan,
    RolloutStrategy,
    SIMULATED_PODS_LIMIT,
    Wave,
    first_rollout,
    pod_is_ready,
    scaled_value,
    simulate_rollout,
)

__all__ = [
    "DEFAULT_MAX_SURGE", "DEFAULT_MAX_UNAVAILABLE", "DEFAULT_RESOURCE", "RECREATE", "ROLLING_UPDATE",
    "UNSCHEDULABLE_TAINT", "CurrentDeployment", "FitRequest", "FitResult", "GpuFitError", "NodeReport", "OldPod",
    "QuotaReport", "RolloutPlan", "RolloutStrategy", "Toleration", "Wave", "check_fit", "container_request",
    "deployment_pods", "deployment_template_spec", "evaluate_nodes", "evaluate_quotas", "label_selector_string",
    "node_ineligibility", "node_is_ready", "parse_count", "parse_quantity", "parse_tolerations", "pod_is_ready",
    "pod_is_terminated", "pod_is_terminating", "pod_request", "pod_spec_request", "replica_slots", "scaled_value",
    "simulate_rollout", "untolerated_taint", "SIMULATED_PODS_LIMIT", "first_rollout",
]
