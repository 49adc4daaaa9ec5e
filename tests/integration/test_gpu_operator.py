"""The gpu_operator role, run for real through playbooks/bootstrap_cluster.yml.

Nothing runs NVIDIA's operator on the simulated nodes and its chart cannot be
downloaded here, so the role installs the chart fixture
(tests/fixtures/charts/gpu-operator: the ClusterPolicy CRD and one
ClusterPolicy rendered from the real chart's value names) with the helm that
cluster/build.sh builds; the install, upgrade and idempotence are real. The
tests play the operator: they write the ClusterPolicy's status.state and a
node's advertised GPUs, and put back what they change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from playbooks import REPO_ROOT, Run, run_playbook

PLAYBOOK = REPO_ROOT / "playbooks" / "bootstrap_cluster.yml"
FIXTURE_CHART = REPO_ROOT / "tests" / "fixtures" / "charts" / "gpu-operator"
VERSIONS_ENV = REPO_ROOT / "cluster" / "versions.env"
APPLY_TASK_MARK = "gpu_operator : Apply |"

NAMESPACE = f"t-gpuop-{uuid.uuid4().hex[:6]}"
RELEASE = "gpu-operator"
POLICY = "cluster-policy"
CRD = "clusterpolicies.nvidia.com"
DP_LABEL = "nvidia.com/device-plugin.config"
MIG_LABEL = "nvidia.com/mig.config"
TS_CONFIGS = {
    "a100-x2": {"sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 2}]}}},
    "a100-x4": {"sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}}},
}

def helm_binary() -> Path:
    """The helm cluster/build.sh builds: <cache>/bin/helm-<HELM_VERSION>/helm (cache as in cluster/lib.sh)."""
    versions = dict(
        line.split("=", 1) for line in VERSIONS_ENV.read_text().splitlines() if re.match(r"^[A-Z_]+=", line)
    )
    cache = os.environ.get("AI_SERVING_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "creativeflow-ai-serving"
    )
    return Path(cache) / "bin" / f"helm-{versions['HELM_VERSION']}" / "helm"


def applied_anything(run: Run) -> bool:
    """Whether an Apply task changed something (skipped ones print their header too)."""
    tasks = run.stdout.split("TASK [")
    return any(APPLY_TASK_MARK in t and re.search(r"^changed: ", t, re.MULTILINE) for t in tasks)


def run_role(kubeconfig: str, extra_vars: dict[str, Any], *args: str) -> Run:
    """bootstrap_cluster.yml, only the gpu_operator role, with the local inventory's settings."""
    extra = {"gpu_operator_enabled": True, "gpu_operator_namespace": NAMESPACE, **extra_vars}
    return run_playbook(PLAYBOOK, kubeconfig, extra, "--tags", "gpu_operator", *args, timeout=300)


def helm_releases(kubeconfig: str, namespace: str) -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        [str(helm_binary()), "list", "--all", "-n", namespace, "-o", "json"],
        env={**os.environ, "KUBECONFIG": kubeconfig},
        capture_output=True,
        text=True,
        check=True,
    )
    return {r["name"]: r for r in json.loads(proc.stdout)}


class Cluster:
    """Reads and plays the operator's part through the Kubernetes API."""

    def __init__(self, api_client) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ext = client.ApiextensionsV1Api(api_client)

    def policy(self) -> dict[str, Any]:
        return self.custom.get_cluster_custom_object("nvidia.com", "v1", "clusterpolicies", POLICY)

    def set_policy_state(self, state: str) -> None:
        self.custom.patch_cluster_custom_object_status(
            "nvidia.com", "v1", "clusterpolicies", POLICY, {"status": {"state": state, "namespace": NAMESPACE}}
        )

    def node_labels(self) -> dict[str, dict[str, str]]:
        return {n.metadata.name: n.metadata.labels or {} for n in self.core.list_node().items}

    def advertised(self, node: str, resource: str) -> str | None:
        return (self.core.read_node_status(node).status.allocatable or {}).get(resource)

    def set_advertised(self, node: str, resource: str, value: str | None) -> None:
        """Capacity and allocatable of one extended resource (None removes it), as a device plugin would."""
        self.core.patch_node_status(node, {"status": {"capacity": {resource: value}, "allocatable": {resource: value}}})

    def namespace_exists(self, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


@pytest.fixture(scope="module")
def helm() -> Path:
    path = helm_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build it with 'cluster/build.sh helm' (cluster/build.sh all builds it too)")
    return path


@pytest.fixture(scope="module")
def cluster(api_client) -> Cluster:
    return Cluster(api_client)


@pytest.fixture(scope="module")
def installed(kubeconfig: str, cluster: Cluster, helm: Path) -> Iterator[Run]:
    """One real install (shared by the module's tests), then everything removed."""
    from kubernetes.client.exceptions import ApiException

    crd_existed = True
    try:
        cluster.ext.read_custom_resource_definition(CRD)
    except ApiException as exc:
        if exc.status != 404:
            raise
        crd_existed = False
    try:
        yield run_role(kubeconfig, INSTALL_VARS)
    finally:
        subprocess.run(
            [str(helm), "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--ignore-not-found"],
            env={**os.environ, "KUBECONFIG": kubeconfig},
            capture_output=True,
            check=False,
        )
        for name, labels in cluster.node_labels().items():
            if DP_LABEL in labels or MIG_LABEL in labels:
                cluster.core.patch_node(name, {"metadata": {"labels": {DP_LABEL: None, MIG_LABEL: None}}})
        try:
            cluster.core.delete_namespace(NAMESPACE, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
        # The CRD (helm keeps those of crds/) only if the test brought it.
        if not crd_existed:
            cluster.ext.delete_custom_resource_definition(CRD)


INSTALL_VARS: dict[str, Any] = {
    "gpu_operator_time_slicing_configs": TS_CONFIGS,
    "gpu_operator_time_slicing_node_configs": {"gpu-a100-0": "a100-x2"},
    "gpu_operator_mig_node_configs": {"gpu-mig-0": "all-1g.10gb"},
    "gpu_operator_nfd_enabled": False,
    "gpu_operator_dcgm_exporter_service_monitor_enabled": True,
    "gpu_operator_driver_version": "575.57.08",
}


@pytest.mark.local_cluster
def test_install_applies_release_configmap_and_labels(installed: Run, kubeconfig: str, cluster: Cluster) -> None:
    assert installed.returncode == 0, installed.explain()
    assert installed.recap["changed"] >= 4, installed.explain()

    release = helm_releases(kubeconfig, NAMESPACE)[RELEASE]
    assert release["status"] == "deployed"
    assert release["chart"] == "gpu-operator-v25.3.4-fixture"

    spec = cluster.policy()["spec"]
    assert spec["devicePlugin"]["config"] == {"name": "time-slicing-config", "default": ""}
    assert spec["mig"]["strategy"] == "mixed"  # from the local inventory
    assert spec["driver"] == {"enabled": False, "version": "575.57.08"}  # the fixture's default is 570.172.08
    assert spec["dcgmExporter"]["serviceMonitor"] == {"enabled": True, "interval": "15s"}
    assert spec["migManager"]["config"]["default"] == "all-disabled"
    # NFD off: the fixture's stand-in for the NFD subchart is not rendered.
    assert not cluster.core.list_namespaced_config_map(NAMESPACE, label_selector="app.kubernetes.io/name=node-feature-discovery").items

    ns = cluster.core.read_namespace(NAMESPACE)
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "privileged"

    data = cluster.core.read_namespaced_config_map("time-slicing-config", NAMESPACE).data
    assert set(data) == {"a100-x2", "a100-x4"}
    parsed = yaml.safe_load(data["a100-x2"])
    assert parsed["version"] == "v1"
    assert parsed["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 2}]

    labels = cluster.node_labels()
    assert labels["gpu-a100-0"][DP_LABEL] == "a100-x2"
    assert DP_LABEL not in labels["gpu-a100-1"]
    assert labels["gpu-mig-0"][MIG_LABEL] == "all-1g.10gb"


@pytest.mark.local_cluster
def test_second_run_changes_nothing(installed: Run, kubeconfig: str) -> None:
    assert installed.returncode == 0, installed.explain()
    before = helm_releases(kubeconfig, NAMESPACE)[RELEASE]["revision"]
    second = run_role(kubeconfig, INSTALL_VARS)
    assert second.returncode == 0, second.explain()
    assert second.recap["changed"] == 0, second.explain()
    assert helm_releases(kubeconfig, NAMESPACE)[RELEASE]["revision"] == before


@pytest.mark.local_cluster
def test_check_mode_reports_changes_and_applies_nothing(installed: Run, kubeconfig: str, cluster: Cluster) -> None:
    assert installed.returncode == 0, installed.explain()
    release_before = helm_releases(kubeconfig, NAMESPACE)[RELEASE]
    configmap_before = cluster.core.read_namespaced_config_map("time-slicing-config", NAMESPACE).data
    labels_before = cluster.node_labels()
    changed = {
        **INSTALL_VARS,
        "gpu_operator_time_slicing_configs": {
            **TS_CONFIGS,
            "a100-x2": {"sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 3}]}}},
        },
        "gpu_operator_time_slicing_node_configs": {"gpu-a100-1": "a100-x4"},
        "gpu_operator_mig_strategy": "single",
    }
    run = run_role(kubeconfig, changed, "--check")
    assert run.returncode == 0, run.explain()
    # ConfigMap, release, and the labels of two nodes (one set, one removed).
    assert run.recap["changed"] == 3, run.explain()

    assert helm_releases(kubeconfig, NAMESPACE)[RELEASE]["revision"] == release_before["revision"]
    assert cluster.policy()["spec"]["mig"]["strategy"] == "mixed"
    assert cluster.core.read_namespaced_config_map("time-slicing-config", NAMESPACE).data == configmap_before
    assert cluster.node_labels() == labels_before


@pytest.mark.local_cluster
def test_upgrade_from_a_packaged_chart_moves_labels(installed: Run, kubeconfig: str, cluster: Cluster, helm: Path, tmp_path: Path) -> None:
    """Air-gapped form: a .tgz; a new chart version and values upgrade the release."""
    assert installed.returncode == 0, installed.explain()
    subprocess.run(
        [str(helm), "package", str(FIXTURE_CHART), "--version", "v25.3.5-fixture", "-d", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    tarball = tmp_path / "gpu-operator-v25.3.5-fixture.tgz"
    before = helm_releases(kubeconfig, NAMESPACE)[RELEASE]["revision"]
    upgrade = {
        **INSTALL_VARS,
        "gpu_operator_chart_ref": str(tarball),
        "gpu_operator_chart_version": "v25.3.5-fixture",
        "gpu_operator_time_slicing_node_configs": {"gpu-a100-1": "a100-x4"},
    }
    run = run_role(kubeconfig, upgrade)
    assert run.returncode == 0, run.explain()
    release = helm_releases(kubeconfig, NAMESPACE)[RELEASE]
    assert release["chart"] == "gpu-operator-v25.3.5-fixture"
    assert release["revision"] == str(int(before) + 1)
    labels = cluster.node_labels()
    assert labels["gpu-a100-1"][DP_LABEL] == "a100-x4"
    assert DP_LABEL not in labels["gpu-a100-0"], "the label of a node no longer listed is removed"

    again = run_role(kubeconfig, upgrade)
    assert again.returncode == 0, again.explain()
    assert again.recap["changed"] == 0, again.explain()


@pytest.mark.local_cluster
def test_check_mode_on_a_new_cluster_applies_nothing(kubeconfig: str, cluster: Cluster, helm: Path) -> None:
    """--check where nothing is installed yet: reports the install, creates nothing."""
    namespace = f"t-gpuop-check-{uuid.uuid4().hex[:6]}"
    labels_before = cluster.node_labels()
    run = run_role(
        kubeconfig,
        {
            **INSTALL_VARS,
            "gpu_operator_namespace": namespace,
            # Differs from what the other tests leave on gpu-a100-1 (a100-x4 or nothing).
            "gpu_operator_time_slicing_node_configs": {"gpu-a100-0": "a100-x4", "gpu-a100-1": "a100-x2"},
        },
        "--check",
    )
    assert run.returncode == 0, run.explain()
    assert "a real run would create it" in run.output, run.explain()
    # Namespace, ConfigMap (reported), release, node labels.
    assert run.recap["changed"] == 4, run.explain()
    assert not cluster.namespace_exists(namespace)
    assert not helm_releases(kubeconfig, namespace)
    assert cluster.node_labels() == labels_before


VERIFY_VARS: dict[str, Any] = {
    "gpu_operator_mode": "verify",
    "gpu_operator_time_slicing_configs": TS_CONFIGS,
    "gpu_operator_ready_timeout": 0,
}


@pytest.fixture
def restore_nodes(cluster: Cluster) -> Iterator[Cluster]:
    """Puts back the GPUs and labels a test changes on the GPU nodes."""
    saved = {
        node: {r: cluster.advertised(node, r) for r in ("nvidia.com/gpu", "nvidia.com/mig-1g.10gb")}
        for node in ("gpu-a100-0", "gpu-a100-1", "gpu-mig-0")
    }
    labels = {node: cluster.node_labels()[node].get(DP_LABEL) for node in saved}
    yield cluster
    for node, resources in saved.items():
        for resource, value in resources.items():
            if cluster.advertised(node, resource) != value:
                cluster.set_advertised(node, resource, value)
        cluster.core.patch_node(node, {"metadata": {"labels": {DP_LABEL: labels[node]}}})


def _report(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"no report at {path}"
    return json.loads(path.read_text())


@pytest.mark.local_cluster
def test_verify_fails_when_the_clusterpolicy_is_not_ready(
    installed: Run, kubeconfig: str, restore_nodes: Cluster, tmp_path: Path
) -> None:
    cluster = restore_nodes
    assert installed.returncode == 0, installed.explain()
    for node in ("gpu-a100-0", "gpu-a100-1"):
        cluster.core.patch_node(node, {"metadata": {"labels": {DP_LABEL: None}}})
    cluster.set_policy_state("notReady")
    report_file = tmp_path / "report.json"
    run = run_role(kubeconfig, {**VERIFY_VARS, "gpu_operator_report_file": str(report_file)})
    assert run.returncode != 0, run.explain()
    assert "The GPU Operator is not working on this cluster" in run.output, run.explain()
    assert "ClusterPolicy cluster-policy is in state notReady, not ready" in run.output, run.explain()
    assert not applied_anything(run), run.explain()
    report = _report(report_file)
    assert report["passed"] is False
    assert report["clusterpolicy"] == {"name": POLICY, "found": True, "state": "notReady", "ready": False}
    # The nodes themselves are fine: the policy is the only problem.
    assert len(report["problems"]) == 1, report["problems"]
    assert all(n["passed"] for n in report["gpu_nodes"])


@pytest.mark.local_cluster
def test_verify_fails_when_a_gpu_node_advertises_no_gpus(
    installed: Run, kubeconfig: str, restore_nodes: Cluster, tmp_path: Path
) -> None:
    cluster = restore_nodes
    assert installed.returncode == 0, installed.explain()
    cluster.set_policy_state("ready")
    cluster.set_advertised("gpu-a100-1", "nvidia.com/gpu", "0")
    cluster.core.patch_node("gpu-a100-1", {"metadata": {"labels": {DP_LABEL: None}}})
    # A time-sliced node that still advertises its 4 physical GPUs, not 4 x 2.
    cluster.core.patch_node("gpu-a100-0", {"metadata": {"labels": {DP_LABEL: "a100-x2"}}})
    report_file = tmp_path / "report.json"
    run = run_role(kubeconfig, {**VERIFY_VARS, "gpu_operator_report_file": str(report_file)})
    assert run.returncode != 0, run.explain()
    assert "node gpu-a100-1 advertises no nvidia.com/gpu" in run.output, run.explain()
    assert "node gpu-a100-0 advertises 4 nvidia.com/gpu, not 8" in run.output, run.explain()
    report = _report(report_file)
    assert report["passed"] is False
    assert report["clusterpolicy"]["ready"] is True
    nodes = {n["name"]: n for n in report["gpu_nodes"]}
    assert set(nodes) == {"gpu-a100-0", "gpu-a100-1", "gpu-mig-0"}
    assert nodes["gpu-a100-1"]["passed"] is False and nodes["gpu-a100-1"]["advertised"] == {"nvidia.com/gpu": 0}
    assert nodes["gpu-a100-0"]["expected"][0]["count"] == 8
    assert nodes["gpu-mig-0"]["passed"] is True


@pytest.mark.local_cluster
def test_verify_passes_with_smoke_pod(installed: Run, kubeconfig: str, restore_nodes: Cluster, tmp_path: Path) -> None:
    """All well: ready, every GPU node advertises (gpu-a100-0 time-sliced x2), and the CUDA Job succeeds
    (the cluster's pod-complete stage finishes a Job's pod, as the CUDA sample would)."""
    from kubernetes import client

    cluster = restore_nodes
    assert installed.returncode == 0, installed.explain()
    cluster.set_policy_state("ready")
    cluster.core.patch_node("gpu-a100-0", {"metadata": {"labels": {DP_LABEL: "a100-x2"}}})
    cluster.core.patch_node("gpu-a100-1", {"metadata": {"labels": {DP_LABEL: None}}})
    cluster.set_advertised("gpu-a100-0", "nvidia.com/gpu", "8")
    report_file = tmp_path / "report.json"
    run = run_role(
        kubeconfig,
        {**VERIFY_VARS, "gpu_operator_report_file": str(report_file), "gpu_operator_smoke_pod": True, "gpu_operator_smoke_pod_timeout": 60},
    )
    assert run.returncode == 0, run.explain()
    report = _report(report_file)
    assert report["passed"] is True, report
    assert report["problems"] == []
    nodes = {n["name"]: n for n in report["gpu_nodes"]}
    assert nodes["gpu-a100-0"]["advertised"] == {"nvidia.com/gpu": 8}
    assert nodes["gpu-a100-0"]["time_slicing_config"] == "a100-x2"
    assert nodes["gpu-mig-0"]["advertised"] == {"nvidia.com/mig-1g.10gb": 7}
    smoke = report["smoke_pod"]
    assert smoke["succeeded"] is True, smoke
    assert smoke["node"] in {"gpu-a100-0", "gpu-a100-1"}
    jobs = client.BatchV1Api(cluster.core.api_client).list_namespaced_job(NAMESPACE).items
    assert not jobs, "the smoke Job is deleted after the run"


@pytest.mark.parametrize("case", ["unknown_mig_strategy", "zero_replicas", "unreachable_chart", "unknown_node"])
def test_bad_input_fails_before_applying(case: str, kubeconfig: str, cluster: Cluster, helm: Path) -> None:
    namespace = f"t-gpuop-bad-{uuid.uuid4().hex[:6]}"
    extra: dict[str, Any] = {"gpu_operator_namespace": namespace}
    if case == "unknown_mig_strategy":
        extra["gpu_operator_mig_strategy"] = "dual"
        expected = ["gpu_operator_mig_strategy", "dual", "single, mixed"]
    elif case == "zero_replicas":
        extra["gpu_operator_time_slicing_configs"] = {
            "bad": {"sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 0}]}}}
        }
        expected = ["gpu_operator_time_slicing_configs.bad", "replicas 0", "whole number >= 1"]
    elif case == "unreachable_chart":
        extra.update(
            gpu_operator_chart_ref="gpu-operator",
            gpu_operator_chart_repo_url="http://127.0.0.1:1/charts",
            gpu_operator_chart_version="v25.3.4",
        )
        expected = ["Cannot read the chart 'gpu-operator' version v25.3.4 from http://127.0.0.1:1/charts", "Nothing was applied"]
    else:
        extra["gpu_operator_time_slicing_node_configs"] = {"no-such-node": "a100-x2"}
        expected = ["no-such-node", "is not a node of this cluster", "Nothing was applied"]
    run = run_role(kubeconfig, extra)
    assert run.returncode != 0, run.explain()
    for text in expected:
        assert text in run.output, f"{text!r} not in the output\n{run.explain()}"
    assert run.recap["changed"] == 0, run.explain()
    assert not applied_anything(run), run.explain()
    assert not cluster.namespace_exists(namespace)
    assert not helm_releases(kubeconfig, namespace)
