"""A canary in the catalog on the local cluster (issue 15, first increment): a first deploy is a plain one, --check
prints the plan of every step, and a real run stops before anything is applied (the steps do not run yet).

The split is forced to replicas: whether the shared cluster serves Istio or Gateway API is no concern of this test.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest
import yaml

from playbooks import REPO_ROOT, baseline_namespace, run_playbook

MODEL = "image-classifier"
CATALOG_FILE = REPO_ROOT / "inventories" / "shared" / "group_vars" / "all" / "models.yml"
CANARY = {"steps": [{"weight": 10, "pause": "2m"}, {"weight": 50, "pause": "5m"}], "split": "replicas",
          "analysis": {"error_ratio": {"max": 0.02}, "p99_latency": {"max": "500ms"}}}


def catalog_with_canary() -> Dict[str, Any]:
    """The shared catalog, image-classifier with 4 replicas and a canary in the local environment (prod's autoscaling
    cannot run with a canary yet)."""
    models = yaml.safe_load(CATALOG_FILE.read_text())["ai_serving_models"]
    models[MODEL]["environments"]["local"] = {"replicas": 4, "strategy": {"canary": CANARY}}
    return {"ai_serving_models": models}


@pytest.fixture(scope="module")
def canary_namespace(kubeconfig: str, core_v1) -> Iterator[str]:
    with baseline_namespace(core_v1, "t-canary", {"requests.nvidia.com/gpu": "8", "pods": "50"}) as name:
        yield name


def test_check_prints_the_plan_and_a_real_run_applies_nothing(kubeconfig: str, canary_namespace: str, apps_v1) -> None:
    extra = {"model": MODEL, "ai_namespace_name": canary_namespace, **catalog_with_canary()}
    first = run_playbook("deploy_model.yml", kubeconfig, extra)
    assert first.returncode == 0, first.explain()
    assert ("Preflight | Canary plan [ok]" in first.stdout and f"first deploy of {MODEL}: no stable version to run a "
            "canary against, a plain deploy" in first.stdout), first.explain()
    before = apps_v1.read_namespaced_deployment(MODEL, canary_namespace)

    changed = dict(extra, ai_serving_pod_annotations={"example.com/release": "2"})
    checked = run_playbook("deploy_model.yml", kubeconfig, changed, "--check")
    assert checked.returncode == 0, checked.explain()
    for line in [
        "Preflight | Canary plan [ok]",
        "split replicas (the catalog's); 4 replica(s); at most 5 pods at once (1 more than the replicas)",
        "step 1: 10% asked, 25% expressed for 2m: canary 1 pod(s), stable 3 pod(s) - 10% is not expressible with 4 "
        "replicas: 1 of 4 pods take 25%",
        "step 2: 50% for 5m: canary 2 pod(s), stable 2 pod(s)",
        "then promote: the stable Deployment takes the new version (rolling update of its 2 pod(s)), then grows to 4 "
        "while the canary's 2 pod(s) go, one by one",
        "Preflight | GPU capacity [ok]",
        "with the canary's 1 more pod(s) at its peak:",
    ]:
        assert line in checked.stdout, checked.explain()

    refused = run_playbook("deploy_model.yml", kubeconfig, changed)
    assert refused.returncode != 0, refused.explain()
    assert (f"strategy.canary of {MODEL}: this version plans the canary (--check shows the plan) but does not run its "
            "steps yet. Remove strategy.canary to deploy with a rolling update. Nothing was applied.") in refused.output, \
        refused.explain()
    after = apps_v1.read_namespaced_deployment(MODEL, canary_namespace)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert apps_v1.list_namespaced_deployment(canary_namespace, label_selector="creativeflow.ai/track=canary").items == []
