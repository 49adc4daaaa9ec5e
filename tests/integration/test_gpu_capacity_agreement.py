"""Agreement of ``gpu_capacity_check`` with the real cluster (issue 4's acceptance).

For a seeded set of generated cluster states (GPU and MIG node pools, tainted or
not, sometimes a cordoned node; filler pods holding GPUs; zero to two
ResourceQuotas; sometimes an existing Deployment at version 1), the real module
is run (``ansible localhost -m creativeflow.ai_serving.gpu_capacity_check``),
then version 2 of the Deployment is applied and the cluster decides:

- fits: the rollout completes (``kubectl rollout status`` semantics: every
  replica updated and available, no old pod left);
- does not fit: the Deployment reports ``ProgressDeadlineExceeded``
  (``progressDeadlineSeconds: 10``), its pods Pending Unschedulable or refused
  with ``exceeded quota``.

A ReplicaSet refused by a quota retries only with its controller's exponential
backoff (5 ms, doubled at every failed sync, up to 1000 s): nothing wakes it
when old pods free the quota, so its next try can come minutes after the 10 s
deadline (seen: 85 s, and over 3 minutes). Kubernetes keeps rolling out past the
deadline, so a refusal is not a verdict while every quota that applies has room
for a pod again: the test then wakes the refused ReplicaSet's controller with an
annotation (an update event makes it sync at once, as any pod event of its own
would) and the real quota admission and scheduler decide. Nor is a refusal a
verdict while pods still move (a new pod becoming Ready lets an old one go). The
observation goes on until the rollout completes, or nothing has moved for
``SETTLE_S`` with no room, or ``QUOTA_RETRY_TIMEOUT_S``. The module's message
warns about such pauses (the states where the cluster needed a retry say so).

The verdicts must agree for every state. The states run on a dedicated
throwaway cluster (``AI_SERVING_CLUSTER_NAME=gpu-agree-<random>``) so that GPU
pods of other tests cannot change them; several states run at once, each on its
own nodes (selected by a per-state label) and in its own namespaces.

    AI_SERVING_AGREEMENT_STATES=200 AI_SERVING_AGREEMENT_SEED=7 \\
        pytest tests/integration/test_gpu_capacity_agreement.py -s -q

``AI_SERVING_AGREEMENT_ONLY=s00,s25`` runs only those states of the set.

NotReady nodes are not generated: kwok manages every node of the local cluster
(``--manage-all-nodes``) and sets a node's Ready condition back to True within
milliseconds, and the node lifecycle controller then drops the ``not-ready``
taint, so a NotReady node cannot be held. The unit tests cover that case.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "cluster" / "cluster.sh"

pytestmark = pytest.mark.local_cluster

DEFAULT_STATES = 48
DEFAULT_SEED = 4  # issue 4
# States run at once, each on its own nodes and namespaces.
PARALLEL = 6
PROGRESS_DEADLINE_S = 10
# A rollout that neither completes nor exceeds its progress deadline by then is
# reported as a timeout (a disagreement when the module said it fits).
OBSERVE_TIMEOUT_S = 90
# Past the deadline, a rollout whose quota refusals are being retried is watched this long.
QUOTA_RETRY_TIMEOUT_S = 120
# Refused with no room left: stuck once the namespace has not changed for this long.
SETTLE_S = 10
# A refused ReplicaSet with room again is woken this often (see the module docstring).
NUDGE_INTERVAL_S = 2
NUDGE_ANNOTATION = "agree.creativeflow.ai/retry"

GPU = "nvidia.com/gpu"
MIG = "nvidia.com/mig-1g.10gb"
STATE_LABEL = "agree.creativeflow.ai/state"
POOL_LABEL = "agree.creativeflow.ai/pool"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
TOLERATIONS: Dict[str, List[Dict[str, str]]] = {
    "gpu": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
    "none": [],
    "all": [{"operator": "Exists"}],
    "gpu+cordon": [
        {"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    ],
}
# (maxSurge, maxUnavailable) of the RollingUpdate strategies tried.
ROLLING = [
    ("25%", "25%"), (1, 0), (0, 1), (1, 1), (2, 0), ("50%", "0%"), ("0%", "50%"),
    (0, "25%"), ("100%", 0), (3, 1), ("30%", "10%"), (1, "50%"),
]
APP = "srv"


# --------------------------------------------------------------------------- generated states


@dataclass
class Pool:
    name: str  # suffix: the pool's nodes are <state><name>-<i>
    count: int
    units: int  # allocatable units of the pool's resource per node
    resource: str
    tainted: bool


@dataclass
class Version:
    replicas: int
    gpus: int
    strategy: Dict[str, Any]


@dataclass
class Quota:
    name: str
    kind: str  # requests | scoped (NotTerminating) | terminating | limits
    delta: int  # hard = namespace usage when the quota is created + delta


@dataclass
class State:
    index: int
    resource: str
    pools: List[Pool]
    fillers: List[Tuple[str, int, bool]]  # node, units, in the Deployment's namespace
    tolerations: str
    pool_selector: Optional[str]
    v1: Optional[Version]
    v2: Version
    cordon: Optional[str]
    quotas: List[Quota]
    args_from_cluster: bool
    run_id: str = ""

    @property
    def sid(self) -> str:
        return "s{0:02d}".format(self.index)

    @property
    def namespace(self) -> str:
        return "agree-{0}-{1}".format(self.sid, self.run_id)

    @property
    def filler_namespace(self) -> str:
        return self.namespace + "-fill"

    def node_names(self) -> List[str]:
        return ["{0}{1}-{2}".format(self.sid, p.name, i) for p in self.pools for i in range(p.count)]

    def node_selector(self) -> Dict[str, str]:
        selector = {STATE_LABEL: self.sid}
        if self.pool_selector:
            selector[POOL_LABEL] = self.pool_selector
        return selector

    def describe(self) -> str:
        pools = " ".join(
            "{0}:{1}x{2}{3}{4}".format(
                p.name, p.count, p.units, "mig" if p.resource == MIG else "", "(t)" if p.tainted else ""
            )
            for p in self.pools
        )
        held = sum(units for _node, units, _same in self.fillers)
        text = "{0} [{1}] fill={2}".format("mig" if self.resource == MIG else "gpu", pools, held)
        if self.cordon:
            text += " cordon={0}".format(self.cordon[len(self.sid):])
        text += " tol={0}".format(self.tolerations)
        if self.pool_selector:
            text += " sel={0}".format(self.pool_selector)
        if self.v1:
            text += " v1={0}x{1}".format(self.v1.replicas, self.v1.gpus)
        text += " v2={0}x{1} {2}".format(self.v2.replicas, self.v2.gpus, strategy_text(self.v2.strategy))
        if self.quotas:
            text += " q=" + ",".join("{0}{1:+d}".format(q.kind[0], q.delta) for q in self.quotas)
        if self.args_from_cluster:
            text += " args<-deploy"
        return text


def strategy_text(strategy: Dict[str, Any]) -> str:
    if strategy["type"] == "Recreate":
        return "Recreate"
    rolling = strategy["rollingUpdate"]
    return "RU {0}/{1}".format(rolling["maxSurge"], rolling["maxUnavailable"])


def rolling(surge: Any, unavailable: Any) -> Dict[str, Any]:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def random_strategy(rng: random.Random) -> Dict[str, Any]:
    if rng.random() < 0.2:
        return {"type": "Recreate"}
    return rolling(*rng.choice(ROLLING))


def tolerated(pool: Pool, tolerations: str) -> bool:
    return not pool.tainted or tolerations != "none"


def generate(index: int, rng: random.Random) -> State:
    """One cluster state; every number is drawn from ``rng``."""
    resource = MIG if rng.random() < 0.15 else GPU
    pools: List[Pool] = []
    total_nodes = rng.randint(2, 4)
    names = iter("abcd")
    while total_nodes > 0:
        count = min(total_nodes, rng.choice([1, 1, 2]))
        total_nodes -= count
        pool_resource = resource if (not pools or rng.random() < 0.8) else (GPU if resource == MIG else MIG)
        units = rng.choice([7, 7, 3]) if pool_resource == MIG else rng.choice([1, 2, 3, 4, 4, 6, 8, 8])
        pools.append(Pool(next(names), count, units, pool_resource, tainted=rng.random() < 0.5))
    tolerations = rng.choice(["gpu", "gpu", "gpu", "gpu", "none", "all", "gpu+cordon"])
    own = [p for p in pools if p.resource == resource]
    pool_selector = rng.choice(own).name if (len(pools) > 1 and rng.random() < 0.25) else None

    state = State(index, resource, pools, [], tolerations, pool_selector, None, Version(1, 1, {}), None, [], False)
    # Filler pods: some nodes partly or fully used by others.
    free: Dict[str, int] = {}
    for pool in pools:
        for i in range(pool.count):
            name = "{0}{1}-{2}".format(state.sid, pool.name, i)
            used = 0 if rng.random() < 0.4 else rng.randint(1, pool.units)
            if pool.resource == resource:
                free[name] = pool.units - used
            while used > 0:
                units = rng.randint(1, used)
                state.fillers.append((name, units, rng.random() < 0.3))
                used -= units

    def eligible(pool: Pool) -> bool:
        return (
            pool.resource == resource
            and tolerated(pool, tolerations)
            and (pool_selector is None or pool.name == pool_selector)
        )

    eligible_free = {
        name: free[name]
        for p in pools
        if eligible(p)
        for name in ("{0}{1}-{2}".format(state.sid, p.name, i) for i in range(p.count))
    }
    max_units = max([p.units for p in own] or [1])
    # An existing Deployment at version 1, which must fit when it is created.
    if eligible_free and rng.random() < 0.7:
        g1 = min(rng.choice([1, 1, 1, 2, 2, 3, 4]), max(eligible_free.values()) or 1)
        slots = sum(f // g1 for f in eligible_free.values())
        if slots:
            state.v1 = Version(rng.randint(1, min(5, slots)), g1, random_strategy(rng))
    # Version 2: replicas and GPUs per replica, strategy.
    if state.v1 and rng.random() < 0.5:
        r2 = state.v1.replicas
    else:
        r2 = rng.randint(1, 6)
    if state.v1 and rng.random() < 0.6:
        g2 = state.v1.gpus
    else:
        g2 = rng.randint(1, min(4, max_units))
    strategy = random_strategy(rng)
    if state.v1 and rng.random() < 0.3:
        # The play passes only the replica count; the rest is read from the Deployment.
        state.args_from_cluster = True
        g2 = state.v1.gpus
        strategy = state.v1.strategy
    state.v2 = Version(r2, g2, strategy)
    # A node cordoned after version 1 is up (it may hold some of its pods).
    if rng.random() < 0.3:
        state.cordon = rng.choice(state.node_names())
    # Quotas: hard = usage when created + delta, deltas around what the rollout needs.
    old = state.v1.replicas * state.v1.gpus if state.v1 else 0
    end = r2 * g2 - old
    count = rng.choice([0, 0, 1, 1, 1, 2])
    for q in range(count):
        kind = "requests" if q == 0 else rng.choice(["requests", "scoped", "terminating", "limits"])
        if kind in ("terminating", "limits"):
            delta = rng.choice([-1, 0])
        else:
            delta = rng.choice([end - 1, end, end + g2, end + 2 * g2, rng.randint(-1, r2 * g2 + 1)])
            delta = max(delta, -2)
        state.quotas.append(Quota("q{0}".format(q + 1), kind, delta))
    return state


def generate_states(count: int, seed: int) -> List[State]:
    rng = random.Random(seed)
    return [generate(i, rng) for i in range(count)]


# --------------------------------------------------------------------------- cluster objects


def topology(states: List[State]) -> Dict[str, Any]:
    """Node pools of ``states`` plus one CPU node, in cluster/topology.yaml's format."""
    pools: List[Dict[str, Any]] = [
        {"name": "base", "count": 1, "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}}
    ]
    for state in states:
        for pool in state.pools:
            labels = {STATE_LABEL: state.sid, POOL_LABEL: pool.name, "nvidia.com/gpu.present": "true"}
            if pool.resource == MIG:
                labels["nvidia.com/mig.strategy"] = "mixed"
            pools.append({
                "name": state.sid + pool.name,
                "count": pool.count,
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110", pool.resource: str(pool.units)},
                "labels": labels,
                "taints": [GPU_TAINT] if pool.tainted else [],
            })
    return {"pools": pools}


def pod_template(state: State, version: int, spec: Version) -> Dict[str, Any]:
    return {
        "metadata": {"labels": {"app": APP}, "annotations": {"agree.creativeflow.ai/version": str(version)}},
        "spec": {
            "nodeSelector": state.node_selector(),
            "tolerations": TOLERATIONS[state.tolerations],
            "containers": [{
                "name": "server",
                "image": "example.invalid/model:{0}".format(version),
                "resources": {"limits": {state.resource: str(spec.gpus)}},
            }],
        },
    }


def deployment(state: State, version: int, spec: Version) -> Dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP},
        "spec": {
            "replicas": spec.replicas,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_S,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": APP}},
            "strategy": spec.strategy,
            "template": pod_template(state, version, spec),
        },
    }


def filler_pod(name: str, node: str, units: int, resource: str) -> Dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"role": "filler"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "other",
                "image": "example.invalid/other:1",
                "resources": {"limits": {resource: str(units)}},
            }],
        },
    }


def quota_object(quota: Quota, resource: str, hard: int) -> Dict[str, Any]:
    key = ("limits." if quota.kind == "limits" else "requests.") + resource
    spec: Dict[str, Any] = {"hard": {key: str(max(hard, 0))}}
    if quota.kind == "scoped":
        spec["scopes"] = ["NotTerminating"]
    if quota.kind == "terminating":
        spec["scopes"] = ["Terminating"]
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": quota.name}, "spec": spec}


# --------------------------------------------------------------------------- talking to the cluster


class Kube:
    """The few API calls the test makes, with the polling it needs."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def wait(self, what: str, predicate, timeout: float = 60, interval: float = 0.3) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("{0}: not reached within {1:.0f} s".format(what, timeout))
            time.sleep(interval)

    def pods_ready(self, namespace: str, count: int) -> bool:
        pods = self.core.list_namespaced_pod(namespace).items
        ready = [
            p for p in pods
            if not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        ]
        return len(ready) == count

    def rollout(self, namespace: str, replicas: int, timeout: float = OBSERVE_TIMEOUT_S,
                pod_request: Optional[Tuple[str, int]] = None) -> Tuple[bool, str]:
        """``kubectl rollout status`` semantics, polled: (completed, what was seen).

        ``pod_request`` (resource, units per pod): past the progress deadline, a
        quota refusal that the quotas no longer justify is a retry still to come.
        """
        start = time.monotonic()
        retried = False
        settled: Optional[Tuple[Any, float]] = None
        nudged = 0.0
        while True:
            dep = self.apps.read_namespaced_deployment(APP, namespace)
            status = dep.status
            elapsed = time.monotonic() - start
            if (status.observed_generation or 0) >= dep.metadata.generation:
                progressing = next((c for c in status.conditions or [] if c.type == "Progressing"), None)
                if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
                    refused = bool(pod_request and elapsed <= QUOTA_RETRY_TIMEOUT_S and self.refused_by_quota(namespace))
                    # After a retry the refusal is cleared by the pod it let through, while the condition still
                    # says ProgressDeadlineExceeded until the controller sees progress: a moving rollout.
                    if not (refused or retried):
                        return False, "ProgressDeadlineExceeded after {0:.0f}s: {1}".format(elapsed, self.stuck(namespace))
                    if refused and self.quota_has_room(namespace, *pod_request):
                        settled = None
                        if time.monotonic() - nudged >= NUDGE_INTERVAL_S:
                            self.nudge(namespace)
                            nudged = time.monotonic()
                    else:
                        # No room yet: stuck only once nothing moves (a pod becoming Ready lets an old one go).
                        snapshot = self.snapshot(namespace)
                        if settled is None or settled[0] != snapshot:
                            settled = (snapshot, time.monotonic())
                        elif time.monotonic() - settled[1] >= SETTLE_S:
                            return False, "ProgressDeadlineExceeded after {0:.0f}s: {1}".format(
                                elapsed, self.stuck(namespace))
                    retried = True
                if (
                    (status.updated_replicas or 0) == replicas
                    and (status.replicas or 0) == replicas
                    and (status.available_replicas or 0) == replicas
                ):
                    return True, "complete in {0:.1f}s{1}".format(elapsed, " (quota retry)" if retried else "")
            if elapsed > (QUOTA_RETRY_TIMEOUT_S if retried else timeout):
                return False, "no verdict after {0:.0f}s: {1}".format(elapsed, self.stuck(namespace))
            time.sleep(0.4)

    def refused_by_quota(self, namespace: str) -> int:
        """The ReplicaSets whose last pod creation the quota refused."""
        return sum(
            1
            for rs in self.apps.list_namespaced_replica_set(namespace).items
            for cond in rs.status.conditions or []
            if cond.type == "ReplicaFailure" and "exceeded quota" in (cond.message or "")
        )

    def snapshot(self, namespace: str) -> Any:
        """What moves during a rollout: the ReplicaSets' sizes, the pods and their readiness."""
        sets = sorted((rs.metadata.name, rs.spec.replicas) for rs in self.apps.list_namespaced_replica_set(namespace).items)
        pods = sorted(
            (p.metadata.name, bool(p.metadata.deletion_timestamp),
             any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or [])))
            for p in self.core.list_namespaced_pod(namespace).items
        )
        return sets, pods

    def nudge(self, namespace: str) -> None:
        """Wake the controller of each ReplicaSet the quota refused: an update event makes it sync now."""
        for rs in self.apps.list_namespaced_replica_set(namespace).items:
            if any(c.type == "ReplicaFailure" and "exceeded quota" in (c.message or "") for c in rs.status.conditions or []):
                self.apps.patch_namespaced_replica_set(
                    rs.metadata.name, namespace, {"metadata": {"annotations": {NUDGE_ANNOTATION: str(time.time())}}})

    def quota_has_room(self, namespace: str, resource: str, units: int) -> bool:
        """Every quota that applies to the pods has room for one more."""
        key = "requests." + resource
        for quota in self.core.list_namespaced_resource_quota(namespace).items:
            hard = (quota.status.hard or {}).get(key)
            if hard is None or set(quota.spec.scopes or []) & {"Terminating", "BestEffort"}:
                continue
            used = (quota.status.used or {}).get(key, "0")
            if int(hard) - int(used) < units:
                return False
        return True

    def stuck(self, namespace: str) -> str:
        """What holds the rollout: Pending Unschedulable pods, ReplicaSets refused by the quota."""
        pods = [p for p in self.core.list_namespaced_pod(namespace, label_selector="app=" + APP).items
                if not p.metadata.deletion_timestamp]
        pending = sum(
            1 for p in pods
            if any(c.type == "PodScheduled" and c.status == "False" for c in (p.status.conditions or []))
        )
        parts = ["{0} pods".format(len(pods))]
        if pending:
            parts.append("{0} Unschedulable".format(pending))
        if self.refused_by_quota(namespace):
            parts.append("exceeded quota")
        return ", ".join(parts)


def ansible_bin() -> str:
    beside = Path(sys.executable).parent / "ansible"
    return str(beside) if beside.is_file() else "ansible"


def run_module(args: Dict[str, Any]) -> Dict[str, Any]:
    """The real module, through ``ansible localhost -m``; its result dict."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    cmd = [
        ansible_bin(), "localhost", "-m", "creativeflow.ai_serving.gpu_capacity_check",
        "-a", json.dumps(args), "-e", "ansible_python_interpreter=" + sys.executable,
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    try:
        result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError("ansible failed ({0}):\n{1}\n{2}".format(proc.returncode, proc.stdout[-2000:],
                                                                      proc.stderr[-2000:])) from None
    if result.get("failed") or "fits" not in result:
        raise AssertionError("module failed: {0}".format(result.get("msg")))
    return result


def module_args(state: State, kubeconfig: str) -> Dict[str, Any]:
    v2 = state.v2
    args: Dict[str, Any] = {
        "kubeconfig": kubeconfig,
        "namespace": state.namespace,
        "deployment": APP,
        "replicas": v2.replicas,
        "fail_on_insufficient": False,
    }
    if state.resource != GPU:
        args["resource_name"] = state.resource
    if not state.args_from_cluster:
        args.update(
            gpus_per_replica=v2.gpus,
            node_selector=state.node_selector(),
            tolerations=TOLERATIONS[state.tolerations],
            strategy=v2.strategy["type"],
        )
        if v2.strategy["type"] == "RollingUpdate":
            args["max_surge"] = v2.strategy["rollingUpdate"]["maxSurge"]
            args["max_unavailable"] = v2.strategy["rollingUpdate"]["maxUnavailable"]
    return args


# --------------------------------------------------------------------------- one state


@dataclass
class Outcome:
    state: State
    fits: Optional[bool] = None
    module_msg: str = ""
    max_replicas: Optional[int] = None
    completed: Optional[bool] = None
    observed: str = ""
    error: str = ""
    setup_seconds: float = 0.0
    module_seconds: float = 0.0
    observe_seconds: float = 0.0

    @property
    def warns(self) -> bool:
        """The module warned that quota refusals can pause the rollout."""
        return "growing backoff" in self.module_msg

    @property
    def retried(self) -> bool:
        """The cluster refused pods for quota that the rollout later had room for."""
        return "(quota retry)" in self.observed

    @property
    def agrees(self) -> bool:
        return not self.error and self.fits == self.completed

    def line(self) -> str:
        verdict = "error" if self.fits is None else ("fits" if self.fits else "no-fit")
        if self.max_replicas is not None:
            verdict += " (max {0})".format(self.max_replicas)
        if self.warns:
            verdict += " +backoff"
        mark = "agree" if self.agrees else "DISAGREE"
        return "{0} {1:<100} | module: {2:<23} | cluster: {3:<40} | {4}".format(
            self.state.sid, self.state.describe(), verdict, self.seen(), mark
        )

    def seen(self) -> str:
        if self.completed is None:
            return "error"
        if self.completed:
            return self.observed.replace("complete in ", "complete ")
        return "stuck: " + self.observed.split(": ", 1)[-1]


def run_state(state: State, kubeconfig: str) -> Outcome:
    outcome = Outcome(state)
    kube = Kube(kubeconfig)
    try:
        t0 = time.monotonic()
        setup(kube, state)
        t1 = time.monotonic()
        result = run_module(module_args(state, kubeconfig))
        t2 = time.monotonic()
        outcome.setup_seconds, outcome.module_seconds = t1 - t0, t2 - t1
        outcome.fits = bool(result["fits"])
        outcome.module_msg = result["msg"]
        outcome.max_replicas = result.get("max_replicas")
        apply_v2(kube, state)
        outcome.completed, outcome.observed = kube.rollout(state.namespace, state.v2.replicas,
                                                           pod_request=(state.resource, state.v2.gpus))
        outcome.observe_seconds = time.monotonic() - t2
    except Exception as exc:  # pylint: disable=broad-except  # reported in the table, failed at the end
        outcome.error = "{0}: {1}".format(type(exc).__name__, exc)
    finally:
        cleanup(kube, state)
    return outcome


def setup(kube: Kube, state: State) -> None:
    from kubernetes import client

    for ns in (state.namespace, state.filler_namespace):
        kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    resources = {p.name: p.resource for p in state.pools}
    in_ns = 0
    counts = {state.namespace: 0, state.filler_namespace: 0}
    for i, (node, units, same) in enumerate(state.fillers):
        ns = state.namespace if same else state.filler_namespace
        resource = resources[node[len(state.sid):].split("-")[0]]
        kube.core.create_namespaced_pod(ns, filler_pod("fill-{0}".format(i), node, units, resource))
        counts[ns] += 1
        if same and resource == state.resource:
            in_ns += units
    for ns, count in counts.items():
        kube.wait("fillers Ready in " + ns, lambda ns=ns, count=count: kube.pods_ready(ns, count))
    if state.v1:
        kube.apps.create_namespaced_deployment(state.namespace, deployment(state, 1, state.v1))
        done, seen = kube.rollout(state.namespace, state.v1.replicas, timeout=60)
        if not done:
            raise AssertionError("version 1 did not roll out: " + seen)
        in_ns += state.v1.replicas * state.v1.gpus
    if state.cordon:
        kube.core.patch_node(state.cordon, {"spec": {"unschedulable": True}})
    for quota in state.quotas:
        counted = 0 if quota.kind in ("limits", "terminating") else in_ns
        obj = quota_object(quota, state.resource, counted + quota.delta)
        kube.core.create_namespaced_resource_quota(state.namespace, obj)
    for quota in state.quotas:
        key = next(iter(quota_object(quota, state.resource, 0)["spec"]["hard"]))
        expected = in_ns if quota.kind in ("requests", "scoped") else 0

        def counted(name: str = quota.name, key: str = key, expected: int = expected, kind: str = quota.kind) -> bool:
            status = kube.core.read_namespaced_resource_quota(name, state.namespace).status
            if status.hard is None:
                return False
            if kind == "limits":  # never counted: the quota controller reports no usage for it
                return True
            used = (status.used or {}).get(key)
            return used is not None and int(used) == expected

        kube.wait("quota {0} status".format(quota.name), counted)


def apply_v2(kube: Kube, state: State) -> None:
    body = deployment(state, 2, state.v2)
    if state.v1 is None:
        kube.apps.create_namespaced_deployment(state.namespace, body)
        return
    if state.v2.strategy["type"] == "Recreate":
        body["spec"]["strategy"] = {"type": "Recreate", "rollingUpdate": None}
    kube.apps.patch_namespaced_deployment(
        APP, state.namespace, body, _content_type="application/strategic-merge-patch+json"
    )


def cleanup(kube: Kube, state: State) -> None:
    """Delete the namespaces; the nodes go with the next topology sync."""
    for ns in (state.namespace, state.filler_namespace):
        try:
            kube.core.delete_namespace(ns)
        except Exception:  # pylint: disable=broad-except  # a namespace that was never made
            pass


# --------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def agreement_cluster(tmp_path_factory) -> Iterator[Tuple[str, Dict[str, str], Path]]:
    """A dedicated throwaway cluster (own name, ports and topology), deleted at the end."""
    name = "gpu-agree-{0}".format(uuid.uuid4().hex[:6])
    topo = tmp_path_factory.mktemp("agreement") / "topology.yaml"
    topo.write_text(yaml.safe_dump(topology([])))
    env = {**os.environ, "AI_SERVING_CLUSTER_NAME": name, "AI_SERVING_TOPOLOGY": str(topo)}
    up = subprocess.run([str(CLUSTER_SH), "up"], env=env, capture_output=True, text=True, check=False)
    try:
        if up.returncode != 0:
            pytest.fail("cluster/cluster.sh up ({0}) failed:\n{1}".format(name, up.stderr[-3000:]))
        yield up.stdout.strip().splitlines()[-1], env, topo
    finally:
        subprocess.run([str(CLUSTER_SH), "down"], env=env, capture_output=True, text=True, check=False)


class NodePools:
    """The topology file lists the node pools of the states being run; ``cluster.sh nodes`` makes it so.

    A state's nodes are added, with those of the states still running, before
    it starts; those of finished states go at a later sync. Syncs take turns,
    and one sync serves every state that registered before it began.
    """

    def __init__(self, env: Dict[str, str], topo: Path, kubeconfig: str) -> None:
        self.env = env
        self.topo = topo
        self.kubeconfig = kubeconfig
        self.registry = threading.Lock()
        self.syncing = threading.Lock()
        self.active: Dict[str, State] = {}
        self.registered = 0
        self.synced = 0
        self.syncs = 0

    def sync(self, ticket: int) -> str:
        with self.syncing:
            if self.synced >= ticket:
                return ""
            with self.registry:
                states, covered = list(self.active.values()), self.registered
            self.topo.write_text(yaml.safe_dump(topology(states)))
            proc = subprocess.run([str(CLUSTER_SH), "nodes"], env=self.env, capture_output=True, text=True,
                                  check=False)
            self.syncs += 1
            if proc.returncode != 0:
                return "cluster/cluster.sh nodes failed: " + proc.stderr[-2000:]
            self.synced = covered
            return ""

    def run(self, state: State) -> Outcome:
        with self.registry:
            self.active[state.sid] = state
            self.registered += 1
            ticket = self.registered
        error = self.sync(ticket)
        try:
            if error:
                outcome = Outcome(state)
                outcome.error = error
                return outcome
            return run_state(state, self.kubeconfig)
        finally:
            with self.registry:
                del self.active[state.sid]


def test_module_verdict_matches_the_cluster(agreement_cluster) -> None:
    kubeconfig, env, topo = agreement_cluster
    count = int(os.environ.get("AI_SERVING_AGREEMENT_STATES", DEFAULT_STATES))
    seed = int(os.environ.get("AI_SERVING_AGREEMENT_SEED", DEFAULT_SEED))
    states = generate_states(count, seed)
    only = os.environ.get("AI_SERVING_AGREEMENT_ONLY")  # e.g. s00,s25: rerun states of a failed run
    if only:
        states = [s for s in states if s.sid in only.split(",")]
    run_id = uuid.uuid4().hex[:4]
    for state in states:
        state.run_id = run_id
    print("\ngpu_capacity_check agreement: {0} states, seed {1} (AI_SERVING_AGREEMENT_STATES / _SEED)".format(
        count, seed))
    start = time.monotonic()
    outcomes: List[Outcome] = []
    pools = NodePools(env, topo, kubeconfig)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        for outcome in pool.map(pools.run, states):
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
    agreed = sum(1 for o in outcomes if o.agrees)
    print("agreement: {0}/{1} (seed {2}, {3:.0f} s)".format(agreed, len(outcomes), seed, time.monotonic() - start))
    problems = [o for o in outcomes if not o.agrees]
    for o in problems:
        print("\n{0}: {1}\n  module: {2}\n  cluster: {3}\n  error: {4}".format(
            o.state.sid, o.state.describe(), o.module_msg, o.observed, o.error or "-"))
    fits = sum(1 for o in outcomes if o.fits)
    print("module verdicts: {0} fit, {1} do not; mean seconds per state: setup {2:.1f}, module {3:.1f}, "
          "apply and observe {4:.1f} ({5} at once, {6} node syncs)".format(
              fits, len(outcomes) - fits,
              *(sum(getattr(o, k) for o in outcomes) / max(len(outcomes), 1)
                for k in ("setup_seconds", "module_seconds", "observe_seconds")),
              PARALLEL, pools.syncs))
    retried = [o.state.sid for o in outcomes if o.retried]
    print("quota retries: the cluster refused pods it later had room for in {0} ({1}); the module warned in {2} of them, "
          "and in {3} states in all".format(
              len(retried), ",".join(retried) or "-", sum(1 for o in outcomes if o.retried and o.warns),
              sum(1 for o in outcomes if o.warns)))
    assert not problems, "{0} of {1} states disagree or failed (seed {2})".format(len(problems), len(outcomes), seed)
    unwarned = [o.state.sid for o in outcomes if o.retried and not o.warns]
    assert not unwarned, "the rollout waited for a quota retry but the module did not warn: " + ",".join(unwarned)
