# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of a canary's plan: the split a cluster gets, pods per step, weights expressed, the peak of pods."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.plan import (
    CanaryPlanError,
    ReplicaSplit,
    istio_api_version,
    plan_canary,
    replica_split,
    resolve_split,
    weighted_canary_replicas,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import Bounds, Canary, Step

ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
ISTIO_V1 = {("networking.istio.io/v1", "VirtualService"), ("networking.istio.io/v1", "DestinationRule")}
ISTIO_BETA = {("networking.istio.io/v1beta1", "VirtualService"), ("networking.istio.io/v1beta1", "DestinationRule")}


def canary(*steps, header=None) -> Canary:
    return Canary(steps=tuple(Step(weight, pause) for weight, pause in steps), split="auto",
                  bounds=Bounds(max_error_ratio=0.01), header=header)


# ---- the split

@pytest.mark.parametrize("requested, served, split", [
    ("auto", set(), "replicas"),
    ("auto", {ROUTE}, "gateway"),
    ("auto", ISTIO_V1, "istio"),
    ("auto", ISTIO_V1 | {ROUTE}, "istio"),
    ("auto", {("networking.istio.io/v1", "VirtualService")}, "replicas"),  # half of Istio is no Istio
    ("replicas", ISTIO_V1 | {ROUTE}, "replicas"),
    ("gateway", ISTIO_V1 | {ROUTE}, "gateway"),
    ("istio", ISTIO_BETA, "istio"),
])
def test_resolve_split(requested, served, split):
    assert resolve_split(requested, served)[0] == split


def test_resolve_split_says_why():
    assert resolve_split("auto", set()) == (
        "replicas", "split auto: the cluster serves neither Istio nor Gateway API: the replica ratio")
    assert resolve_split("auto", {ROUTE})[1] == "split auto: the cluster serves Gateway API's HTTPRoute (and no Istio)"


def test_a_forced_split_the_cluster_does_not_serve_is_refused():
    with pytest.raises(CanaryPlanError) as raised:
        resolve_split("istio", {ROUTE})
    assert str(raised.value) == (
        "split istio needs Istio's VirtualService and DestinationRule (networking.istio.io v1 or v1beta1), which this "
        "cluster does not serve: install Istio, or set split to gateway, replicas or auto. Nothing was applied.")
    with pytest.raises(CanaryPlanError) as raised:
        resolve_split("gateway", ISTIO_V1)
    assert "split gateway needs Gateway API's HTTPRoute (gateway.networking.k8s.io/v1)" in str(raised.value)


def test_istio_api_version_prefers_v1():
    assert istio_api_version(ISTIO_V1 | ISTIO_BETA) == "networking.istio.io/v1"
    assert istio_api_version(ISTIO_BETA) == "networking.istio.io/v1beta1"
    assert istio_api_version({ROUTE}) is None


# ---- the replica ratio

@pytest.mark.parametrize("weight, replicas, canary_pods, stable_pods, share", [
    (10, 10, 1, 9, 10),
    (50, 10, 5, 5, 50),
    (25, 4, 1, 3, 25),
    (50, 4, 2, 2, 50),
    (10, 3, 1, 2, Fraction(100, 3)),  # the fewest a canary can have
    (50, 3, 1, 2, Fraction(100, 3)),  # a tie goes to the fewer canary pods
    (90, 3, 2, 1, Fraction(200, 3)),  # the stable version keeps one pod below 100%
    (99, 10, 9, 1, 90),
    (100, 3, 3, 0, 100),
    (10, 1, 1, 1, 50),  # one replica: one more pod for the canary
    (100, 1, 1, 0, 100),
    (15, 10, 1, 9, 10),  # 1.5: a tie, the fewer
    (16, 10, 2, 8, 20),
    (60, 3, 2, 1, Fraction(200, 3)),  # 1.8: 2
    (14, 10, 1, 9, 10),
])
def test_replica_split(weight, replicas, canary_pods, stable_pods, share):
    assert replica_split(weight, replicas) == ReplicaSplit(canary_pods, stable_pods, Fraction(share))


def test_replica_split_needs_a_replica():
    with pytest.raises(CanaryPlanError):
        replica_split(10, 0)


@pytest.mark.parametrize("weight, replicas, pods", [(10, 10, 1), (10, 3, 1), (50, 3, 2), (100, 4, 4), (1, 100, 1),
                                                    (34, 3, 2)])
def test_weighted_canary_replicas(weight, replicas, pods):
    assert weighted_canary_replicas(weight, replicas) == pods


# ---- the plan

def test_replica_plan_with_exact_weights():
    plan = plan_canary(canary((10, 120), (50, 300)), 10, "replicas", surge=3)
    assert [step.to_dict() for step in plan.steps] == [
        {"step": 1, "weight": 10, "pause_seconds": 120, "canary_replicas": 1, "stable_replicas": 9,
         "expressed_weight": 10.0, "exact": True, "note": ""},
        {"step": 2, "weight": 50, "pause_seconds": 300, "canary_replicas": 5, "stable_replicas": 5,
         "expressed_weight": 50.0, "exact": True, "note": ""},
    ]
    # step 2 scales the canary to 5 before the stable version goes down from 9: 14 pods; the promotion rolls the
    # stable version's 5 pods with a surge of 3 beside the canary's 5: 13.
    assert plan.peak_pods == 14
    assert plan.extra_pods == 4
    assert plan.warnings == []


def test_replica_plan_says_what_it_cannot_express():
    plan = plan_canary(canary((10, 60), (20, 60), (60, 60)), 3, "replicas")
    assert [(step.canary_replicas, step.stable_replicas, step.expressed_weight, step.exact) for step in plan.steps] == [
        (1, 2, 33.3, False), (1, 2, 33.3, False), (2, 1, 66.7, False)]
    assert plan.steps[0].note == "10% is not expressible with 3 replicas: 1 of 3 pods take 33.3%"
    assert plan.steps[1].note == ("20% is not expressible with 3 replicas: 1 of 3 pods take 33.3%; the same pods as "
                                  "step 1: only its pause adds")
    assert plan.warnings == ["the replica ratio of 3 replica(s) cannot express every weight; more replicas, or split "
                             "gateway or istio (exact weights), follow the steps closer"]
    # step 3: 2 canary pods beside the 2 stable ones before those go down to 1
    assert plan.peak_pods == 4


def test_replica_plan_of_one_replica():
    plan = plan_canary(canary((10, 60), (100, 60)), 1, "replicas")
    assert [(step.canary_replicas, step.stable_replicas, step.expressed_weight) for step in plan.steps] == [
        (1, 1, 50.0), (1, 0, 100.0)]
    assert plan.steps[0].note == ("10% is not expressible with 1 replica: 1 canary pod beside the stable one takes 50% "
                                  "(one pod more than the replicas)")
    assert plan.steps[1].exact and plan.steps[1].note == ""
    # promotion from 1 canary pod and no stable pod: the stable Deployment grows by one before the canary goes
    assert plan.peak_pods == 2


def test_gateway_plan_keeps_the_stable_version_whole():
    plan = plan_canary(canary((10, 60), (50, 120)), 4, "gateway", surge=1)
    assert [step.to_dict() for step in plan.steps] == [
        {"step": 1, "weight": 10, "pause_seconds": 60, "canary_replicas": 1, "stable_replicas": 4,
         "expressed_weight": 10.0, "exact": True, "note": ""},
        {"step": 2, "weight": 50, "pause_seconds": 120, "canary_replicas": 2, "stable_replicas": 4,
         "expressed_weight": 50.0, "exact": True, "note": ""},
    ]
    # promotion: the stable version rolls (4 + 1 surge) while the canary's 2 pods serve
    assert plan.peak_pods == 7
    assert plan.promote == ("every request goes to the model's Service (both versions' pods), the stable Deployment "
                            "takes the new version (rolling update of its 4 pod(s)), then the route and the canary's 2 "
                            "pod(s) go")


def test_plan_lines_for_check_mode():
    plan = plan_canary(canary((10, 120), (50, 300), header=("x-canary", "1")), 3, "istio",
                       "split istio (the catalog's)", surge=1)
    assert plan.lines() == [
        "split istio (the catalog's); 3 replica(s); at most 6 pods at once (3 more than the replicas)",
        "A/B: requests with header x-canary: 1 always go to the canary",
        "step 1: 10% for 2m: canary 1 pod(s), stable 3 pod(s)",
        "step 2: 50% for 5m: canary 2 pod(s), stable 3 pod(s)",
        "then promote: every request goes to the model's Service (both versions' pods), the stable Deployment takes "
        "the new version (rolling update of its 3 pod(s)), then the route and the canary's 2 pod(s) go",
    ]
    lines = plan_canary(canary((10, 90)), 3, "replicas").lines()
    assert lines[1] == ("step 1: 10% asked, 33.3% expressed for 1m30s: canary 1 pod(s), stable 2 pod(s) - "
                        "10% is not expressible with 3 replicas: 1 of 3 pods take 33.3%")
    assert lines[-1].startswith("warning: the replica ratio of 3 replica(s) cannot express every weight")


def test_plan_to_dict():
    found = plan_canary(canary((25, 60)), 4, "replicas").to_dict()
    assert found == {"split": "replicas", "why": "split replicas", "replicas": 4, "peak_pods": 5, "extra_pods": 1,
                     "steps": [{"step": 1, "weight": 25, "pause_seconds": 60, "canary_replicas": 1,
                                "stable_replicas": 3, "expressed_weight": 25.0, "exact": True, "note": ""}],
                     "promote": "the stable Deployment takes the new version (rolling update of its 3 pod(s)), then "
                                "grows to 4 while the canary's 1 pod(s) go, one by one",
                     "header": None, "warnings": []}


def test_plan_needs_a_replica():
    with pytest.raises(CanaryPlanError):
        plan_canary(canary((10, 60)), 0, "gateway")


def test_a_gateway_parent_the_resolved_split_does_not_use_is_said():
    with_parent = Canary(steps=(Step(50, 60),), split="auto", bounds=Bounds(max_error_ratio=0.01),
                         gateway={"name": "public"})
    assert plan_canary(with_parent, 2, "replicas").warnings == [
        "strategy.canary.gateway (public) is not used: the split is replicas"]
    assert plan_canary(with_parent, 2, "gateway").warnings == []


def test_a_canary_without_a_minimum_of_requests_is_warned_about():
    """min_requests 0 (a cluster no request reaches, such as the kwok test of the route objects): a step passes on
    its pause alone; the plan says so."""
    spec = canary((10, 120))
    spec = dataclasses.replace(spec, bounds=dataclasses.replace(spec.bounds, min_requests=0))
    plan = plan_canary(spec, 4, "gateway")
    assert plan.warnings == ["analysis.min_requests is 0: a step passes without any canary request (its pause is all "
                             "it proves); set it above 0 wherever traffic reaches the model"]
    assert not plan_canary(canary((10, 120)), 4, "gateway").warnings
