"""The runtimes really serving on the real node, deployed by playbooks/deploy_model.yml.

No mocks: the local catalog's CPU entries (double-triton-cpu, doubler-torchserve-cpu,
doubler-python-cpu) are built with podman from the roles' Dockerfile templates,
pushed to the cluster's registry and run by the real node's kubelet. The deploy's
own smoke check asks them through the API server's service proxy; the tests ask
again the same way, with the test's own client.

- each runtime deploys, its startup/readiness probes pass for real, the deploy
  reports the real inference answer, and the test gets [2, 4, 7] through the Service;
- a new version that really fails (a model class that does not load) is rolled
  back automatically while a bounded load (a few requests per second through the
  service proxy) runs the whole time: zero failed requests;
- a good rolling update under the same load: zero failed requests (preStop, drain);
- undeploy leaves no container of the model on the node (ctr on its containerd).

Images are built once (the deploy skips a tag the registry has) and kept for
later runs and the demo. Traffic goes only to the local API server.
"""

from __future__ import annotations

import copy
import json
import os
import time
import urllib.request
import uuid
from typing import Any, Dict, Iterator, Optional

import pytest

import image_tools
from playbooks import Run, run_playbook
from serving_tools import EXPECTED, MODELS, Load, catalog, failing_catalog, node_containers, numbers, proxy_for, wait_for

pytestmark = pytest.mark.local_cluster

REAL_NODE = "real-0"
# Cold builds (pip, apt) on 2 shared cores.
DEPLOY_TIMEOUT = 2400


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def build_env(kubeconfig: str) -> Dict[str, str]:
    """podman's sandbox settings for the deploy's image build; the base image made once."""
    env = image_tools.container_env()
    image_tools.base_image({**os.environ, **env})
    return env


@pytest.fixture(scope="module")
def namespace(kubeconfig: str, core_v1) -> Iterator[str]:
    """A namespace like bootstrap_cluster.yml's (restricted Pod Security, the service account), deleted afterwards."""
    from kubernetes import client

    name = f"t-serving-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        core_v1.create_namespaced_service_account(name, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="model-server-sa")))
        yield name
    finally:
        core_v1.delete_namespace(name, grace_period_seconds=0)


class Deployer:
    def __init__(self, kubeconfig: str, namespace: str, env: Dict[str, str]) -> None:
        self.kubeconfig, self.namespace, self.env = kubeconfig, namespace, env

    def __call__(self, playbook: str, model: str, models: Optional[Dict[str, Any]] = None,
                 timeout: int = DEPLOY_TIMEOUT, **more: Any) -> Run:
        extra: Dict[str, Any] = {"model": model, "ai_namespace_name": self.namespace, **more}
        if models is not None:
            extra["ai_serving_models"] = models
        return run_playbook(playbook, self.kubeconfig, extra, env=self.env, timeout=timeout)


@pytest.fixture(scope="module")
def deploy(kubeconfig: str, namespace: str, build_env: Dict[str, str]) -> Deployer:
    return Deployer(kubeconfig, namespace, build_env)


@pytest.fixture(scope="module")
def deployed(deploy: Deployer) -> Dict[str, Run]:
    """Each runtime's CPU model deployed once (built the first time), one after the other."""
    runs: Dict[str, Run] = {}
    for runtime, model in MODELS.items():
        started = time.monotonic()
        runs[runtime] = deploy("deploy_model.yml", model)
        print(f"\n{runtime}: deploy_model.yml {model} took {time.monotonic() - started:.0f} s")
    return runs


def pods(core_v1, namespace: str, model: str) -> list:
    return core_v1.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={model}").items


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("runtime", list(MODELS))
def test_model_serves_on_the_real_node(deployed: Dict[str, Run], core_v1, api_client, namespace: str,
                                       runtime: str) -> None:
    model = MODELS[runtime]
    run = deployed[runtime]
    assert run.returncode == 0, run.explain()
    # The deploy's own check asked the server through the service proxy and got the right answer.
    assert "service proxy GET" in run.output, run.explain()
    assert "answered as expected. Inference answer:" in run.output, run.explain()
    assert "not asked" not in run.output

    running = [pod for pod in pods(core_v1, namespace, model) if pod.metadata.deletion_timestamp is None]
    assert len(running) == 1, [pod.metadata.name for pod in running]
    pod = running[0]
    assert pod.spec.node_name == REAL_NODE
    # The kubelet's probes passed for real: started, ready, never restarted.
    status = pod.status.container_statuses[0]
    assert status.started and status.ready and status.restart_count == 0, status
    assert pod.spec.containers[0].startup_probe.http_get is not None
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions["Ready"] == "True", conditions

    smoke = catalog()[model]["smoke"]
    code, text = proxy_for(api_client, namespace, runtime).send(smoke["path"], smoke["body"])
    assert code == 200, text
    assert numbers(runtime, json.loads(text)) == EXPECTED, text


def test_torchserve_ready_means_its_model_is_loaded(deployed: Dict[str, Run], core_v1, namespace: str) -> None:
    """TorchServe's readiness (/ping, 500 until every model has its minimum workers healthy in 0.12) passed:
    the model's worker is READY, as its management API (port 8081, not on the Service) says from the node's bridge."""
    assert deployed["torchserve"].returncode == 0, deployed["torchserve"].explain()
    pod = next(p for p in pods(core_v1, namespace, MODELS["torchserve"]) if p.metadata.deletion_timestamp is None)
    assert pod.status.container_statuses[0].ready
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{pod.status.pod_ip}:8081/models/doubler", timeout=10) as response:
        workers = json.loads(response.read())[0]["workers"]
    assert workers and all(worker["status"] == "READY" for worker in workers), workers


def test_failed_version_is_rolled_back_under_load_with_no_failed_request(deployed: Dict[str, Run], deploy: Deployer,
                                                                         api_client, apps_v1, core_v1,
                                                                         namespace: str) -> None:
    runtime, model = "custom_python", MODELS["custom_python"]
    assert deployed[runtime].returncode == 0, deployed[runtime].explain()
    before = apps_v1.read_namespaced_deployment(model, namespace)
    revision = before.metadata.annotations["deployment.kubernetes.io/revision"]
    models = failing_catalog(model)
    with Load(proxy_for(api_client, namespace, runtime), runtime, catalog()[model]["smoke"]) as load:
        # The new pod stays live but never ready: the rollout counts as failed after 60 s.
        run = deploy("deploy_model.yml", model, models, timeout=900, ai_serving_rollout_timeout=60)
        time.sleep(3)  # a few requests after the rollback too
    line = load.report("failed rollout and rollback")
    assert run.returncode != 0, run.explain()
    assert "rolled back" in run.output.lower(), run.explain()
    assert load.sent >= 20, line
    assert load.failures == [], f"{line}: {load.failures[:10]}"
    # The old version is back and alone.
    after = apps_v1.read_namespaced_deployment(model, namespace)
    env = {e.name: e.value for e in after.spec.template.spec.containers[0].env}
    assert env["MODEL_CLASS"] == "/models/doubler.py:Doubler"
    assert int(after.metadata.annotations["deployment.kubernetes.io/revision"]) > int(revision)
    wait_for(lambda: len([p for p in pods(core_v1, namespace, model) if p.metadata.deletion_timestamp is None]) == 1,
             120, "one pod left after the rollback")


def test_good_rolling_update_under_load_has_no_failed_request(deployed: Dict[str, Run], deploy: Deployer,
                                                              api_client, apps_v1, core_v1, namespace: str) -> None:
    runtime, model = "custom_python", MODELS["custom_python"]
    assert deployed[runtime].returncode == 0, deployed[runtime].explain()
    old_pods = {p.metadata.name for p in pods(core_v1, namespace, model)}
    models = copy.deepcopy(catalog())
    models[model]["env"] = {"ROLLOUT_MARK": uuid.uuid4().hex[:6]}
    with Load(proxy_for(api_client, namespace, runtime), runtime, catalog()[model]["smoke"]) as load:
        run = deploy("deploy_model.yml", model, models, timeout=900)
        # Until the old pod is gone: its drain (preStop, SIGTERM) happens under the load too.
        wait_for(lambda: not old_pods & {p.metadata.name for p in pods(core_v1, namespace, model)}, 180,
                 "the old pod gone")
    line = load.report("good rolling update")
    assert run.returncode == 0, run.explain()
    assert "answered as expected" in run.output, run.explain()
    assert load.sent >= 20, line
    assert load.failures == [], f"{line}: {load.failures[:10]}"


def test_undeploy_leaves_no_container_on_the_node(deployed: Dict[str, Run], deploy: Deployer,
                                                  namespace: str) -> None:
    assert node_containers(namespace), "the deployed models have no container on the node"
    for model in MODELS.values():
        run = deploy("undeploy_model.yml", model, timeout=600)
        assert run.returncode == 0, run.explain()
    wait_for(lambda: not node_containers(namespace), 180, "no container of the namespace's pods on the node")
