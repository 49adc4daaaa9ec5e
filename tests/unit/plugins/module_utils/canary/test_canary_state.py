# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of reading a canary's state: the stable hash, each version's pods, the step to resume from."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.plan import plan_canary
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import Bounds, Canary, Step
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.state import (
    resume_step,
    route_weight,
    stable_hash,
    version_pods,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.traffic import (
    canary_deployment,
    http_route,
    virtual_service,
)

DEPLOYMENT = {"kind": "Deployment", "metadata": {"name": "fraud", "namespace": "ns", "uid": "d-1",
                                                 "annotations": {"deployment.kubernetes.io/revision": "3"}}}
SERVICE = {"metadata": {"name": "fraud", "namespace": "ns", "labels": {}},
           "spec": {"selector": {"creativeflow.ai/model-name": "fraud"},
                    "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]}}


def replicaset(name: str, revision: int, pod_hash: str, owner: str = "d-1") -> Dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"pod-template-hash": pod_hash},
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                         "ownerReferences": [{"kind": "Deployment", "name": "fraud", "uid": owner}]}}


def pod(name: str, labels: Dict[str, str], phase: str = "Running", ip: str = "10.0.0.1",
        deleting: bool = False) -> Dict[str, Any]:
    metadata: Dict[str, Any] = {"name": name, "labels": labels}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-05T10:00:00Z"
    return {"metadata": metadata, "status": {"phase": phase, "podIP": ip}}


def test_stable_hash_is_the_current_replicasets():
    sets = [replicaset("fraud-aaa", 2, "aaa"), replicaset("fraud-bbb", 3, "bbb"),
            replicaset("fraud-canary-ccc", 1, "ccc", owner="d-2")]
    assert stable_hash(DEPLOYMENT, sets) == "bbb"
    assert stable_hash(DEPLOYMENT, []) is None


def test_version_pods():
    pods = [
        pod("fraud-bbb-1", {"pod-template-hash": "bbb"}),
        pod("fraud-bbb-2", {"pod-template-hash": "bbb"}),
        pod("fraud-aaa-1", {"pod-template-hash": "aaa"}),  # an older stable ReplicaSet's: not the stable version
        pod("fraud-canary-ccc-1", {"pod-template-hash": "ccc", "creativeflow.ai/track": "canary"}),
        pod("fraud-canary-ccc-2", {"pod-template-hash": "ccc", "creativeflow.ai/track": "canary"}, phase="Pending",
            ip=""),
        pod("fraud-bbb-3", {"pod-template-hash": "bbb"}, deleting=True),
        pod("fraud-bbb-4", {"pod-template-hash": "bbb"}, ip=""),
    ]
    assert version_pods(pods, "bbb") == {"stable": ["fraud-bbb-1", "fraud-bbb-2"], "canary": ["fraud-canary-ccc-1"]}
    assert version_pods(pods, "") == {"stable": [], "canary": ["fraud-canary-ccc-1"]}


def test_route_weight_of_what_the_traffic_module_builds():
    assert route_weight(http_route(SERVICE, 30), "fraud") == 30
    assert route_weight(virtual_service(SERVICE, 40, ("x-canary", "1")), "fraud") == 40
    assert route_weight(None, "fraud") is None
    assert route_weight({"kind": "HTTPRoute", "spec": {"rules": [{"backendRefs": [{"name": "other"}]}]}},
                        "fraud") is None


def plan(split: str) -> Dict[str, Any]:
    canary = Canary(steps=(Step(10, 60), Step(50, 60)), split=split, bounds=Bounds(max_error_ratio=0.01))
    return plan_canary(canary, 10, split).to_dict()


def canary_with(replicas: int) -> Optional[Dict[str, Any]]:
    deployment = {"metadata": {"name": "fraud", "namespace": "ns", "labels": {}},
                  "spec": {"selector": {"matchLabels": {}}, "template": {"metadata": {"labels": {}}, "spec": {}}}}
    return canary_deployment(deployment, replicas)


def test_resume_step_of_the_replica_split():
    assert resume_step(plan("replicas"), None) == 0
    assert resume_step(plan("replicas"), canary_with(1)) == 1
    assert resume_step(plan("replicas"), canary_with(5)) == 2
    assert resume_step(plan("replicas"), canary_with(3)) is None  # matches no step: abort cleanly


def test_resume_step_of_a_weighted_split_needs_the_weight_too():
    # 10 replicas: 1 canary pod at 10%, 5 at 50%
    assert resume_step(plan("gateway"), canary_with(5), 50) == 2
    assert resume_step(plan("gateway"), canary_with(5), 10) is None  # interrupted between scaling and routing
    assert resume_step(plan("istio"), canary_with(1), 10) == 1
