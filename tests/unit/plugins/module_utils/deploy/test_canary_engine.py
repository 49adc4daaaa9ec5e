# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy engine with a canary in the catalog (issue 15): ``--check`` prints the plan; a first deploy is a plain
one. The steps themselves: test_canary_progression.py."""

from __future__ import annotations

import copy
from typing import Any, Dict

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.engine import Engine
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import DeployError

# api is a fixture of test_engine, used by name.
from test_engine import OK, FakeApi, ScriptedRollout, api, args, run, step_names  # noqa: F401  # pylint: disable=unused-import

CANARY = {"steps": [{"weight": 10, "pause": "2m"}, {"weight": 50, "pause": "5m"}],
          "analysis": {"error_ratio": {"max": 0.02}}}


def with_canary(replicas: int = 4, **canary: Any) -> Dict[str, Any]:
    model = copy.deepcopy(args()["model"])
    model["replicas"] = replicas
    model["strategy"] = {"type": "RollingUpdate", "max_surge": 1, "max_unavailable": 0,
                         "canary": dict(CANARY, **canary)}
    return model


def deployed(api: FakeApi, replicas: int = 4) -> None:  # noqa: F811 (the fixture's name)
    ScriptedRollout.script = [OK]
    model = copy.deepcopy(args()["model"])
    model["replicas"] = replicas
    run(api, model=model)


def canary_step(engine: Engine) -> Dict[str, Any]:
    return next(s for s in engine.steps if s["name"] == "Preflight | Canary plan")


def test_check_mode_prints_the_plan(api: FakeApi) -> None:  # noqa: F811
    deployed(api)
    before = copy.deepcopy(api.objects)
    engine = run(api, check_mode=True, model=with_canary())
    assert api.objects == before
    assert step_names(engine)[:4] == ["Preflight | Inputs", "Preflight | Cluster", "Preflight | Canary plan",
                                      "Preflight | GPU capacity"]
    assert canary_step(engine)["msg"] == "\n    ".join([
        "split auto: the cluster serves neither Istio nor Gateway API: the replica ratio; 4 replica(s); at most 5 "
        "pods at once (1 more than the replicas)",
        "step 1: 10% asked, 25% expressed for 2m: canary 1 pod(s), stable 3 pod(s) - 10% is not expressible with 4 "
        "replicas: 1 of 4 pods take 25%",
        "step 2: 50% for 5m: canary 2 pod(s), stable 2 pod(s)",
        "then promote: the stable Deployment takes the new version (rolling update of its 2 pod(s)), then grows to 4 "
        "while the canary's 2 pod(s) go, one by one",
        "warning: the replica ratio of 4 replica(s) cannot express every weight; more replicas, or split gateway or "
        "istio (exact weights), follow the steps closer",
    ])
    assert engine.warnings == [
        "--check of image-classifier: the plan is the 'Preflight | Canary plan' step; the dry run and diff that follow "
        "show a rolling update's changes, while the canary leaves Deployment image-classifier's template as it is "
        "until the promotion."]


def test_the_split_follows_what_the_cluster_serves(api: FakeApi, monkeypatch) -> None:  # noqa: F811
    deployed(api)
    monkeypatch.setattr(FakeApi, "get_if_served", lambda self, kind, name, namespace, api_version: (
        (api_version, kind) == ("gateway.networking.k8s.io/v1", "HTTPRoute"), None))
    engine = run(api, check_mode=True, model=with_canary())
    assert canary_step(engine)["msg"].startswith("split auto: the cluster serves Gateway API's HTTPRoute (and no "
                                                 "Istio); 4 replica(s); at most 7 pods at once (3 more than the "
                                                 "replicas)")


def test_a_forced_split_the_cluster_lacks_stops_the_deploy(api: FakeApi) -> None:  # noqa: F811
    deployed(api)
    with pytest.raises(DeployError) as raised:
        run(api, check_mode=True, model=with_canary(split="istio"))
    assert str(raised.value).startswith("strategy.canary of image-classifier: split istio needs Istio's VirtualService "
                                        "and DestinationRule")


def test_a_first_deploy_has_nothing_to_canary_against(api: FakeApi) -> None:  # noqa: F811
    ScriptedRollout.script = [OK]
    engine = run(api, model=with_canary())
    assert canary_step(engine)["msg"] == ("first deploy of image-classifier: no stable version to run a canary "
                                          "against, a plain deploy")
    assert ("Deployment", "image-classifier") in api.objects


def test_the_gpu_preflight_counts_the_canarys_pods(api: FakeApi, monkeypatch) -> None:  # noqa: F811
    deployed(api)
    seen: Dict[str, Any] = {}

    class Check:
        def __init__(self, params: Dict[str, Any], client: Any) -> None:
            seen.update(params)

        def run(self) -> Dict[str, Any]:
            return {"fits": True, "msg": "6 pods fit", "max_replicas": 8}

    monkeypatch.setattr("ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.engine.CapacityCheck",
                        Check)
    engine = run(api, check_mode=True, model=with_canary(), gpu_preflight=True)
    assert (seen["replicas"], seen["strategy"], seen["max_surge"], seen["max_unavailable"]) == (
        4, "RollingUpdate", 1, 0)
    gpu = next(s for s in engine.steps if s["name"] == "Preflight | GPU capacity")
    assert gpu["msg"] == "with the canary's 1 more pod(s) at its peak: 6 pods fit"
