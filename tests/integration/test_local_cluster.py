"""Acceptance tests of the local cluster itself: real scheduler, quota and Pod
Security admission, kwok's pod stages (including our fault stages)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def versions() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "cluster" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            pins[key] = value
    return pins


def pod(name: str, *, gpus: int = 0, labels: dict | None = None, tolerate: bool = True, **container) -> dict:
    spec_container = {"name": "server", "image": "example.invalid/model:1", **container}
    if gpus:
        spec_container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec = {"containers": [spec_container]}
    if tolerate:
        spec["tolerations"] = [GPU_TOLERATION]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def apply(kubectl, namespace: str, obj: dict, check: bool = True):
    return kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj), check=check)


def wait_for(predicate, timeout: float = 30, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def get_json(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


@pytest.mark.local_cluster
def test_nodes_advertise_gpus(kubectl):
    nodes = {n["metadata"]["name"]: n for n in get_json(kubectl, "nodes")["items"]}
    gpu_nodes = [n for n in nodes.values() if "nvidia.com/gpu" in n["status"]["allocatable"]]
    assert len(gpu_nodes) >= 2
    for node in gpu_nodes:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        labels = node["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
        assert labels["nvidia.com/gpu.count"] == "4"
        assert labels["nvidia.com/gpu.memory"] == "81920"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
    mig = [n for n in nodes.values() if "nvidia.com/mig-1g.10gb" in n["status"]["allocatable"]]
    assert mig and mig[0]["status"]["allocatable"]["nvidia.com/mig-1g.10gb"] == "7"
    cpu_only = [n for n in nodes.values() if not any(k.startswith("nvidia.com/") for k in n["status"]["allocatable"])]
    assert cpu_only and not cpu_only[0]["spec"].get("taints")
    for node in nodes.values():
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", node["metadata"]["name"]


@pytest.mark.local_cluster
def test_server_version_matches_pin(kubectl):
    out = json.loads(kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == versions()["KUBE_VERSION"]
    client_minor = int(re.sub(r"\D", "", out["clientVersion"]["minor"]))
    assert abs(client_minor - int(out["serverVersion"]["minor"])) <= 1


def test_gpu_pod_becomes_ready(kubectl, namespace):
    apply(kubectl, namespace, pod("one-gpu", gpus=1))
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/one-gpu", "--timeout=60s")
    got = get_json(kubectl, "-n", namespace, "pod/one-gpu")
    node = get_json(kubectl, "node", got["spec"]["nodeName"])
    assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 1
    # The stage applied once: the pod keeps its node's IP as hostIP and its podIP
    # (a stage that kept matching rewrote both, and the Endpoints, many times a second).
    internal = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert got["status"]["hostIP"] == internal
    time.sleep(3)
    again = get_json(kubectl, "-n", namespace, "pod/one-gpu")
    assert again["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]
    assert again["status"]["podIP"] == got["status"]["podIP"]


@pytest.mark.local_cluster
def test_ready_delay_annotation_holds_a_pod_back(kubectl, namespace):
    """sim.creativeflow.ai/ready-delay stands for a model's load time (bench-deploy uses it)."""
    slow = pod("slow-start")
    slow["metadata"]["annotations"] = {"sim.creativeflow.ai/ready-delay": "5s"}
    started = time.monotonic()
    apply(kubectl, namespace, slow)
    apply(kubectl, namespace, pod("quick-start"))
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/quick-start", "--timeout=60s")
    assert get_json(kubectl, "-n", namespace, "pod/slow-start")["status"].get("phase") == "Pending"
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/slow-start", "--timeout=60s")
    assert time.monotonic() - started >= 5


def test_gpu_pod_larger_than_any_node_is_unschedulable(kubectl, namespace):
    apply(kubectl, namespace, pod("too-big", gpus=64))

    def scheduled_condition():
        conditions = get_json(kubectl, "-n", namespace, "pod/too-big")["status"].get("conditions", [])
        return next((c for c in conditions if c["type"] == "PodScheduled"), None)

    cond = wait_for(scheduled_condition)
    assert cond["status"] == "False"
    assert cond["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    assert get_json(kubectl, "-n", namespace, "pod/too-big")["status"]["phase"] == "Pending"


def test_gpu_pod_without_toleration_avoids_tainted_nodes(kubectl, namespace):
    apply(kubectl, namespace, pod("no-toleration", gpus=1, tolerate=False))
    cond = wait_for(
        lambda: next(
            (c for c in get_json(kubectl, "-n", namespace, "pod/no-toleration")["status"].get("conditions", [])
             if c["type"] == "PodScheduled"),
            None,
        )
    )
    assert cond["status"] == "False" and "untolerated taint" in cond["message"]


def test_resource_quota_rejects_pod_over_gpu_quota(kubectl, namespace):
    kubectl("create", "quota", "gpu-quota", "-n", namespace, "--hard=requests.nvidia.com/gpu=4")
    wait_for(lambda: get_json(kubectl, "-n", namespace, "resourcequota/gpu-quota").get("status", {}).get("hard"))
    apply(kubectl, namespace, pod("fits-quota", gpus=3))
    result = apply(kubectl, namespace, pod("over-quota", gpus=2), check=False)
    assert result.returncode != 0
    assert "exceeded quota: gpu-quota" in result.stderr
    assert "requests.nvidia.com/gpu=2, used: requests.nvidia.com/gpu=3, limited: requests.nvidia.com/gpu=4" in result.stderr


def test_restricted_pod_security_rejects_privileged_pod(kubectl, namespace):
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    result = apply(kubectl, namespace, pod("privileged", securityContext={"privileged": True}), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert "privileged" in result.stderr


@pytest.mark.local_cluster
@pytest.mark.parametrize(
    ("fault", "phase", "reason"),
    [("crash-loop", "Running", "CrashLoopBackOff"), ("image-pull", "Pending", "ImagePullBackOff"), ("not-ready", "Running", None)],
)
def test_fault_stages(kubectl, namespace, fault, phase, reason):
    apply(kubectl, namespace, pod("faulty", labels={"sim.creativeflow.ai/fault": fault}))
    status = wait_for(lambda: get_json(kubectl, "-n", namespace, "pod/faulty")["status"].get("containerStatuses") and
                      get_json(kubectl, "-n", namespace, "pod/faulty")["status"])
    assert status["phase"] == phase
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    container = status["containerStatuses"][0]
    assert container["ready"] is False
    if reason:
        assert container["state"]["waiting"]["reason"] == reason
    else:
        assert "running" in container["state"]


def deployment(name: str, *, version: str, labels: dict | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 5,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name, **(labels or {})}},
                "spec": {
                    "tolerations": [GPU_TOLERATION],
                    "containers": [{
                        "name": "server",
                        "image": f"example.invalid/model:{version}",
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    }],
                },
            },
        },
    }


@pytest.mark.local_cluster
def test_rollout_stalls_on_not_ready_pods_and_undo_recovers(kubectl, namespace):
    apply(kubectl, namespace, deployment("model", version="1"))
    kubectl("rollout", "status", "-n", namespace, "deployment/model", "--timeout=60s")

    apply(kubectl, namespace, deployment("model", version="2", labels={"sim.creativeflow.ai/fault": "not-ready"}))
    stalled = kubectl("rollout", "status", "-n", namespace, "deployment/model", "--timeout=30s", check=False)
    assert stalled.returncode != 0
    assert "exceeded its progress deadline" in stalled.stderr
    dep = get_json(kubectl, "-n", namespace, "deployment/model")
    progressing = next(c for c in dep["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    # maxUnavailable 0: the old pods keep serving while the new one is not ready.
    assert dep["status"]["availableReplicas"] == 2

    kubectl("rollout", "undo", "-n", namespace, "deployment/model")
    kubectl("rollout", "status", "-n", namespace, "deployment/model", "--timeout=60s")
    dep = get_json(kubectl, "-n", namespace, "deployment/model")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":1")
    assert "sim.creativeflow.ai/fault" not in dep["spec"]["template"]["metadata"]["labels"]
    assert dep["status"]["readyReplicas"] == 2 and dep["status"]["updatedReplicas"] == 2
