"""playbooks/deploy_model.yml and its siblings, run for real against the test cluster.

One namespace for the whole module, with the baseline the pods need (Pod Security
``restricted`` enforced, the ServiceAccount, a GPU quota, the Secrets the catalog
refers to). The four example models of the catalog, one per runtime, go through the
same phases; the four runs of a phase go in parallel (their waits overlap):

1. deploy: every object, with the runtime's ports, probes, labels, security context;
   the pods pass Pod Security and become Ready; the Service has ready endpoints.
2. deploy again: changed=0.
3. ``--check --diff`` with a change: the diff is shown, nothing changes.
4. an update (tf_serving: an HPA, a PDB and a pod annotation).
5. failures (a fault label from the local cluster's stages, or an unschedulable GPU
   count with the preflight skipped): automatic rollback, the old version available
   again, the reason in the message; and a GPU preflight refusal that applies nothing.
6. rollback_model.yml, undeploy_model.yml, render_model.yml (kustomize), unknown model.
"""

from __future__ import annotations

import copy
import http.server
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import yaml

from playbooks import REPO_ROOT, Run, baseline_namespace, run_playbook

CATALOG_FILE = REPO_ROOT / "inventories" / "shared" / "group_vars" / "all" / "models.yml"
FAULT = "sim.creativeflow.ai/fault"
SECRET_VALUES = {"text-generation-model-secrets": "EXAMPLE_KEY_value_9f2c", "triton-model-store-s3": "s3_secret_value_7d1a"}

# What each runtime must produce for the catalog's example model.
RUNTIMES: Dict[str, Dict[str, Any]] = {
    "tf_serving": {
        "model": "image-classifier",
        "container": "tf-serving",
        "ports": {"grpc": 8500, "rest": 8501},
        "service_ports": [8500, 8501],
        "probes": {"startup": ("/v1/models/image_classifier_model", "rest"),
                   "readiness": ("/v1/models/image_classifier_model", "rest"),
                   "liveness": ("/v1/models/image_classifier_model", "rest")},
        "gpu": ("nvidia.com/gpu", "1"),
        "uid": 1000,
        "config": {"models.config": "num_versions: 1"},
    },
    "torchserve": {
        "model": "sentiment-analysis",
        "container": "torchserve",
        "ports": {"inference": 8080, "management": 8081, "metrics": 8082},
        "service_ports": [8080, 8082],
        "probes": {"startup": ("/ping", "inference"), "readiness": ("/ping", "inference"),
                   "liveness": ("/ping", "inference")},
        "gpu": ("nvidia.com/mig-1g.10gb", "1"),
        "uid": 1000,
        "config": {"config.properties": "load_models=sentiment=sentiment_bert.mar"},
    },
    "triton": {
        "model": "vision-models",
        "container": "triton",
        "ports": {"http": 8000, "grpc": 8001, "metrics": 8002},
        "service_ports": [8000, 8001, 8002],
        "probes": {"startup": ("/v2/health/ready", "http"), "readiness": ("/v2/health/ready", "http"),
                   "liveness": ("/v2/health/live", "http")},
        "gpu": ("nvidia.com/gpu", "1"),
        "uid": 1000,
        "config": {},
    },
    "custom_python": {
        "model": "text-generation-gpt",
        "container": "model-server",
        # OIP v2 over gRPC beside REST (custom_python_grpc_port).
        "ports": {"http": 8080, "grpc": 8081},
        "service_ports": [8080, 8081],
        "probes": {"startup": ("/health/ready", "http"), "readiness": ("/health/ready", "http"),
                   "liveness": ("/health/live", "http")},
        "gpu": ("nvidia.com/gpu", "1"),
        "uid": 10001,
        "config": {},
    },
}
ALL = list(RUNTIMES)


# --------------------------------------------------------------------------- running playbooks


class Runner:
    """Runs the playbooks against the test cluster in the module's namespace."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def __call__(self, playbook: str, model: str, extra: Optional[Dict[str, Any]] = None, *args: str,
                 timeout: int = 420) -> Run:
        extra_vars = {"model": model, "ai_namespace_name": self.namespace, **(extra or {})}
        return run_playbook(playbook, self.kubeconfig, extra_vars, *args, timeout=timeout)

    def parallel(self, jobs: Dict[str, Callable[[], Any]]) -> Dict[str, Any]:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = {key: pool.submit(job) for key, job in jobs.items()}
            return {key: future.result() for key, future in futures.items()}


def catalog() -> Dict[str, Any]:
    return yaml.safe_load(CATALOG_FILE.read_text())["ai_serving_models"]


def with_local_override(name: str, override: Dict[str, Any]) -> Dict[str, Any]:
    """The shared catalog with ``override`` merged into the model's local environment."""
    models = copy.deepcopy(catalog())
    local = models[name].setdefault("environments", {}).setdefault("local", {}) or {}
    local.update(override)
    models[name]["environments"]["local"] = local
    return {"ai_serving_models": models}


class RegistryStub:
    """A registry that knows one tag: HEAD /v2/models/build-probe/manifests/1.0 is 200, anything else 404."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, str]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
                stub.requests.append({"method": "HEAD", "path": self.path, "accept": self.headers.get("Accept", "")})
                self.send_response(200 if self.path == "/v2/models/build-probe/manifests/1.0" else 404)
                self.send_header("Docker-Content-Digest", "sha256:" + "0" * 64)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()


def build_probe_catalog(port: int, tag: str, context: Path) -> Dict[str, Any]:
    """The shared catalog plus `build-probe`: a CPU-only TF Serving model built from a Dockerfile template."""
    models = copy.deepcopy(catalog())
    models["build-probe"] = {
        "runtime": "tf_serving",
        "image": {"repository": f"localhost:{port}/models/build-probe", "tag": tag,
                  "build": {"context": str(context), "args": {"MODEL_DIR": "model"}}},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}},
        "tf_serving": {"model_name": "probe", "model_base_path": "/models/probe",
                       "version_policy": {"type": "latest"}},
    }
    # The docker builder on purpose (the local inventory builds with podman): no Docker engine runs here, so
    # a missing tag's build fails, which is what the test of a failed build needs.
    return {"ai_serving_models": models, "ai_serving_image_builder": "docker"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def namespace(kubeconfig: str, core_v1) -> Iterator[str]:
    """A namespace with the baseline bootstrap_cluster.yml makes that the pods need, deleted afterwards."""
    from kubernetes import client

    quota = {"requests.nvidia.com/gpu": "8", "requests.nvidia.com/mig-1g.10gb": "7", "pods": "50"}
    with baseline_namespace(core_v1, "t-deploy", quota) as name:
        core_v1.create_namespaced_secret(name, client.V1Secret(
            metadata=client.V1ObjectMeta(name="text-generation-model-secrets"),
            string_data={"EXAMPLE_API_KEY_FOR_LLM": SECRET_VALUES["text-generation-model-secrets"]}))
        core_v1.create_namespaced_secret(name, client.V1Secret(
            metadata=client.V1ObjectMeta(name="triton-model-store-s3"),
            string_data={"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                         "AWS_SECRET_ACCESS_KEY": SECRET_VALUES["triton-model-store-s3"]}))
        yield name


@pytest.fixture(scope="module")
def runner(kubeconfig: str, namespace: str) -> Runner:
    return Runner(kubeconfig, namespace)


def deployment(apps_v1, namespace: str, name: str):
    return apps_v1.read_namespaced_deployment(name, namespace)


def container(dep) -> Any:
    return dep.spec.template.spec.containers[0]


@pytest.fixture(scope="module")
def deployed(runner: Runner) -> Dict[str, Run]:
    """Phase 1: the four models deployed (the two with Secrets at -v, to check nothing leaks)."""
    return runner.parallel({
        runtime: (lambda r=runtime: runner("deploy_model.yml", RUNTIMES[r]["model"], None,
                                           *(["-v"] if r in ("triton", "custom_python") else [])))
        for runtime in ALL
    })


# --------------------------------------------------------------------------- phase 1: deploy


@pytest.mark.parametrize("runtime", ALL)
def test_deploy_succeeds(deployed: Dict[str, Run], runtime: str) -> None:
    run = deployed[runtime]
    assert run.returncode == 0, run.explain()
    assert run.recap["failed"] == 0 and run.recap["changed"] > 0
    assert "ready endpoint(s) behind Service" in run.output
    # The simulated nodes run no container: the smoke check says so and why, never silently.
    assert "not asked: every ready endpoint is on a simulated (kwok) node" in run.output, run.explain()
    for value in SECRET_VALUES.values():
        assert value not in run.stdout + run.stderr


@pytest.mark.parametrize("runtime", ALL)
def test_deployment_has_the_runtimes_ports_probes_and_labels(deployed, apps_v1, namespace: str, runtime: str) -> None:
    spec = RUNTIMES[runtime]
    name = spec["model"]
    dep = deployment(apps_v1, namespace, name)
    labels = dep.spec.template.metadata.labels
    assert labels["app.kubernetes.io/name"] == name
    assert labels["app.kubernetes.io/managed-by"] == "creativeflow.ai_serving"
    assert labels["app.kubernetes.io/component"] == "model-server"
    assert labels["app.kubernetes.io/part-of"] == "ai-serving"
    assert labels["creativeflow.ai/runtime"] == runtime
    assert labels["creativeflow.ai/model-name"] == name
    assert dep.spec.selector.match_labels == {"app.kubernetes.io/component": "model-server",
                                              "creativeflow.ai/model-name": name}
    server = container(dep)
    assert server.name == spec["container"]
    assert {p.name: p.container_port for p in server.ports} == spec["ports"]
    for kind, (path, port) in spec["probes"].items():
        probe = getattr(server, f"{kind}_probe")
        assert probe is not None, f"no {kind} probe"
        assert (probe.http_get.path, probe.http_get.port) == (path, port)
    # GPUs requested and limited alike, the GPU taint tolerated.
    resource, count = spec["gpu"]
    assert server.resources.requests[resource] == count
    assert server.resources.limits[resource] == count
    tolerations = [(t.key, t.operator, t.effect) for t in dep.spec.template.spec.tolerations]
    assert ("nvidia.com/gpu", "Exists", "NoSchedule") in tolerations
    # Graceful drain.
    assert server.lifecycle.pre_stop._exec.command[0] == "sleep"
    assert dep.spec.template.spec.termination_grace_period_seconds == 60


@pytest.mark.parametrize("runtime", ALL)
def test_security_context_is_restricted(deployed, apps_v1, namespace: str, runtime: str) -> None:
    dep = deployment(apps_v1, namespace, RUNTIMES[runtime]["model"])
    pod = dep.spec.template.spec
    assert pod.security_context.run_as_non_root is True
    # The runtime images' users: 1000 for the third-party servers, custom_server/Dockerfile's 10001 for ours.
    assert pod.security_context.run_as_user == RUNTIMES[runtime]["uid"]
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    for ctr in (pod.containers or []) + (pod.init_containers or []):
        sc = ctr.security_context
        assert sc.allow_privilege_escalation is False
        assert sc.capabilities.drop == ["ALL"]
        assert sc.read_only_root_filesystem is True
        assert sc.run_as_non_root is True
    # Where the runtime writes: emptyDirs.
    mounts = {m.mount_path for m in container(dep).volume_mounts}
    assert "/tmp" in mounts


@pytest.mark.parametrize("runtime", ALL)
def test_pods_pass_pod_security_and_are_ready(deployed, apps_v1, core_v1, namespace: str, runtime: str) -> None:
    name = RUNTIMES[runtime]["model"]
    dep = deployment(apps_v1, namespace, name)
    assert dep.status.available_replicas == dep.spec.replicas == 1
    pods = core_v1.list_namespaced_pod(namespace, label_selector=f"creativeflow.ai/model-name={name}").items
    assert pods and all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods)


@pytest.mark.parametrize("runtime", ALL)
def test_service_and_config(deployed, core_v1, namespace: str, runtime: str) -> None:
    spec = RUNTIMES[runtime]
    name = spec["model"]
    svc = core_v1.read_namespaced_service(name, namespace)
    assert sorted(p.port for p in svc.spec.ports) == spec["service_ports"]
    assert svc.spec.selector == {"app.kubernetes.io/component": "model-server", "creativeflow.ai/model-name": name}
    configmaps = core_v1.list_namespaced_config_map(namespace, label_selector=f"creativeflow.ai/model-name={name}").items
    if spec["config"]:
        assert len(configmaps) == 1 and configmaps[0].metadata.name.startswith(f"{name}-config-")
        for file, text in spec["config"].items():
            assert text in configmaps[0].data[file]
    else:
        assert configmaps == []


def test_runtime_specifics(deployed, apps_v1, namespace: str) -> None:
    triton = deployment(apps_v1, namespace, "vision-models").spec.template.spec
    args = triton.containers[0].args
    assert "--model-control-mode=explicit" in args
    assert "--load-model=densenet_onnx" in args and "--load-model=inception_graphdef" in args
    assert triton.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    fetch = triton.init_containers[0]
    assert fetch.name == "fetch-model" and fetch.image.startswith("amazon/aws-cli:")
    assert fetch.env_from[0].secret_ref.name == "triton-model-store-s3"
    assert any(v.empty_dir and v.empty_dir.medium == "Memory" for v in triton.volumes)

    custom = deployment(apps_v1, namespace, "text-generation-gpt").spec.template.spec.containers[0]
    env = {e.name: e.value for e in custom.env}
    assert env["MODEL_PATH"] == "/models/gpt2" and env["MODEL_NAME"] == "text-generation-gpt"
    assert env["MODEL_FORMAT"] == "python" and env["PORT"] == "8080"
    assert env["MODEL_CLASS"] == "/models/gpt2/serve.py:Generator"
    assert env["LOG_LEVEL"] == "info" and env["MAX_NEW_TOKENS"] == "256"
    assert custom.env_from[0].secret_ref.name == "text-generation-model-secrets"
    assert custom.command == ["python", "-m", "custom_server"]

    torch = deployment(apps_v1, namespace, "sentiment-analysis").spec.template.spec.containers[0]
    assert "--models" in torch.args and "sentiment=sentiment_bert.mar" in torch.args

    tf_args = container(deployment(apps_v1, namespace, "image-classifier")).args
    assert "--model_config_file=/etc/tf-serving/models.config" in tf_args


def test_endpoints_are_ready(deployed, api_client, namespace: str) -> None:
    from kubernetes import client

    discovery = client.DiscoveryV1Api(api_client)
    for spec in RUNTIMES.values():
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={spec['model']}").items
        ready = [e for s in slices for e in (s.endpoints or []) if e.conditions.ready]
        assert len(ready) == 1, spec["model"]


# --------------------------------------------------------------------------- phase 2: idempotence


@pytest.fixture(scope="module")
def redeployed(deployed, runner: Runner) -> Dict[str, Run]:
    return runner.parallel({r: (lambda r=r: runner("deploy_model.yml", RUNTIMES[r]["model"])) for r in ALL})


@pytest.mark.parametrize("runtime", ALL)
def test_second_deploy_changes_nothing(redeployed: Dict[str, Run], runtime: str) -> None:
    run = redeployed[runtime]
    assert run.returncode == 0, run.explain()
    assert run.recap["changed"] == 0, run.explain()


# --------------------------------------------------------------------------- phase 3: check mode and diff


@pytest.fixture(scope="module")
def checked(redeployed, runner: Runner, apps_v1, namespace: str) -> Dict[str, Any]:
    before = {r: deployment(apps_v1, namespace, RUNTIMES[r]["model"]).metadata.resource_version for r in ALL}
    runs = runner.parallel({
        r: (lambda r=r: runner("deploy_model.yml", RUNTIMES[r]["model"],
                               {f"{r}_pod_annotations": {"example.com/change": "check-mode"}}, "--check", "--diff"))
        for r in ALL
    })
    after = {r: deployment(apps_v1, namespace, RUNTIMES[r]["model"]).metadata.resource_version for r in ALL}
    return {"runs": runs, "before": before, "after": after}


@pytest.mark.parametrize("runtime", ALL)
def test_check_diff_shows_the_change_and_changes_nothing(checked: Dict[str, Any], runtime: str) -> None:
    run = checked["runs"][runtime]
    assert run.returncode == 0, run.explain()
    assert run.recap["changed"] >= 1
    assert re.search(r"^\+\s+example\.com/change: check-mode$", run.stdout, re.MULTILINE), run.explain()
    assert checked["before"][runtime] == checked["after"][runtime]


# --------------------------------------------------------------------------- phase 4: an update


@pytest.fixture(scope="module")
def updated(checked, runner: Runner) -> Run:
    """tf_serving gets an HPA, a PDB and a pod annotation (a new revision)."""
    extra = with_local_override("image-classifier", {
        "autoscaling": {"enabled": True, "min_replicas": 1, "max_replicas": 2, "target_cpu_utilization": 70},
        "pdb": {"enabled": True, "max_unavailable": 1},
    })
    extra["ai_serving_pod_annotations"] = {"example.com/release": "two"}
    return runner("deploy_model.yml", "image-classifier", extra)


def test_update_adds_hpa_and_pdb(updated: Run, api_client, apps_v1, namespace: str) -> None:
    from kubernetes import client

    assert updated.returncode == 0, updated.explain()
    hpa = client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler("image-classifier", namespace)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 2)
    assert hpa.spec.scale_target_ref.name == "image-classifier"
    assert hpa.spec.metrics[0].resource.target.average_utilization == 70
    pdb = client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget("image-classifier", namespace)
    assert pdb.spec.max_unavailable == 1
    dep = deployment(apps_v1, namespace, "image-classifier")
    assert dep.spec.template.metadata.annotations == {"example.com/release": "two"}
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "2"


# --------------------------------------------------------------------------- phase 5: failures


@pytest.fixture(scope="module")
def failures(updated, runner: Runner, apps_v1, core_v1, namespace: str) -> Dict[str, Any]:
    before = {r: deployment(apps_v1, namespace, RUNTIMES[r]["model"]) for r in ALL}
    unschedulable = with_local_override("text-generation-gpt", {"gpu": {"count": 5}})

    def fault(runtime: str, kind: str, **knobs: Any) -> Run:
        extra = {f"{runtime}_pod_labels": {FAULT: kind}, f"{runtime}_rollout_fail_fast": 3,
                 f"{runtime}_rollout_timeout": 30}
        extra.update({f"{runtime}_{k}": v for k, v in knobs.items()})
        return runner("deploy_model.yml", RUNTIMES[runtime]["model"], extra)

    def custom() -> Dict[str, Run]:
        refused = runner("deploy_model.yml", "text-generation-gpt", unschedulable)
        # The other runtimes' pods hold up to 5 of the quota's 8 GPUs meanwhile: without room in the quota the
        # ReplicaSet could not even create the 5-GPU pod, and the scheduler would never see it.
        quota = {"spec": {"hard": {"requests.nvidia.com/gpu": "16"}}}
        core_v1.patch_namespaced_resource_quota("ai-serving-quota", namespace, quota)
        try:
            skipped = runner("deploy_model.yml", "text-generation-gpt",
                             {**unschedulable, "ai_serving_gpu_preflight": False, "ai_serving_rollout_timeout": 20})
        finally:
            quota["spec"]["hard"]["requests.nvidia.com/gpu"] = "8"
            core_v1.patch_namespaced_resource_quota("ai-serving-quota", namespace, quota)
        return {"refused": refused, "skipped": skipped}

    runs = runner.parallel({
        "tf_serving": lambda: fault("tf_serving", "crash-loop"),
        "torchserve": lambda: fault("torchserve", "image-pull"),
        "triton": lambda: fault("triton", "not-ready", rollout_timeout=15),
        "custom_python": custom,
    })
    return {"runs": runs, "before": before}


@pytest.mark.parametrize("runtime, reason", [
    ("tf_serving", "CrashLoopBackOff"),
    ("torchserve", "ImagePullBackOff"),
    ("triton", "NotReady"),
])
def test_failed_rollout_is_rolled_back_with_the_reason(failures, apps_v1, core_v1, namespace: str, runtime: str,
                                                       reason: str) -> None:
    run = failures["runs"][runtime]
    name = RUNTIMES[runtime]["model"]
    assert run.returncode != 0, run.explain()
    assert f"Deployment {name} in namespace {namespace} did not roll out" in run.output
    assert reason in run.output, run.explain()
    assert "Rolled back automatically" in run.output, run.explain()
    dep = deployment(apps_v1, namespace, name)
    # The previous template is back (no fault label) and available.
    assert FAULT not in dep.spec.template.metadata.labels
    assert dep.spec.template.metadata.annotations == failures["before"][runtime].spec.template.metadata.annotations
    assert container(dep).image == container(failures["before"][runtime]).image
    assert dep.status.available_replicas == 1 and dep.status.updated_replicas == 1
    pods = core_v1.list_namespaced_pod(namespace, label_selector=f"creativeflow.ai/model-name={name}").items
    assert all(FAULT not in (p.metadata.labels or {}) for p in pods if not p.metadata.deletion_timestamp)


def test_rollback_puts_the_other_objects_back(failures, api_client, namespace: str) -> None:
    """The failing tf_serving deploy (catalog without HPA/PDB) removed them; the rollback restored them."""
    from kubernetes import client

    hpa = client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler("image-classifier", namespace)
    assert hpa.spec.max_replicas == 2
    client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget("image-classifier", namespace)


def test_gpu_preflight_refuses_and_applies_nothing(failures, namespace: str) -> None:
    run = failures["runs"]["custom_python"]["refused"]
    assert run.returncode != 0
    assert "GPU preflight for text-generation-gpt" in run.output
    assert "fit on no eligible node" in run.output
    assert "Nothing was applied" in run.output
    assert "ai_serving_gpu_preflight=false" in run.output
    assert "Apply | Every object" not in run.stdout


def test_unschedulable_rollout_is_rolled_back(failures, apps_v1, namespace: str) -> None:
    run = failures["runs"]["custom_python"]["skipped"]
    assert run.returncode != 0, run.explain()
    assert "Unschedulable" in run.output and "Insufficient nvidia.com/gpu" in run.output, run.explain()
    assert "Rolled back automatically" in run.output
    dep = deployment(apps_v1, namespace, "text-generation-gpt")
    assert container(dep).resources.requests["nvidia.com/gpu"] == "1"
    assert dep.status.available_replicas == 1


# --------------------------------------------------------------------------- phase 6: rollback, undeploy, render


@pytest.fixture(scope="module")
def finale(failures, runner: Runner, tmp_path_factory) -> Dict[str, Any]:
    dest = tmp_path_factory.mktemp("render")
    direct = dest / "direct_common.yml"
    direct.write_text(yaml.safe_dump([{
        "name": "Call the internal role directly", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Include _common", "ansible.builtin.include_role": {"name": "creativeflow.ai_serving._common"},
                   "vars": {"_common_action": "deploy", "_common_runtime": "tf_serving"}}],
    }]))

    def rollback() -> Dict[str, Run]:
        release = runner("deploy_model.yml", "vision-models", {"ai_serving_pod_annotations": {"example.com/release": "b"}})
        back = runner("rollback_model.yml", "vision-models")
        return {"release": release, "back": back}

    def undeploy() -> Dict[str, Run]:
        first = runner("undeploy_model.yml", "sentiment-analysis")
        again = runner("undeploy_model.yml", "sentiment-analysis")
        return {"first": first, "again": again}

    def render(runtimes: List[str]) -> Dict[str, Run]:
        return {r: runner("render_model.yml", RUNTIMES[r]["model"], {"dest": str(dest / r)}) for r in runtimes}

    def build() -> Dict[str, Any]:
        registry = RegistryStub()
        context = dest / "build-context"
        (context / "model" / "1").mkdir(parents=True)
        (context / "model" / "1" / "saved_model.pb").write_bytes(b"")
        try:
            present = runner("deploy_model.yml", "build-probe", build_probe_catalog(registry.port, "1.0", context))
            missing = runner("deploy_model.yml", "build-probe", build_probe_catalog(registry.port, "2.0", context))
        finally:
            registry.close()
        return {"present": present, "missing": missing, "requests": registry.requests}

    runs = runner.parallel({
        "rollback": rollback,
        "undeploy": undeploy,
        "build": build,
        "render_a": lambda: render(["tf_serving", "triton"]),
        "render_b": lambda: render(["torchserve", "custom_python"]),
        "unknown": lambda: runner("deploy_model.yml", "no-such-model"),
        "direct": lambda: runner(str(direct), "image-classifier"),
    })
    runs["render"] = {**runs.pop("render_a"), **runs.pop("render_b")}
    return {"runs": runs, "dest": dest}


def test_rollback_model_goes_back_one_revision(finale, apps_v1, namespace: str) -> None:
    release, back = finale["runs"]["rollback"]["release"], finale["runs"]["rollback"]["back"]
    assert release.returncode == 0, release.explain()
    assert back.returncode == 0, back.explain()
    assert "put back the template of revision" in back.output
    dep = deployment(apps_v1, namespace, "vision-models")
    assert not (dep.spec.template.metadata.annotations or {}).get("example.com/release")
    assert dep.status.available_replicas == 1


def test_undeploy_removes_everything(finale, api_client, core_v1, apps_v1, namespace: str) -> None:
    from kubernetes import client

    first, again = finale["runs"]["undeploy"]["first"], finale["runs"]["undeploy"]["again"]
    assert first.returncode == 0, first.explain()
    assert first.recap["changed"] > 0
    assert again.returncode == 0 and again.recap["changed"] == 0, again.explain()
    selector = "creativeflow.ai/model-name=sentiment-analysis"
    assert apps_v1.list_namespaced_deployment(namespace, label_selector=selector).items == []
    assert core_v1.list_namespaced_service(namespace, label_selector=selector).items == []
    assert core_v1.list_namespaced_config_map(namespace, label_selector=selector).items == []
    assert core_v1.list_namespaced_pod(namespace, label_selector=selector).items == []
    assert apps_v1.list_namespaced_replica_set(namespace, label_selector=selector).items == []
    assert client.AutoscalingV2Api(api_client).list_namespaced_horizontal_pod_autoscaler(
        namespace, label_selector=selector).items == []
    # The other models are untouched.
    assert deployment(apps_v1, namespace, "image-classifier").status.available_replicas == 1


@pytest.mark.parametrize("runtime", ALL)
def test_render_writes_kustomize_that_builds(finale, namespace: str, runtime: str) -> None:
    run = finale["runs"]["render"][runtime]
    assert run.returncode == 0, run.explain()
    root = finale["dest"] / runtime
    for layer in ("base", "overlays/dev", "overlays/prod"):
        assert (root / layer / "kustomization.yaml").is_file(), layer
    built = {}
    for env in ("dev", "prod"):
        proc = subprocess.run(["kubectl", "kustomize", str(root / "overlays" / env)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        built[env] = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(proc.stdout) if d}
    name = RUNTIMES[runtime]["model"]
    prod, dev = built["prod"], built["dev"]
    # prod: 3 replicas (HPA from 3), a PDB; dev: 1 replica, no HPA, no PDB.
    assert prod[("Deployment", name)]["spec"]["replicas"] == 3
    assert prod[("HorizontalPodAutoscaler", name)]["spec"]["minReplicas"] == 3
    assert ("PodDisruptionBudget", name) in prod
    assert dev[("Deployment", name)]["spec"]["replicas"] == 1
    assert ("HorizontalPodAutoscaler", name) not in dev and ("PodDisruptionBudget", name) not in dev
    for env, objects in built.items():
        for obj in objects.values():
            assert obj["metadata"]["namespace"] == namespace
            assert obj["metadata"]["labels"]["creativeflow.ai/environment"] == env
    # The configuration ConfigMap comes from a generator: hashed name, rewritten reference.
    if RUNTIMES[runtime]["config"]:
        configmaps = [key[1] for key in prod if key[0] == "ConfigMap"]
        assert len(configmaps) == 1 and configmaps[0].startswith(f"{name}-config-")
        volumes = prod[("Deployment", name)]["spec"]["template"]["spec"]["volumes"]
        assert {"name": "config", "configMap": {"name": configmaps[0]}} in volumes


def test_render_dev_overlay_patches_the_environment(finale) -> None:
    """image-classifier in dev runs on CPU: the GPU request and toleration are patched away."""
    root = finale["dest"] / "tf_serving"
    proc = subprocess.run(["kubectl", "kustomize", str(root / "overlays" / "dev")], capture_output=True, text=True,
                          check=True)
    dep = next(d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "Deployment")
    resources = dep["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in resources["requests"] and "nvidia.com/gpu" not in resources["limits"]
    assert resources["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert "tolerations" not in dep["spec"]["template"]["spec"]


def test_unknown_model_lists_the_known_ones(finale) -> None:
    run = finale["runs"]["unknown"]
    assert run.returncode != 0
    assert "'no-such-model' is not in the catalog" in run.output
    assert ("known models: chat-ollama, double-triton-cpu, doubler-python-cpu, doubler-torchserve-cpu, "
            "image-classifier, llama-vllm, sentiment-analysis, text-generation-gpt, tiny-ollama-cpu, tiny-vllm-cpu, "
            "vision-models") in run.output


def test_build_is_skipped_when_the_registry_has_the_tag(finale, apps_v1, namespace: str) -> None:
    run = finale["runs"]["build"]["present"]
    assert run.returncode == 0, run.explain()
    assert "is in the registry already: nothing to build" in run.output
    assert "Docker daemon" not in run.output  # the builder was not run
    head = finale["runs"]["build"]["requests"][0]
    assert head["path"] == "/v2/models/build-probe/manifests/1.0"
    assert "application/vnd.oci.image.index.v1+json" in head["accept"]
    dep = deployment(apps_v1, namespace, "build-probe")
    assert container(dep).image.endswith("/models/build-probe:1.0")
    assert dep.spec.template.spec.tolerations is None  # no GPU, no GPU toleration


def test_build_runs_when_the_tag_is_missing_and_nothing_is_applied_when_it_fails(finale, apps_v1,
                                                                                namespace: str) -> None:
    """No Docker engine here: the build is attempted (rendered Dockerfile, docker builder) and its failure
    stops the run before anything is applied."""
    run = finale["runs"]["build"]["missing"]
    assert "is not in the registry: building it" in run.output, run.explain()
    assert "Build | Write the runtime's Dockerfile" in run.stdout
    assert "Build | Remove the Dockerfile's directory" in run.stdout
    if run.returncode == 0:  # a machine with a Docker engine and network access built it
        return
    assert re.search(r"Build \| Build the image with docker\] \*+\n(\[ERROR\]|fatal)", run.stdout), run.explain()
    assert "Apply | Every object" not in run.stdout
    assert container(deployment(apps_v1, namespace, "build-probe")).image.endswith("/models/build-probe:1.0")


def test_common_refuses_to_run_on_its_own(finale) -> None:
    run = finale["runs"]["direct"]
    assert run.returncode != 0
    assert "missing required arguments: _common_base_image" in run.output
    assert "Render |" not in run.stdout and "Apply |" not in run.stdout


# --------------------------------------------------------------------------- bad input: absurd replica counts


def test_a_million_replicas_fail_at_once_naming_the_value_and_nothing_is_created(runner: Runner, api_client,
                                                                                  namespace: str) -> None:
    """replicas: 1000000 used to keep the GPU preflight busy for 10 minutes; the catalog refuses it now."""
    from kubernetes import client

    models = copy.deepcopy(catalog())
    models["million-replicas"] = copy.deepcopy(models["image-classifier"])
    models["million-replicas"]["replicas"] = 1000000
    started = time.monotonic()
    run = runner("deploy_model.yml", "million-replicas", {"ai_serving_models": models}, timeout=120)
    elapsed = time.monotonic() - started
    assert run.returncode != 0, run.explain()
    assert "models.million-replicas.replicas: 1000000 is more than 5000, the most replicas a model may have" \
        in run.output, run.explain()
    assert "Apply | Every object" not in run.stdout and "GPU preflight" not in run.output
    assert elapsed < 120  # bounded by the timeout too: the run ends, with the answer, within two minutes
    selector = "creativeflow.ai/model-name=million-replicas"
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    assert not apps.list_namespaced_deployment(namespace, label_selector=selector).items
    assert not core.list_namespaced_service(namespace, label_selector=selector).items
    assert not core.list_namespaced_config_map(namespace, label_selector=selector).items
    assert not core.list_namespaced_pod(namespace, label_selector=selector).items


# --------------------------------------------------------------------------- render: the destination


@pytest.fixture(scope="module")
def render_dest(tmp_path_factory) -> Dict[str, Any]:
    """render_model.yml into destinations a careless user might name. A render needs no cluster: the
    kubeconfig named here does not exist, so a render that reached for the cluster would fail."""
    root = tmp_path_factory.mktemp("render-dest")
    no_cluster = str(root / "no-such-kubeconfig")
    (root / "foreign").mkdir()
    (root / "foreign" / "README.md").write_text("not a render\n")
    (root / "forced").mkdir()
    (root / "forced" / "README.md").write_text("kept\n")
    (root / "a-file").write_text("")

    def render(model: str, dest: str, **extra: Any) -> Run:
        return run_playbook("render_model.yml", no_cluster, {"model": model, "dest": dest, **extra})

    def parallel(jobs: Dict[str, Callable[[], Run]]) -> Dict[str, Run]:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = {key: pool.submit(job) for key, job in jobs.items()}
            return {key: future.result() for key, future in futures.items()}

    root_before = sorted(p.name for p in Path("/").iterdir())
    runs = parallel({
        "first": lambda: render("image-classifier", str(root / "fresh")),
        "root": lambda: render("image-classifier", "/"),
        "root_forced": lambda: render("image-classifier", "/", overwrite=True),
        "foreign": lambda: render("image-classifier", str(root / "foreign")),
        "forced": lambda: render("image-classifier", str(root / "forced"), overwrite=True),
        "file": lambda: render("image-classifier", str(root / "a-file")),
    })
    runs.update(parallel({
        "again": lambda: render("image-classifier", str(root / "fresh")),
        "other_model": lambda: render("vision-models", str(root / "fresh")),
    }))
    return {"runs": runs, "root": root, "root_before": root_before}


def test_render_refuses_a_system_directory_even_with_overwrite(render_dest) -> None:
    for key in ("root", "root_forced"):
        run = render_dest["runs"][key]
        assert run.returncode != 0, run.explain()
        assert "dest '/' is /, a system directory" in run.output, run.explain()
        assert "Render | Write" not in run.stdout
    assert sorted(p.name for p in Path("/").iterdir()) == render_dest["root_before"]


def test_render_refuses_a_directory_that_holds_something_else(render_dest) -> None:
    root = render_dest["root"]
    run = render_dest["runs"]["foreign"]
    assert run.returncode != 0, run.explain()
    assert f"dest '{root / 'foreign'}' ({root / 'foreign'}) is not empty (it has README.md)" in run.output, run.explain()
    assert "add -e overwrite=true" in run.output
    assert sorted(p.name for p in (root / "foreign").iterdir()) == ["README.md"]
    run = render_dest["runs"]["file"]
    assert run.returncode != 0, run.explain()
    assert f"({root / 'a-file'}) is a file, not a directory" in run.output, run.explain()


def test_render_refuses_an_earlier_render_of_another_model(render_dest) -> None:
    run = render_dest["runs"]["other_model"]
    assert run.returncode != 0, run.explain()
    assert "is not an earlier render of vision-models (its base/deployment.yaml is image-classifier)" in run.output, \
        run.explain()
    deployment_file = render_dest["root"] / "fresh" / "base" / "deployment.yaml"
    assert yaml.safe_load(deployment_file.read_text())["metadata"]["name"] == "image-classifier"


def test_render_rewrites_an_earlier_render_of_the_same_model(render_dest) -> None:
    for key in ("first", "again"):
        run = render_dest["runs"][key]
        assert run.returncode == 0, run.explain()
    assert (render_dest["root"] / "fresh" / "overlays" / "prod" / "kustomization.yaml").is_file()


def test_render_overwrite_writes_into_a_directory_that_holds_something_else(render_dest) -> None:
    run = render_dest["runs"]["forced"]
    assert run.returncode == 0, run.explain()
    forced = render_dest["root"] / "forced"
    assert sorted(p.name for p in forced.iterdir()) == ["README.md", "base", "overlays"]
    assert (forced / "README.md").read_text() == "kept\n"
