"""Deploy safety (issue 18) on the local cluster: API outages, one deploy at a time, the last good version, interrupts.

No mocks: playbooks/deploy_model.yml runs against the test cluster and is raced, interrupted
(SIGINT/SIGTERM to ansible-playbook, as Ctrl-C and a CI runner's stop do), killed (SIGKILL
of every process of the run) and cut off from its API server (the cluster's kube-apiserver
process killed, then started again by cluster/cluster.sh up, as a control plane restart).

On the simulated nodes: image-classifier (TF Serving, one GPU) with pod annotations that
tell versions apart, the cluster's fault stages (label sim.creativeflow.ai/fault=crash-loop)
and start-up delay (annotation sim.creativeflow.ai/ready-delay) to keep a rollout waiting.

On the real node (test_*_under_load): the issue's cases 1 and 2 with the CPU example
doubler-python-cpu really serving and a bounded load through its Service the whole time;
zero failed requests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

import image_tools
from playbooks import REPO_ROOT, Run, Started, run_playbook, start_playbook
from serving_tools import Load, catalog, failing_catalog, proxy_for, wait_for

pytestmark = pytest.mark.local_cluster

MODEL = "image-classifier"
FAULT = "sim.creativeflow.ai/fault"
READY_DELAY = "sim.creativeflow.ai/ready-delay"
RELEASE = "example.com/release"
CLUSTER_SH = REPO_ROOT / "cluster" / "cluster.sh"
CLUSTER_DIR = image_tools.CACHE_DIR / "kwok" / "clusters" / os.environ.get("AI_SERVING_CLUSTER_NAME", "ai-serving")
WAIT_STEP = "Rollout | Wait for the new version to be available"


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def namespace(kubeconfig: str, core_v1) -> Iterator[str]:
    """A namespace with what bootstrap_cluster.yml gives the pods (restricted Pod Security, the ServiceAccount)."""
    from kubernetes import client

    name = f"t-safety-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        core_v1.create_namespaced_service_account(name, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="model-server-sa")))
        yield name
    finally:
        core_v1.delete_namespace(name, grace_period_seconds=0)


class Deploys:
    """deploy_model.yml of image-classifier in the test's namespace; each version named by a pod annotation."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace

    def extra(self, release: str, fault: Optional[str] = None, delay: Optional[str] = None,
              **more: Any) -> Dict[str, Any]:
        annotations = {RELEASE: release, **({READY_DELAY: delay} if delay else {})}
        return {"model": MODEL, "ai_namespace_name": self.namespace, "tf_serving_pod_annotations": annotations,
                "tf_serving_pod_labels": {FAULT: fault} if fault else {}, **more}

    def run(self, release: str, fault: Optional[str] = None, delay: Optional[str] = None, timeout: int = 420,
            **more: Any) -> Run:
        return run_playbook("deploy_model.yml", self.kubeconfig, self.extra(release, fault, delay, **more),
                            timeout=timeout)

    def start(self, release: str, fault: Optional[str] = None, delay: Optional[str] = None, **more: Any) -> Started:
        return start_playbook("deploy_model.yml", self.kubeconfig, self.extra(release, fault, delay, **more))


@pytest.fixture(scope="module")
def deploys(kubeconfig: str, namespace: str) -> Deploys:
    return Deploys(kubeconfig, namespace)


def release_of(apps_v1, namespace: str) -> Optional[str]:
    """The version the Deployment's template is at (None when it is not there or the API does not answer)."""
    try:
        dep = apps_v1.read_namespaced_deployment(MODEL, namespace)
    except Exception:  # not there yet, or the API server restarting
        return None
    return (dep.spec.template.metadata.annotations or {}).get(RELEASE)


def settled(apps_v1, namespace: str) -> bool:
    """Rolled out: every replica runs the template, all available, no old one left."""
    dep = apps_v1.read_namespaced_deployment(MODEL, namespace)
    status = dep.status
    return ((status.observed_generation or 0) >= dep.metadata.generation
            and status.updated_replicas == status.available_replicas == status.replicas == dep.spec.replicas)


def assert_good(apps_v1, namespace: str, release: str) -> None:
    wait_for(lambda: settled(apps_v1, namespace), 60, "the Deployment rolled out")
    dep = apps_v1.read_namespaced_deployment(MODEL, namespace)
    assert (dep.spec.template.metadata.annotations or {}).get(RELEASE) == release
    assert FAULT not in (dep.spec.template.metadata.labels or {})
    assert dep.status.available_replicas == 1


def lease_holder(api_client, namespace: str, model: str = MODEL) -> Optional[str]:
    from kubernetes import client

    try:
        return client.CoordinationV1Api(api_client).read_namespaced_lease(
            "ai-serving-deploy-" + model, namespace).spec.holder_identity
    except Exception:  # no Lease yet
        return None


def into_the_wait(apps_v1, namespace: str, release: str, seconds: float = 3) -> None:
    """Until the run applied ``release`` (its rollout wait has begun), then ``seconds`` more."""
    wait_for(lambda: release_of(apps_v1, namespace) == release, 180, f"version {release} applied", interval=0.5)
    time.sleep(seconds)


def component_pid(name: str) -> Optional[int]:
    try:
        pid = int((CLUSTER_DIR / "pids" / f"{name}.pid").read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if state != "Z" else None


def stop_apiserver() -> None:
    """Kill the cluster's kube-apiserver (as a crash: SIGKILL); the client then gets 'connection refused'."""
    pid = component_pid("kube-apiserver")
    if pid is None:
        pytest.fail(f"no kube-apiserver pid under {CLUSTER_DIR}/pids: is the local cluster up?")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: component_pid("kube-apiserver") is None, 10, "kube-apiserver gone", interval=0.2)


def start_control_plane(settle_s: float = 20) -> None:
    """Start what is stopped (the apiserver; the controller-manager and scheduler exit when they lose their leader
    lease during an outage), and again for ``settle_s`` whatever stops after."""
    deadline = time.monotonic() + settle_s
    while True:
        proc = subprocess.run([str(CLUSTER_SH), "up"], cwd=REPO_ROOT, capture_output=True, text=True, check=False,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        while time.monotonic() < deadline:
            if any(component_pid(c) is None for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")):
                break
            time.sleep(1)
        else:
            return


# --------------------------------------------------------------------------- 1. API outages


def test_an_api_outage_of_15_s_during_the_rollout_wait_is_waited_out(
        deploys: Deploys, apps_v1, namespace: str) -> None:
    base = deploys.run("base")
    assert base.returncode == 0, base.explain()
    # The new pod becomes ready only after 40 s: the run is in its rollout wait when the API server goes.
    started = deploys.start("short-outage", delay="40s", ai_serving_api_retry_seconds=120,
                            tf_serving_rollout_timeout=300)
    into_the_wait(apps_v1, namespace, "short-outage")
    began = time.monotonic()
    stop_apiserver()
    time.sleep(15)
    start_control_plane()
    print(f"\nAPI server outage: {time.monotonic() - began:.0f} s (15 s down, then the restart)")
    run = started.finish(600)
    assert run.returncode == 0, run.explain()
    assert run.recap["failed"] == 0
    assert "API server not answering: cannot" in run.output, run.explain()
    assert "retrying for up to 120 s" in run.output
    assert_good(apps_v1, namespace, "short-outage")


def test_an_outage_longer_than_the_bound_fails_clearly_and_the_next_run_converges(deploys: Deploys, apps_v1,
                                                                                  namespace: str) -> None:
    started = deploys.start("long-outage", delay="30s", ai_serving_api_retry_seconds=5)
    into_the_wait(apps_v1, namespace, "long-outage")
    stop_apiserver()
    try:
        run = started.finish(180)
    finally:
        start_control_plane()
    assert run.returncode != 0, run.explain()
    out = run.output
    assert "The API server stopped answering while this run waited for the rollout of image-classifier" in out, \
        run.explain()
    assert "API server https://127.0.0.1:" in out  # which server
    assert "did not answer for 5 s of retries" in out
    assert "a rollback may still be owed (automatic rollback: on)" in out
    assert "playbooks/rollback_model.yml -e model=image-classifier" in out
    assert "Value of unknown type" not in out
    # The failed run could not release its Lease: the next one waits for it to expire and takes it over.
    again = deploys.run("long-outage", delay="30s", ai_serving_lock_wait=120)
    assert again.returncode == 0, again.explain()
    assert "Took over Lease" in again.output
    assert_good(apps_v1, namespace, "long-outage")


# --------------------------------------------------------------------------- 2. one deploy of a model at a time


def test_two_concurrent_deploys_one_fails_naming_the_holder_one_waits(deploys: Deploys, api_client, apps_v1,
                                                                      namespace: str) -> None:
    first = deploys.start("race-a", delay="20s")
    wait_for(lambda: lease_holder(api_client, namespace), 120, "the first run holding the Lease", interval=0.3)
    second = deploys.run("race-b")  # fails at once
    third = deploys.start("race-c", ai_serving_lock_wait=300)  # waits for the first
    one, three = first.finish(420), third.finish(600)
    assert one.returncode == 0, one.explain()
    assert second.returncode != 0, second.explain()
    assert "image-classifier is being deployed by another run" in second.output, second.explain()
    assert f"pid {first.pid} run" in second.output  # who: the first run's ansible-playbook
    assert "since 20" in second.output
    assert three.returncode == 0, three.explain()
    assert "after waiting" in three.output, three.explain()
    # The final state is the one the last successful run reported; the refused run applied nothing.
    assert_good(apps_v1, namespace, "race-c")
    assert lease_holder(api_client, namespace) is None


def test_a_sigkilled_run_leaves_a_lease_the_next_run_takes_over_and_repairs(deploys: Deploys, api_client, apps_v1,
                                                                            namespace: str) -> None:
    good = deploys.run("good-before-kill")
    assert good.returncode == 0, good.explain()
    started = deploys.start("killed", fault="crash-loop", tf_serving_rollout_fail_fast=120,
                            tf_serving_rollout_timeout=300)
    into_the_wait(apps_v1, namespace, "killed")
    for pid in started.workers() + [started.pid]:
        os.kill(pid, signal.SIGKILL)
    started.finish(60)
    assert f"pid {started.pid} run" in (lease_holder(api_client, namespace) or "")
    assert not settled(apps_v1, namespace)  # left in the middle of the rollout
    again = deploys.run("good-before-kill", ai_serving_lock_wait=120)
    assert again.returncode == 0, again.explain()
    out = again.output
    assert "Took over Lease" in out and f"pid {started.pid}" in out, again.explain()
    assert "in the middle of a failed or interrupted rollout" in out
    assert "Rollout | Back to the last good version first (an unfinished rollout was found) [changed]" in out
    assert_good(apps_v1, namespace, "good-before-kill")


# --------------------------------------------------------------------------- 3./4. last good version, interrupts


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_3_s_into_a_failing_rollout_rolls_back_and_a_rerun_keeps_the_good_version(
        deploys: Deploys, api_client, apps_v1, namespace: str, sig: signal.Signals) -> None:
    """The issue's case 2: Ctrl-C 3 s into "Rollout | Wait" of a crash-looping version, then the same deploy again."""
    name = signal.Signals(sig).name
    good = deploys.run(f"good-{name}")
    assert good.returncode == 0, good.explain()
    started = deploys.start(f"broken-{name}", fault="crash-loop", tf_serving_rollout_fail_fast=120,
                            tf_serving_rollout_timeout=300)
    into_the_wait(apps_v1, namespace, f"broken-{name}")
    workers = started.workers()
    started.proc.send_signal(sig)
    run = started.finish(300, workers=workers)
    assert run.returncode != 0, run.explain()
    assert f"Interrupted by {name} during '{WAIT_STEP}'" in run.output, run.explain()
    assert "Rolled back automatically" in run.output, run.explain()
    assert_good(apps_v1, namespace, f"good-{name}")
    assert lease_holder(api_client, namespace) is None
    # The same failing deploy again: it fails, and its rollback goes to the last good version, not to what it found.
    again = deploys.run(f"broken-{name}", fault="crash-loop", tf_serving_rollout_fail_fast=3,
                        tf_serving_rollout_timeout=60)
    assert again.returncode != 0, again.explain()
    assert "CrashLoopBackOff" in again.output and "Rolled back automatically" in again.output, again.explain()
    assert_good(apps_v1, namespace, f"good-{name}")


def test_rollback_model_targets_the_last_good_version(deploys: Deploys, kubeconfig: str, apps_v1,
                                                      namespace: str) -> None:
    good = deploys.run("last-good")
    assert good.returncode == 0, good.explain()
    # A failed rollout left in place (no automatic rollback): the manual rollback must not go to "what exists now".
    broken = deploys.run("left-broken", fault="crash-loop", tf_serving_rollout_fail_fast=3,
                         tf_serving_rollout_timeout=30, tf_serving_rollback_on_failure=False)
    assert broken.returncode != 0, broken.explain()
    assert release_of(apps_v1, namespace) == "left-broken"
    rollback = run_playbook("rollback_model.yml", kubeconfig, {"model": MODEL, "ai_namespace_name": namespace})
    assert rollback.returncode == 0, rollback.explain()
    assert "the last good version (template" in rollback.output, rollback.explain()
    assert_good(apps_v1, namespace, "last-good")


# --------------------------------------------------------------------------- 5. the real node, under load


REAL_MODEL = "doubler-python-cpu"


@contextmanager
def real_node_namespace(kubeconfig: str, core_v1, prefix: str, extra_vars: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """A restricted namespace of its own with the model deployed on the real node by ``extra_vars`` (plus
    ``ai_namespace_name``; its image built once, then kept); skipped without the real node; deleted afterwards."""
    from kubernetes import client

    if component_pid("kubelet") is None:
        pytest.skip("no real node in this cluster (AI_SERVING_REAL_NODE=0)")
    env = image_tools.container_env()
    image_tools.base_image({**os.environ, **env})
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        core_v1.create_namespaced_service_account(name, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="model-server-sa")))
        first = run_playbook("deploy_model.yml", kubeconfig, {**extra_vars, "ai_namespace_name": name}, env=env,
                             timeout=2400)
        assert first.returncode == 0, first.explain()
        yield {"namespace": name, "env": env}
    finally:
        core_v1.delete_namespace(name, grace_period_seconds=0)


@pytest.fixture(scope="module")
def real(kubeconfig: str, core_v1) -> Iterator[Dict[str, Any]]:
    """doubler-python-cpu deployed on the real node in a namespace of its own."""
    with real_node_namespace(kubeconfig, core_v1, "t-safety-real", {"model": REAL_MODEL}) as found:
        yield found


def real_extra(real: Dict[str, Any], models: Optional[Dict[str, Any]] = None, **more: Any) -> Dict[str, Any]:
    return {"model": REAL_MODEL, "ai_namespace_name": real["namespace"],
            **({"ai_serving_models": models} if models else {}), **more}


def model_class(apps_v1, namespace: str) -> str:
    dep = apps_v1.read_namespaced_deployment(REAL_MODEL, namespace)
    return {e.name: e.value for e in dep.spec.template.spec.containers[0].env}["MODEL_CLASS"]


def test_case_1_a_failing_and_a_good_deploy_at_once_under_load(real: Dict[str, Any], kubeconfig: str, api_client,
                                                               apps_v1) -> None:
    """The issue's case 1: the good run started while the failing one is in its preflight."""
    namespace = real["namespace"]
    load_for = proxy_for(api_client, namespace, "custom_python")
    with Load(load_for, "custom_python", catalog()[REAL_MODEL]["smoke"]) as load:
        bad = start_playbook("deploy_model.yml", kubeconfig, real_extra(
            real, failing_catalog(REAL_MODEL), custom_python_rollout_timeout=60), env=real["env"])
        wait_for(lambda: lease_holder(api_client, namespace, REAL_MODEL), 120, "the failing run's Lease",
                 interval=0.2)
        good = run_playbook("deploy_model.yml", kubeconfig, real_extra(real, ai_serving_lock_wait=600),
                            env=real["env"], timeout=900)
        bad_run = bad.finish(900)
        time.sleep(3)
    line = load.report("a failing and a good deploy at once")
    assert bad_run.returncode != 0 and "Rolled back automatically" in bad_run.output, bad_run.explain()
    assert good.returncode == 0, good.explain()
    assert "after waiting" in good.output, good.explain()
    assert model_class(apps_v1, namespace) == "/models/doubler.py:Doubler"
    assert load.sent >= 20, line
    assert load.failures == [], f"{line}: {load.failures[:10]}"


def test_case_2_ctrl_c_during_a_failing_rollout_then_a_rerun_under_load(
        real: Dict[str, Any], kubeconfig: str, api_client, apps_v1) -> None:
    namespace = real["namespace"]
    models = failing_catalog(REAL_MODEL)
    with Load(proxy_for(api_client, namespace, "custom_python"), "custom_python",
              catalog()[REAL_MODEL]["smoke"]) as load:
        started = start_playbook("deploy_model.yml", kubeconfig, real_extra(
            real, models, custom_python_rollout_timeout=300), env=real["env"])
        wait_for(lambda: model_class(apps_v1, namespace) != "/models/doubler.py:Doubler", 300,
                 "the failing version applied", interval=0.5)
        time.sleep(3)
        workers = started.workers()
        started.proc.send_signal(signal.SIGINT)
        run = started.finish(400, workers=workers)
        again = run_playbook("deploy_model.yml", kubeconfig, real_extra(real, models, custom_python_rollout_timeout=60),
                             env=real["env"], timeout=900)
        time.sleep(3)
    line = load.report("Ctrl-C during a failing rollout, then the same deploy again")
    assert "Interrupted by SIGINT" in run.output and "Rolled back automatically" in run.output, run.explain()
    assert again.returncode != 0 and "Rolled back automatically" in again.output, again.explain()
    assert model_class(apps_v1, namespace) == "/models/doubler.py:Doubler"
    assert load.sent >= 20, line
    assert load.failures == [], f"{line}: {load.failures[:10]}"
