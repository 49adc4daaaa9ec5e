#!/usr/bin/env python3
"""deploy_model.yml next to `kubectl apply` + `kubectl rollout status` (a benchmark, not a test).

    hack/bench_deploy.py [--model image-classifier] [--runs 3] [--ready-delay 0s 30s] [--keep]

On the local cluster (cluster/cluster.sh up; or the one AI_SERVING_KUBECONFIG
names), each run uses two fresh namespaces with the same baseline (restricted
Pod Security, the model's ServiceAccount, a GPU quota) and times:

- ansible, cold:      ansible-playbook playbooks/deploy_model.yml -e model=M
- ansible, no change: the same again (changed=0 is checked)
- kubectl, cold:      kubectl apply -f <manifests> && kubectl rollout status deployment/M
- kubectl, no change: the same again
- ansible floor:      ansible-playbook of a one-task playbook (one debug task on
                      localhost, same inventory): what any playbook costs here

where <manifests> is render_model.yml's output for the same model and
namespace, built with `kubectl kustomize` beforehand (not timed: a GitOps user
renders once). The deploy does more than kubectl: input and GPU preflight
(quota, nodes, surge), a server-side dry run, rollback on failure, an endpoint
smoke check; the figures show what that costs. Prints each run, the medians,
the ratios against both references (issue 13's goals: a no-change deploy
within 2x Ansible's floor, a cold deploy with pods Ready at once within 3x
kubectl's), and where the deploy's time goes: the step lines model_deploy
prints (name and seconds; summed when an image build splits the deploy in
two calls), and the rest (Ansible's own work: its start, the tasks around the
call, templating). It also prints the lower bound of any deploy that goes through
Ansible and this engine: the floor, plus the import of the engine (the
Kubernetes client included) in a process that has Ansible loaded, plus the
engine's own steps of this run. The goals cannot be met below that bound.
Run it from the project venv (`make bench-deploy`).

kwok makes a pod Ready the moment it is scheduled, which no model server does.
Each --ready-delay (default: 0s, then 30s) is one scenario: the pods carry the
local cluster's annotation sim.creativeflow.ai/ready-delay, which holds them
back that long, as a model's load time would (both sides wait for it).
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
# model_deploy's step lines: "  Preflight | Cluster [ok] 0.67s: ..."
STEP_RE = re.compile(r"^  (?P<name>[A-Z][^\[\n]*?) \[(?:ok|changed|failed)\] (?P<seconds>\d+\.\d+)s", re.MULTILINE)
FLOOR_PLAYBOOK = [{"name": "Ansible's floor: one task", "hosts": "localhost", "gather_facts": False,
                   "tasks": [{"name": "One task", "ansible.builtin.debug": {"msg": "floor"}}]}]


def steps_of(output: str) -> Dict[str, float]:
    """Seconds per model_deploy step in one deploy's output."""
    steps: Dict[str, float] = {}
    for match in STEP_RE.finditer(output):
        steps[match["name"]] = steps.get(match["name"], 0.0) + float(match["seconds"])
    return steps


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


IMPORT_SCRIPT = """
import time
import ansible.plugins.action  # loaded by any playbook: part of the floor
start = time.perf_counter()
import ansible_collections.creativeflow.ai_serving.plugins.action.model_deploy
print(time.perf_counter() - start)
"""


def engine_import_seconds() -> float:
    """Seconds to import model_deploy's action (the engine, the Kubernetes client) once Ansible is loaded."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".collections"), "PYTHONDONTWRITEBYTECODE": "1"}
    return float(run(sys.executable, "-c", IMPORT_SCRIPT, env=env).strip().splitlines()[-1])


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
    parser.add_argument("--ready-delay", nargs="+", default=["0s", "30s"],
                        help="pod start-up delays to simulate, one scenario each (kwok annotation)")
    parser.add_argument("--keep", action="store_true", help="keep the namespaces")
    options = parser.parse_args()
    summary = [scenario(options, delay) for delay in options.ready_delay]
    print("\nsummary (medians):")
    for delay, median in summary:
        print(f"  ready-delay {delay:>4}: cold {median['ansible_cold']:5.1f} s = "
              f"{median['ansible_cold'] / median['kubectl_cold']:4.1f}x kubectl ({median['kubectl_cold']:.1f} s), "
              f"{median['ansible_cold'] / median['floor']:4.1f}x floor; no change {median['ansible_again']:5.1f} s = "
              f"{median['ansible_again'] / median['floor']:4.1f}x floor ({median['floor']:.1f} s), "
              f"{median['ansible_again'] / median['kubectl_again']:4.1f}x kubectl ({median['kubectl_again']:.1f} s)")


def scenario(options: argparse.Namespace, delay: str) -> tuple[str, Dict[str, float]]:
    annotations = {"sim.creativeflow.ai/ready-delay": delay} if delay not in ("0", "0s") else {}
    # Whatever the model's runtime, its role takes <runtime>_pod_annotations.
    extra = json.dumps({f"{runtime}_pod_annotations": annotations
                        for runtime in ("tf_serving", "torchserve", "triton", "custom_python")})

    kubeconfig = os.environ.get("AI_SERVING_KUBECONFIG") or run(CLUSTER_SH, "up").strip().splitlines()[-1]
    env = {"AI_SERVING_KUBECONFIG": kubeconfig, "KUBECONFIG": kubeconfig, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1"}
    playbook = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventories/local"]
    results: Dict[str, List[float]] = {k: [] for k in ("ansible_cold", "ansible_again", "kubectl_cold",
                                                      "kubectl_again", "floor", "engine_import")}
    steps: Dict[str, List[Dict[str, float]]] = {"ansible_cold": [], "ansible_again": []}
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
                    "-e", f"ai_namespace_name={ns_kubectl}", "-e", extra, env=env)
                manifests = Path(tmp) / "manifests.yaml"
                manifests.write_text(run("kubectl", "kustomize", f"{tmp}/out/base", env=env))
                deploy = [*playbook, "playbooks/deploy_model.yml", "-e", f"model={options.model}",
                          "-e", f"ai_namespace_name={ns_ansible}", "-e", extra]
                for key in ("ansible_cold", "ansible_again"):
                    seconds, out = timed(*deploy, env=env)
                    changed = int(RECAP_RE.search(out)["changed"])
                    if key == "ansible_again" and changed:
                        sys.exit(f"the second deploy reported changed={changed}")
                    results[key].append(seconds)
                    steps[key].append(steps_of(out))
                script = (f"kubectl apply -n {ns_kubectl} -f {manifests} >/dev/null && kubectl rollout status "
                          f"-n {ns_kubectl} deployment/{options.model} --timeout=600s >/dev/null")
                for key in ("kubectl_cold", "kubectl_again"):
                    results[key].append(timed("bash", "-c", script, env=env)[0])
                floor = Path(tmp) / "floor.yml"
                floor.write_text(json.dumps(FLOOR_PLAYBOOK))
                results["floor"].append(timed(*playbook, str(floor), env=env)[0])
                results["engine_import"].append(engine_import_seconds())
            figures = ", ".join(f"{k} {v[-1]:.1f} s" for k, v in results.items())
            print(f"ready-delay {delay}, run {index + 1}: {figures}", flush=True)
    finally:
        if not options.keep:
            for ns in created:
                subprocess.run(["kubectl", "delete", "namespace", ns, "--wait=false"], env={**os.environ, **env},
                               capture_output=True, check=False)

    median = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmodel {options.model}, ready-delay {delay}, {options.runs} runs, medians:")
    for key, value in median.items():
        print(f"  {key:14s} {value:6.1f} s")
    print(f"  ratio cold      {median['ansible_cold'] / median['kubectl_cold']:5.1f}x kubectl (goal <= 3x with "
          f"ready-delay 0s), {median['ansible_cold'] / median['floor']:5.1f}x floor")
    print(f"  ratio no-change {median['ansible_again'] / median['floor']:5.1f}x floor (goal <= 2x), "
          f"{median['ansible_again'] / median['kubectl_again']:5.1f}x kubectl")
    # What no playbook around this engine can go under: the floor, the import, the engine's steps of this run.
    bound = {key: median["floor"] + median["engine_import"] + statistics.median(sum(r.values()) for r in steps[key])
             for key in ("ansible_cold", "ansible_again")}
    print(f"  lower bound of a deploy through Ansible (floor + engine import {median['engine_import']:.2f} s + the "
          f"engine's steps): no change {bound['ansible_again']:.1f} s = {bound['ansible_again'] / median['floor']:.1f}x "
          f"floor, cold {bound['ansible_cold']:.1f} s = {bound['ansible_cold'] / median['kubectl_cold']:.1f}x kubectl; "
          f"the floor alone is {median['floor'] / median['kubectl_cold']:.1f}x kubectl's cold deploy")
    for key in ("ansible_cold", "ansible_again"):
        names = list(dict.fromkeys(name for run_steps in steps[key] for name in run_steps))
        per_step = {name: statistics.median(r.get(name, 0.0) for r in steps[key]) for name in names}
        total = median[key]
        print(f"  where the time goes, {key} ({total:.1f} s, median per step):")
        for name, value in per_step.items():
            print(f"    {name:52s} {value:6.2f} s")
        print(f"    {'rest (Ansible: its start, the tasks around the call)':52s} "
              f"{max(0.0, total - sum(per_step.values())):6.2f} s", flush=True)
    return delay, median


if __name__ == "__main__":
    main()
