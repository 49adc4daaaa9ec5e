"""A canary in the catalog on the local kwok cluster (issue 15): a first deploy is a plain one, --check prints the plan
of every step, a real run runs step 1 and aborts it (kwok's pods serve no metrics), an interrupted canary stays and
playbooks/canary.yml promotes it. The analysis of real metrics runs on the real node (test_canary_real.py).

The split is forced to replicas: whether the shared cluster serves Istio or Gateway API is no concern of this test.
"""

from __future__ import annotations

import signal
import time
from typing import Any, Dict, Iterator, Optional

import pytest
import yaml

from playbooks import REPO_ROOT, baseline_namespace, run_playbook, start_playbook

MODEL = "image-classifier"
CATALOG_FILE = REPO_ROOT / "inventories" / "shared" / "group_vars" / "all" / "models.yml"
CANARY = {"steps": [{"weight": 10, "pause": "2m"}, {"weight": 50, "pause": "5m"}], "split": "replicas",
          "analysis": {"error_ratio": {"max": 0.02}, "p99_latency": {"max": "500ms"}}}
SHORT = dict(CANARY, steps=[{"weight": 10, "pause": "2s"}, {"weight": 50, "pause": "2s"}],
             analysis=dict(CANARY["analysis"], interval="1s"))
LONG = dict(CANARY, steps=[{"weight": 10, "pause": "5m"}], analysis=dict(CANARY["analysis"], interval="1s"))


def catalog_with_canary(canary: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The shared catalog, image-classifier with 4 replicas and a canary in the local environment (prod's autoscaling
    cannot run with a canary yet)."""
    models = yaml.safe_load(CATALOG_FILE.read_text())["ai_serving_models"]
    models[MODEL]["environments"]["local"] = {"replicas": 4, "strategy": {"canary": canary or CANARY}}
    return {"ai_serving_models": models}


@pytest.fixture(scope="module")
def canary_namespace(kubeconfig: str, core_v1) -> Iterator[str]:
    with baseline_namespace(core_v1, "t-canary", {"requests.nvidia.com/gpu": "8", "pods": "50"}) as name:
        yield name


def test_check_prints_the_plan_and_a_real_run_aborts_without_metrics(kubeconfig: str, canary_namespace: str, apps_v1) -> None:
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

    # A real run: kwok's pods have no server, so the canary gets no measured request and is aborted after its pause
    # and one more; the stable version keeps its pods and its template, and gets its replicas back.
    short = dict(changed, **catalog_with_canary(SHORT))
    aborted = run_playbook("deploy_model.yml", kubeconfig, short)
    assert aborted.returncode != 0, aborted.explain()
    for text in ["Canary | Start [ok]", "Canary | Step 1: 10% for 2s (1 canary, 3 stable pod(s)) [failed]",
                 "metrics not read: ", "(simulated node)",
                 f"The canary of {MODEL} was aborted at step 1: not enough canary requests in ",
                 f"Removed Deployment/{MODEL}-canary; the stable version is back at 4 available pod(s)"]:
        assert text in aborted.output, aborted.explain()
    after = apps_v1.read_namespaced_deployment(MODEL, canary_namespace)
    assert after.spec.template == before.spec.template and after.spec.replicas == 4
    assert canaries(apps_v1, canary_namespace) == []

    # The version that runs, deployed again after the abort: nothing changes. (The apply takes spec.replicas back
    # from the scale subresource's writes: a write of the field ownership only, which is not reported as a change.)
    again = run_playbook("deploy_model.yml", kubeconfig, extra)
    assert again.returncode == 0 and again.recap["changed"] == 0, again.explain()


def canaries(apps_v1, namespace: str) -> list:
    return apps_v1.list_namespaced_deployment(namespace, label_selector="creativeflow.ai/track=canary").items


def test_an_interrupted_canary_stays_and_is_promoted_by_hand(kubeconfig: str, canary_namespace: str, apps_v1) -> None:
    """Ctrl-C during step 1 leaves the canary beside the stable version; playbooks/canary.yml -e canary_action=promote then
    promotes it (the scale subresource and the one-pod moves on a real API server); a plain rerun changes nothing."""
    extra = {"model": MODEL, "ai_namespace_name": canary_namespace, **catalog_with_canary(LONG),
             "ai_serving_pod_annotations": {"example.com/release": "3"}}
    started = start_playbook("deploy_model.yml", kubeconfig, extra)
    deadline = time.monotonic() + 120
    while ": step 1 (10%)" not in started.output_so_far():
        assert time.monotonic() < deadline and started.proc.poll() is None, started.output_so_far()
        time.sleep(0.5)
    workers = started.workers()
    started.proc.send_signal(signal.SIGINT)
    run = started.finish(120, workers=workers)
    assert run.returncode != 0, run.explain()
    assert "Interrupted by SIGINT during 'Canary | Step 1: 10% for 5m (1 canary, 3 stable pod(s))'" in run.output, \
        run.explain()
    left = canaries(apps_v1, canary_namespace)
    assert [(d.metadata.name, d.spec.replicas) for d in left] == [(f"{MODEL}-canary", 1)]
    assert apps_v1.read_namespaced_deployment(MODEL, canary_namespace).spec.replicas == 3

    promoted = run_playbook("canary.yml", kubeconfig, dict(extra, canary_action="promote"))
    assert promoted.returncode == 0, promoted.explain()
    assert "Canary | Promote: " in promoted.output and "Canary | Step" not in promoted.output, promoted.explain()
    stable = apps_v1.read_namespaced_deployment(MODEL, canary_namespace)
    assert stable.spec.replicas == 4 and stable.status.available_replicas == 4
    assert stable.spec.template.metadata.annotations["example.com/release"] == "3"
    assert canaries(apps_v1, canary_namespace) == []

    again = run_playbook("deploy_model.yml", kubeconfig, extra)
    assert again.returncode == 0 and again.recap["changed"] == 0, again.explain()

    nothing = run_playbook("canary.yml", kubeconfig, dict(extra, canary_action="abort"))
    assert nothing.returncode != 0, nothing.explain()
    assert f"canary_action abort: no canary of {MODEL} runs in namespace {canary_namespace}" in nothing.output, \
        nothing.explain()
