"""Several clusters in one inventory (a host per cluster), against three real local clusters at once.

The clusters are the project's local kwok clusters named ``<prefix>a``, ``<prefix>b`` and ``<prefix>c``
(``AI_SERVING_MULTI_PREFIX``, default ``ai-serving-``; started here with ``AI_SERVING_REAL_NODE=0`` when they are
not running, and stopped again afterwards), or the three kubeconfigs of ``AI_SERVING_MULTI_KUBECONFIGS``
(comma-separated). Each test writes its own inventory (hosts ``a``, ``b``, ``c`` with their kubeconfigs, the
environment ``local``) and catalog, in a namespace of its own on every cluster.

What issue 16 asks for: a deploy to all three in parallel, then no change anywhere, and its wall time against one
cluster's; waves stopped by a failure on the first cluster while the others keep the previous version; placement
``fit: 1`` with the first cluster's GPUs full, and no move when it frees up; an unreachable cluster; bad input
refused before anything is applied.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml

from playbooks import REPO_ROOT, Run, run_playbook

CLUSTER_SH = REPO_ROOT / "cluster" / "cluster.sh"
CATALOG_FILE = REPO_ROOT / "inventories" / "shared" / "group_vars" / "all" / "models.yml"
MODEL = "image-classifier"
NAMES = ("a", "b", "c")
FAULT = "sim.creativeflow.ai/fault"
pytestmark = pytest.mark.local_cluster


# --------------------------------------------------------------------------- the three clusters


def _cluster(command: str, name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AI_SERVING_CLUSTER_NAME": name, "AI_SERVING_REAL_NODE": "0"}
    return subprocess.run([str(CLUSTER_SH), command], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=1800)


@pytest.fixture(scope="module")
def kubeconfigs() -> Iterator[Dict[str, str]]:
    """Host name -> kubeconfig of three running clusters."""
    external = os.environ.get("AI_SERVING_MULTI_KUBECONFIGS")
    if external:
        paths = [p.strip() for p in external.split(",") if p.strip()]
        if len(paths) != 3 or not all(Path(p).is_file() for p in paths):
            pytest.fail(f"AI_SERVING_MULTI_KUBECONFIGS={external}: expected three kubeconfig files, comma-separated")
        yield dict(zip(NAMES, paths))
        return
    prefix = os.environ.get("AI_SERVING_MULTI_PREFIX", "ai-serving-")
    started: List[str] = []
    found: Dict[str, str] = {}
    try:
        for host in NAMES:
            name = prefix + host
            if _cluster("kubeconfig", name).returncode != 0:
                started.append(name)
            proc = _cluster("up", name)
            if proc.returncode != 0:
                pytest.fail(f"cluster/cluster.sh up for {name} failed:\n{proc.stderr[-4000:]}")
            found[host] = proc.stdout.strip().splitlines()[-1]
        yield found
    finally:
        for name in started:
            _cluster("down", name)


@pytest.fixture(scope="module")
def apis(kubeconfigs: Dict[str, str]) -> Dict[str, Any]:
    from kubernetes import client, config

    found = {}
    for host, path in kubeconfigs.items():
        api = config.new_client_from_config(config_file=path)
        found[host] = {"core": client.CoreV1Api(api), "apps": client.AppsV1Api(api)}
    return found


@contextmanager
def namespace_everywhere(apis: Dict[str, Any], gpus: Optional[Dict[str, str]] = None) -> Iterator[str]:
    """One namespace name on every cluster, with the baseline the pods need (restricted Pod Security, the
    ServiceAccount, a GPU quota: 8 unless ``gpus`` says otherwise for a host)."""
    from kubernetes import client

    name = f"t-multi-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    with ExitStack() as stack:
        for host, api in apis.items():
            core = api["core"]
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
            stack.callback(core.delete_namespace, name, grace_period_seconds=0)
            core.create_namespaced_service_account(name, client.V1ServiceAccount(
                metadata=client.V1ObjectMeta(name="model-server-sa")))
            hard = {"requests.nvidia.com/gpu": (gpus or {}).get(host, "8"), "pods": "50"}
            core.create_namespaced_resource_quota(name, client.V1ResourceQuota(
                metadata=client.V1ObjectMeta(name="ai-serving-quota"), spec=client.V1ResourceQuotaSpec(hard=hard)))
        yield name


# --------------------------------------------------------------------------- inventories and runs


def catalog(**overrides: Any) -> Dict[str, Any]:
    """The shared catalog's image-classifier, with ``overrides`` merged into its top level."""
    entry = copy.deepcopy(yaml.safe_load(CATALOG_FILE.read_text())["ai_serving_models"][MODEL])
    entry.update(overrides)
    return {MODEL: entry}


def inventory(tmp_path: Path, kubeconfigs: Dict[str, str], models: Dict[str, Any],
              host_vars: Optional[Dict[str, Dict[str, Any]]] = None) -> Path:
    """An inventory of the clusters in ``kubeconfigs`` (hosts a, b, c; environment local) with ``models``."""
    path = tmp_path / f"inventory-{uuid.uuid4().hex[:6]}"
    (path / "group_vars" / "all").mkdir(parents=True)
    hosts = {name: {"ai_serving_kubeconfig": kc, **(host_vars or {}).get(name, {})} for name, kc in kubeconfigs.items()}
    (path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"test_clusters": {
        "hosts": hosts,
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
    }}}}))
    (path / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump({
        "ai_serving_environment": "local", "ai_serving_models": models}))
    # The local inventory's namespace baseline (quota, labels...), for bootstrap_cluster.yml.
    (path / "group_vars" / "all" / "namespace.yml").write_text(
        (REPO_ROOT / "inventories" / "local" / "group_vars" / "all" / "namespace.yml").read_text())
    return path


def run(inv: Path, namespace: str, playbook: str = "deploy_model.yml", extra: Optional[Dict[str, Any]] = None,
        *args: str) -> Run:
    extra_vars = {"model": MODEL, "ai_namespace_name": namespace, "ai_serving_rollout_fail_fast": 5, **(extra or {})}
    # AI_SERVING_KUBECONFIG is not read by these inventories (each host names its own).
    return run_playbook(playbook, str(REPO_ROOT / "nonexistent-kubeconfig"), extra_vars, *args, inventory=inv,
                        timeout=600)


def recaps(result: Run) -> Dict[str, Dict[str, int]]:
    found = {}
    for match in re.finditer(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)",
                             result.stdout, re.MULTILINE):
        found[match.group(1)] = {"ok": int(match.group(2)), "changed": int(match.group(3)),
                                 "failed": int(match.group(4))}
    return found


def summary(result: Run) -> Dict[str, Dict[str, str]]:
    """The summary table's rows by cluster: result, version, detail."""
    lines = result.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("Summary: "))
    header = lines[start + 1]
    assert header.split()[:4] == ["CLUSTER", "LABEL", "RESULT", "VERSION"], result.explain()
    columns = [header.index(word) for word in ("CLUSTER", "LABEL", "RESULT", "VERSION", "DETAIL")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith(("[", "fatal", "PLAY", "TASK", "ok:", "skipping")):
            break
        cells = [line[columns[i]:columns[i + 1] if i + 1 < len(columns) else None].strip() for i in range(5)]
        cells = ["" if cell == "-" else cell for cell in cells]  # the table's empty cell
        rows[cells[0]] = {"result": cells[2], "version": cells[3], "detail": cells[4]}
    return rows


def image_tag(apis: Dict[str, Any], host: str, namespace: str) -> Optional[str]:
    from kubernetes.client.rest import ApiException

    try:
        dep = apis[host]["apps"].read_namespaced_deployment(MODEL, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    assert (dep.status.available_replicas or 0) >= 1, f"{host}: {MODEL} is not available"
    return dep.spec.template.spec.containers[0].image.rsplit(":", 1)[1]


# --------------------------------------------------------------------------- in parallel


def test_deploy_to_all_three_in_parallel_then_nothing_changes(tmp_path: Path, kubeconfigs, apis) -> None:
    inv = inventory(tmp_path, kubeconfigs, catalog())
    with namespace_everywhere(apis) as one, namespace_everywhere(apis) as three:
        started = time.monotonic()
        alone = run(inv, one, "deploy_model.yml", None, "--limit", "a")
        one_seconds = time.monotonic() - started
        assert alone.returncode == 0, alone.explain()
        assert image_tag(apis, "b", one) is None  # --limit: one cluster

        started = time.monotonic()
        first = run(inv, three)
        three_seconds = time.monotonic() - started
        assert first.returncode == 0, first.explain()
        rows = summary(first)
        assert {h: (r["result"], r["version"]) for h, r in rows.items()} == {h: ("changed", "1.4.0") for h in NAMES}
        assert all(image_tag(apis, h, three) == "1.4.0" for h in NAMES)
        # The three clusters' deploys overlap: each took its Lease before any of them finished (a serial run would
        # finish one before the next takes its own). The times are reported, not asserted (a shared machine).
        print(f"deploy_model.yml cold: one cluster {one_seconds:.1f} s, three clusters {three_seconds:.1f} s "
              f"({three_seconds / one_seconds:.2f}x)")
        lines = first.stdout.splitlines()
        locks = [i for i, line in enumerate(lines) if re.match(r"\s*Lock \| Take Lease .*\[ok\]", line)]
        done = [i for i, line in enumerate(lines) if re.match(r"\s*Rollout \| Record the last good version", line)]
        assert len(locks) == len(NAMES) and len(done) == len(NAMES), first.explain()
        assert max(locks) < min(done), first.explain()

        again = run(inv, three)
        assert again.returncode == 0, again.explain()
        assert {h: r["changed"] for h, r in recaps(again).items()} == {h: 0 for h in NAMES}, again.explain()
        assert {h: r["result"] for h, r in summary(again).items()} == {h: "ok" for h in NAMES}


# --------------------------------------------------------------------------- every playbook on every cluster


def test_bootstrap_deploy_rollback_undeploy_on_every_cluster(tmp_path: Path, kubeconfigs, apis) -> None:
    from kubernetes.client.rest import ApiException

    name = f"t-multi-boot-{uuid.uuid4().hex[:6]}"
    try:
        boot = run(inventory(tmp_path, kubeconfigs, catalog()), name, "bootstrap_cluster.yml")
        assert boot.returncode == 0, boot.explain()
        assert {h: r["result"] for h, r in summary(boot).items()} == {h: "done" for h in NAMES}
        for host in NAMES:  # the baseline, on each cluster
            assert apis[host]["core"].read_namespaced_resource_quota("ai-serving-quota", name).spec.hard

        assert run(inventory(tmp_path, kubeconfigs, catalog()), name).returncode == 0
        newer = catalog(image={"repository": "registry.creativeflow.ai/models/image-classifier", "tag": "1.4.1"})
        updated = run(inventory(tmp_path, kubeconfigs, newer), name)
        assert updated.returncode == 0, updated.explain()
        assert [image_tag(apis, h, name) for h in NAMES] == ["1.4.1"] * 3

        back = run(inventory(tmp_path, kubeconfigs, newer), name, "rollback_model.yml")
        assert back.returncode == 0, back.explain()
        rows = summary(back)
        assert all(rows[h]["result"] == "changed" and rows[h]["version"].startswith("revision") for h in NAMES), \
            back.explain()
        assert [image_tag(apis, h, name) for h in NAMES] == ["1.4.0"] * 3

        gone = run(inventory(tmp_path, kubeconfigs, newer), name, "undeploy_model.yml", None, "--limit", "a,b")
        assert gone.returncode == 0, gone.explain()
        assert set(summary(gone)) == {"a", "b"}  # --limit: the summary covers the run's clusters
        assert [image_tag(apis, h, name) for h in NAMES] == [None, None, "1.4.0"]
    finally:
        for host in NAMES:
            try:
                apis[host]["core"].delete_namespace(name, grace_period_seconds=0)
            except ApiException as err:
                if err.status != 404:
                    raise


# --------------------------------------------------------------------------- waves


def test_a_failure_in_the_first_wave_leaves_the_other_clusters_on_the_previous_version(
        tmp_path: Path, kubeconfigs, apis) -> None:
    with namespace_everywhere(apis) as name:
        good = run(inventory(tmp_path, kubeconfigs, catalog()), name)
        assert good.returncode == 0, good.explain()
        # 1.4.1 never becomes ready on a (its pods crash); b and c would take it fine.
        bad = catalog(image={"repository": "registry.creativeflow.ai/models/image-classifier", "tag": "1.4.1"})
        inv = inventory(tmp_path, kubeconfigs, bad, host_vars={"a": {"ai_serving_pod_labels": {FAULT: "crash-loop"}}})
        waves = run(inv, name, "deploy_model.yml", {"ai_serving_waves": "1,rest"})
        assert waves.returncode != 0, waves.explain()
        rows = summary(waves)
        assert rows["a"]["result"] == "failed" and "CrashLoopBackOff" in rows["a"]["detail"], waves.explain()
        assert rows["b"]["result"] == rows["c"]["result"] == "not started"
        assert "an earlier wave failed (a)" in rows["b"]["detail"]
        assert "deploy of image-classifier failed on a." in waves.output
        assert "Not started (left as they were): b, c." in waves.output
        # a was rolled back; b and c were never touched.
        assert [image_tag(apis, h, name) for h in NAMES] == ["1.4.0", "1.4.0", "1.4.0"]


# --------------------------------------------------------------------------- placement


def test_fit_one_lands_on_the_second_cluster_and_stays_there(tmp_path: Path, kubeconfigs, apis) -> None:
    inv = inventory(tmp_path, kubeconfigs, catalog(placement={"fit": 1}))
    with namespace_everywhere(apis, gpus={"a": "0"}) as name:
        first = run(inv, name)
        assert first.returncode == 0, first.explain()
        rows = summary(first)
        assert rows["b"]["result"] == "changed"
        assert rows["a"]["result"] == "skipped"
        assert rows["a"]["detail"].startswith("does not fit: GPU preflight for image-classifier"), first.explain()
        assert "quota" in rows["a"]["detail"]
        assert rows["c"] == {"result": "skipped", "version": "", "detail": "fits, but placement fit 1 is met by b"}
        assert [image_tag(apis, h, name) for h in NAMES] == [None, "1.4.0", None]

        # a frees up: a re-run keeps the model on b (no flapping) and changes nothing.
        apis["a"]["core"].patch_namespaced_resource_quota(
            "ai-serving-quota", name, {"spec": {"hard": {"requests.nvidia.com/gpu": "8"}}})
        again = run(inv, name)
        assert again.returncode == 0, again.explain()
        rows = summary(again)
        assert rows["b"]["result"] == "ok"
        assert rows["a"]["detail"] == "fits, but placement fit 1 is met by b"
        assert [image_tag(apis, h, name) for h in NAMES] == [None, "1.4.0", None]
        assert sum(r["changed"] for r in recaps(again).values()) == 0, again.explain()


# --------------------------------------------------------------------------- an unreachable cluster


@pytest.fixture
def dead_c(tmp_path: Path, kubeconfigs: Dict[str, str]) -> Dict[str, str]:
    """The kubeconfigs with c's API server moved to a port nothing listens on."""
    config = yaml.safe_load(Path(kubeconfigs["c"]).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = re.sub(r":\d+$", ":9", cluster["cluster"]["server"])
    path = tmp_path / "dead-c.yaml"
    path.write_text(yaml.safe_dump(config))
    return {**kubeconfigs, "c": str(path)}


def test_an_unreachable_cluster_fails_its_row_and_the_others_complete(tmp_path: Path, dead_c, apis) -> None:
    inv = inventory(tmp_path, dead_c, catalog())
    with namespace_everywhere(apis) as name:
        result = run(inv, name, "deploy_model.yml", {"ai_serving_api_retry_seconds": 0})
        assert result.returncode != 0
        rows = summary(result)
        assert rows["a"]["result"] == rows["b"]["result"] == "changed", result.explain()
        assert rows["c"]["result"] == "failed"
        assert "Cannot reach the Kubernetes API server" in rows["c"]["detail"]
        assert [image_tag(apis, h, name) for h in ("a", "b")] == ["1.4.0", "1.4.0"]


def test_require_all_clusters_starts_nothing_when_one_is_unreachable(tmp_path: Path, dead_c, apis) -> None:
    inv = inventory(tmp_path, dead_c, catalog())
    with namespace_everywhere(apis) as name:
        result = run(inv, name, "deploy_model.yml", {"ai_serving_api_retry_seconds": 0,
                                                     "ai_serving_require_all_clusters": True})
        assert result.returncode != 0
        assert "ai_serving_require_all_clusters is true and the preflight failed; nothing was applied anywhere" in \
            result.output, result.explain()
        assert "c: Cannot reach the Kubernetes API server" in result.output
        assert [image_tag(apis, h, name) for h in ("a", "b")] == [None, None]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case, message", [
    ("no-connection", "cluster d has no connection: set ai_serving_kubeconfig (and ai_serving_context), or "
                      "ai_serving_host"),
    ("unknown-cluster", "models.image-classifier.placement.clusters names 'bb', which is not a cluster of this run "
                        "(did you mean 'b'?); the clusters are: a, b, c"),
    ("fit-too-large", "models.image-classifier.placement.fit is 4, more than the 3 clusters of this run (a, b, c)"),
    ("same-cluster", "clusters a and b reach the same cluster"),
    ("bad-waves", "ai_serving_waves item 1 ('rest'): rest takes every cluster left, so it comes last"),
])
def test_bad_input_is_refused_before_anything_is_applied(tmp_path: Path, kubeconfigs, apis, case: str,
                                                         message: str) -> None:
    models, host_vars, extra, hosts = catalog(), None, {}, dict(kubeconfigs)
    if case == "unknown-cluster":
        models = catalog(placement={"clusters": ["a", "bb"]})
    elif case == "fit-too-large":
        models = catalog(placement={"fit": 4})
    elif case == "same-cluster":
        hosts["b"] = hosts["a"]
    elif case == "bad-waves":
        extra = {"ai_serving_waves": "rest,1"}
    inv = inventory(tmp_path, hosts, models, host_vars)
    if case == "no-connection":
        config = yaml.safe_load((inv / "hosts.yml").read_text())
        config["all"]["children"]["test_clusters"]["hosts"]["d"] = {}
        (inv / "hosts.yml").write_text(yaml.safe_dump(config))
    with namespace_everywhere(apis) as name:
        result = run(inv, name, "deploy_model.yml", extra)
        assert result.returncode != 0
        assert message in result.output, result.explain()
        assert "nothing was applied" in result.output
        assert "Deploy | Preflight, dry run, apply" not in result.stdout  # the deploy never started
        assert [image_tag(apis, h, name) for h in NAMES] == [None, None, None]
