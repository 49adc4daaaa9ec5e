#!/usr/bin/env python3
"""Measure the local cluster and print the figures (a benchmark, not a test).

    hack/bench_cluster.py [--cold] [--nodes 1000] [--pods 5000] [--no-real-node] [--no-scale]

- cold build: with --cold, every binary is built into an empty cache
  (Go modules downloaded again): what a fresh machine pays once.
- cluster-up: create from cached binaries (stopped -> Ready nodes), and `up`
  on a running cluster (the common case in tests).
- memory at rest: RSS of etcd, kube-apiserver, kube-controller-manager,
  kube-scheduler and kwok-controller with the default topology, idle.
- real node (unless --no-real-node; needs the machine's real node free): the
  real node added to the running cluster until Ready, pause and base image
  builds (cold: --cold; cached), a real pod's start to Ready (image pulled,
  then cached), RSS of registry, containerd, kubelet and kube-proxy.
- scale (unless --no-scale): N GPU nodes (8 x nvidia.com/gpu) until Ready, then M one-GPU pods
  (Deployments of 100 replicas) until all are Ready; memory under that load.
Runs on its own cluster (name: bench) and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = ROOT / "cluster" / "cluster.sh"
BUILD_SH = ROOT / "cluster" / "build.sh"
IMAGES_SH = ROOT / "cluster" / "images.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")
NODE_COMPONENTS = ("registry", "registry-pods", "registry-blobs", "containerd", "kubelet", "kube-proxy")
CACHE_DIR = Path(os.environ.get("AI_SERVING_CACHE_DIR", Path.home() / ".cache" / "creativeflow-ai-serving"))


def sh(*args, env=None, capture=True) -> str:
    result = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})},
                            capture_output=capture, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{result.stderr[-3000:] if capture else ''}")
    return result.stdout if capture else ""


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def rss_mib(cluster_dir: Path, components=COMPONENTS) -> dict[str, float]:
    out = {}
    for comp in components:
        pid = (cluster_dir / "pids" / f"{comp}.pid").read_text().strip()
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out[comp] = int(line.split()[1]) / 1024
    return out


def print_rss(label: str, rss: dict[str, float]) -> None:
    detail = ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
    print(f"{label}: {sum(rss.values()):.0f} MiB ({detail})")


def deployment(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "nodeSelector": {"sim.creativeflow.ai/topology": "scale"},
                    "containers": [{"name": "m", "image": "example.invalid/m:1",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                },
            },
        },
    }


def real_pod(name: str, image: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"creativeflow.ai/real-node": "true"},
            "tolerations": [{"key": "creativeflow.ai/real-node", "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "web", "image": image, "command": ["python3", "-m", "http.server", "8080"],
                            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}],
        },
    }


def bench_real_node(env: dict, kubeconfig: str, cluster_dir: Path, cold: bool) -> None:
    add = timed(lambda: sh(CLUSTER_SH, "up", env={**env, "AI_SERVING_REAL_NODE": "1"}))
    print(f"real node added to the running cluster (registry, containerd, kubelet, kube-proxy started) to Ready: {add:.1f} s")
    registry = sh(CLUSTER_SH, "registry", env=env).strip()
    store = CACHE_DIR / "cluster-images" / "storage.conf"
    local = {"CONTAINERS_STORAGE_CONF": str(store)}
    version = dict(line.split("=", 1) for line in (ROOT / "cluster" / "versions.env").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))["KUBE_VERSION"]
    pause_ref = f"{registry}/ai-serving/bench-pause:{version}"
    if cold:
        subprocess.run(["rm", "-rf", str(CACHE_DIR / "bin" / f"pause-{version}")], check=True)
        subprocess.run(["buildah", "rmi", f"localhost/ai-serving/pause:{version}"], env={**os.environ, **local},
                       capture_output=True, check=False)
        print(f"pause image, cold (gcc -static, image, push): {timed(lambda: sh(IMAGES_SH, 'pause', pause_ref)):.1f} s")
    print(f"pause image, cached (push only): {timed(lambda: sh(IMAGES_SH, 'pause', pause_ref)):.1f} s")
    base_ref = f"{registry}/ai-serving/python-base:bookworm"
    tarball = CACHE_DIR / "images" / "python-base-bookworm.tar"
    if cold and tarball.exists():
        tarball.unlink()
        subprocess.run(["podman", "rmi", "-f", "localhost/ai-serving/python-base:bookworm"],
                       env={**os.environ, **local}, capture_output=True, check=False)
        print(f"python base image, cold (debootstrap, import, push): {timed(lambda: sh(IMAGES_SH, 'base', base_ref)):.0f} s")
    print(f"python base image, cached (push only): {timed(lambda: sh(IMAGES_SH, 'base', base_ref)):.1f} s")

    kubectl = ["kubectl", "--kubeconfig", kubeconfig]
    sh(*kubectl, "create", "namespace", "realbench")
    for label, name in (("image pulled", "first"), ("image cached", "second")):
        start = time.monotonic()
        subprocess.run([*kubectl, "apply", "-n", "realbench", "-f", "-"], input=json.dumps(real_pod(name, base_ref)),
                       capture_output=True, text=True, check=True)
        sh(*kubectl, "wait", "-n", "realbench", "--for=condition=Ready", f"pod/{name}", "--timeout=300s")
        print(f"real pod (python3 http.server, HTTP readiness probe) applied to Ready, {label}: "
              f"{time.monotonic() - start:.1f} s")
    time.sleep(10)
    print_rss("real node memory with 2 pods (RSS)", rss_mib(cluster_dir, NODE_COMPONENTS))
    sh(*kubectl, "delete", "namespace", "realbench", "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="also time a build into an empty cache")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--no-real-node", action="store_true", help="skip the real node figures")
    parser.add_argument("--no-scale", action="store_true", help="skip the 1k nodes / 5k pods figures")
    args = parser.parse_args()
    # The control plane alone first; the real node is timed on its own below.
    env = {"AI_SERVING_CLUSTER_NAME": "bench", "AI_SERVING_REAL_NODE": "0"}

    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            seconds = timed(lambda: sh("bash", BUILD_SH, "all", env={"AI_SERVING_CACHE_DIR": cache}))
        print(f"cold build (etcd, kwok, kube-apiserver/controller-manager/scheduler, kubelet, kube-proxy, helm, pause; modules downloaded): {seconds:.0f} s")

    sh(CLUSTER_SH, "down", env=env)
    sh(BUILD_SH, "all")
    create = timed(lambda: sh(CLUSTER_SH, "up", env=env))
    again = timed(lambda: sh(CLUSTER_SH, "up", env=env))
    kubeconfig = sh(CLUSTER_SH, "kubeconfig", env=env).strip()
    cluster_dir = Path(kubeconfig).parent
    print(f"cluster-up, warm (cached binaries, new cluster to Ready nodes): {create:.1f} s")
    print(f"cluster-up, already running: {again:.1f} s")
    time.sleep(10)
    print_rss("control plane memory at rest (RSS)", rss_mib(cluster_dir))
    if not args.no_real_node:
        bench_real_node(env, kubeconfig, cluster_dir, args.cold)
    if args.no_scale:
        sh(CLUSTER_SH, "down", env=env)
        return 0

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as topo:
        json.dump({"pools": [{"name": "scale", "count": args.nodes,
                              "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
                              "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                              "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}]}, topo)
    nodes_s = timed(lambda: sh(CLUSTER_SH, "nodes", env={**env, "AI_SERVING_TOPOLOGY": topo.name}))
    print(f"{args.nodes} GPU nodes created and Ready: {nodes_s:.1f} s")

    kubectl = ["kubectl", "--kubeconfig", kubeconfig]
    sh(*kubectl, "create", "namespace", "scale")
    per = 100
    items = [deployment(f"m{i}", min(per, args.pods - i * per)) for i in range((args.pods + per - 1) // per)]
    start = time.monotonic()
    subprocess.run([*kubectl, "apply", "-n", "scale", "-f", "-"],
                          input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                          capture_output=True, text=True, check=True)
    while True:
        out = json.loads(sh(*kubectl, "get", "deployments", "-n", "scale", "-o", "json"))
        ready = sum(d.get("status", {}).get("readyReplicas", 0) for d in out["items"])
        if ready >= args.pods:
            break
        if time.monotonic() - start > 900:
            sys.exit(f"only {ready}/{args.pods} pods Ready after 900 s")
        time.sleep(2)
    pods_s = time.monotonic() - start
    print(f"{args.pods} one-GPU pods scheduled and Ready: {pods_s:.1f} s ({args.pods / pods_s:.0f} pods/s)")
    print_rss(f"control plane memory with {args.nodes} nodes and {args.pods} pods (RSS)", rss_mib(cluster_dir))
    os.unlink(topo.name)
    sh(CLUSTER_SH, "down", env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
