"""The LLM runtimes (ollama, vllm) through the playbooks against the test cluster, from the local inventory.

The catalog's examples chat-ollama (seed 004: NodePort 30501, model check CronJob, usage statistics)
and llama-vllm deploy on the simulated GPU nodes of a namespace that enforces Pod Security
``restricted``: Ready, idempotent, check mode with diff, rollback on a failing version, render to
kustomize, exact undeploy. The API server verifies every object: the deploy's server-side dry run
stops on any Pod Security warning, and the pod templates of the Deployment and the CronJob are
created here as pods in a server-side dry run, which the namespace's enforcement judges.

The simulated nodes run no container: the after-rollout pulls and the smoke check say so. The real
servers (Ollama built from its Go module, vLLM's CPU build) are not run here yet: see the issue's note.
"""

from __future__ import annotations

import copy
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, Optional

import pytest
import yaml

from playbooks import REPO_ROOT, Run, baseline_namespace, run_playbook

CATALOG_FILE = REPO_ROOT / "inventories" / "shared" / "group_vars" / "all" / "models.yml"
FAULT = "sim.creativeflow.ai/fault"
OLLAMA, VLLM = "chat-ollama", "llama-vllm"
SELECTOR = "creativeflow.ai/model-name={0},app.kubernetes.io/managed-by=creativeflow.ai_serving"


class Runner:
    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def __call__(self, playbook: str, model: str, extra: Optional[Dict[str, Any]] = None, *args: str) -> Run:
        return run_playbook(playbook, self.kubeconfig, {"model": model, "ai_namespace_name": self.namespace,
                                                        **(extra or {})}, *args)

    @staticmethod
    def parallel(jobs: Dict[str, Callable[[], Any]]) -> Dict[str, Any]:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = {key: pool.submit(job) for key, job in jobs.items()}
            return {key: future.result() for key, future in futures.items()}


def with_local_override(name: str, override: Dict[str, Any]) -> Dict[str, Any]:
    models = copy.deepcopy(yaml.safe_load(CATALOG_FILE.read_text())["ai_serving_models"])
    local = models[name].setdefault("environments", {}).setdefault("local", {}) or {}
    local.update(override)
    models[name]["environments"]["local"] = local
    return {"ai_serving_models": models}


@pytest.fixture(scope="module")
def llm_namespace(kubeconfig: str, core_v1) -> Iterator[str]:
    with baseline_namespace(core_v1, "t-llm", {"requests.nvidia.com/gpu": "8", "pods": "50"}) as name:
        yield name


@pytest.fixture(scope="module")
def runner(kubeconfig: str, llm_namespace: str) -> Runner:
    return Runner(kubeconfig, llm_namespace)


@pytest.fixture(scope="module")
def deployed(runner: Runner) -> Dict[str, Dict[str, Run]]:
    def twice(model: str) -> Dict[str, Run]:
        return {"first": runner("deploy_model.yml", model), "again": runner("deploy_model.yml", model)}

    return runner.parallel({OLLAMA: lambda: twice(OLLAMA), VLLM: lambda: twice(VLLM)})


@pytest.mark.parametrize("model", [OLLAMA, VLLM])
def test_deploy_is_ready_and_a_second_run_changes_nothing(deployed, apps_v1, llm_namespace: str, model: str) -> None:
    first, again = deployed[model]["first"], deployed[model]["again"]
    assert first.returncode == 0, first.explain()
    assert first.recap["changed"] > 0
    assert again.returncode == 0 and again.recap["changed"] == 0, again.explain()
    dep = apps_v1.read_namespaced_deployment(model, llm_namespace)
    assert dep.status.available_replicas == dep.spec.replicas == 1
    assert "not asked: every ready endpoint is on a simulated (kwok) node" in first.output, first.explain()


def test_ollama_has_the_seeds_objects(deployed, api_client, core_v1, apps_v1, llm_namespace: str) -> None:
    from kubernetes import client

    assert "not asked: every ready pod is on a simulated (kwok) node" in deployed[OLLAMA]["first"].output
    server = apps_v1.read_namespaced_deployment(OLLAMA, llm_namespace).spec.template.spec.containers[0]
    env = {item.name: item.value for item in server.env}
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434" and env["OLLAMA_KEEP_ALIVE"] == "10m"
    assert server.readiness_probe.http_get.path == "/api/tags"
    service = core_v1.read_namespaced_service(OLLAMA, llm_namespace)
    assert service.spec.type == "NodePort"
    assert [(p.name, p.port, p.node_port) for p in service.spec.ports] == [("http", 11434, 30501)]
    cron = client.BatchV1Api(api_client).read_namespaced_cron_job(f"{OLLAMA}-model-check", llm_namespace)
    assert cron.spec.schedule == "*/5 * * * *"
    check = cron.spec.job_template.spec.template.spec
    assert check.service_account_name == f"{OLLAMA}-model-check"
    assert {e.name: e.value for e in check.containers[0].env}["EXPECTED_MODELS"] == "llama3:8b nomic-embed-text"
    rbac = client.RbacAuthorizationV1Api(api_client)
    role = rbac.read_namespaced_role(f"{OLLAMA}-model-check", llm_namespace)
    assert [(r.resources, r.resource_names, r.verbs) for r in role.rules] == [
        (["configmaps"], [f"{OLLAMA}-model-check-report"], ["get", "patch"])]
    stats = core_v1.read_namespaced_config_map(f"{OLLAMA}-usage-stats", llm_namespace)
    assert stats.data == {"usage_data": "{}"}
    binding = rbac.read_namespaced_role_binding(f"{OLLAMA}-usage-stats", llm_namespace)
    assert binding.subjects[0].name == "model-manager"
    # The check's ServiceAccount may patch its report and nothing else (the API server's own answer).
    account = f"system:serviceaccount:{llm_namespace}:{OLLAMA}-model-check"
    review = client.AuthorizationV1Api(api_client)

    def allowed(verb: str, resource: str, name: str = "") -> bool:
        attrs = client.V1ResourceAttributes(namespace=llm_namespace, verb=verb, resource=resource, name=name or None)
        body = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(user=account,
                                                                                 resource_attributes=attrs))
        return review.create_subject_access_review(body).status.allowed

    assert allowed("patch", "configmaps", f"{OLLAMA}-model-check-report")
    assert not allowed("patch", "configmaps", f"{OLLAMA}-usage-stats")
    assert not allowed("list", "pods") and not allowed("get", "secrets")


def test_vllm_arguments_and_shared_memory(deployed, apps_v1, llm_namespace: str) -> None:
    pod = apps_v1.read_namespaced_deployment(VLLM, llm_namespace).spec.template.spec
    args = pod.containers[0].args
    assert "--tensor-parallel-size=1" in args and "--max-model-len=8192" in args
    assert "--served-model-name=llama-3-8b-instruct" in args and "--gpu-memory-utilization=0.9" in args
    assert any(v.empty_dir and v.empty_dir.medium == "Memory" for v in pod.volumes)
    assert pod.containers[0].startup_probe.http_get.path == "/health"


@pytest.mark.parametrize("model", [OLLAMA, VLLM])
def test_pod_templates_pass_pod_security_in_a_server_side_dry_run(deployed, api_client, core_v1, apps_v1,
                                                                   llm_namespace: str, model: str) -> None:
    from kubernetes import client

    templates = [apps_v1.read_namespaced_deployment(model, llm_namespace).spec.template]
    if model == OLLAMA:
        cron = client.BatchV1Api(api_client).read_namespaced_cron_job(f"{model}-model-check", llm_namespace)
        templates.append(cron.spec.job_template.spec.template)
    for index, template in enumerate(templates):
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name=f"psa-probe-{index}", labels={"probe": "psa"}),
                           spec=template.spec)
        # Enforcement refuses a pod that breaks "restricted"; a dry run stores nothing.
        core_v1.create_namespaced_pod(llm_namespace, pod, dry_run="All")


@pytest.fixture(scope="module")
def changed(deployed, runner: Runner, apps_v1, llm_namespace: str) -> Dict[str, Any]:
    before = apps_v1.read_namespaced_deployment(VLLM, llm_namespace)
    check = with_local_override(OLLAMA, {"ollama": {"models": ["llama3:8b", "nomic-embed-text"], "keep_alive": "1h"}})
    fault = {"ai_serving_pod_labels": {FAULT: "crash-loop"}, "ai_serving_rollout_fail_fast": 3,
             "ai_serving_rollout_timeout": 30}
    runs = runner.parallel({
        "check": lambda: runner("deploy_model.yml", OLLAMA, check, "--check", "--diff"),
        "fault": lambda: runner("deploy_model.yml", VLLM, fault),
    })
    return {"runs": runs, "before": before}


def test_check_mode_shows_the_diff_and_changes_nothing(changed, apps_v1, llm_namespace: str) -> None:
    run = changed["runs"]["check"]
    assert run.returncode == 0, run.explain()
    assert "OLLAMA_KEEP_ALIVE" in run.stdout and "1h" in run.stdout, run.explain()
    server = apps_v1.read_namespaced_deployment(OLLAMA, llm_namespace).spec.template.spec.containers[0]
    assert {item.name: item.value for item in server.env}["OLLAMA_KEEP_ALIVE"] == "10m"


def test_a_failing_version_is_rolled_back(changed, apps_v1, llm_namespace: str) -> None:
    run = changed["runs"]["fault"]
    assert run.returncode != 0, run.explain()
    assert "CrashLoopBackOff" in run.output and "Rolled back automatically" in run.output, run.explain()
    dep = apps_v1.read_namespaced_deployment(VLLM, llm_namespace)
    assert FAULT not in dep.spec.template.metadata.labels
    assert dep.status.available_replicas == 1


@pytest.fixture(scope="module")
def finale(changed, runner: Runner, tmp_path_factory) -> Dict[str, Any]:
    dest = tmp_path_factory.mktemp("render-llm")
    runs = runner.parallel({
        "render": lambda: {m: runner("render_model.yml", m, {"dest": str(dest / m)}) for m in (OLLAMA, VLLM)},
        "undeploy": lambda: {"first": runner("undeploy_model.yml", OLLAMA), "again": runner("undeploy_model.yml", OLLAMA)},
    })
    return {"runs": runs, "dest": dest}


@pytest.mark.parametrize("model", [OLLAMA, VLLM])
def test_render_writes_kustomize_that_builds(finale, llm_namespace: str, model: str) -> None:
    run = finale["runs"]["render"][model]
    assert run.returncode == 0, run.explain()
    proc = subprocess.run(["kubectl", "kustomize", str(finale["dest"] / model / "overlays" / "prod")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    built = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(proc.stdout) if d}
    assert built[("Deployment", model)]["spec"]["replicas"] == 3
    if model == OLLAMA:
        claim = built[("PersistentVolumeClaim", "chat-ollama-models")]
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
        for key in (("CronJob", f"{model}-model-check"), ("ConfigMap", f"{model}-model-check-script"),
                    ("Role", f"{model}-usage-stats"), ("ConfigMap", f"{model}-usage-stats")):
            assert key in built, key
            assert built[key]["metadata"]["namespace"] == llm_namespace
    else:
        args = built[("Deployment", model)]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--tensor-parallel-size=2" in args


def test_undeploy_removes_every_object_of_the_model(finale, api_client, core_v1, apps_v1, llm_namespace: str) -> None:
    from kubernetes import client

    first, again = finale["runs"]["undeploy"]["first"], finale["runs"]["undeploy"]["again"]
    assert first.returncode == 0, first.explain()
    assert again.returncode == 0 and again.recap["changed"] == 0, again.explain()
    selector = SELECTOR.format(OLLAMA)
    batch, rbac = client.BatchV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    for listed in (apps_v1.list_namespaced_deployment, core_v1.list_namespaced_service,
                   core_v1.list_namespaced_config_map, core_v1.list_namespaced_service_account,
                   core_v1.list_namespaced_persistent_volume_claim, batch.list_namespaced_cron_job,
                   rbac.list_namespaced_role, rbac.list_namespaced_role_binding):
        assert listed(llm_namespace, label_selector=selector).items == [], listed.__name__
    # The other model stays.
    assert apps_v1.read_namespaced_deployment(VLLM, llm_namespace).status.available_replicas == 1
