#!/usr/bin/env python3
"""Time gpu_capacity_check on a large cluster and print the figures (a benchmark, not a test).

    hack/bench_gpu_check.py [--nodes 1000] [--pods 5000] [--replicas 4] [--runs 3] [--keep]

Starts a throwaway cluster (name gpu-check-bench-<random>) with N GPU nodes
(8 x nvidia.com/gpu each) and M one-GPU pods (Deployments of 100 replicas),
then times:

- the module as a play runs it: ``ansible localhost -m
  creativeflow.ai_serving.gpu_capacity_check`` for a new Deployment of
  --replicas one-GPU replicas, and for a rollout of one of the 100-replica
  Deployments (median of --runs runs each);
- Ansible's own cost: ``ansible localhost -m ansible.builtin.ping``;
- in process, the two halves of the module: the API reads (nodes, pods of
  all namespaces, quotas, through the same dynamic client, decoded from JSON
  as the module does; and, for comparison, through the client's
  ResourceInstance objects and ``to_dict()``) and the computation
  (``check_fit``).

Deletes the cluster afterwards unless --keep is given. Run it from the
project venv (``$(hack/venv.sh)/bin/python hack/bench_gpu_check.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = ROOT / "cluster" / "cluster.sh"
sys.path.insert(0, str(ROOT / ".collections"))

GPU = "nvidia.com/gpu"
TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
ACTIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
PER_DEPLOYMENT = 100


def sh(*args: Any, env: Dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})}, input=stdin,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit("{0} failed:\n{1}".format(" ".join(map(str, args)), result.stderr[-3000:]))
    return result.stdout


def median_of(runs: int, fn: Callable[[], Any]) -> Tuple[float, Any]:
    times, value = [], None
    for _ in range(runs):
        start = time.monotonic()
        value = fn()
        times.append(time.monotonic() - start)
    return statistics.median(times), value


def deployment(name: str, replicas: int) -> Dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "tolerations": [TOLERATION],
                    "containers": [{"name": "m", "image": "example.invalid/m:1",
                                    "resources": {"limits": {GPU: "1"}}}],
                },
            },
        },
    }


def ansible(module: str, args: Dict[str, Any]) -> Dict[str, Any]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    exe = Path(sys.executable).parent / "ansible"
    proc = subprocess.run(
        [str(exe if exe.is_file() else "ansible"), "localhost", "-m", module, "-a", json.dumps(args),
         "-e", "ansible_python_interpreter=" + sys.executable],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    try:
        return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        sys.exit("ansible -m {0} failed:\n{1}\n{2}".format(module, proc.stdout[-2000:], proc.stderr[-2000:]))


def in_process(kubeconfig: str, replicas: int, runs: int) -> Dict[str, float]:
    """The module's reads and its computation, timed apart (same client stack, same calls)."""
    from kubernetes import config, dynamic

    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit import (
        FitRequest,
        check_fit,
        parse_tolerations,
    )

    client = dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig))
    nodes_api = client.resources.get(api_version="v1", kind="Node")
    pods_api = client.resources.get(api_version="v1", kind="Pod")
    quota_api = client.resources.get(api_version="v1", kind="ResourceQuota")
    def raw(api: Any, **params: Any) -> List[Dict[str, Any]]:
        return json.loads(api.get(serialize=False, **params).data)["items"]

    figures: Dict[str, float] = {}
    figures["read nodes"], nodes = median_of(runs, lambda: raw(nodes_api))
    figures["read pods"], pods = median_of(runs, lambda: raw(pods_api, field_selector=ACTIVE_PODS))
    figures["read quotas"], quotas = median_of(runs, lambda: raw(quota_api, namespace="bench"))
    figures["objects nodes"], _ = median_of(runs, lambda: nodes_api.get().to_dict()["items"])
    figures["objects pods"], _ = median_of(runs, lambda: pods_api.get(field_selector=ACTIVE_PODS).to_dict()["items"])
    request = FitRequest(replicas=replicas, gpus_per_replica=1, namespace="bench",
                         tolerations=parse_tolerations([TOLERATION]))
    figures["check_fit"], result = median_of(runs, lambda: check_fit(request, nodes, pods, quotas))
    figures["objects"] = float(len(nodes) + len(pods))
    figures["fits"] = float(result.fits)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()

    name = "gpu-check-bench-{0}".format(uuid.uuid4().hex[:6])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as topo:
        json.dump({"pools": [{"name": "scale", "count": args.nodes,
                              "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", GPU: "8"},
                              "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                              "taints": [{"key": GPU, "value": "present", "effect": "NoSchedule"}]}]}, topo)
    env = {"AI_SERVING_CLUSTER_NAME": name, "AI_SERVING_TOPOLOGY": topo.name}
    try:
        start = time.monotonic()
        kubeconfig = sh(CLUSTER_SH, "up", env=env).strip().splitlines()[-1]
        print("cluster {0} up with {1} GPU nodes: {2:.0f} s".format(name, args.nodes, time.monotonic() - start))
        kubectl = ["kubectl", "--kubeconfig", kubeconfig]
        sh(*kubectl, "create", "namespace", "scale")
        sh(*kubectl, "create", "namespace", "bench")
        items = [deployment("m{0}".format(i), min(PER_DEPLOYMENT, args.pods - i * PER_DEPLOYMENT))
                 for i in range((args.pods + PER_DEPLOYMENT - 1) // PER_DEPLOYMENT)]
        start = time.monotonic()
        sh(*kubectl, "apply", "-n", "scale", "-f", "-",
           stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        while True:
            out = json.loads(sh(*kubectl, "get", "deployments", "-n", "scale", "-o", "json"))
            ready = sum(d.get("status", {}).get("readyReplicas", 0) for d in out["items"])
            if ready >= args.pods:
                break
            if time.monotonic() - start > 1200:
                sys.exit("only {0}/{1} pods Ready after 1200 s".format(ready, args.pods))
            time.sleep(3)
        print("{0} one-GPU pods Ready: {1:.0f} s".format(args.pods, time.monotonic() - start))

        base = {"kubeconfig": kubeconfig, "fail_on_insufficient": False}
        new_args = dict(base, namespace="bench", replicas=args.replicas, gpus_per_replica=1,
                        tolerations=[TOLERATION])
        rollout_args = dict(base, namespace="scale", deployment="m0")
        ping_s, _ = median_of(args.runs, lambda: ansible("ansible.builtin.ping", {}))
        new_s, new = median_of(args.runs, lambda: ansible("creativeflow.ai_serving.gpu_capacity_check", new_args))
        roll_s, roll = median_of(args.runs,
                                 lambda: ansible("creativeflow.ai_serving.gpu_capacity_check", rollout_args))
        parts = in_process(kubeconfig, args.replicas, args.runs)

        nodes = len(new["nodes"]) + new["nodes_without_resource"]
        print("nodes: {0} ({1} with {2}), pods: {3} (all namespaces, not terminated)".format(
            nodes, len(new["nodes"]), GPU, int(parts["objects"]) - nodes))
        print("module, new Deployment of {0} x 1 GPU: {1:.2f} s median of {2} (fits: {3}; {4})".format(
            args.replicas, new_s, args.runs, new["fits"], new["msg"]))
        print("module, rollout of Deployment m0 ({0} replicas): {1:.2f} s median of {2} (fits: {3}; {4})".format(
            roll["replicas"], roll_s, args.runs, roll["fits"], roll["msg"][:160]))
        print("ansible localhost -m ping (Ansible's own start-up): {0:.2f} s".format(ping_s))
        reads = parts["read nodes"] + parts["read pods"] + parts["read quotas"]
        print("in process: API reads {0:.2f} s (nodes {1:.2f}, pods {2:.2f}, quotas {3:.3f}), check_fit {4:.3f} s".format(
            reads, parts["read nodes"], parts["read pods"], parts["read quotas"], parts["check_fit"]))
        print("  the same reads through ResourceInstance objects and to_dict(): nodes {0:.2f} s, pods {1:.2f} s".format(
            parts["objects nodes"], parts["objects pods"]))
    finally:
        if not args.keep:
            subprocess.run([str(CLUSTER_SH), "down"], env={**os.environ, **env}, capture_output=True, check=False)
        os.unlink(topo.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
