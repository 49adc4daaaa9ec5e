#!/usr/bin/env python3
"""Figures of the real node with the runtimes' CPU examples (a benchmark, not a test).

    AI_SERVING_CLUSTER_NAME=... hack/bench_real_node.py [--models double-triton-cpu,...] [--rebuild]

On the running local cluster (`make cluster-up`, with its real node), in a
namespace of its own deleted afterwards, for each CPU example of the local
catalog: the time deploy_model.yml takes (the image build too with --rebuild,
which deletes the tag from podman's storage first so only the layer cache
helps; otherwise the registry has the tag and nothing is built), then the pod's
created -> scheduled -> started -> Ready times from its conditions. Then the
RSS of the real node's components (containerd, kubelet, kube-proxy, registry)
and the node's Ready time after its kubelet started (from the Lease and the
node's conditions). Cold builds (an empty podman storage) are what the first
deploy of each example pays: see the deploy's own timing in test_serving.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("AI_SERVING_CACHE_DIR", Path.home() / ".cache" / "creativeflow-ai-serving"))
DEFAULT_MODELS = ("double-triton-cpu", "doubler-torchserve-cpu", "doubler-python-cpu")
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "registry", "registry-pods", "registry-blobs")


def sh(*args: str, env: dict | None = None, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(list(args), env={**os.environ, **(env or {})}, input=stdin, capture_output=True,
                          text=True, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def storage_env() -> dict:
    store = CACHE_DIR / "containers"
    store.mkdir(parents=True, exist_ok=True)
    conf = store / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{store}/storage"\nrunroot = "{store}/run"\n')
    return {"CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--rebuild", action="store_true", help="build each image again (layer cache only)")
    args = parser.parse_args()
    kubeconfig = sh(str(ROOT / "cluster" / "cluster.sh"), "kubeconfig").strip()
    kubectl = ("kubectl", "--kubeconfig", kubeconfig)
    venv = sh(str(ROOT / "hack" / "venv.sh")).strip()
    env = {**storage_env(), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "AI_SERVING_KUBECONFIG": kubeconfig}
    registry = sh(str(ROOT / "cluster" / "cluster.sh"), "registry").strip()
    namespace = f"bench-real-{uuid.uuid4().hex[:6]}"
    sh(*kubectl, "create", "namespace", namespace)
    sh(*kubectl, "-n", namespace, "create", "serviceaccount", "model-server-sa")
    try:
        print(f"{'model':28} {'deploy s':>9} {'sched s':>8} {'started s':>10} {'ready s':>8}")
        for model in args.models.split(","):
            if args.rebuild:
                # The registry must not have the tag, or the deploy builds nothing.
                digest = sh("curl", "-sI", "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
                            f"http://{registry}/v2/ai-serving/{model}/manifests/1.0", check=False)
                ref = next((line.split(":", 1)[1].strip() for line in digest.splitlines()
                            if line.lower().startswith("docker-content-digest")), "")
                if ref:
                    sh("curl", "-s", "-X", "DELETE", f"http://{registry}/v2/ai-serving/{model}/manifests/{ref}",
                       check=False)
            with tempfile.NamedTemporaryFile("w", suffix=".json") as extra:
                json.dump({"model": model, "ai_namespace_name": namespace}, extra)
                extra.flush()
                started = time.monotonic()
                sh(f"{venv}/bin/ansible-playbook", "-i", str(ROOT / "inventories" / "local"),
                   str(ROOT / "playbooks" / "deploy_model.yml"), "-e", f"@{extra.name}", env=env)
                deploy_s = time.monotonic() - started
            pods = json.loads(sh(*kubectl, "-n", namespace, "get", "pods", "-l",
                                 f"app.kubernetes.io/instance={model}", "-o", "json"))["items"]
            pod = pods[-1]
            created = when(pod["metadata"]["creationTimestamp"])
            conditions = {c["type"]: when(c["lastTransitionTime"]) for c in pod["status"]["conditions"]}
            state = pod["status"]["containerStatuses"][0]["state"].get("running", {})
            started_at = when(state["startedAt"]) if "startedAt" in state else float("nan")
            print(f"{model:28} {deploy_s:9.1f} {conditions['PodScheduled'] - created:8.1f} "
                  f"{started_at - created:10.1f} {conditions['Ready'] - created:8.1f}")
    finally:
        sh(*kubectl, "delete", "namespace", namespace, "--wait=false", check=False)

    cluster = os.environ.get("AI_SERVING_CLUSTER_NAME", "ai-serving")
    pids = CACHE_DIR / "kwok" / "clusters" / cluster / "pids"
    print("\nreal node components, RSS:")
    for name in NODE_COMPONENTS:
        pid_file = pids / f"{name}.pid"
        if not pid_file.exists():
            print(f"  {name:12} not running")
            continue
        pid = pid_file.read_text().strip()
        rss = next((line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS:")), "?") if Path(f"/proc/{pid}").exists() else "?"
        print(f"  {name:12} {int(rss) / 1024:7.1f} MiB" if rss != "?" else f"  {name:12} ?")
    node = json.loads(sh(*kubectl, "get", "node", "real-0", "-o", "json"))
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    print(f"\nreal-0 Ready {when(ready['lastTransitionTime']) - when(node['metadata']['creationTimestamp']):.1f} s "
          "after it registered")


if __name__ == "__main__":
    main()
