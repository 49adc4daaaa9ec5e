# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a canary stands in the cluster, read from the objects the deploy reads (pure: plain dicts in).

- :func:`stable_hash`: the ``pod-template-hash`` of the stable Deployment's current ReplicaSet, which selects the
  stable pods (they are never relabelled);
- :func:`version_pods`: the running pods of each version, to scrape through the API server's pod proxy;
- :func:`route_weight` and :func:`resume_step`: the step a canary left by an interrupted run is in, so a re-run
  continues from it (or aborts cleanly when the cluster matches no step of the plan).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.traffic import (
    CANARY,
    POD_TEMPLATE_HASH,
    STABLE,
    TRACK_LABEL,
    canary_name,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.last_good import template_hash
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout import newest_replicaset


def stable_hash(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]]) -> Optional[str]:
    """The stable version's ``pod-template-hash``: its Deployment's current ReplicaSet's; None before it has one."""
    return template_hash(newest_replicaset(deployment, replicasets))


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def version_pods(pods: Sequence[Mapping[str, Any]], stable: str) -> Dict[str, List[str]]:
    """The names of the running pods of each version (``stable``: the stable ReplicaSet's hash); pods being
    deleted, not running yet or of another ReplicaSet (a stable rollout's leftovers) are left out."""
    found: Dict[str, List[str]] = {STABLE: [], CANARY: []}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if metadata.get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        labels = _labels(pod)
        if labels.get(TRACK_LABEL) == CANARY:
            found[CANARY].append(str(metadata.get("name")))
        elif TRACK_LABEL not in labels and stable and labels.get(POD_TEMPLATE_HASH) == stable:
            found[STABLE].append(str(metadata.get("name")))
    return {track: sorted(names) for track, names in found.items()}


def route_weight(route: Optional[Mapping[str, Any]], model: str) -> Optional[int]:
    """The canary's weight in the model's HTTPRoute or VirtualService (the weighted rule); None without one."""
    if not route:
        return None
    spec = route.get("spec") or {}
    if route.get("kind") == "HTTPRoute":
        for rule in spec.get("rules") or []:
            for backend in rule.get("backendRefs") or []:
                if backend.get("name") == canary_name(model):
                    return int(backend.get("weight", 1))
        return None
    for http in spec.get("http") or []:
        if http.get("match"):
            continue  # the A/B header rule
        for destination in http.get("route") or []:
            if (destination.get("destination") or {}).get("subset") == CANARY:
                return int(destination.get("weight", 0))
    return None


def resume_step(plan: Mapping[str, Any], canary_deployment: Optional[Mapping[str, Any]],
                weight: Optional[int] = None) -> Optional[int]:
    """The step of ``plan`` (:meth:`.plan.CanaryPlan.to_dict`) a canary left in the cluster is in: 0 without a
    canary Deployment; the step whose canary replica count (and, with a route, weight) the cluster shows; None when
    it shows none of them (a changed catalog, or a hand edit: abort cleanly rather than guess)."""
    if canary_deployment is None:
        return 0
    replicas = int((canary_deployment.get("spec") or {}).get("replicas") or 0)
    for step in plan.get("steps") or []:
        if int(step["canary_replicas"]) != replicas:
            continue
        if plan.get("split") != "replicas" and weight != int(step["weight"]):
            continue
        return int(step["step"])
    return None
