# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the cluster's answers mean for the deploy: references, removals, the rollback's restore, messages."""

from __future__ import annotations

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import plan


def obj(kind: str, name: str = "m", api: str = "v1", **extra) -> dict:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "ns"}, **extra}


def test_references_required_and_optional() -> None:
    model = {"env_from_secrets": ["keys"], "model": {"source": "pvc", "pvc": {"claim_name": "weights"},
                                                     "credentials_secret": "creds"},
             "image": {"pull_secrets": ["pull"]}}
    refs = plan.references(model)
    assert [(r["kind"], r["name"], r["field"], r["required"]) for r in refs] == [
        ("Secret", "keys", "env_from_secrets", True),
        ("Secret", "creds", "model.credentials_secret", True),
        ("PersistentVolumeClaim", "weights", "model.pvc.claim_name", True),
        ("Secret", "pull", "image.pull_secrets", False),
    ]
    assert plan.references({"model": {"source": "image"}, "image": {}}) == []


def test_namespace_problem() -> None:
    assert plan.namespace_problem({"status": {"phase": "Active"}}, "ns", "triton") == ""
    assert plan.namespace_problem({}, "ns", "triton") == ""
    assert plan.namespace_problem(None, "ns", "triton").startswith("Namespace ns does not exist.")
    msg = plan.namespace_problem({"status": {"phase": "Terminating"}}, "ns", "triton")
    assert msg.startswith("Namespace ns is being deleted.") and "set triton_namespace" in msg
    assert msg.endswith("Nothing was applied.")


def test_missing_references_message() -> None:
    msg = plan.missing_references_message("m", "ns", [
        {"kind": "Secret", "name": "keys", "field": "env_from_secrets"},
        {"kind": "PersistentVolumeClaim", "name": "w", "field": "model.pvc.claim_name"}])
    assert ("m refers to what namespace ns does not have: Secret keys (catalog field env_from_secrets); "
            "PersistentVolumeClaim w (catalog field model.pvc.claim_name).") in msg


def test_absent_objects_are_those_the_model_had_and_no_longer_has() -> None:
    snapshot = {"deployment": obj("Deployment"), "hpa": obj("HorizontalPodAutoscaler"), "pdb": None,
                "service_monitor": obj("ServiceMonitor")}
    objects = [obj("Deployment", api="apps/v1"), obj("ServiceMonitor", api="monitoring.coreos.com/v1")]
    assert plan.absent_objects(snapshot, objects, "m") == [
        {"api_version": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "m"}]


def test_absent_objects_end_with_what_a_canary_left() -> None:
    leftovers = [{"api_version": "v1", "kind": "Service", "name": "m-stable"},
                 {"api_version": "apps/v1", "kind": "Deployment", "name": "m-canary"}]
    snapshot = {"deployment": obj("Deployment"), "hpa": obj("HorizontalPodAutoscaler"), "canary_leftovers": leftovers}
    assert plan.absent_objects(snapshot, [obj("Deployment", api="apps/v1")], "m") == [
        {"api_version": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "m"}] + leftovers


def test_a_canarys_companions_are_the_deployments_it_left() -> None:
    """The GPU preflight counts these Deployments' pods within the canary's peak (routes and Services have none)."""
    leftovers = [{"api_version": "v1", "kind": "Service", "name": "m-stable"},
                 {"api_version": "apps/v1", "kind": "Deployment", "name": "m-canary"}]
    assert plan.canary_companions({"canary_leftovers": leftovers}) == ["m-canary"]
    assert plan.canary_companions({"canary_leftovers": []}) == []
    assert plan.canary_companions({}) == []


def test_restore_keeps_only_what_an_apply_owns() -> None:
    service = obj("Service", spec={"type": "ClusterIP", "clusterIP": "10.0.0.9", "selector": {"a": "b"},
                                   "ports": [{"port": 80}]})
    service["metadata"].update(labels={"x": "y"}, resourceVersion="7", uid="u")
    hpa = obj("HorizontalPodAutoscaler", api="autoscaling/v2", spec={"maxReplicas": 2})
    restored = plan.restore_objects({"service": service, "hpa": hpa, "pdb": None})
    assert restored[0] == {"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "m", "namespace": "ns", "labels": {"x": "y"}},
                           "spec": {"type": "ClusterIP", "selector": {"a": "b"}, "ports": [{"port": 80}]}}
    assert restored[1]["spec"] == {"maxReplicas": 2} and restored[1]["metadata"]["labels"] == {}


def test_added_objects_first_deploy_is_everything_reversed() -> None:
    objects = [obj("ConfigMap", "m-config-1"), obj("Service"), obj("Deployment", api="apps/v1")]
    added = plan.added_objects(objects, {"deployment": None, "configmaps": []})
    assert [o["kind"] for o in added] == ["Deployment", "Service", "ConfigMap"]


def test_added_objects_later_deploy_is_the_new_configmap_and_new_kinds() -> None:
    objects = [obj("ConfigMap", "m-config-2"), obj("Service"), obj("Deployment", api="apps/v1"),
               obj("PodDisruptionBudget", api="policy/v1")]
    snapshot = {"deployment": obj("Deployment"), "service": obj("Service"), "pdb": None,
                "configmaps": ["m-config-1"]}
    assert [o["kind"] for o in plan.added_objects(objects, snapshot)] == ["PodDisruptionBudget", "ConfigMap"]


def test_changed_by_resource_version_or_by_content_in_a_dry_run() -> None:
    before = obj("Deployment", spec={"replicas": 1})
    before["metadata"].update(resourceVersion="5", generation=1, managedFields=[{"manager": "a"}])
    same = obj("Deployment", spec={"replicas": 1})
    same["metadata"].update(resourceVersion="5", generation=1, managedFields=[{"manager": "b"}])
    bumped = obj("Deployment", spec={"replicas": 2})
    bumped["metadata"].update(resourceVersion="5", generation=2)
    assert not plan.applied_changed(before, same, dry_run=False)
    assert plan.applied_changed(before, dict(bumped, metadata=dict(bumped["metadata"], resourceVersion="6")), False)
    # Stored, but only the field ownership moved (the apply taking spec.replicas back from the scale subresource's
    # writes, after a canary's abort): the same object, not a change.
    assert not plan.applied_changed(before, dict(same, metadata=dict(same["metadata"], resourceVersion="6")), False)
    assert not plan.applied_changed(before, same, dry_run=True)
    assert plan.applied_changed(before, bumped, dry_run=True)
    assert plan.applied_changed(None, same, dry_run=True)


def test_diff_hides_managed_fields() -> None:
    before = obj("Service")
    before["metadata"]["managedFields"] = [{"manager": "x"}]
    entry = plan.diff_entry(before, None, "Service/m")
    assert "managedFields" not in entry["before"]["metadata"] and entry["after"] == {}
    assert entry["before_header"] == "Service/m"
    assert before["metadata"]["managedFields"]  # the snapshot itself is untouched


def test_pod_security_violations() -> None:
    warnings = ['would violate PodSecurity "restricted:latest": runAsNonRoot != true', "unknown field"]
    assert plan.pod_security_violations(warnings) == [warnings[0]]
    msg = plan.pod_security_message("m", "ns", [warnings[0]], "triton")
    assert "refused by Pod Security admission in namespace ns" in msg and "triton_pod_labels" in msg


def test_failure_messages() -> None:
    failure = "Deployment m in namespace ns did not roll out: CrashLoopBackOff ...  "
    undone = {"complete": True, "undone_to_revision": 3, "state": {"available": 1, "desired": 1}}
    msg = plan.failure_message(failure, "m", "ns", "triton", True, False, undone, 3)
    assert msg.startswith("Deployment m in namespace ns did not roll out: CrashLoopBackOff. Rolled back automatically")
    assert "runs revision 3's template again and is available (1/1 replicas)" in msg
    msg = plan.failure_message(failure, "m", "ns", "triton", True, True, None, None)
    assert "This was the first deploy of m: its objects were removed" in msg
    msg = plan.failure_message(failure, "m", "ns", "triton", False, False, None, 2)
    assert "(triton_rollback_on_failure is false)" in msg
    msg = plan.failure_message(failure, "m", "ns", "triton", True, False, {"complete": False, "msg": "stuck"}, 2)
    assert "The automatic rollback to revision 2 did not bring the previous version back: stuck." in msg


def test_unreachable_message_never_prints_an_inline_kubeconfig() -> None:
    msg = plan.unreachable_message({"users": [{"user": {"token": "s3cret"}}]}, None, "connection refused.")
    assert "s3cret" not in msg and "'(given inline)'" in msg
    assert msg.startswith("Cannot reach the Kubernetes API server, or it refused the request, with kubeconfig")
    assert "context '(the current context)': connection refused. Start the cluster" in msg
    assert msg.endswith("Nothing was applied.")
    msg = plan.unreachable_message("/k", "c", "refused", "applying the objects", applied=True)
    assert "refused the request (applying the objects), with kubeconfig '/k' and context 'c'" in msg
    assert "Objects may have been applied already" in msg
