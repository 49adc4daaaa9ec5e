# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the pure GPU fit logic (no cluster, no Ansible runtime)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Dict, List, Optional

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit import (
    CurrentDeployment,
    FitRequest,
    GpuFitError,
    OldPod,
    RolloutStrategy,
    Toleration,
    check_fit,
    deployment_pods,
    evaluate_quotas,
    first_rollout,
    label_selector_string,
    node_ineligibility,
    parse_count,
    parse_quantity,
    parse_tolerations,
    pod_request,
    replica_slots,
    scaled_value,
    simulate_rollout,
    untolerated_taint,
)

GPU = "nvidia.com/gpu"
MIG = "nvidia.com/mig-1g.10gb"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
TOLERATE_GPU = [Toleration(key=GPU, operator="Exists", effect="NoSchedule")]


# --------------------------------------------------------------------------- builders (API JSON form)


def node(
    name: str,
    gpus: int = 4,
    resource: str = GPU,
    ready: bool = True,
    unschedulable: bool = False,
    taints: Optional[List[Dict[str, str]]] = None,
    labels: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
    allocatable = {"cpu": "32", "memory": "256Gi"}
    if gpus:
        allocatable[resource] = str(gpus)
    spec: Dict[str, Any] = {}
    if unschedulable:
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(
    name: str,
    node_name: Optional[str] = None,
    gpus: int = 1,
    resource: str = GPU,
    phase: str = "Running",
    owner: Optional[str] = None,
    terminating: bool = False,
    created: str = "2025-01-01T00:00:00Z",
    use_limits: bool = False,
    ready: bool = True,
) -> Dict[str, Any]:
    resources = (
        {"limits": {resource: str(gpus)}}
        if use_limits
        else {"requests": {resource: str(gpus)}, "limits": {resource: str(gpus)}}
    )
    metadata: Dict[str, Any] = {"name": name, "namespace": "ai", "creationTimestamp": created}
    if owner:
        metadata["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": "uid-" + owner, "controller": True}]
    if terminating:
        metadata["deletionTimestamp"] = "2025-01-02T00:00:00Z"
    spec: Dict[str, Any] = {"containers": [{"name": "server", "resources": resources}]}
    status: Dict[str, Any] = {"phase": phase}
    if node_name:
        spec["nodeName"] = node_name
        if phase == "Running":
            status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def quota(
    name: str, hard: int, used: int, key: str = "requests." + GPU, scopes: Optional[List[str]] = None
) -> Dict[str, Any]:
    spec: Dict[str, Any] = {"hard": {key: str(hard)}}
    if scopes:
        spec["scopes"] = scopes
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": "ai"},
        "spec": spec,
        "status": {"hard": {key: str(hard)}, "used": {key: str(used)}},
    }


def request(replicas: int, gpus: int = 1, **kwargs: Any) -> FitRequest:
    kwargs.setdefault("namespace", "ai")
    kwargs.setdefault("tolerations", TOLERATE_GPU)
    return FitRequest(replicas=replicas, gpus_per_replica=gpus, **kwargs)


def old_deployment_pods(count: int, node_name: Optional[str], gpus: int = 1) -> List[Dict[str, Any]]:
    return [
        pod("srv-old-{0}".format(i), node_name, gpus, owner="srv-1", created="2025-01-01T00:00:0{0}Z".format(i))
        for i in range(count)
    ]


# --------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4", Decimal(4)),
        (4, Decimal(4)),
        ("500m", Decimal("0.5")),
        ("2Gi", Decimal(2 * 1024**3)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("0", Decimal(0)),
    ],
)
def test_parse_quantity(text: Any, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["", "four", "1.2.3", "4 GPUs", "Gi", True])
def test_parse_quantity_rejects_garbage(bad: Any) -> None:
    with pytest.raises(GpuFitError, match="invalid quantity"):
        parse_quantity(bad)


def test_parse_count() -> None:
    assert parse_count("8") == 8
    assert parse_count("2000m") == 2
    assert parse_count(None) == 0
    with pytest.raises(GpuFitError, match="'500m' is not a whole number"):
        parse_count("500m", GPU)


# --------------------------------------------------------------------------- pod requests


def test_pod_request_sums_containers_and_falls_back_to_limits() -> None:
    spec = {
        "containers": [
            {"name": "a", "resources": {"requests": {GPU: "2"}, "limits": {GPU: "2"}}},
            {"name": "b", "resources": {"limits": {GPU: "1"}}},
            {"name": "c", "resources": {"requests": {"cpu": "1"}}},
            {"name": "d"},
        ]
    }
    assert pod_request({"spec": spec}, GPU) == 3
    assert pod_request({"spec": spec}, MIG) == 0


@pytest.mark.parametrize(
    "init, expected",
    [
        # max(sum of containers 2, largest init container 3)
        ([{"name": "warmup", "resources": {"limits": {GPU: "3"}}}], 3),
        ([{"name": "warmup", "resources": {"limits": {GPU: "1"}}}], 2),
        # a sidecar (restartPolicy Always) runs next to the containers: 2 + 1
        ([{"name": "proxy", "restartPolicy": "Always", "resources": {"limits": {GPU: "1"}}}], 3),
        # an init container after a sidecar runs next to it: max(2 + 1, 1 + 4)
        (
            [
                {"name": "proxy", "restartPolicy": "Always", "resources": {"limits": {GPU: "1"}}},
                {"name": "warmup", "resources": {"limits": {GPU: "4"}}},
            ],
            5,
        ),
    ],
)
def test_pod_request_init_containers(init: List[Dict[str, Any]], expected: int) -> None:
    spec = {"containers": [{"name": "server", "resources": {"limits": {GPU: "2"}}}], "initContainers": init}
    assert pod_request({"spec": spec}, GPU) == expected


def test_pod_request_counts_overhead() -> None:
    spec = {"containers": [{"name": "s", "resources": {"limits": {GPU: "1"}}}], "overhead": {GPU: "1"}}
    assert pod_request({"spec": spec}, GPU) == 2


# --------------------------------------------------------------------------- tolerations


@pytest.mark.parametrize(
    "toleration, taint, tolerated",
    [
        ({"key": GPU, "operator": "Equal", "value": "present", "effect": "NoSchedule"}, GPU_TAINT, True),
        ({"key": GPU, "value": "present"}, GPU_TAINT, True),  # operator defaults to Equal, any effect
        ({"key": GPU, "operator": "Equal", "value": "absent"}, GPU_TAINT, False),
        ({"key": GPU, "operator": "Exists"}, GPU_TAINT, True),
        ({"key": "other", "operator": "Exists"}, GPU_TAINT, False),
        ({"operator": "Exists"}, GPU_TAINT, True),  # empty key + Exists tolerates everything
        ({"operator": "Exists", "effect": "NoExecute"}, GPU_TAINT, False),  # effect must match
        ({"key": GPU, "operator": "Exists", "effect": "NoSchedule"}, GPU_TAINT, True),
        ({"key": GPU, "operator": "Exists", "effect": "NoExecute"}, GPU_TAINT, False),
    ],
)
def test_toleration_matching(toleration: Dict[str, str], taint: Dict[str, str], tolerated: bool) -> None:
    assert Toleration.from_dict(toleration).tolerates(taint) is tolerated


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"key": GPU, "operator": "Lt", "value": "1"}, "operator must be Equal or Exists"),
        ({"key": GPU, "operator": "Exists", "value": "present"}, "operator Exists takes no value"),
        ({"value": "present"}, "empty key needs operator Exists"),
        ({"key": GPU, "operator": "Exists", "effect": "Sometimes"}, "effect must be"),
    ],
)
def test_invalid_tolerations(bad: Dict[str, str], words: str) -> None:
    with pytest.raises(GpuFitError, match=words):
        parse_tolerations([bad])


def test_prefer_no_schedule_taint_is_ignored() -> None:
    soft = {"key": "dedicated", "value": "inference", "effect": "PreferNoSchedule"}
    assert untolerated_taint([soft], []) is None
    hard = {"key": "dedicated", "value": "inference", "effect": "NoExecute"}
    assert untolerated_taint([soft, hard], []) == hard


@pytest.mark.parametrize(
    "kwargs, selector, tolerations, reason",
    [
        ({}, {}, TOLERATE_GPU, None),
        ({"ready": False}, {}, TOLERATE_GPU, "NotReady"),
        ({"unschedulable": True}, {}, TOLERATE_GPU, "cordoned (spec.unschedulable)"),
        ({"labels": {"pool": "a100"}}, {"pool": "h100"}, TOLERATE_GPU, "node selector pool=h100 does not match"),
        ({"labels": {"pool": "a100"}}, {"pool": "a100"}, TOLERATE_GPU, None),
        ({"taints": [GPU_TAINT]}, {}, [], "untolerated taint nvidia.com/gpu=present:NoSchedule"),
        ({"taints": [GPU_TAINT]}, {}, TOLERATE_GPU, None),
        ({"taints": [{"key": "maint", "effect": "NoExecute"}]}, {}, TOLERATE_GPU, "untolerated taint maint:NoExecute"),
        ({"taints": [{"key": "maint", "effect": "PreferNoSchedule"}]}, {}, [], None),
    ],
)
def test_node_ineligibility(
    kwargs: Dict[str, Any], selector: Dict[str, str], tolerations: List[Toleration], reason: Optional[str]
) -> None:
    assert node_ineligibility(node("n", **kwargs), selector, tolerations) == reason


def test_cordoned_node_is_eligible_when_the_cordon_taint_is_tolerated() -> None:
    tolerate_cordon = [Toleration(key="node.kubernetes.io/unschedulable", operator="Exists")]
    assert node_ineligibility(node("n", unschedulable=True), {}, tolerate_cordon) is None


# --------------------------------------------------------------------------- strategy


@pytest.mark.parametrize(
    "surge, unavailable, replicas, expected",
    [
        ("25%", "25%", 1, (1, 0)),  # surge rounds up, unavailable down: the 1-replica deadlock case
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 10, (3, 2)),
        ("50%", "0%", 3, (2, 0)),
        (0, "10%", 5, (0, 1)),  # both resolve to 0: Kubernetes uses maxUnavailable 1
        ("10%", "10%", 5, (1, 0)),
        (2, 1, 8, (2, 1)),
        ("3", "1", 8, (3, 1)),  # digit strings from the command line are integers
        ("200%", "100%", 2, (4, 2)),
    ],
)
def test_strategy_resolution(surge: Any, unavailable: Any, replicas: int, expected: Any) -> None:
    assert RolloutStrategy(max_surge=surge, max_unavailable=unavailable).resolve(replicas) == expected


def test_recreate_resolves_to_no_surge() -> None:
    assert RolloutStrategy(type="Recreate").resolve(3) == (0, 3)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_surge": 0, "max_unavailable": 0}, "cannot both be 0"),
        ({"max_surge": "0%", "max_unavailable": 0}, "cannot both be 0"),
        ({"max_surge": -1}, "must not be negative"),
        ({"max_surge": "1.5"}, "integer or a percentage"),
        ({"max_unavailable": "120%"}, "must not exceed 100%"),
        ({"type": "BlueGreen"}, "RollingUpdate or Recreate"),
    ],
)
def test_invalid_strategy(kwargs: Dict[str, Any], words: str) -> None:
    with pytest.raises(GpuFitError, match=words):
        RolloutStrategy(**kwargs)


def test_strategy_from_deployment() -> None:
    dep = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}}}}
    assert RolloutStrategy.from_deployment(dep) == RolloutStrategy(max_surge=0, max_unavailable="50%")
    assert RolloutStrategy.from_deployment({"spec": {"strategy": {"type": "Recreate"}}}).type == "Recreate"
    assert RolloutStrategy.from_deployment({"spec": {}}) == RolloutStrategy()


def test_scaled_value_rounding() -> None:
    assert scaled_value("25%", 10, True) == 3
    assert scaled_value("25%", 10, False) == 2
    assert scaled_value("33%", 3, True) == 1
    assert scaled_value("33%", 3, False) == 0


# --------------------------------------------------------------------------- quotas


def test_quota_keys_other_than_requests_are_reported_but_not_enforced() -> None:
    reports = evaluate_quotas(
        [quota("limits-only", 4, 0, key="limits." + GPU), quota("bare", 4, 0, key=GPU), quota("real", 4, 1)], GPU
    )
    by_name = {r.name: r for r in reports}
    assert by_name["real"].applies and by_name["real"].headroom == 3
    assert not by_name["limits-only"].applies
    assert "not enforced for extended resources" in (by_name["limits-only"].note or "")
    assert "requests.nvidia.com/gpu" in (by_name["bare"].note or "")


def test_quota_scopes_that_never_match_deployment_pods() -> None:
    reports = evaluate_quotas(
        [quota("jobs", 1, 1, scopes=["Terminating"]), quota("serving", 2, 0, scopes=["NotTerminating"])], GPU
    )
    assert [(r.name, r.applies) for r in reports] == [("jobs", False), ("serving", True)]


def test_quota_on_another_resource_is_not_listed() -> None:
    assert evaluate_quotas([quota("mig", 7, 0, key="requests." + MIG)], GPU) == []


# --------------------------------------------------------------------------- check_fit: quota and nodes


def big_nodes(count: int = 4) -> List[Dict[str, Any]]:
    return [node("gpu-{0}".format(i), 4, taints=[GPU_TAINT]) for i in range(count)]


def test_quota_only_does_not_fit() -> None:
    result = check_fit(request(8), big_nodes(), [], [quota("ai-serving-quota", 4, 1)])
    assert not result.fits
    assert result.max_replicas == 3
    assert result.msg == (
        "needs 8 nvidia.com/gpu, quota ai-serving-quota has 3 free: "
        "lower replicas to 3 or raise requests.nvidia.com/gpu to 9"
    )
    out = result.to_dict()
    assert out["quota"] == [
        {
            "name": "ai-serving-quota",
            "key": "requests.nvidia.com/gpu",
            "hard": 4,
            "used": 1,
            "headroom": 3,
            "needed": 8,
            "fits": False,
            "applies": True,
            "scopes": [],
            "note": None,
        }
    ]
    assert out["surge_pods"] == 0


def test_quota_fits_exactly() -> None:
    result = check_fit(request(3), big_nodes(), [], [quota("ai-serving-quota", 4, 1)])
    assert result.fits
    assert result.max_replicas == 3
    assert result.msg == "3 replicas × 1 nvidia.com/gpu fit; up to 3 replicas would fit"


def test_no_quota_limited_by_nodes_only() -> None:
    nodes = [node("gpu-a", 4), node("gpu-b", 4)]
    pods = [pod("other", "gpu-b", 3)]
    result = check_fit(request(3, gpus=2), nodes, pods, [])
    assert not result.fits
    assert result.quotas == []
    assert result.max_replicas == 2
    out = result.to_dict()
    assert [(n["name"], n["allocatable"], n["requested"], n["free"], n["replica_slots"]) for n in out["nodes"]] == [
        ("gpu-a", 4, 0, 4, 2),
        ("gpu-b", 4, 3, 1, 0),
    ]
    assert result.msg == (
        "1 of 3 new pods (2 nvidia.com/gpu each) fit on no eligible node (free: gpu-a 4, gpu-b 1): "
        "lower replicas to 2 or free or add eligible nodes with 2 nvidia.com/gpu each"
    )


def test_each_replica_must_fit_on_one_node() -> None:
    # 2 + 2 free GPUs in total, but a 4-GPU replica needs one node with 4
    nodes = [node("gpu-a", 4), node("gpu-b", 4)]
    pods = [pod("x", "gpu-a", 2), pod("y", "gpu-b", 2)]
    result = check_fit(request(1, gpus=4), nodes, pods, [])
    assert not result.fits
    assert result.eligible_free == 4
    assert result.max_replicas == 0
    assert result.msg == (
        "1 of 1 new pods (4 nvidia.com/gpu each) fit on no eligible node (free: gpu-a 2, gpu-b 2); "
        "no replica fits: free or add eligible nodes with 4 nvidia.com/gpu each"
    )


def test_replica_slots_is_the_exact_equal_size_bin_count() -> None:
    assert replica_slots([4, 3, 1, 0], 2) == 3
    assert replica_slots([7], 1) == 7
    with pytest.raises(GpuFitError):
        replica_slots([4], 0)


def test_quota_and_nodes_both_short() -> None:
    nodes = [node("gpu-a", 4)]
    result = check_fit(request(6), nodes, [], [quota("q", 5, 0)])
    assert not result.fits
    assert result.max_replicas == 4
    assert result.msg == (
        "needs 6 nvidia.com/gpu, quota q has 5 free; "
        "2 of 6 new pods (1 nvidia.com/gpu each) fit on no eligible node (free: gpu-a 4): "
        "lower replicas to 4 or raise requests.nvidia.com/gpu to 6 "
        "and free or add eligible nodes with 1 nvidia.com/gpu each"
    )


def test_several_quotas_the_tightest_decides() -> None:
    quotas = [quota("team", 10, 2), quota("gpu-cap", 6, 2), quota("other", 3, 0, key="requests." + MIG)]
    result = check_fit(request(5), big_nodes(), [], quotas)
    assert not result.fits
    assert [(q.name, q.headroom, q.needed, q.fits) for q in result.quotas] == [
        ("gpu-cap", 4, 5, False),
        ("team", 8, 5, True),
    ]
    assert result.max_replicas == 4
    assert result.msg == (
        "needs 5 nvidia.com/gpu, quota gpu-cap has 4 free: lower replicas to 4 or raise requests.nvidia.com/gpu to 7"
    )


def test_two_quotas_short() -> None:
    result = check_fit(request(5), big_nodes(), [], [quota("a", 4, 1), quota("b", 6, 4)])
    assert result.msg == (
        "needs 5 nvidia.com/gpu, quota a has 3 free and quota b has 2 free: "
        "lower replicas to 2 or raise requests.nvidia.com/gpu to 6 in quota a and 9 in quota b"
    )


def test_no_quota_and_room_fits() -> None:
    result = check_fit(request(4, gpus=2), big_nodes(2), [], [])
    assert result.fits
    assert result.max_replicas == 4
    assert result.to_dict()["quota"] == []


# --------------------------------------------------------------------------- nodes: eligibility in the check


def test_taints_tolerations_and_selector_in_the_check() -> None:
    nodes = [
        node("tainted", 4, taints=[GPU_TAINT]),
        node("soft", 4, taints=[{"key": "spot", "effect": "PreferNoSchedule"}]),
        node("cordoned", 4, unschedulable=True),
        node("down", 4, ready=False),
        node("cpu-0", 0),
    ]
    result = check_fit(request(6, tolerations=[]), nodes, [], [])
    assert not result.fits
    out = result.to_dict()
    assert {n["name"]: n["reason"] for n in out["nodes"]} == {
        "cordoned": "cordoned (spec.unschedulable)",
        "down": "NotReady",
        "soft": None,
        "tainted": "untolerated taint nvidia.com/gpu=present:NoSchedule",
    }
    assert out["nodes_without_resource"] == 1
    assert result.max_replicas == 4
    assert (
        "not eligible: cordoned (cordoned (spec.unschedulable)), down (NotReady), tainted (untolerated taint"
        in result.msg
    )

    tolerated = check_fit(request(6, tolerations=parse_tolerations([{"operator": "Exists"}])), nodes, [], [])
    # tolerating everything includes the cordon taint (node.kubernetes.io/unschedulable),
    # which the scheduler honours on cordoned nodes; NotReady still excludes
    assert tolerated.max_replicas == 12
    assert tolerated.fits
    assert [n.name for n in tolerated.nodes if not n.eligible] == ["down"]


def test_node_selector_mismatch_excludes_every_node() -> None:
    nodes = [node("gpu-a", 4, labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"})]
    result = check_fit(request(1, node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}), nodes, [], [])
    assert not result.fits
    assert result.max_replicas == 0
    assert "(no node is eligible)" in result.msg
    assert "node selector nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3 does not match" in result.msg


def test_terminated_pods_are_ignored_terminating_ones_count() -> None:
    nodes = [node("gpu-a", 4)]
    pods = [
        pod("done", "gpu-a", 2, phase="Succeeded"),
        pod("crashed", "gpu-a", 2, phase="Failed"),
        pod("leaving", "gpu-a", 1, terminating=True),
        pod("pending-unbound", None, 4, phase="Pending"),
    ]
    result = check_fit(request(3), nodes, pods, [])
    assert result.to_dict()["nodes"][0]["requested"] == 1
    assert result.fits
    assert result.max_replicas == 3


def test_mig_resource() -> None:
    nodes = [node("gpu-mig-0", 7, resource=MIG, taints=[GPU_TAINT]), node("gpu-a100-0", 4, taints=[GPU_TAINT])]
    pods = [pod("m{0}".format(i), "gpu-mig-0", 1, resource=MIG) for i in range(5)]
    result = check_fit(request(3, resource=MIG), nodes, pods, [quota("mig", 10, 5, key="requests." + MIG)])
    assert not result.fits
    assert [n.name for n in result.nodes] == ["gpu-mig-0"]
    assert result.nodes_without_resource == 1
    assert result.max_replicas == 2
    assert result.msg == (
        "1 of 3 new pods (1 nvidia.com/mig-1g.10gb each) fit on no eligible node (free: gpu-mig-0 2): "
        "lower replicas to 2 or free or add eligible nodes with 1 nvidia.com/mig-1g.10gb each"
    )


def test_zero_gpus_requested_trivially_fits() -> None:
    result = check_fit(request(50, gpus=0), [node("cpu-0", 0)], [], [quota("q", 0, 0)])
    assert result.fits
    assert result.max_replicas is None
    assert result.msg == "50 replicas request no nvidia.com/gpu: nothing to check, it fits"


def test_resource_name_must_be_extended() -> None:
    with pytest.raises(GpuFitError, match="extended resource"):
        FitRequest(replicas=1, gpus_per_replica=1, resource="cpu")
    with pytest.raises(GpuFitError, match="replicas must be a non-negative integer"):
        FitRequest(replicas=-1, gpus_per_replica=1)


# --------------------------------------------------------------------------- rollouts of an existing Deployment


def test_single_replica_surge_deadlock_and_the_advice() -> None:
    # one 4-GPU node, the Deployment's single pod holds 1 GPU, 3 are used by others:
    # the default 25%/25% resolves to maxSurge 1 / maxUnavailable 0 for 1 replica.
    nodes = [node("gpu-a", 4, taints=[GPU_TAINT])]
    current = old_deployment_pods(1, "gpu-a")
    pods = current + [pod("other", "gpu-a", 3)]
    result = check_fit(request(1), nodes, pods, [], current)
    assert not result.fits
    assert result.plan.surge_pods == 1
    assert result.alternative == "maxSurge: 0 with maxUnavailable: 1"
    assert result.msg == (
        "1 of 1 new pods (1 nvidia.com/gpu each) in rollout wave 1 fit on no eligible node (free: gpu-a 0): "
        "the end state fits, only the rollout's surge does not: maxSurge: 0 with maxUnavailable: 1 would fit"
    )
    no_surge = check_fit(request(1, strategy=RolloutStrategy(max_surge=0, max_unavailable=1)), nodes, pods, [], current)
    assert no_surge.fits
    assert no_surge.plan.surge_pods == 0


def test_surge_on_quota() -> None:
    # quota full with the Deployment's own 2 pods; maxSurge 1, maxUnavailable 0
    current = old_deployment_pods(2, "gpu-0")
    strategy = RolloutStrategy(max_surge=1, max_unavailable=0)
    result = check_fit(request(2, strategy=strategy), big_nodes(), current, [quota("q", 2, 2)], current)
    assert not result.fits
    assert result.quotas[0].needed == 1
    assert result.msg == (
        "needs 1 nvidia.com/gpu at the rollout's peak (1 surge pod), quota q has 0 free: "
        "the end state fits, only the rollout's surge does not: maxSurge: 0 with maxUnavailable: 1 would fit "
        "or lower replicas to 1 or raise requests.nvidia.com/gpu to 3"
    )
    out = result.to_dict()["rollout"]
    assert (
        out["max_surge"],
        out["max_unavailable"],
        out["old_pods"],
        out["old_gpus"],
        out["peak_pods"],
        out["needed"],
    ) == (
        1,
        0,
        2,
        2,
        3,
        1,
    )
    # the new ReplicaSet asks for 1 pod, the quota refuses it, and with maxUnavailable 0 no old pod may go
    assert out["waves"] == [
        {
            "index": 1,
            "old_replicas": 2,
            "new_replicas": 1,
            "removed": 0,
            "created": 0,
            "refused": 1,
            "placed": 0,
            "pending": 0,
            "freed_gpus": 0,
            "new_gpus": 0,
            "net_gpus": 0,
            "pods": 2,
        }
    ]


def test_surge_with_max_unavailable_frees_gpus_first() -> None:
    # 4 replicas, 25%/25% -> surge 1, unavailable 1: the removed old pod pays for the surge pod
    current = old_deployment_pods(4, "gpu-0")
    result = check_fit(request(4), big_nodes(1), current, [quota("q", 4, 4)], current)
    assert result.fits
    assert result.plan.surge_pods == 1
    assert result.quotas[0].needed == 0
    # the real ReplicaSet is refused while the old pod terminates, then retried with backoff: the message says so
    assert result.msg == (
        "4 replicas × 1 nvidia.com/gpu fit (rollout peak: 5 pods, 1 surge pod, needs 0 nvidia.com/gpu beyond what "
        "the Deployment holds); up to 4 replicas would fit; the quota leaves room for 0 of the 1 nvidia.com/gpu the "
        "surge takes, so new pods are refused until old ones are gone and Kubernetes retries them with a growing "
        "backoff (doubled at each refusal, up to 1000 s): the rollout can stall for minutes, past its progress "
        "deadline (more quota headroom avoids it)"
    )


def test_a_scale_down_under_an_exceeded_quota_adds_no_backoff_warning() -> None:
    # 3 replicas of 2 GPUs down to 1 of 1, maxSurge 0: the new pod needs no more than the old ones free
    current = old_deployment_pods(3, "gpu-0", gpus=2)
    strategy = RolloutStrategy(type="RollingUpdate", max_surge=0, max_unavailable="25%")
    result = check_fit(request(1, strategy=strategy), big_nodes(1), current, [quota("q", 5, 6)], current)
    assert result.fits
    assert "backoff" not in result.msg


def test_a_quota_with_room_for_the_surge_adds_no_backoff_warning() -> None:
    current = old_deployment_pods(4, "gpu-0")
    result = check_fit(request(4), big_nodes(1), current, [quota("q", 5, 4)], current)
    assert result.fits
    assert result.msg == (
        "4 replicas × 1 nvidia.com/gpu fit (rollout peak: 5 pods, 1 surge pod, needs 0 nvidia.com/gpu beyond what "
        "the Deployment holds); up to 4 replicas would fit"
    )


def test_recreate_frees_everything_first() -> None:
    current = old_deployment_pods(2, "gpu-0")
    strategy = RolloutStrategy(type="Recreate")
    result = check_fit(
        request(2, strategy=strategy), big_nodes(1), current + [pod("x", "gpu-0", 2)], [quota("q", 2, 2)], current
    )
    assert result.fits
    waves = result.to_dict()["rollout"]["waves"]
    assert [(w["removed"], w["created"], w["freed_gpus"], w["net_gpus"]) for w in waves] == [
        (2, 0, 2, -2),
        (0, 2, 0, 0),
    ]
    assert result.plan.surge_pods == 0
    assert result.quotas[0].needed == 0


def test_recreate_scaling_down_has_no_surge() -> None:
    current = old_deployment_pods(3, "gpu-0")
    result = check_fit(request(2, strategy=RolloutStrategy(type="Recreate")), big_nodes(1), current, [], current)
    assert result.fits
    assert (result.plan.peak_pods, result.plan.surge_pods) == (3, 0)


def test_recreate_cannot_help_when_the_end_state_does_not_fit() -> None:
    current = old_deployment_pods(2, "gpu-0")
    result = check_fit(
        request(4, strategy=RolloutStrategy(type="Recreate")), big_nodes(1), current, [quota("q", 3, 2)], current
    )
    assert not result.fits
    assert result.alternative is None
    assert result.quotas[0].needed == 2
    assert result.max_replicas == 3
    assert result.msg == (
        "needs 2 nvidia.com/gpu beyond the GPUs the Deployment's current pods free, quota q has 1 free: "
        "lower replicas to 3 or raise requests.nvidia.com/gpu to 4"
    )


def test_surge_fits_on_another_node_then_old_pods_free_theirs() -> None:
    # gpu-a is full of the Deployment's two 2-GPU pods; gpu-b has 2 free: surge lands there
    nodes = [node("gpu-a", 4), node("gpu-b", 4)]
    current = old_deployment_pods(2, "gpu-a", gpus=2)
    pods = current + [pod("other", "gpu-b", 2)]
    strategy = RolloutStrategy(max_surge=1, max_unavailable=0)
    result = check_fit(request(2, gpus=2, strategy=strategy), nodes, pods, [], current)
    assert result.fits
    assert {n["name"]: n["deployment_gpus"] for n in result.to_dict()["nodes"]} == {"gpu-a": 4, "gpu-b": 0}
    # with gpu-b full the surge pod has nowhere to go
    full = current + [pod("other", "gpu-b", 4)]
    blocked = check_fit(request(2, gpus=2, strategy=strategy), nodes, full, [], current)
    assert not blocked.fits
    assert blocked.alternative == "maxSurge: 0 with maxUnavailable: 1"


def test_freed_gpus_on_nodes_the_new_template_cannot_use_do_not_help() -> None:
    nodes = [node("gpu-a", 4, labels={"pool": "old"}), node("gpu-b", 4, labels={"pool": "new"})]
    current = old_deployment_pods(2, "gpu-a", gpus=2)
    pods = current + [pod("other", "gpu-b", 3)]
    result = check_fit(
        request(2, gpus=1, node_selector={"pool": "new"}, strategy=RolloutStrategy(type="Recreate")),
        nodes,
        pods,
        [],
        current,
    )
    assert not result.fits
    assert result.max_replicas == 1
    assert "not eligible: gpu-a (node selector pool=new does not match)" in result.msg


def test_percent_surge_rounding_in_the_rollout() -> None:
    current = old_deployment_pods(10, "gpu-0")
    result = check_fit(request(10), big_nodes(4), current, [], current)  # 25%/25% of 10 -> 3 / 2
    assert result.fits
    out = result.to_dict()
    assert (out["rollout"]["max_surge"], out["rollout"]["max_unavailable"], out["surge_pods"]) == (3, 2, 3)
    assert out["rollout"]["waves"][0] == {
        "index": 1,
        "old_replicas": 8,
        "new_replicas": 3,
        "removed": 2,
        "created": 3,
        "refused": 0,
        "pending": 0,
        "freed_gpus": 2,
        "new_gpus": 3,
        "net_gpus": 1,
        "pods": 11,
        "placed": 3,
    }
    # at its peak the rollout holds 13 pods, 3 GPUs beyond the start; with no quota headroom the surge pods
    # are only refused until old pods go: slower, not stuck. The quota needs no headroom at all.
    assert (result.plan.peak_pods, result.plan.peak_net_gpus) == (13, 3)
    assert out["rollout"]["needed"] == 0


def test_scale_up_during_rollout_scales_the_old_replicaset_first() -> None:
    # A replica change with a template change is a scaling event for the Deployment controller: the old
    # ReplicaSet goes from 2 to 4 (2 old pods created), then the rollout surges 1 new pod: 3 beyond usage.
    current = old_deployment_pods(2, "gpu-0")
    strategy = RolloutStrategy(max_surge=1, max_unavailable=0)
    result = check_fit(request(4, strategy=strategy), big_nodes(2), current, [quota("q", 5, 2)], current)
    first, second = result.plan.waves[:2]
    assert (first.old_replicas, first.new_replicas, first.created, first.net_gpus) == (4, 0, 2, 2)
    assert (second.old_replicas, second.new_replicas, second.created, second.net_gpus) == (4, 1, 1, 3)
    assert result.quotas[0].needed == 3
    assert result.fits
    short = check_fit(request(4, strategy=strategy), big_nodes(2), current, [quota("q", 4, 2)], current)
    assert not short.fits
    assert short.alternative == "maxSurge: 0 with maxUnavailable: 1"


def test_largest_replica_count_uses_the_same_strategy() -> None:
    current = old_deployment_pods(1, "gpu-0")
    result = check_fit(request(8), big_nodes(2), current, [quota("q", 6, 1)], current)
    # quota headroom 5, and the old pod's GPU comes back: the end state allows 6. With 6 replicas
    # (surge 2, unavailable 1) the old ReplicaSet first grows to 6 (5 GPUs), then every refused surge pod
    # waits until an old pod goes: slower, but the rollout completes. 7 would not fit even at the end.
    assert not result.fits
    assert result.quotas[0].needed == 7
    assert result.max_replicas == 6
    assert "lower replicas to 6" in result.msg


def test_simulation_removes_unscheduled_and_crowded_pods_first() -> None:
    old = [
        OldPod("a1", "gpu-a", 1, "2025-01-01T00:00:01Z"),
        OldPod("a2", "gpu-a", 1, "2025-01-01T00:00:02Z"),
        OldPod("b1", "gpu-b", 1, "2025-01-01T00:00:03Z"),
        OldPod("pending", None, 1, "2025-01-01T00:00:00Z"),
    ]
    plan = simulate_rollout(4, 1, RolloutStrategy(max_surge=0, max_unavailable=2), old, {"gpu-a": 0, "gpu-b": 0})
    first = plan.waves[0]
    assert (first.removed, first.created, first.freed_gpus) == (2, 0, 2)
    # "pending" frees quota but no node GPU; a2 (newest on the crowded gpu-a) frees one on gpu-a
    second = plan.waves[1]
    assert (second.created, second.placed, second.pending) == (2, 1, 1)
    # the rollout goes on one pod at a time as old pods go, but the 3 GPUs they free are 3 slots for 4 pods
    assert not plan.completed
    assert (plan.new_created, plan.new_pending) == (4, 1)
    assert plan.node_failure is plan.waves[-1]


def test_scaling_event_then_unavailable_budget_pays_for_the_surge() -> None:
    # 3 -> 4 replicas with 25%/25% (surge 1, unavailable 1) and 1 GPU of quota left: the old ReplicaSet first
    # grows to 4 (the 1 GPU), then each new pod is admitted once an old pod has gone. Found on the cluster.
    current = old_deployment_pods(3, "gpu-0")
    result = check_fit(request(4), big_nodes(2), current, [quota("q", 4, 3)], current)
    assert result.fits
    assert result.quotas[0].needed == 1
    first = result.plan.waves[0]
    assert (first.old_replicas, first.new_replicas, first.created) == (4, 0, 1)


def test_replica_change_with_room_for_one_of_two_surge_pods() -> None:
    # 3 x 2 GPUs become 4 x 2 with 30%/10% (surge 2, unavailable 0), 5 GPUs of quota left: the old ReplicaSet
    # grows to 4 (2 GPUs), one surge pod is admitted (2 more), the other waits until an old pod has gone.
    current = old_deployment_pods(3, "gpu-0", gpus=2)
    strategy = RolloutStrategy(max_surge="30%", max_unavailable="10%")
    result = check_fit(request(4, gpus=2, strategy=strategy), big_nodes(4), current, [quota("q", 11, 6)], current)
    assert result.fits
    assert result.quotas[0].needed == 4
    assert result.plan.waves[1].refused == 1
    short = check_fit(request(4, gpus=2, strategy=strategy), big_nodes(4), current, [quota("q", 9, 6)], current)
    assert not short.fits
    assert short.quotas[0].needed == 4


def test_rollout_crawls_when_only_one_surge_pod_fits() -> None:
    # maxSurge 2, maxUnavailable 0, one free GPU: one surge pod runs, the other waits Pending until an old pod
    # goes. Slower, but the rollout completes; a wave-by-wave "all surge pods must fit" check would refuse it.
    nodes = [node("gpu-a", 4), node("gpu-b", 1)]
    current = old_deployment_pods(4, "gpu-a")
    strategy = RolloutStrategy(max_surge=2, max_unavailable=0)
    result = check_fit(request(4, strategy=strategy), nodes, current, [], current)
    assert result.fits
    first = result.plan.waves[0]
    assert (first.new_replicas, first.created, first.placed, first.pending) == (2, 2, 1, 1)
    assert result.plan.surge_pods == 2
    # with no free GPU at all no surge pod starts and no old pod may go: the deadlock
    full = check_fit(request(4, strategy=strategy), nodes, current + [pod("x", "gpu-b", 1)], [], current)
    assert not full.fits
    assert full.msg.startswith("2 of 2 new pods (1 nvidia.com/gpu each) in rollout wave 1 fit on no eligible node")


def test_recreate_scale_down_under_an_exceeded_quota() -> None:
    # the quota was lowered below the usage: hard 3, used 5. Going to 1 replica frees 4 first: it fits.
    current = old_deployment_pods(5, "gpu-0")
    recreate = RolloutStrategy(type="Recreate")
    result = check_fit(request(1, strategy=recreate), big_nodes(2), current, [quota("q", 3, 5)], current)
    assert result.fits
    assert result.quotas[0].needed == -4
    assert result.to_dict()["quota"][0]["fits"] is True
    # 4 replicas need the usage at 4 at the peak, above hard 3
    short = check_fit(request(4, strategy=recreate), big_nodes(2), current, [quota("q", 3, 5)], current)
    assert not short.fits
    assert short.quotas[0].needed == -1
    assert short.msg == (
        "quota q is over its limit (5 used of 3) and the rollout needs 4 at its peak: "
        "lower replicas to 3 or raise requests.nvidia.com/gpu to 4"
    )


def test_old_pods_that_are_not_ready_go_first() -> None:
    # "ok" is Ready on gpu-a, "sick" is bound on gpu-b but not Ready; only gpu-b can take new pods. The
    # controller removes unavailable old pods first, so the first new pod finds gpu-b's GPU.
    old = [
        OldPod("ok", "gpu-a", 1, "2025-01-01T00:00:01Z"),
        OldPod("sick", "gpu-b", 1, "2025-01-01T00:00:00Z", ready=False),
    ]
    plan = simulate_rollout(2, 1, RolloutStrategy(max_surge=0, max_unavailable=1), old, {"gpu-b": 0})
    assert (plan.waves[0].removed, plan.waves[0].freed_gpus) == (1, 1)
    assert (plan.waves[1].created, plan.waves[1].placed) == (1, 1)
    # the second new pod has nowhere to go once "ok" frees its GPU on gpu-a
    assert not plan.completed and plan.new_pending == 1


def test_scaling_event_places_old_pods_where_the_old_template_may_go() -> None:
    # the template moves from pool "old" to pool "new" and grows 2 -> 3: the old ReplicaSet first adds an
    # old-template pod on gpu-a (the only node it may use), which the rollout then replaces as well
    nodes = [node("gpu-a", 4, labels={"pool": "old"}), node("gpu-b", 4, labels={"pool": "new"})]
    current = old_deployment_pods(2, "gpu-a")
    start = CurrentDeployment(replicas=2, gpus_per_pod=1, node_selector={"pool": "old"})
    result = check_fit(request(3, node_selector={"pool": "new"}), nodes, current, [], current, start)
    assert result.fits
    first = result.plan.waves[0]
    assert (first.old_replicas, first.created, first.placed) == (3, 1, 1)
    # the same rollout when gpu-a has no room for the extra old pod: it stays Pending, counts as unhealthy
    # and is deleted again; the rollout does not wait for it
    crowded = current + [pod("x", "gpu-a", 2)]
    assert check_fit(request(3, node_selector={"pool": "new"}), nodes, crowded, [], current, start).fits


def test_current_deployment_from_the_api_object() -> None:
    dep = {
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "nodeSelector": {"pool": "a100"},
                    "tolerations": [{"key": GPU, "operator": "Exists"}],
                    "containers": [{"name": "s", "resources": {"limits": {GPU: "2"}}}],
                }
            },
        }
    }
    start = CurrentDeployment.from_deployment(dep, GPU)
    assert (start.replicas, start.gpus_per_pod, start.node_selector) == (3, 2, {"pool": "a100"})
    assert start.tolerations == [Toleration(key=GPU, operator="Exists")]
    assert CurrentDeployment.from_deployment({"spec": {}}, GPU).replicas == 1


# --------------------------------------------------------------------------- Deployment helpers


def test_deployment_pods_follow_owner_references() -> None:
    dep = {"metadata": {"name": "srv", "uid": "uid-dep"}}
    rs = [
        {"metadata": {"name": "srv-1", "uid": "uid-srv-1", "ownerReferences": [{"uid": "uid-dep"}]}},
        {"metadata": {"name": "foreign", "uid": "uid-foreign", "ownerReferences": [{"uid": "uid-other"}]}},
    ]
    pods = [
        pod("mine", "n", owner="srv-1"),
        pod("mine-leaving", "n", owner="srv-1", terminating=True),
        pod("mine-done", "n", owner="srv-1", phase="Succeeded"),
        pod("foreign", "n", owner="foreign"),
        pod("bare", "n"),
    ]
    assert [p["metadata"]["name"] for p in deployment_pods(dep, rs, pods)] == ["mine"]


def test_label_selector_string() -> None:
    selector = {
        "matchLabels": {"app": "srv", "tier": "gpu"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "stage"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "team", "operator": "Exists"},
            {"key": "zone", "operator": "NotIn", "values": ["b"]},
        ],
    }
    assert label_selector_string(selector) == "app=srv,tier=gpu,env in (prod,stage),!canary,team,zone notin (b)"
    with pytest.raises(GpuFitError):
        label_selector_string({"matchExpressions": [{"key": "a", "operator": "Gt"}]})


# --------------------------------------------------------------------------- bounded work at any size


def test_a_million_replicas_of_a_new_deployment_do_not_fit_and_say_what_does() -> None:
    # 4 nodes × 4 GPUs: 16 fit. The single wave is computed, not played pod by pod.
    result = check_fit(request(1_000_000), big_nodes(), [], [quota("q", 1_000_000, 0)])
    assert not result.fits
    assert result.max_replicas == 16
    assert result.plan.new_created == 1_000_000 and result.plan.new_pending == 1_000_000 - 16
    assert result.msg.startswith("999984 of 1000000 new pods (1 nvidia.com/gpu each) fit on no eligible node")
    assert "lower replicas to 16" in result.msg
    quota_result = check_fit(request(1_000_000), big_nodes(), [], [quota("q", 40, 0)])
    assert not quota_result.fits and quota_result.quotas[0].needed == 1_000_000
    assert "needs 1000000 nvidia.com/gpu, quota q has 40 free" in quota_result.msg


def test_a_million_replicas_fit_where_there_is_room_for_them() -> None:
    nodes = [node("huge-{0}".format(i), gpus=250_000, taints=[GPU_TAINT]) for i in range(4)]
    result = check_fit(request(1_000_000), nodes, [], [quota("q", 1_000_000, 0)])
    assert result.fits, result.msg
    assert result.max_replicas == 1_000_000
    assert [(w.created, w.placed, w.pending) for w in result.plan.waves] == [(1_000_000, 1_000_000, 0)]
    assert not check_fit(request(1_000_001), nodes, [], []).fits


def test_a_million_replicas_of_an_existing_deployment_are_refused_by_the_end_state() -> None:
    old = old_deployment_pods(2, "gpu-0")
    result = check_fit(request(1_000_000), big_nodes(), old, [quota("q", 10, 2)], old)
    assert not result.fits
    assert result.max_replicas == 10  # the quota: 8 free and the 2 the current pods hold
    assert result.msg == (
        "1000000 replicas × 1 nvidia.com/gpu need 1000000 nvidia.com/gpu once the rollout is done, and quota q has "
        "10 nvidia.com/gpu for it (free 8 and the current pods' 2) and the eligible nodes have room for 16 "
        "replicas: lower replicas to 10"
    )
    assert result.to_dict()["rollout"]["waves"] == []


def test_an_existing_deployment_above_the_played_size_whose_end_state_fits_is_refused_with_the_limit() -> None:
    nodes = [node("huge-{0}".format(i), gpus=10_000, taints=[GPU_TAINT]) for i in range(2)]
    old = old_deployment_pods(1, "huge-0")
    with pytest.raises(GpuFitError, match=r"replicas 6000: .* pod by pod up to 5000 pods.*lower replicas to at most 5000"):
        check_fit(request(6000), nodes, old, [], old)


def test_no_gpu_at_any_size_fits_without_playing_the_rollout() -> None:
    old = old_deployment_pods(1, "gpu-0", gpus=0)
    result = check_fit(request(1_000_000, gpus=0), big_nodes(), old, [], old)
    assert result.fits and result.max_replicas is None
    assert result.msg == "1000000 replicas request no nvidia.com/gpu: nothing to check, it fits"


@pytest.mark.parametrize("replicas", [0, 1, 3, 7, 40])
@pytest.mark.parametrize("room", [None, 0, 3, 5, 100])
@pytest.mark.parametrize("strategy", [RolloutStrategy(), RolloutStrategy(type="Recreate"),
                                      RolloutStrategy(max_surge=0, max_unavailable=1)])
@pytest.mark.parametrize("free", [None, {}, {"a": 4, "b": 1, "c": 0}, {"a": 100}])
def test_a_new_deployment_computed_is_the_new_deployment_played(replicas, room, strategy, free) -> None:
    for gpus in (0, 1, 2):
        computed = first_rollout(replicas, gpus, strategy, free, room)
        played = simulate_rollout(replicas, gpus, strategy, [], free, room)
        assert computed.completed == played.completed
        assert [w.to_dict() for w in computed.waves] == [w.to_dict() for w in played.waves]
        for key in ("max_surge", "max_unavailable", "peak_pods", "peak_net_gpus", "new_created", "new_pending",
                    "refused", "surge_pods"):
            assert getattr(computed, key) == getattr(played, key), key
        assert (computed.node_failure and computed.node_failure.index) == (played.node_failure and played.node_failure.index)


def test_a_thousand_replicas_replaced_one_at_a_time() -> None:
    # maxSurge 0 / maxUnavailable 1: 2,000 waves; each costs what it changes, not a pass over every pod.
    nodes = [node("gpu-{0:02d}".format(i), gpus=20, taints=[GPU_TAINT]) for i in range(50)]
    old = [pod("srv-old-{0}".format(i), "gpu-{0:02d}".format(i % 50), owner="srv-1") for i in range(1000)]
    strategy = RolloutStrategy(max_surge=0, max_unavailable=1)
    result = check_fit(request(1000, strategy=strategy), nodes, old, [quota("q", 1000, 1000)], old)
    assert result.fits, result.msg
    assert len(result.plan.waves) == 2000 and result.plan.peak_pods == 1000 and result.plan.needed == 0
    surge = RolloutStrategy(max_surge=1, max_unavailable=0)
    stuck = check_fit(request(1000, strategy=surge), nodes, old, [quota("q", 1000, 1000)], old)
    assert not stuck.fits and "needs 1 nvidia.com/gpu at the rollout's peak (1 surge pod)" in stuck.msg


def test_a_canarys_pods_are_not_the_stable_deployments() -> None:
    """Issue 15: the canary's pods carry the model's selector labels, so a list by the stable Deployment's selector
    returns them too; only the pods of the Deployment's own ReplicaSets are its pods (the canary's are other pods)."""
    labels = {"app.kubernetes.io/component": "model-server", "creativeflow.ai/model-name": "m"}
    deployment = {"metadata": {"name": "m", "uid": "d-stable"}, "spec": {"selector": {"matchLabels": labels}}}
    replicasets = [{"metadata": {"name": "m-1", "uid": "rs-stable", "ownerReferences": [{"uid": "d-stable"}]}},
                   {"metadata": {"name": "m-canary-1", "uid": "rs-canary", "ownerReferences": [{"uid": "d-canary"}]}}]
    stable = {"metadata": {"name": "m-1-a", "labels": labels, "ownerReferences": [{"uid": "rs-stable"}]},
              "status": {"phase": "Running"}}
    canary = {"metadata": {"name": "m-canary-1-a", "labels": dict(labels, **{"creativeflow.ai/track": "canary"}),
                           "ownerReferences": [{"uid": "rs-canary"}]}, "status": {"phase": "Running"}}
    assert [p["metadata"]["name"] for p in deployment_pods(deployment, replicasets, [stable, canary])] == ["m-1-a"]
