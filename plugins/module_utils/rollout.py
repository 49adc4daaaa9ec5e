# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Deployment's rollout: is it done, why is it stuck, and how to undo it.

Plain functions over Kubernetes objects in their JSON form (camelCase keys, as
``kubectl get -o json`` and the dynamic client's ``to_dict()`` give them). No
Ansible, no cluster: the module ``rollout_status`` reads the objects and calls
these; the unit tests feed them dicts.

- :func:`rollout_state` says whether a rollout is complete, still going, or
  failed (``ProgressDeadlineExceeded``), with the numbers, as
  ``kubectl rollout status`` does.
- :func:`diagnose` reads the pods of the Deployment's newest ReplicaSet, the
  ReplicaSet's conditions and the events, and returns the :class:`Reason` s
  the new version is not available: ``Unschedulable``, ``ImagePullBackOff``,
  ``CrashLoopBackOff``, failing readiness probes (``NotReady``),
  ``FailedCreate`` (quota, Pod Security, LimitRange)... each with the pods
  that show it and what to do about it.
- :func:`revision_template` picks the pod template of an earlier revision, as
  ``kubectl rollout undo`` does.

Errors are raised as :class:`RolloutError`; nothing here calls ``fail_json``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import (
    condition as _condition,
    meta as _meta,
    name as _name,
    owned_by,
    pod_is_terminated,
)

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH = "pod-template-hash"

#: Container waiting reasons that do not go away by waiting: the rollout can be
#: declared failed once they have lasted ``fail_fast`` seconds.
HARD_WAITING_REASONS = frozenset({
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreStartHookError",
    "PostStartHookError",
})
#: Waiting reasons of a container that is on its way up.
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})

_HINTS = {
    "CrashLoopBackOff": "the server exits soon after it starts; read its log with "
                        "'kubectl logs -n {namespace} {pod} -c {container} --previous'",
    "ImagePullBackOff": "the image cannot be pulled: check image.repository and image.tag (or digest) in the "
                        "catalog, that the tag exists in the registry, and image.pull_secrets for a private registry",
    "ErrImageNeverPull": "image.pull_policy is Never and the image is not on the node",
    "InvalidImageName": "image.repository or image.tag is not a valid image reference",
    "CreateContainerConfigError": "a Secret or ConfigMap the container refers to is missing (env_from_secrets, "
                                  "model.credentials_secret): create it in the namespace",
    "CreateContainerError": "the container runtime could not create the container",
    "RunContainerError": "the container runtime could not start the container (command, user or mounts)",
    "Unschedulable": "no node can take the pod: free or add GPU nodes, or check gpu.count, gpu.resource, "
                     "gpu.product, node_selector and tolerations in the catalog",
    "NotReady": "the readiness probe fails: the server runs but the model is not being served; read its log with "
                "'kubectl logs -n {namespace} {pod} -c {container}' and check the probe timing (probes.startup "
                "for slow model loads)",
    "NotStarted": "the startup probe has not passed yet: the model may still be loading (raise "
                  "probes.startup.failure_threshold) or the server never comes up (read its log)",
    "FailedCreate": "the ReplicaSet cannot create pods (ResourceQuota, Pod Security or LimitRange refused them): "
                    "see the message",
    "ProgressDeadlineExceeded": "the Deployment made no progress within spec.progressDeadlineSeconds",
    "Terminated": "the container exited; read its log",
}
_INIT_HINT = ("init container {container} did not finish: for the model fetch, check model.uri and "
              "model.credentials_secret; read its log with 'kubectl logs -n {namespace} {pod} -c {container}'")


class RolloutError(Exception):
    """The objects do not allow the asked operation (e.g. no earlier revision to undo to)."""


@dataclass
class Reason:
    """Why (some of) the new pods are not available."""

    reason: str
    message: str = ""
    container: Optional[str] = None
    init_container: bool = False
    pods: List[str] = field(default_factory=list)
    #: Waiting does not help: the rollout may be declared failed early.
    hard: bool = False
    hint: str = ""

    def key(self) -> Tuple[str, Optional[str]]:
        return self.reason, self.container

    def to_dict(self) -> Dict[str, Any]:
        return {
            "reason": self.reason,
            "message": self.message,
            "container": self.container,
            "init_container": self.init_container,
            "pods": list(self.pods),
            "hard": self.hard,
            "hint": self.hint,
        }

    def describe(self) -> str:
        what = self.reason
        if self.container:
            what += " ({0}container {1})".format("init " if self.init_container else "", self.container)
        if self.pods:
            what += " in {0} pod{1} ({2})".format(
                len(self.pods), "" if len(self.pods) == 1 else "s", ", ".join(sorted(self.pods)[:3])
                + (", ..." if len(self.pods) > 3 else ""))
        text = what
        if self.message:
            text += ": " + self.message.strip().rstrip(".")
        if self.hint:
            text += "; " + self.hint
        return text


@dataclass
class RolloutState:
    """Where a Deployment's rollout stands (``kubectl rollout status``)."""

    complete: bool
    failed: bool
    message: str
    desired: int
    updated: int
    ready: int
    available: int
    total: int
    observed: bool
    revision: Optional[int]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "complete": self.complete,
            "failed": self.failed,
            "message": self.message,
            "desired": self.desired,
            "updated": self.updated,
            "ready": self.ready,
            "available": self.available,
            "total": self.total,
            "observed": self.observed,
            "revision": self.revision,
        }


def revision_of(obj: Optional[Mapping[str, Any]]) -> Optional[int]:
    """The ``deployment.kubernetes.io/revision`` annotation as an int, or None."""
    if not obj:
        return None
    value = (_meta(obj).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def rollout_state(deployment: Mapping[str, Any]) -> RolloutState:
    """Whether the Deployment's newest template is rolled out, as ``kubectl rollout status`` decides.

    Complete: the controller has observed the current generation, every replica runs the
    newest template, no old replica is left and every updated replica is available.
    Failed: the ``Progressing`` condition says ``ProgressDeadlineExceeded``.
    """
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    generation = int(_meta(deployment).get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0) >= generation
    revision = revision_of(deployment)
    name = _name(deployment)

    def state(complete: bool, failed: bool, message: str) -> RolloutState:
        return RolloutState(complete, failed, message, desired, updated, ready, available, total, observed, revision)

    if not observed:
        return state(False, False, "waiting for the controller to observe the new spec of Deployment {0}".format(name))
    progressing = _condition(deployment, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return state(False, True, "Deployment {0} exceeded its progress deadline".format(name))
    if updated < desired:
        return state(False, False, "{0} of {1} new replicas updated".format(updated, desired))
    if total > updated:
        return state(False, False, "{0} old replicas pending termination".format(total - updated))
    if available < updated:
        return state(False, False, "{0} of {1} updated replicas available".format(available, updated))
    return state(True, False, "Deployment {0} successfully rolled out ({1} replica{2} available)".format(
        name, available, "" if available == 1 else "s"))


def deployment_replicasets(deployment: Mapping[str, Any],
                           replicasets: Iterable[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The ReplicaSets the Deployment owns, newest revision first."""
    owned = [rs for rs in replicasets if owned_by(rs, {"kind": "Deployment", **deployment})]
    return sorted(owned, key=lambda rs: revision_of(rs) or 0, reverse=True)


def newest_replicaset(deployment: Mapping[str, Any],
                      replicasets: Iterable[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The ReplicaSet of the Deployment's current revision (its newest template), if created."""
    owned = deployment_replicasets(deployment, replicasets)
    current = revision_of(deployment)
    for rs in owned:
        if current is not None and revision_of(rs) == current:
            return rs
    return owned[0] if owned else None


def _events_for(events: Sequence[Mapping[str, Any]], kind: str, name: str, reasons: Iterable[str]) -> List[str]:
    wanted = set(reasons)
    found = []
    for event in sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or "")):
        involved = event.get("involvedObject") or event.get("regarding") or {}
        if involved.get("kind") == kind and involved.get("name") == name and event.get("reason") in wanted:
            message = str(event.get("message") or event.get("note") or "").strip()
            if message and message not in found:
                found.append(message)
    return found


def _pod_reasons(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> List[Reason]:
    """Why one pod is not ready (empty when it is ready or simply still starting)."""
    name = _name(pod)
    status = pod.get("status") or {}
    if _meta(pod).get("deletionTimestamp"):
        return []
    ready = _condition(pod, "Ready")
    if ready and ready.get("status") == "True":
        return []
    found: List[Reason] = []

    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        message = str(scheduled.get("message") or "")
        if not message:
            messages = _events_for(events, "Pod", name, ["FailedScheduling"])
            message = messages[-1] if messages else ""
        found.append(Reason("Unschedulable", message, pods=[name], hard=False))
        return found

    for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for cs in status.get(key) or []:
            container = cs.get("name")
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting:
                reason = str(waiting.get("reason") or "Waiting")
                if reason in STARTING_REASONS:
                    continue
                message = str(waiting.get("message") or "")
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if last:
                    detail = "last exit code {0}{1}".format(
                        last.get("exitCode"), " (" + last["reason"] + ")" if last.get("reason") else "")
                    message = "{0}{1}{2}".format(message, "; " if message else "", detail)
                if reason == "ErrImagePull" or reason == "ImagePullBackOff":
                    pulls = _events_for(events, "Pod", name, ["Failed"])
                    if pulls:
                        message = pulls[-1]
                found.append(Reason(reason, message, container, init, [name], reason in HARD_WAITING_REASONS))
            elif terminated and init and terminated.get("exitCode") not in (0, None):
                found.append(Reason("Terminated", "exit code {0}{1}".format(
                    terminated.get("exitCode"), " (" + terminated["reason"] + ")" if terminated.get("reason") else ""),
                    container, True, [name], False))
            elif terminated and not init:
                found.append(Reason("Terminated", "exit code {0}{1}".format(
                    terminated.get("exitCode"), " (" + terminated["reason"] + ")" if terminated.get("reason") else ""),
                    container, False, [name], False))
            elif "running" in state and not init and not cs.get("ready"):
                probes = _events_for(events, "Pod", name, ["Unhealthy"])
                if cs.get("started") is False:
                    found.append(Reason("NotStarted", probes[-1] if probes else "the startup probe has not succeeded",
                                        container, False, [name], False))
                else:
                    found.append(Reason("NotReady", probes[-1] if probes else "running, but the readiness probe fails",
                                        container, False, [name], False))
    return found


def diagnose(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]],
             pods: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] = ()) -> List[Reason]:
    """Why the Deployment's newest revision is not available, from its objects.

    Looks at the Deployment's conditions (``ProgressDeadlineExceeded``, ``ReplicaFailure``), the
    newest ReplicaSet's ``ReplicaFailure`` condition (pods refused by quota, Pod Security or
    LimitRange) and every pod of that ReplicaSet: unschedulable pods, containers waiting for a
    reason that does not go away (``CrashLoopBackOff``, ``ImagePullBackOff``...), init containers
    that failed, and running containers whose readiness probe fails. Reasons shared by several
    pods are merged, with the pods listed. ``events`` (core/v1 Events of the namespace) add the
    scheduler's and the kubelet's messages where the status has none.
    """
    namespace = str(_meta(deployment).get("namespace") or "")
    reasons: Dict[Tuple[str, Optional[str]], Reason] = {}

    def add(reason: Reason) -> None:
        existing = reasons.get(reason.key())
        if existing is None:
            reasons[reason.key()] = reason
        else:
            existing.pods.extend(p for p in reason.pods if p not in existing.pods)

    newest = newest_replicaset(deployment, replicasets)
    for owner in ([newest] if newest else []) + [deployment]:
        failure = _condition(owner, "ReplicaFailure")
        if failure and failure.get("status") == "True":
            add(Reason("FailedCreate", str(failure.get("message") or failure.get("reason") or ""), hard=True))
            break
    if newest is not None:
        for message in _events_for(events, "ReplicaSet", _name(newest), ["FailedCreate"])[-1:]:
            if ("FailedCreate", None) not in reasons:
                add(Reason("FailedCreate", message, hard=True))
        for pod in pods:
            if owned_by(pod, {"kind": "ReplicaSet", **newest}) and not pod_is_terminated(pod):
                for reason in _pod_reasons(pod, events):
                    add(reason)

    progressing = _condition(deployment, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded" and not reasons:
        add(Reason("ProgressDeadlineExceeded", str(progressing.get("message") or ""), hard=True))

    result = list(reasons.values())
    for reason in result:
        pod = reason.pods[0] if reason.pods else "POD"
        template = _INIT_HINT if reason.init_container else _HINTS.get(reason.reason, "")
        reason.hint = template.format(namespace=namespace or "NAMESPACE", pod=pod, container=reason.container or "")
    order = {"FailedCreate": 0, "Unschedulable": 1}
    result.sort(key=lambda r: (0 if r.hard else 1, order.get(r.reason, 5), r.reason, r.container or ""))
    return result


def summarize(reasons: Sequence[Reason]) -> str:
    """The reasons in one line each, hard ones first; empty when there are none."""
    return "; ".join(reason.describe() for reason in reasons)


def hard_reasons(reasons: Sequence[Reason]) -> List[Reason]:
    return [reason for reason in reasons if reason.hard]


def revision_template(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]],
                      revision: Optional[int] = None) -> Tuple[int, Dict[str, Any]]:
    """The pod template of ``revision``, or of the newest revision older than the current one.

    Returns ``(revision, template)`` with the ReplicaSet's ``pod-template-hash`` label removed,
    ready to be put back into the Deployment, which is what ``kubectl rollout undo`` does.
    Raises :class:`RolloutError` when there is no such revision.
    """
    owned = deployment_replicasets(deployment, replicasets)
    current = revision_of(deployment)
    name = _name(deployment)
    if revision is not None:
        chosen = [rs for rs in owned if revision_of(rs) == revision]
        if not chosen:
            known = sorted({r for r in (revision_of(rs) for rs in owned) if r is not None})
            raise RolloutError("Deployment {0} has no revision {1}; the revisions kept are: {2}".format(
                name, revision, ", ".join(str(r) for r in known) or "none"))
    else:
        chosen = [rs for rs in owned if (revision_of(rs) or 0) < (current or 0)]
        if not chosen:
            raise RolloutError(
                "Deployment {0} has no revision older than its current one ({1}): there is nothing to roll back to"
                .format(name, current))
    replicaset = chosen[0]
    template = copy.deepcopy((replicaset.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop(POD_TEMPLATE_HASH, None)
    return revision_of(replicaset) or 0, template


def same_template(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Whether two pod templates are equal, ignoring the ``pod-template-hash`` label."""
    def strip(template: Mapping[str, Any]) -> Dict[str, Any]:
        copied = copy.deepcopy(dict(template))
        ((copied.get("metadata") or {}).get("labels") or {}).pop(POD_TEMPLATE_HASH, None)
        return copied
    return strip(left) == strip(right)


def referenced_configmaps(objects: Iterable[Mapping[str, Any]]) -> List[str]:
    """Names of the ConfigMaps the pod templates of ``objects`` (Deployments, ReplicaSets) refer to."""
    names = set()
    for obj in objects:
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for volume in spec.get("volumes") or []:
            if (volume.get("configMap") or {}).get("name"):
                names.add(volume["configMap"]["name"])
            for source in (volume.get("projected") or {}).get("sources") or []:
                if (source.get("configMap") or {}).get("name"):
                    names.add(source["configMap"]["name"])
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            for env_from in container.get("envFrom") or []:
                if (env_from.get("configMapRef") or {}).get("name"):
                    names.add(env_from["configMapRef"]["name"])
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or {}
                if ref.get("name"):
                    names.add(ref["name"])
    return sorted(names)
