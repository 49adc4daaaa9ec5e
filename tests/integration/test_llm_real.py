"""Ollama really serving on the real node, deployed by playbooks/deploy_model.yml (issue 14, "Real where it can be had").

No mocks, nothing downloaded from a hub:
- the server is built from its Go module with cgo for CPU (cluster/build.sh ollama, the tag cluster/versions.env
  pins), put on the Debian base image (hack/ollama_image.sh) and, by the deploy, into roles/ollama's Dockerfile,
  pushed to the cluster's registry;
- the model is a tiny llama-type GGUF with random weights made in the build (tests/fixtures/models/ollama),
  created with `ollama create` and pushed with `ollama push --insecure` to the same registry
  (hack/ollama_model.sh); the pods pull it from the registry's read-only address on the node's bridge;
- the local catalog's tiny-ollama-cpu deploys: Ready on the real node, the deploy pulls the model after the
  rollout and its smoke check is a real completion; the test asks for completions through the Service (API
  server's service proxy);
- the model is deleted from the server (DELETE /api/delete) and a Job made from the model check's CronJob
  (`kubectl create job --from=cronjob/...`) puts it back (AUTO_PULL), then answers a one-token inference;
- undeploy leaves no object and no container of the model.

The figures the issue asks for are printed (run with -s): build time and binary size, image size, the pod's
memory, time to Ready, completion latency. Traffic goes only to the local API server.

The pull: Ollama v0.17.4 downloads a blob from the Location of the registry's answer to the blob GET, even when
the registry answers 200 with the blob itself ("http: no Location header in response", ollama/ollama#7244, fixes
proposed upstream, not merged). Registries that serve models redirect (ollama.com to its CDN, a docker registry
on S3 or GCS to the bucket), and so does the pods' registry of the local cluster: docker-registry's redirect
storage middleware sends blob GETs to a read-only blob store on a second address of the node's bridge
(cluster/registry_blobs.py, cluster/node.sh). The model check's pod runs where the server may run (the
entry's node selector and tolerations), so here on the real node, not on a simulated one.
"""

from __future__ import annotations

import copy
import json
import os
import re
import statistics
import subprocess
import time
import uuid
from typing import Any, Dict, Iterator, List

import pytest

import image_tools
from playbooks import REPO_ROOT, Run, baseline_namespace, run_playbook
from serving_tools import Proxy, catalog, node_containers, pod_memory, sh, wait_for

pytestmark = pytest.mark.local_cluster

MODEL = "tiny-ollama-cpu"
REAL_NODE = "real-0"
CLUSTER_SH = REPO_ROOT / "cluster" / "cluster.sh"
SELECTOR = f"creativeflow.ai/model-name={MODEL},app.kubernetes.io/managed-by=creativeflow.ai_serving"
# A cold Ollama build (llama.cpp's C++ through cgo) on 2 shared cores, then the image.
BUILD_TIMEOUT = 3600
DEPLOY_TIMEOUT = 1200
FIGURES: Dict[str, str] = {}


def pins() -> Dict[str, str]:
    return dict(line.split("=", 1) for line in (REPO_ROOT / "cluster" / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def figure(key: str, value: str) -> None:
    FIGURES[key] = value
    print(f"\n[ollama figures] {key}: {value}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def registries(kubeconfig: str) -> Dict[str, str]:
    """The registry (pushes, the node's image pulls) and its address for pods; the catalog names both."""
    push, pods = sh(CLUSTER_SH, "registry").stdout.strip(), sh(CLUSTER_SH, "pod-registry").stdout.strip()
    entry = catalog()[MODEL]
    if not entry["image"]["repository"].startswith(push + "/") or not entry["ollama"]["models"][0].startswith(pods + "/"):
        pytest.fail(f"the catalog's {MODEL} names the registry as 127.0.0.1:5000 and 10.244.0.1:5000 for pods, this "
                    f"cluster has {push} and {pods}: free port 5000 or keep AI_SERVING_REAL_POD_CIDR's default")
    return {"push": push, "pods": pods}


@pytest.fixture(scope="module")
def build_env(kubeconfig: str) -> Dict[str, str]:
    """podman's sandbox settings for the deploy's build; the Ollama base image made once (the binary built first)."""
    env = image_tools.container_env()
    image_tools.base_image({**os.environ, **env})
    started = time.monotonic()
    sh(REPO_ROOT / "hack" / "ollama_image.sh", env=env, timeout=BUILD_TIMEOUT)
    print(f"\nhack/ollama_image.sh took {time.monotonic() - started:.0f} s")
    return env


@pytest.fixture(scope="module")
def tiny_model(registries: Dict[str, str], build_env: Dict[str, str]) -> str:
    """The tiny model in the registry, under the name the pods pull."""
    name = catalog()[MODEL]["ollama"]["models"][0]
    sh(REPO_ROOT / "hack" / "ollama_model.sh", registries["push"], name.split("/", 1)[1], timeout=900)
    return name


@pytest.fixture(scope="module")
def namespace(kubeconfig: str, core_v1) -> Iterator[str]:
    with baseline_namespace(core_v1, "t-ollama", {"pods": "20"}) as name:
        yield name


def quiet_catalog() -> Dict[str, Any]:
    """The catalog with the model check scheduled once a year: only the test's own Job runs it (a scheduled run
    between the delete and that Job would pull the model first). Everything else is the CronJob as deployed."""
    models = copy.deepcopy(catalog())
    models[MODEL]["ollama"]["model_check"]["schedule"] = "0 0 1 1 *"
    return models


def deploy(kubeconfig: str, namespace: str, env: Dict[str, str], playbook: str = "deploy_model.yml",
           timeout: int = DEPLOY_TIMEOUT) -> Run:
    return run_playbook(playbook, kubeconfig, {"model": MODEL, "ai_namespace_name": namespace,
                                               "ai_serving_models": quiet_catalog()}, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def deployed(kubeconfig: str, namespace: str, build_env: Dict[str, str], tiny_model: str) -> Run:
    started = time.monotonic()
    run = deploy(kubeconfig, namespace, build_env)
    figure("deploy_model.yml (image build and push the first time)", f"{time.monotonic() - started:.0f} s")
    return run


@pytest.fixture(scope="module")
def proxy(api_client, namespace: str) -> Proxy:
    return Proxy(api_client, namespace, MODEL, "http")


def server_pod(core_v1, namespace: str):
    pods = [p for p in core_v1.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={MODEL}").items
            if p.metadata.deletion_timestamp is None and (p.metadata.labels or {}).get("app.kubernetes.io/component")
            != "model-check"]
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def tags(proxy: Proxy) -> List[str]:
    code, text = proxy.send("/api/tags")
    assert code == 200, text
    return [model["name"] for model in json.loads(text)["models"]]


def generate(proxy: Proxy, model: str, tokens: int = 8) -> Dict[str, Any]:
    body = {"model": model, "prompt": "hello", "stream": False, "options": {"num_predict": tokens, "seed": 1}}
    code, text = proxy.send("/api/generate", body, timeout=300)
    assert code == 200, text
    return json.loads(text)


# --------------------------------------------------------------------------- tests


def test_the_server_is_built_from_its_go_module_with_cgo(build_env: Dict[str, str]) -> None:
    version = pins()["OLLAMA_VERSION"]
    out = image_tools.CACHE_DIR / "bin" / f"ollama-{version}"
    info = dict(line.split("=", 1) for line in (out / "build.txt").read_text().splitlines() if "=" in line)
    figure("ollama build (cgo, CPU; the run that made the binary: incremental when Go's build cache was warm)",
           f"{info['build_seconds']} s with {info['go']}, gcc {info['gcc']}")
    figure("ollama binary", f"{int(info['size_bytes']) / 1e6:.0f} MB (stripped)")
    # cgo: linked against the C and C++ runtimes (llama.cpp and ggml are compiled in).
    libs = sh("ldd", out / "ollama").stdout
    assert "libstdc++" in libs and "not found" not in libs, libs
    client = subprocess.run([str(out / "ollama"), "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, check=False, timeout=60, env={**os.environ, "OLLAMA_HOST": "127.0.0.1:9"})
    assert version.lstrip("v") in client.stdout + client.stderr, client.stdout + client.stderr
    size = sh("podman", "image", "inspect", "--format", "{{.Size}}", f"localhost/ai-serving/ollama-base:{version}",
              env=build_env).stdout.strip()
    figure("ollama-base image (Debian base + curl + ollama)", f"{int(size) / 1e6:.0f} MB")


def test_the_pods_registry_redirects_blob_downloads_to_another_host(tiny_model: str,
                                                                     registries: Dict[str, str]) -> None:
    # What Ollama's pull needs (ollama/ollama#7244), as ollama.com and registries on object storage do.
    repository, tag = tiny_model.split("/", 1)[1].rsplit(":", 1)
    manifest = json.loads(sh("curl", "-fsS", "--noproxy", "*", "-H",
                             "Accept: application/vnd.docker.distribution.manifest.v2+json",
                             f"http://{registries['pods']}/v2/{repository}/manifests/{tag}").stdout)
    layer = next(item for item in manifest["layers"] if item["mediaType"].endswith(".model"))
    head = sh("curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
              f"http://{registries['pods']}/v2/{repository}/blobs/{layer['digest']}").stdout.split()
    assert head[0] == "307", head
    location = head[1]
    assert not location.startswith(f"http://{registries['pods'].split(':')[0]}:"), location
    # The blob store serves the bytes, in ranges (Ollama downloads a large blob in parts).
    first = sh("curl", "-fsS", "--noproxy", "*", "-r", "0-3", location).stdout
    assert first == "GGUF", first


def test_deploy_is_ready_on_the_real_node_and_pulled_the_model(deployed: Run, core_v1, apps_v1, namespace: str,
                                                                tiny_model: str, build_env: Dict[str, str],
                                                                registries: Dict[str, str]) -> None:
    assert deployed.returncode == 0, deployed.explain()
    # After the rollout the deploy pulled the catalog's model through the pod proxy, then asked for a completion.
    pulled = re.search(rf"model {re.escape(tiny_model)} pulled in (\d+) s", deployed.output)
    assert pulled, deployed.explain()
    figure("the deploy's pull of the model after the rollout (pod proxy, /api/pull)", f"{pulled.group(1)} s")
    assert "answered as expected" in deployed.output and "not asked" not in deployed.output, deployed.explain()
    pod = server_pod(core_v1, namespace)
    assert pod.spec.node_name == REAL_NODE
    status = pod.status.container_statuses[0]
    assert status.ready and status.started and status.restart_count == 0, status
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    figure("time to Ready (pod created -> Ready; the first time the image is pulled from the local registry)",
           f"{(ready.last_transition_time - pod.metadata.creation_timestamp).total_seconds():.0f} s")
    entry = catalog()[MODEL]
    image = f"{entry['image']['repository']}:{entry['image']['tag']}"
    size = sh("podman", "image", "inspect", "--format", "{{.Size}}", image, env=build_env).stdout.strip()
    manifest = json.loads(sh("curl", "-fsS", "--noproxy", "*", "-H",
                             "Accept: application/vnd.docker.distribution.manifest.v2+json",
                             f"http://{registries['push']}/v2/ai-serving/{MODEL}/manifests/{entry['image']['tag']}").stdout)
    pushed = sum(layer["size"] for layer in manifest["layers"])
    figure("deployed image", f"{int(size) / 1e6:.0f} MB in podman's storage, {pushed / 1e6:.0f} MB of compressed layers in the registry")
    # Not root, read-only root file system: Pod Security restricted admitted it.
    assert pod.spec.containers[0].security_context.read_only_root_filesystem is True


def test_a_completion_through_the_service(deployed: Run, proxy: Proxy, core_v1, namespace: str,
                                          tiny_model: str) -> None:
    assert deployed.returncode == 0, deployed.explain()
    code, text = proxy.send("/api/version")
    assert code == 200 and json.loads(text)["version"] == pins()["OLLAMA_VERSION"].lstrip("v"), text
    assert tiny_model in tags(proxy)
    latencies, answers = [], []
    for _ in range(5):
        started = time.monotonic()
        answers.append(generate(proxy, tiny_model))
        latencies.append(time.monotonic() - started)
    for answer in answers:
        assert answer["done"] is True and answer["eval_count"] >= 1 and isinstance(answer["response"], str), answer
    # The same seed, the same weights: the same tokens each time.
    assert len({answer["response"] for answer in answers}) == 1, answers
    figure("completion through the service proxy (8 tokens, model loaded)",
           f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over 5; "
           f"Ollama's own total {statistics.median(a['total_duration'] for a in answers) / 1e6:.0f} ms, "
           f"{statistics.median(a['eval_count'] / a['eval_duration'] * 1e9 for a in answers):.0f} tokens/s")
    figure("the answer (random weights)", repr(answers[0]["response"]))
    # A one-token completion: the time to the first token (prompt evaluation and one token, through the proxy).
    firsts = []
    for _ in range(5):
        started = time.monotonic()
        assert generate(proxy, tiny_model, tokens=1)["done"] is True
        firsts.append(time.monotonic() - started)
    figure("first token (1-token completion through the service proxy, model loaded)",
           f"median {statistics.median(firsts) * 1000:.0f} ms, max {max(firsts) * 1000:.0f} ms over 5")
    pod = server_pod(core_v1, namespace)
    figure("pod memory (cgroup, serve + runner with the model loaded)", pod_memory(pod.metadata.uid))


def test_the_model_checks_job_puts_a_deleted_model_back(deployed: Run, proxy: Proxy, kubectl, core_v1,
                                                        namespace: str, tiny_model: str) -> None:
    assert deployed.returncode == 0, deployed.explain()
    code, text = proxy.send("/api/delete", {"model": tiny_model}, method="DELETE")
    assert code == 200, text
    assert tiny_model not in tags(proxy)
    code, text = proxy.send("/api/generate", {"model": tiny_model, "prompt": "hello", "stream": False})
    assert code == 404, text  # Ollama: model not found

    job = f"check-now-{uuid.uuid4().hex[:6]}"
    kubectl("-n", namespace, "create", "job", f"--from=cronjob/{MODEL}-model-check", job)
    started = time.monotonic()

    def finished() -> str:
        status = json.loads(kubectl("-n", namespace, "get", "job", job, "-o", "json").stdout)["status"]
        return "succeeded" if status.get("succeeded") else "failed" if status.get("failed") else ""

    outcome = wait_for(finished, 420, f"job {job} finished", interval=2)
    seconds = time.monotonic() - started
    logs = kubectl("-n", namespace, "logs", f"job/{job}", check=False).stdout
    assert outcome == "succeeded", logs
    assert f"missing models: {tiny_model}" in logs and f"pulled {tiny_model}" in logs, logs
    assert '"inference":"passed"' in logs, logs
    figure("model check Job (create -> succeeded: pull + one-token inference)", f"{seconds:.0f} s")
    pod = kubectl("-n", namespace, "get", "pods", "-l", f"job-name={job}", "-o", "json").stdout
    assert json.loads(pod)["items"][0]["spec"]["nodeName"] == REAL_NODE
    assert tiny_model in tags(proxy)
    assert generate(proxy, tiny_model)["done"] is True
    # Its report reached its ConfigMap through the API server (the kubernetes Service, the job's token), with only
    # what its Role allows: update of that one ConfigMap.
    report = json.loads(core_v1.read_namespaced_config_map(f"{MODEL}-model-check-report", namespace).data["last_report"])
    assert (report["state"], report["missing"], report["pulled"]) == ("ok", tiny_model, tiny_model), report
    # How it reached the server (the Service's name needs cluster DNS, which the local cluster has not).
    print("\n" + "\n".join(line for line in logs.splitlines() if "server answers" in line or "report" in line))


def test_undeploy_leaves_no_object_and_no_container(deployed: Run, kubeconfig: str, namespace: str, api_client,
                                                    build_env: Dict[str, str], core_v1) -> None:
    from kubernetes import client

    # Whatever became of the model's pull, the server itself ran on the real node.
    assert server_pod(core_v1, namespace).spec.node_name == REAL_NODE

    run = deploy(kubeconfig, namespace, build_env, "undeploy_model.yml", timeout=600)
    assert run.returncode == 0, run.explain()
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    for listed in (apps.list_namespaced_deployment, core.list_namespaced_service, core.list_namespaced_config_map,
                   core.list_namespaced_service_account, batch.list_namespaced_cron_job):
        assert listed(namespace, label_selector=SELECTOR).items == [], listed.__name__
    # The test's own Job is not the deploy's: delete it, then nothing of the namespace runs on the node.
    batch.delete_collection_namespaced_job(namespace, propagation_policy="Background")
    wait_for(lambda: not node_containers(namespace), 180, "no container of the namespace's pods on the node")
    print("\n[ollama figures] summary:\n" + "\n".join(f"  {key}: {value}" for key, value in FIGURES.items()))
