"""The ai_namespace role, run for real through playbooks/bootstrap_cluster.yml.

Every test runs ``ansible-playbook -i inventories/local`` against the test
cluster (``AI_SERVING_KUBECONFIG`` is set to the fixture's kubeconfig, which the
local inventory honours) with its own namespace name, then reads the objects
back from the API server.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import playbooks
from playbooks import INVENTORY, REPO_ROOT, Run

PLAYBOOK = REPO_ROOT / "playbooks" / "bootstrap_cluster.yml"
NAMESPACE_VARS = INVENTORY / "group_vars" / "all" / "namespace.yml"
APPLY_TASK_MARK = "ai_namespace : Apply |"

# ai_namespace_quota keys and the ResourceQuota keys they become.
QUOTA_KEYS = {
    "requests_cpu": "requests.cpu",
    "requests_memory": "requests.memory",
    "limits_cpu": "limits.cpu",
    "limits_memory": "limits.memory",
    "requests_storage": "requests.storage",
    "pods": "pods",
    "services": "services",
    "configmaps": "configmaps",
    "secrets": "secrets",
    "persistentvolumeclaims": "persistentvolumeclaims",
}


def run_playbook(kubeconfig: str, extra_vars: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> Run:
    return playbooks.run_playbook(PLAYBOOK, kubeconfig, extra_vars, *args, env=env, timeout=300)


def applied_anything(run: Run) -> bool:
    return APPLY_TASK_MARK in run.stdout


def unique_name(prefix: str = "t-ains") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def namespace_exists(core_v1, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core_v1.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def delete_namespace(core_v1, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        core_v1.delete_namespace(name, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="module")
def inventory_vars() -> dict[str, Any]:
    return yaml.safe_load(NAMESPACE_VARS.read_text())


@pytest.fixture(scope="module")
def baseline(kubeconfig: str, core_v1) -> Iterator[tuple[str, Run]]:
    """One real first run in a fresh namespace, shared by the module's tests."""
    name = unique_name()
    try:
        first = run_playbook(kubeconfig, {"ai_namespace_name": name})
        yield name, first
    finally:
        delete_namespace(core_v1, name)


def test_first_run_creates_every_object(baseline, api_client, core_v1, inventory_vars) -> None:
    from kubernetes import client

    name, first = baseline
    assert first.returncode == 0, first.explain()
    assert first.recap["failed"] == 0
    assert first.recap["changed"] > 0

    ns = core_v1.read_namespace(name)
    labels = ns.metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "latest"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["app.kubernetes.io/managed-by"] == "creativeflow.ai_serving"
    assert labels["app.kubernetes.io/part-of"] == "ai-serving"
    assert labels["name"] == name
    assert labels["environment"] == "local"

    sa = core_v1.read_namespaced_service_account("model-server-sa", name)
    assert sa.metadata.labels["app.kubernetes.io/managed-by"] == "creativeflow.ai_serving"

    rbac = client.RbacAuthorizationV1Api(api_client)
    role = rbac.read_namespaced_role("model-reader-role", name)
    assert len(role.rules) == 1
    rule = role.rules[0]
    assert rule.api_groups == [""]
    assert sorted(rule.resources) == ["configmaps", "secrets"]
    assert sorted(rule.verbs) == ["get", "list", "watch"]
    assert not rule.resource_names
    binding = rbac.read_namespaced_role_binding("model-server-rb", name)
    assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", "model-reader-role")
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", "model-server-sa", name)]

    # The quota, from the local inventory: GPUs through requests.<resource>.
    quota_vars = inventory_vars["ai_namespace_quota"]
    expected_hard = {QUOTA_KEYS[k]: str(v) for k, v in quota_vars.items() if k != "gpus" and v is not None}
    expected_hard[f"requests.{inventory_vars['ai_namespace_gpu_resource']}"] = str(quota_vars["gpus"])
    expected_hard.update({k: str(v) for k, v in inventory_vars["ai_namespace_quota_extra"].items()})
    quota = core_v1.read_namespaced_resource_quota("ai-serving-quota", name)
    assert quota.spec.hard == expected_hard
    assert "nvidia.com/gpu" not in quota.spec.hard

    limit_range = core_v1.read_namespaced_limit_range("ai-serving-default-limits", name)
    assert len(limit_range.spec.limits) == 1
    limit = limit_range.spec.limits[0]
    assert limit.type == "Container"
    assert limit.default == {"cpu": "500m", "memory": "1Gi"}
    assert limit.default_request == {"cpu": "250m", "memory": "512Mi"}
    assert limit.max == {"cpu": "8", "memory": "64Gi"}
    assert limit.min == {"cpu": "100m", "memory": "128Mi"}

    net = client.NetworkingV1Api(api_client)
    policies = {p.metadata.name: p for p in net.list_namespaced_network_policy(name).items}
    assert set(policies) == {
        "default-deny-ingress",
        "allow-same-namespace",
        "allow-from-ingress-controller",
        "allow-from-monitoring",
    }
    deny = policies["default-deny-ingress"]
    assert deny.spec.pod_selector.match_labels is None
    assert deny.spec.policy_types == ["Ingress"]
    assert not deny.spec.ingress
    same = policies["allow-same-namespace"].spec.ingress
    assert len(same) == 1 and same[0]._from[0].pod_selector is not None
    for policy, key in (
        ("allow-from-ingress-controller", "ai_namespace_ingress_namespaces"),
        ("allow-from-monitoring", "ai_namespace_monitoring_namespaces"),
    ):
        peers = policies[policy].spec.ingress[0]._from
        assert [p.namespace_selector.match_labels["kubernetes.io/metadata.name"] for p in peers] == (
            inventory_vars[key]
        )


def test_second_run_changes_nothing(baseline, kubeconfig: str) -> None:
    name, first = baseline
    assert first.returncode == 0, first.explain()
    second = run_playbook(kubeconfig, {"ai_namespace_name": name})
    assert second.returncode == 0, second.explain()
    assert second.recap["changed"] == 0, second.explain()
    assert second.recap["failed"] == 0


def test_check_diff_shows_quota_change_and_applies_nothing(baseline, kubeconfig: str, core_v1, inventory_vars) -> None:
    name, first = baseline
    assert first.returncode == 0, first.explain()
    before = core_v1.read_namespaced_resource_quota("ai-serving-quota", name)
    old_pods = int(before.spec.hard["pods"])
    quota = {**inventory_vars["ai_namespace_quota"], "pods": old_pods + 7}

    run = run_playbook(kubeconfig, {"ai_namespace_name": name, "ai_namespace_quota": quota}, "--check", "--diff")
    assert run.returncode == 0, run.explain()
    assert run.recap["changed"] == 1, run.explain()
    # The diff of the ResourceQuota shows the old and the new count.
    for sign, value in (("-", old_pods), ("+", old_pods + 7)):
        line = rf"^{re.escape(sign)}\s+pods: ['\"]?{value}['\"]?$"
        assert re.search(line, run.stdout, re.MULTILINE), run.explain()

    after = core_v1.read_namespaced_resource_quota("ai-serving-quota", name)
    assert after.spec.hard == before.spec.hard


def test_privileged_pod_is_rejected(baseline, core_v1) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name, first = baseline
    assert first.returncode == 0, first.explain()
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="privileged"),
        spec=client.V1PodSpec(
            service_account_name="model-server-sa",
            containers=[
                client.V1Container(
                    name="c",
                    image="registry.k8s.io/pause:3.10",
                    security_context=client.V1SecurityContext(privileged=True),
                )
            ],
        ),
    )
    with pytest.raises(ApiException) as excinfo:
        core_v1.create_namespaced_pod(name, pod)
    assert excinfo.value.status == 403
    assert "violates PodSecurity" in excinfo.value.body
    assert not core_v1.list_namespaced_pod(name).items


def test_restricted_pod_gets_limit_range_defaults(baseline, core_v1) -> None:
    """A compliant pod without resources is admitted, with the LimitRange defaults."""
    from kubernetes import client

    name, first = baseline
    assert first.returncode == 0, first.explain()
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="restricted"),
        spec=client.V1PodSpec(
            service_account_name="model-server-sa",
            security_context=client.V1PodSecurityContext(
                run_as_non_root=True, run_as_user=1000, seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault")
            ),
            containers=[
                client.V1Container(
                    name="c",
                    image="registry.k8s.io/pause:3.10",
                    security_context=client.V1SecurityContext(
                        allow_privilege_escalation=False, capabilities=client.V1Capabilities(drop=["ALL"])
                    ),
                )
            ],
        ),
    )
    created = core_v1.create_namespaced_pod(name, pod)
    try:
        resources = created.spec.containers[0].resources
        assert resources.requests == {"cpu": "250m", "memory": "512Mi"}
        assert resources.limits == {"cpu": "500m", "memory": "1Gi"}
    finally:
        core_v1.delete_namespaced_pod("restricted", name, grace_period_seconds=0)


def test_check_mode_on_a_new_namespace_creates_nothing(kubeconfig: str, core_v1) -> None:
    name = unique_name()
    try:
        run = run_playbook(kubeconfig, {"ai_namespace_name": name}, "--check", "--diff")
        assert run.returncode == 0, run.explain()
        assert run.recap["changed"] >= 1
        assert "A real run would also create ServiceAccount/model-server-sa" in run.output
        assert not namespace_exists(core_v1, name)
    finally:
        delete_namespace(core_v1, name)


def test_network_policies_no_longer_wanted_are_removed(kubeconfig: str, api_client, core_v1) -> None:
    from kubernetes import client

    net = client.NetworkingV1Api(api_client)
    name = unique_name()
    try:
        first = run_playbook(kubeconfig, {"ai_namespace_name": name})
        assert first.returncode == 0, first.explain()
        assert len(net.list_namespaced_network_policy(name).items) == 4

        run = run_playbook(kubeconfig, {"ai_namespace_name": name, "ai_namespace_monitoring_namespaces": []})
        assert run.returncode == 0, run.explain()
        assert run.recap["changed"] == 1, run.explain()
        names = {p.metadata.name for p in net.list_namespaced_network_policy(name).items}
        assert names == {"default-deny-ingress", "allow-same-namespace", "allow-from-ingress-controller"}

        run = run_playbook(kubeconfig, {"ai_namespace_name": name, "ai_namespace_network_policies_enabled": False})
        assert run.returncode == 0, run.explain()
        assert not net.list_namespaced_network_policy(name).items
    finally:
        delete_namespace(core_v1, name)


def _unreachable_kubeconfig(kubeconfig: str, tmp_path: Path) -> Path:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:1"
    path = tmp_path / "unreachable-kubeconfig.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "case",
    [
        "invalid_dns_label",
        "negative_quota",
        "non_numeric_quota",
        "limit_range_out_of_order",
        "missing_kubeconfig",
        "unreachable_api_server",
    ],
)
def test_bad_input_fails_before_applying(case: str, kubeconfig: str, core_v1, tmp_path: Path) -> None:
    name = unique_name()
    extra: dict[str, Any] = {"ai_namespace_name": name}
    env: dict[str, str] = {}
    if case == "invalid_dns_label":
        name = f"AI_Serving.{uuid.uuid4().hex[:6]}"
        extra["ai_namespace_name"] = name
        expected = [f"ai_namespace_name '{name}'", "DNS label"]
    elif case == "negative_quota":
        extra["ai_namespace_quota"] = {"pods": -3, "gpus": 4}
        expected = ["ai_namespace_quota.pods is '-3'", "non-negative whole number"]
    elif case == "non_numeric_quota":
        extra["ai_namespace_quota"] = {"requests_memory": "lots", "gpus": 4}
        expected = ["ai_namespace_quota.requests_memory is 'lots'", "Kubernetes quantity"]
    elif case == "limit_range_out_of_order":
        extra["ai_namespace_limit_range"] = {"default": {"cpu": "2"}, "max": {"cpu": "1"}}
        expected = ["default.cpu (2) is above max.cpu (1)"]
    elif case == "missing_kubeconfig":
        missing = tmp_path / "no-such-kubeconfig.yaml"
        env["AI_SERVING_KUBECONFIG"] = str(missing)
        expected = [f"kubeconfig file '{missing}'", "does not exist", "AI_SERVING_KUBECONFIG"]
    else:
        unreachable = _unreachable_kubeconfig(kubeconfig, tmp_path)
        env["AI_SERVING_KUBECONFIG"] = str(unreachable)
        expected = ["Cannot reach the Kubernetes API server", str(unreachable), "port=1", "Nothing was applied"]

    try:
        run = run_playbook(kubeconfig, extra, env=env)
        assert run.returncode != 0, run.explain()
        for text in expected:
            assert text in run.output, f"{text!r} not in the output\n{run.explain()}"
        assert run.recap["changed"] == 0, run.explain()
        assert not applied_anything(run), run.explain()
        if case != "invalid_dns_label":
            assert not namespace_exists(core_v1, name)
    finally:
        if case != "invalid_dns_label":
            delete_namespace(core_v1, name)
