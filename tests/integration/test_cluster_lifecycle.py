"""The cluster scripts' interface and fault handling, on a second, throwaway
cluster (its own name, ports and topology) so the shared one is not disturbed."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "cluster" / "cluster.sh"
BUILD_SH = REPO_ROOT / "cluster" / "build.sh"

pytestmark = pytest.mark.local_cluster

SMALL_TOPOLOGY = {
    "pools": [
        {"name": "gpu", "count": 1, "capacity": {"cpu": "8", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "2"},
         "labels": {"nvidia.com/gpu.product": "NVIDIA-L4"},
         "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        {"name": "cpu", "count": 1, "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}},
    ]
}


def run(*args: str, env: dict, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def live_processes(marker: str) -> list[str]:
    """Non-zombie processes whose command line mentions marker."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


@pytest.fixture
def throwaway(tmp_path):
    name = f"lifecycle-{uuid.uuid4().hex[:6]}"
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump(SMALL_TOPOLOGY))
    # The session cluster holds the machine's one real node (test_real_node.py).
    env = {"AI_SERVING_CLUSTER_NAME": name, "AI_SERVING_TOPOLOGY": str(topology), "AI_SERVING_REAL_NODE": "0"}
    yield name, env, topology
    run(CLUSTER_SH, "down", env=env)


def node_names(kubeconfig: str) -> set[str]:
    out = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
                         capture_output=True, text=True, check=True).stdout
    return {line.removeprefix("node/") for line in out.split()}


def test_up_twice_restart_topology_change_and_down(throwaway):
    name, env, topology = throwaway
    first = run(CLUSTER_SH, "up", env=env, check=True)
    kubeconfig = first.stdout.strip().splitlines()[-1]
    assert kubeconfig.endswith(f"/clusters/{name}/kubeconfig.yaml") and Path(kubeconfig).is_file()
    assert run(CLUSTER_SH, "kubeconfig", env=env, check=True).stdout.strip() == kubeconfig
    assert node_names(kubeconfig) == {"gpu-0", "cpu-0"}
    pid_dir = Path(kubeconfig).parent / "pids"
    apiserver_pid = (pid_dir / "kube-apiserver.pid").read_text().strip()

    # A second `up` reuses the running cluster.
    run(CLUSTER_SH, "up", env=env, check=True)
    assert (pid_dir / "kube-apiserver.pid").read_text().strip() == apiserver_pid

    # A dead component is restarted, and named.
    os.kill(int((pid_dir / "kube-scheduler.pid").read_text()), 9)
    again = run(CLUSTER_SH, "up", env=env, check=True)
    assert "restarting stopped components: kube-scheduler" in again.stderr
    status = run(CLUSTER_SH, "status", env=env, check=True).stdout
    assert "kube-scheduler: running" in status

    # The topology file drives the nodes: added pools appear, removed ones go.
    changed = {"pools": [SMALL_TOPOLOGY["pools"][0] | {"count": 2}]}
    topology.write_text(yaml.safe_dump(changed))
    run(CLUSTER_SH, "nodes", env=env, check=True)
    assert node_names(kubeconfig) == {"gpu-0", "gpu-1"}

    run(CLUSTER_SH, "down", env=env, check=True)
    assert live_processes(f"/clusters/{name}/") == []
    missing = run(CLUSTER_SH, "kubeconfig", env=env)
    assert missing.returncode != 0 and "make cluster-up" in missing.stderr


def test_port_in_use_is_named(throwaway):
    name, env, _ = throwaway
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run(CLUSTER_SH, "up", env=env | {"AI_SERVING_APISERVER_PORT": str(port)})
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert live_processes(f"/clusters/{name}/") == []


def test_second_real_node_is_refused_naming_the_holder(kubeconfig, throwaway):
    """One real node per machine (iptables chains, bridge, sysctls): the session cluster has it."""
    name, env, topology = throwaway
    holder = Path(kubeconfig).parent.name
    topology.write_text(yaml.safe_dump(SMALL_TOPOLOGY | {"real_node": {"name": "real-0"}}))
    result = run(CLUSTER_SH, "up", env=env | {"AI_SERVING_REAL_NODE": "1"})
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"belongs to cluster '{holder}'" in errors[0] and "AI_SERVING_REAL_NODE=0" in errors[0]
    # Refused before anything started.
    assert live_processes(f"/clusters/{name}/") == []
    assert run(CLUSTER_SH, "kubeconfig", env=env).returncode != 0


def test_missing_go_toolchain_is_one_clear_error(tmp_path):
    # An empty cache forces a build; GO names a toolchain that is not there.
    env = {"AI_SERVING_CACHE_DIR": str(tmp_path), "GO": str(tmp_path / "no-go" / "go")}
    result = run("bash", BUILD_SH, "etcd", env=env)
    assert result.returncode != 0
    assert "no Go toolchain" in result.stderr


def test_unreachable_module_proxy_is_one_clear_error(tmp_path):
    env = {"AI_SERVING_CACHE_DIR": str(tmp_path), "GOPROXY": "off"}
    result = run("bash", BUILD_SH, "etcd", env=env)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "cannot fetch go.etcd.io/etcd/server/v3@" in errors[0] and "Go module proxy (off)" in errors[0]
