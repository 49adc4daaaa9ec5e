# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for a rollout and undoing it, against the API: :mod:`rollout`'s logic plus the reads and the one write.

Shared by the module ``rollout_status`` and the deploy engine (``model_deploy``,
in the controller). Raises :class:`RolloutError` / :class:`K8sAccessError`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import last_good
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import (
    K8sAccessError,
    KubeReader,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout import (
    Reason,
    RolloutError,
    deployment_replicasets,
    diagnose,
    hard_reasons,
    referenced_configmaps,
    revision_of,
    revision_template,
    rollout_state,
    same_template,
    summarize,
)

_SKIP_ANNOTATIONS = ("deployment.kubernetes.io/", "kubectl.kubernetes.io/last-applied-configuration")

#: The options the wait reads (the module's argument spec, less the connection).
DEFAULTS: Dict[str, Any] = {
    "wait": True, "timeout": 600, "fail_fast": 30, "poll_interval": 2, "undo": False, "to_revision": None,
    "to_last_good": False,
    "replicas": None, "definition": None, "field_manager": "creativeflow-ai-serving",
}


class RolloutClient(KubeReader):
    """KubeReader plus the one write the module makes: a server-side apply of the Deployment."""

    def apply_deployment(self, body: Dict[str, Any], field_manager: str, dry_run: bool) -> Dict[str, Any]:
        name = body["metadata"]["name"]
        namespace = body["metadata"]["namespace"]
        what = "apply Deployment {0} in namespace {1}".format(name, namespace)
        try:
            resource = self._client.resource("Deployment", "apps/v1")
            result = self._client.client.server_side_apply(
                resource, body=body, name=name, namespace=namespace, force_conflicts=True,
                field_manager=field_manager, dry_run="All" if dry_run else None)
            return result.to_dict()
        except Exception as exc:  # mapped to a clear message
            raise self._error(what, exc) from exc


class Rollout:
    """Reads a Deployment and its children, undoes and waits; raises RolloutError / K8sAccessError."""

    def __init__(self, params: Dict[str, Any], client: RolloutClient, check_mode: bool = False) -> None:
        self.client = client
        self.check_mode = check_mode
        self.params: Dict[str, Any] = dict(DEFAULTS, **params)
        self.namespace: str = self.params["namespace"]
        self.name: str = self.params["name"]
        self.last_good: Dict[str, Any] = {}

    def deployment(self) -> Optional[Dict[str, Any]]:
        return self.client.get("Deployment", self.name, self.namespace, api_version="apps/v1")

    def children(self, deployment: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join("{0}={1}".format(k, v) for k, v in sorted(labels.items())) or None
        replicasets = self.client.list("ReplicaSet", "apps/v1", self.namespace, label_selector=selector)
        pods = self.client.list("Pod", "v1", self.namespace, label_selector=selector)
        return replicasets, pods

    def events(self) -> List[Dict[str, Any]]:
        try:
            return self.client.list("Event", "v1", self.namespace)
        except K8sAccessError:
            return []  # events only add detail

    def target(self, deployment: Dict[str, Any], replicasets: List[Dict[str, Any]]
               ) -> Tuple[Optional[int], Dict[str, Any]]:
        """The revision to put back: ``to_revision``; or, with ``to_last_good``, the recorded last good version when
        the Deployment runs another template; else None (the newest older one)."""
        if self.params["to_revision"] is not None or not self.params.get("to_last_good"):
            return self.params["to_revision"], {}
        good, _why = last_good.read(deployment)
        if good is None or last_good.position(deployment, replicasets, good) == last_good.AT_GOOD:
            return None, {}
        replicaset = last_good.replicaset_of(deployment, replicasets, good)
        if replicaset is None:
            return None, {}
        return revision_of(replicaset), asdict(good)

    def undo(self, deployment: Dict[str, Any], replicasets: List[Dict[str, Any]]) -> Tuple[bool, int]:
        wanted, self.last_good = self.target(deployment, replicasets)
        revision, template = revision_template(deployment, replicasets, wanted)
        replicas = self.params["replicas"]
        spec = deployment.get("spec") or {}
        changed = not same_template(spec.get("template") or {}, template)
        if replicas is not None and spec.get("replicas") != replicas:
            changed = True
        if not changed:
            return False, revision
        body = self.apply_body(deployment)
        body["spec"]["template"] = template
        if replicas is not None:
            body["spec"]["replicas"] = replicas
        self.client.apply_deployment(body, self.params["field_manager"], dry_run=self.check_mode)
        return True, revision

    def apply_body(self, deployment: Dict[str, Any]) -> Dict[str, Any]:
        definition = self.params["definition"]
        if definition:
            body = copy.deepcopy(definition)
            body.setdefault("apiVersion", "apps/v1")
            body.setdefault("kind", "Deployment")
            body.setdefault("metadata", {})
            body["metadata"]["name"] = self.name
            body["metadata"]["namespace"] = self.namespace
            body.setdefault("spec", {})
            return body
        meta = deployment.get("metadata") or {}
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(_SKIP_ANNOTATIONS)}
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(meta.get("labels") or {})},
            "spec": copy.deepcopy(deployment.get("spec") or {}),
        }
        if annotations:
            body["metadata"]["annotations"] = annotations
        return body

    def wait(self) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]], List[Dict[str, Any]], List[Reason], str]:
        """Poll until complete, failed, timed out or stuck on a hard reason; returns the last look."""
        timeout = max(0, self.params["timeout"])
        fail_fast = max(0, self.params["fail_fast"])
        interval = max(1, self.params["poll_interval"])
        # Look again soon at first (a rollout that is about done, kwok's pods), then every poll_interval.
        delay = min(0.25, interval)
        started = time.monotonic()
        first_seen: Dict[Tuple[str, Optional[str]], float] = {}
        while True:
            deployment = self.deployment()
            if deployment is None:
                raise RolloutError("Deployment {0} disappeared from namespace {1} during the rollout".format(
                    self.name, self.namespace))
            state = rollout_state(deployment)
            replicasets, pods = self.children(deployment)
            if state.complete:
                return deployment, replicasets, pods, [], ""
            now = time.monotonic()
            if state.failed:
                return deployment, replicasets, pods, diagnose(deployment, replicasets, pods, self.events()), \
                    "it exceeded its progress deadline"
            reasons = diagnose(deployment, replicasets, pods)
            hard = hard_reasons(reasons)
            keys = {reason.key() for reason in hard}
            first_seen = {key: first_seen.get(key, now) for key in keys}
            if fail_fast and hard and any(now - seen >= fail_fast for seen in first_seen.values()):
                return deployment, replicasets, pods, diagnose(deployment, replicasets, pods, self.events()), \
                    "its new pods are stuck for {0}s or more".format(fail_fast)
            if now - started >= timeout:
                return deployment, replicasets, pods, diagnose(deployment, replicasets, pods, self.events()), \
                    "it did not complete within {0}s".format(timeout)
            time.sleep(min(delay, max(0.5, timeout - (now - started))))
            delay = min(delay * 2, interval)

    def run(self) -> Dict[str, Any]:
        result: Dict[str, Any] = dict(changed=False, complete=False, reasons=[])
        deployment = self.deployment()
        if deployment is None:
            raise RolloutError("Deployment {0} does not exist in namespace {1}".format(self.name, self.namespace))
        replicasets, pods = self.children(deployment)
        if self.params["undo"]:
            changed, revision = self.undo(deployment, replicasets)
            result["changed"] = changed
            result["undone_to_revision"] = revision
            result["last_good"] = self.last_good
            if changed and not self.check_mode:
                deployment = self.deployment() or deployment
                replicasets, pods = self.children(deployment)

        failure = ""
        reasons: List[Reason] = []
        if self.params["wait"] and not self.check_mode:
            last, replicasets, pods, reasons, failure = self.wait()
            deployment = last or deployment
        state = rollout_state(deployment)
        if not self.params["wait"] and not state.complete:
            reasons = diagnose(deployment, replicasets, pods)
        result.update(
            complete=state.complete,
            state=state.to_dict(),
            revision=revision_of(deployment),
            reasons=[reason.to_dict() for reason in reasons],
            replicaset_configmaps=referenced_configmaps([deployment] + deployment_replicasets(deployment, replicasets)),
        )
        if failure:
            explained = summarize(reasons) or "no pod reports a reason (the rollout is only slow?)"
            result["msg"] = "Deployment {0} in namespace {1} did not roll out: {2} ({3}): {4}".format(
                self.name, self.namespace, failure, state.message, explained)
            result["failed"] = True
        elif self.params["undo"] and self.check_mode:
            result["msg"] = "check mode: would put back revision {0} of Deployment {1}".format(
                result["undone_to_revision"], self.name) if result["changed"] else \
                "Deployment {0} already runs revision {1}'s template".format(self.name, result["undone_to_revision"])
        else:
            result["msg"] = state.message
        return result
