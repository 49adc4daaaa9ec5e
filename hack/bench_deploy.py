#!/usr/bin/env python3
"""deploy_model.yml next to `kubectl apply` + `kubectl rollout status` (a benchmark, not a test).

    hack/bench_deploy.py [--model image-classifier] [--runs 3] [--keep]

On the local cluster (cluster/cluster.sh up; or the one AI_SERVING_KUBECONFIG
names), each run uses two fresh namespaces with the same baseline (restricted
Pod Security, the model's ServiceAccount, a GPU quota) and times:

- ansible, cold:      ansible-playbook playbooks/deploy_model.yml -e model=M
- ansible, no change: the same again (changed=0 is checked)
- kubectl, cold:      kubectl apply -f <manifests> && kubectl rollout status deployment/M
- kubectl, no change: the same again

where <manifests> is render_model.yml's output for the same model and
namespace, built with `kubectl kustomize` beforehand (not timed: a GitOps user
renders once). The deploy does more than kubectl: input and GPU preflight
(quota, nodes, surge), a server-side dry run, rollback on failure, an endpoint
smoke check; the figures show what that costs. Prints each run and the medians
and ratios (goal: ansible / kubectl at most 2x). Run it from the project venv
(`make bench-deploy`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = ROOT / "cluster" / "cluster.sh"
RECAP_RE = re.compile(r"^localhost\s*:\s*ok=\d+\s+changed=(?P<changed>\d+)", re.MULTILINE)


def run(*args: Any, env: Dict[str, str] | None = None) -> str:
    result = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})}, capture_output=True,
                            text=True, check=False, cwd=ROOT)
    if result.returncode != 0:
        sys.exit("{0} failed:\n{1}\n{2}".format(" ".join(map(str, args)), result.stdout[-3000:],
                                                result.stderr[-3000:]))
    return result.stdout


def timed(*args: Any, env: Dict[str, str] | None = None) -> tuple[float, str]:
    start = time.monotonic()
    out = run(*args, env=env)
    return time.monotonic() - start, out


def namespace_manifest(name: str) -> str:
    labels = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn")}
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "model-server-sa", "namespace": name}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "ai-serving-quota", "namespace": name},
         "spec": {"hard": {"requests.nvidia.com/gpu": "8", "pods": "50"}}},
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="image-classifier")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the namespaces")
    options = parser.parse_args()

    kubeconfig = os.environ.get("AI_SERVING_KUBECONFIG") or run(CLUSTER_SH, "up").strip().splitlines()[-1]
    env = {"AI_SERVING_KUBECONFIG": kubeconfig, "KUBECONFIG": kubeconfig, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1"}
    playbook = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventories/local"]
    results: Dict[str, List[float]] = {k: [] for k in ("ansible_cold", "ansible_again", "kubectl_cold",
                                                      "kubectl_again")}
    created: List[str] = []
    try:
        for index in range(options.runs):
            suffix = uuid.uuid4().hex[:6]
            ns_ansible, ns_kubectl = f"bench-a-{suffix}", f"bench-k-{suffix}"
            for ns in (ns_ansible, ns_kubectl):
                with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                    f.write(namespace_manifest(ns))
                    f.flush()
                    run("kubectl", "apply", "-f", f.name, env=env)
                created.append(ns)
            with tempfile.TemporaryDirectory() as tmp:
                run(*playbook, "playbooks/render_model.yml", "-e", f"model={options.model}", "-e", f"dest={tmp}/out",
                    "-e", f"ai_namespace_name={ns_kubectl}", env=env)
                manifests = Path(tmp) / "manifests.yaml"
                manifests.write_text(run("kubectl", "kustomize", f"{tmp}/out/base", env=env))
                deploy = [*playbook, "playbooks/deploy_model.yml", "-e", f"model={options.model}",
                          "-e", f"ai_namespace_name={ns_ansible}"]
                for key in ("ansible_cold", "ansible_again"):
                    seconds, out = timed(*deploy, env=env)
                    changed = int(RECAP_RE.search(out)["changed"])
                    if key == "ansible_again" and changed:
                        sys.exit(f"the second deploy reported changed={changed}")
                    results[key].append(seconds)
                script = (f"kubectl apply -n {ns_kubectl} -f {manifests} >/dev/null && kubectl rollout status "
                          f"-n {ns_kubectl} deployment/{options.model} --timeout=600s >/dev/null")
                for key in ("kubectl_cold", "kubectl_again"):
                    results[key].append(timed("bash", "-c", script, env=env)[0])
            print(f"run {index + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in results.items()), flush=True)
    finally:
        if not options.keep:
            for ns in created:
                subprocess.run(["kubectl", "delete", "namespace", ns, "--wait=false"], env={**os.environ, **env},
                               capture_output=True, check=False)

    median = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmodel {options.model}, {options.runs} runs, medians:")
    for key, value in median.items():
        print(f"  {key:14s} {value:6.1f} s")
    cold, again = median["ansible_cold"] / median["kubectl_cold"], median["ansible_again"] / median["kubectl_again"]
    print(f"  ratio cold     {cold:6.1f}x  (goal <= 2x)")
    print(f"  ratio no-change {again:5.1f}x  (goal <= 2x)")


if __name__ == "__main__":
    main()
