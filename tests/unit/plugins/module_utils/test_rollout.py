# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the rollout logic: state, diagnosis and undo (no cluster, no Ansible runtime)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout import (
    RolloutError,
    deployment_replicasets,
    diagnose,
    hard_reasons,
    newest_replicaset,
    referenced_configmaps,
    revision_of,
    revision_template,
    rollout_state,
    same_template,
    summarize,
)

NS = "ai-serving"
DEPLOY_UID = "uid-deploy"


# --------------------------------------------------------------------------- builders (API JSON form)


def template(image: str = "repo/model:1", config: str = "model-config-aaa", hash_: Optional[str] = None) -> Dict[str, Any]:
    labels = {"creativeflow.ai/model-name": "model"}
    if hash_:
        labels["pod-template-hash"] = hash_
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [{"name": "server", "image": image, "envFrom": [{"configMapRef": {"name": "env-cm"}}]}],
            "volumes": [{"name": "config", "configMap": {"name": config}}],
        },
    }


def deployment(revision: int = 2, replicas: int = 1, generation: int = 2, observed: int = 2, updated: int = 1,
               ready: int = 1, available: int = 1, total: int = 1, conditions: Optional[List[Dict[str, Any]]] = None,
               image: str = "repo/model:2") -> Dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "model", "namespace": NS, "uid": DEPLOY_UID, "generation": generation,
                     "annotations": {"deployment.kubernetes.io/revision": str(revision)}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"creativeflow.ai/model-name": "model"}},
                 "template": template(image, "model-config-bbb")},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "readyReplicas": ready,
                   "availableReplicas": available, "replicas": total, "conditions": conditions or []},
    }


def replicaset(name: str, revision: int, image: str, config: str = "model-config-aaa",
               conditions: Optional[List[Dict[str, Any]]] = None, owner_uid: str = DEPLOY_UID) -> Dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NS, "uid": "uid-" + name,
                     "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                     "ownerReferences": [{"kind": "Deployment", "name": "model", "uid": owner_uid, "controller": True}]},
        "spec": {"template": template(image, config, hash_=name.rsplit("-", 1)[-1])},
        "status": {"conditions": conditions or []},
    }


def pod(name: str, rs: str, ready: bool = False, scheduled: bool = True, sched_message: str = "",
        containers: Optional[List[Dict[str, Any]]] = None, init: Optional[List[Dict[str, Any]]] = None,
        phase: str = "Running", deleting: bool = False) -> Dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled:
        conditions.append({"type": "PodScheduled", "status": "True"})
    else:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": sched_message})
    meta: Dict[str, Any] = {"name": name, "namespace": NS,
                            "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "uid": "uid-" + rs}]}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: Dict[str, Any] = {"phase": phase, "conditions": conditions}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": status}


def waiting(reason: str, message: str = "", name: str = "server", restarts: int = 0,
            last_exit: Optional[int] = None) -> Dict[str, Any]:
    cs: Dict[str, Any] = {"name": name, "ready": False, "started": False, "restartCount": restarts,
                          "state": {"waiting": {"reason": reason, "message": message}}}
    if last_exit is not None:
        cs["lastState"] = {"terminated": {"exitCode": last_exit, "reason": "Error"}}
    return cs


def running(ready: bool, started: bool = True, name: str = "server") -> Dict[str, Any]:
    return {"name": name, "ready": ready, "started": started, "restartCount": 0, "state": {"running": {}}}


def event(kind: str, name: str, reason: str, message: str, when: str = "2026-01-01T00:00:00Z") -> Dict[str, Any]:
    return {"involvedObject": {"kind": kind, "name": name}, "reason": reason, "message": message,
            "lastTimestamp": when}


OLD_RS = replicaset("model-old111", 1, "repo/model:1", "model-config-aaa")
NEW_RS = replicaset("model-new222", 2, "repo/model:2", "model-config-bbb")


# --------------------------------------------------------------------------- rollout_state


def test_complete_rollout() -> None:
    state = rollout_state(deployment())
    assert state.complete and not state.failed
    assert state.revision == 2
    assert "successfully rolled out (1 replica available)" in state.message


@pytest.mark.parametrize("kwargs, message", [
    (dict(generation=3, observed=2), "waiting for the controller"),
    (dict(replicas=3, updated=1, total=3, available=3), "1 of 3 new replicas updated"),
    (dict(replicas=2, updated=2, total=3, available=2), "1 old replicas pending termination"),
    (dict(replicas=2, updated=2, total=2, available=1), "1 of 2 updated replicas available"),
])
def test_rollout_in_progress(kwargs: Dict[str, Any], message: str) -> None:
    state = rollout_state(deployment(**kwargs))
    assert not state.complete and not state.failed
    assert message in state.message


def test_progress_deadline_exceeded_is_failed() -> None:
    state = rollout_state(deployment(available=0, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": 'ReplicaSet "model-new222" has timed out progressing.'}]))
    assert state.failed and not state.complete


def test_zero_replicas_is_complete() -> None:
    assert rollout_state(deployment(replicas=0, updated=0, ready=0, available=0, total=0)).complete


def test_replicas_default_to_one() -> None:
    dep = deployment(updated=0, available=0, total=0)
    del dep["spec"]["replicas"]
    state = rollout_state(dep)
    assert state.desired == 1 and not state.complete


# --------------------------------------------------------------------------- replicasets


def test_replicasets_owned_newest_first() -> None:
    foreign = replicaset("other-333", 5, "x", owner_uid="someone-else")
    owned = deployment_replicasets(deployment(), [OLD_RS, foreign, NEW_RS])
    assert [rs["metadata"]["name"] for rs in owned] == ["model-new222", "model-old111"]
    assert newest_replicaset(deployment(), [OLD_RS, NEW_RS])["metadata"]["name"] == "model-new222"


def test_revision_of_handles_missing_and_bad_values() -> None:
    assert revision_of(None) is None
    assert revision_of({"metadata": {}}) is None
    assert revision_of({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "x"}}}) is None


# --------------------------------------------------------------------------- diagnose


def diag(pods: List[Dict[str, Any]], events: Optional[List[Dict[str, Any]]] = None,
         rs: Optional[List[Dict[str, Any]]] = None, dep: Optional[Dict[str, Any]] = None):
    return diagnose(dep or deployment(available=0, ready=0), rs or [OLD_RS, NEW_RS], pods, events or [])


def test_crash_loop_is_hard_and_names_container_and_pods() -> None:
    reasons = diag([
        pod("model-new222-a", "model-new222",
            containers=[waiting("CrashLoopBackOff", "back-off 5m0s", restarts=5, last_exit=1)]),
        pod("model-new222-b", "model-new222", containers=[waiting("CrashLoopBackOff", "back-off 5m0s")]),
        pod("model-old111-c", "model-old111", ready=True, containers=[running(True)]),
    ])
    assert len(reasons) == 1
    reason = reasons[0]
    assert reason.reason == "CrashLoopBackOff" and reason.hard and reason.container == "server"
    assert reason.pods == ["model-new222-a", "model-new222-b"]
    assert "last exit code 1 (Error)" in reason.message
    assert "kubectl logs -n ai-serving model-new222-a -c server --previous" in reason.hint
    text = summarize(reasons)
    assert text.startswith("CrashLoopBackOff (container server) in 2 pods (model-new222-a, model-new222-b)")


def test_image_pull_uses_the_kubelet_event() -> None:
    reasons = diag([pod("model-new222-a", "model-new222", phase="Pending",
                        containers=[waiting("ImagePullBackOff", 'Back-off pulling image "repo/model:2"')])],
                   events=[event("Pod", "model-new222-a", "Failed",
                                 'Failed to pull image "repo/model:2": not found')])
    assert [r.reason for r in reasons] == ["ImagePullBackOff"]
    assert reasons[0].message == 'Failed to pull image "repo/model:2": not found'
    assert "image.pull_secrets" in reasons[0].hint
    assert hard_reasons(reasons) == reasons


def test_unschedulable_is_not_hard_and_carries_the_scheduler_message() -> None:
    message = "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint."
    reasons = diag([pod("model-new222-a", "model-new222", scheduled=False, sched_message=message, phase="Pending")])
    assert [(r.reason, r.hard, r.message) for r in reasons] == [("Unschedulable", False, message)]
    assert "gpu.count" in reasons[0].hint


def test_unschedulable_falls_back_to_the_event() -> None:
    reasons = diag([pod("model-new222-a", "model-new222", scheduled=False, phase="Pending")],
                   events=[event("Pod", "model-new222-a", "FailedScheduling", "0/4 nodes are available")])
    assert reasons[0].message == "0/4 nodes are available"


def test_not_ready_with_probe_event() -> None:
    reasons = diag([pod("model-new222-a", "model-new222", containers=[running(False)])],
                   events=[event("Pod", "model-new222-a", "Unhealthy", "Readiness probe failed: HTTP probe failed "
                                 "with statuscode: 503")])
    assert [(r.reason, r.hard) for r in reasons] == [("NotReady", False)]
    assert "503" in reasons[0].message


def test_not_ready_without_events() -> None:
    reasons = diag([pod("model-new222-a", "model-new222", containers=[running(False)])])
    assert reasons[0].message == "running, but the readiness probe fails"


def test_startup_probe_not_passed() -> None:
    reasons = diag([pod("model-new222-a", "model-new222", containers=[running(False, started=False)])])
    assert reasons[0].reason == "NotStarted"
    assert "probes.startup" in reasons[0].hint


def test_starting_pods_and_ready_pods_give_no_reason() -> None:
    assert diag([
        pod("model-new222-a", "model-new222", phase="Pending", containers=[waiting("ContainerCreating")]),
        pod("model-new222-b", "model-new222", ready=True, containers=[running(True)]),
        pod("model-new222-c", "model-new222", containers=[waiting("CrashLoopBackOff")], deleting=True),
    ]) == []


def test_failed_init_container_points_at_the_model_fetch() -> None:
    reasons = diag([pod("model-new222-a", "model-new222", phase="Pending",
                        init=[waiting("CrashLoopBackOff", "back-off", name="fetch-model")],
                        containers=[waiting("PodInitializing")])])
    assert reasons[0].init_container and reasons[0].container == "fetch-model"
    assert "model.uri" in reasons[0].hint
    assert "(init container fetch-model)" in summarize(reasons)


def test_terminated_init_container() -> None:
    reasons = diag([pod("model-new222-a", "model-new222", phase="Pending",
                        init=[{"name": "fetch-model", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}])])
    assert reasons[0].reason == "Terminated" and "exit code 2 (Error)" in reasons[0].message


def test_replicaset_failure_from_quota_or_pod_security() -> None:
    failing = replicaset("model-new222", 2, "repo/model:2", "model-config-bbb", conditions=[{
        "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
        "message": 'pods "model-new222-x" is forbidden: exceeded quota: ai-serving-quota, requested: '
                   'requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=8, limited: requests.nvidia.com/gpu=8'}])
    reasons = diag([], rs=[OLD_RS, failing])
    assert [(r.reason, r.hard) for r in reasons] == [("FailedCreate", True)]
    assert "exceeded quota" in reasons[0].message


def test_replicaset_failure_from_event() -> None:
    reasons = diag([], events=[event("ReplicaSet", "model-new222", "FailedCreate",
                                     'Error creating: pods "x" is forbidden: violates PodSecurity "restricted:latest"')])
    assert reasons[0].reason == "FailedCreate" and "PodSecurity" in reasons[0].message


def test_progress_deadline_only_when_nothing_else_explains() -> None:
    dep = deployment(available=0, conditions=[{"type": "Progressing", "status": "False",
                                               "reason": "ProgressDeadlineExceeded", "message": "timed out"}])
    assert [r.reason for r in diag([], dep=dep)] == ["ProgressDeadlineExceeded"]
    crash = [pod("model-new222-a", "model-new222", containers=[waiting("CrashLoopBackOff")])]
    assert [r.reason for r in diag(crash, dep=dep)] == ["CrashLoopBackOff"]


def test_hard_reasons_sort_first() -> None:
    reasons = diag([
        pod("model-new222-a", "model-new222", containers=[running(False)]),
        pod("model-new222-b", "model-new222", phase="Pending", containers=[waiting("ImagePullBackOff")]),
    ])
    assert [r.reason for r in reasons] == ["ImagePullBackOff", "NotReady"]
    assert reasons[0].to_dict()["pods"] == ["model-new222-b"]


# --------------------------------------------------------------------------- undo


def test_revision_template_defaults_to_the_previous_revision() -> None:
    revision, tmpl = revision_template(deployment(revision=2), [NEW_RS, OLD_RS])
    assert revision == 1
    assert tmpl["spec"]["containers"][0]["image"] == "repo/model:1"
    assert "pod-template-hash" not in tmpl["metadata"]["labels"]
    # The ReplicaSet itself is not modified.
    assert "pod-template-hash" in OLD_RS["spec"]["template"]["metadata"]["labels"]


def test_revision_template_after_an_earlier_rollback_skips_gaps() -> None:
    # Revisions 1, 3 (a failed one) and 4 (rollback to 1's template re-numbered): the previous one is 3.
    rs_failed = replicaset("model-bad333", 3, "repo/model:bad")
    rs_current = replicaset("model-old111", 4, "repo/model:1")
    revision, tmpl = revision_template(deployment(revision=4), [rs_current, rs_failed])
    assert revision == 3 and tmpl["spec"]["containers"][0]["image"] == "repo/model:bad"


def test_revision_template_explicit_and_unknown() -> None:
    revision, tmpl = revision_template(deployment(revision=2), [NEW_RS, OLD_RS], revision=2)
    assert revision == 2 and tmpl["spec"]["containers"][0]["image"] == "repo/model:2"
    with pytest.raises(RolloutError, match="has no revision 7; the revisions kept are: 1, 2"):
        revision_template(deployment(revision=2), [NEW_RS, OLD_RS], revision=7)


def test_revision_template_without_history() -> None:
    with pytest.raises(RolloutError, match="nothing to roll back to"):
        revision_template(deployment(revision=1), [replicaset("model-only", 1, "repo/model:1")])


def test_same_template_ignores_the_hash_label() -> None:
    assert same_template(template(hash_="abc"), template())
    assert not same_template(template(image="a"), template(image="b"))


def test_referenced_configmaps() -> None:
    key_ref = {"configMapKeyRef": {"name": "key-cm", "key": "k"}}
    projected = {"spec": {"template": {"spec": {
        "volumes": [{"name": "p", "projected": {"sources": [{"configMap": {"name": "proj-cm"}}]}}],
        "initContainers": [{"name": "i", "env": [{"name": "X", "valueFrom": key_ref}]}]}}}}
    assert referenced_configmaps([OLD_RS, NEW_RS, projected]) == [
        "env-cm", "key-cm", "model-config-aaa", "model-config-bbb", "proj-cm"]
