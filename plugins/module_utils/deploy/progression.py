# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A canary's steps against the cluster (issue 15): the I/O around the pure modules of :mod:`..canary`.

For each step of the plan: the canary Deployment ``<model>-canary`` is applied with the step's pods and waited for;
then, with split ``replicas``, the stable Deployment is scaled to its share through the scale subresource (the canary
first: capacity never drops); with split ``gateway`` or ``istio`` the stable version keeps its pods and the step's
route is applied (the version Services and the ``HTTPRoute`` backend weights, or the ``DestinationRule`` subsets and
the ``VirtualService`` weights with the A/B header rule). Then every ``analysis.interval`` both versions' pods are
scraped through the API server's pod proxy and the step judged (:func:`..canary.analysis.judge`,
:func:`..canary.progress.decide`), one line per check. A failed step aborts: the canary's objects are deleted (routes
first), the stable Deployment gets its replicas back, and the deploy fails with the verdict. After the last step the
promotion: split ``replicas``: the stable Deployment takes the new version at its current size, then grows while the
canary shrinks, one pod each way, and the canary goes; the route splits: every request to the model's Service, the
stable Deployment's rolling update, then the route, the version objects and the canary go.

Interrupted (SIGINT/SIGTERM) during a step, the canary stays at that step; a later deploy of the same version
continues from the step the cluster shows (:func:`..canary.state.resume_step`), one of another version removes it
first. The engine's Lease makes this the only run of the model meanwhile.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.error import HTTPError

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import ensure, manifests, runtimes, smoke
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary import (
    analysis,
    progress,
    prometheus,
    state,
    traffic,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import ExpositionError, parse
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.plan import ISTIO_VERSIONS
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import Canary, canary_of, format_seconds
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import DeployError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import K8sAccessError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout import RolloutError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import (
    DEFAULTS as ROLLOUT_DEFAULTS,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import Rollout
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.smoke_check import ServiceProxy

if TYPE_CHECKING:  # the engine imports this module
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.engine import Engine

#: Seconds one scrape of a pod's /metrics may take.
SCRAPE_TIMEOUT = 10


class Aborted(DeployError):
    """The canary was aborted: its objects are gone, the stable version serves with its replicas."""


class Progression:
    """One canary of one model: its steps, then the promotion or the abort. ``sleep`` and ``clock`` are the
    waiting (tests replace them); ``proxy(timeout)`` builds the sender of the scrapes."""

    def __init__(self, engine: "Engine", found: Dict[str, Any], field_manager: str) -> None:
        self.engine = engine
        self.client = engine.client
        self.found = found
        self.field_manager = field_manager
        self.name: str = found["name"]
        self.namespace: str = found["namespace"]
        self.plan: Dict[str, Any] = found["canary_plan"]
        canary = canary_of(found["model"])
        if canary is None:  # called only for an entry with strategy.canary
            raise AssertionError("the entry has no strategy.canary")
        self.canary: Canary = canary
        self.split: str = self.plan["split"]
        #: The Istio networking version the cluster serves (v1, else v1beta1): the engine found it for the plan.
        self.istio_version: str = found.get("canary_istio_version") or ISTIO_VERSIONS[0]
        self.replicas = int(self.plan["replicas"])
        self.deployment = next(o for o in found["objects"] if o["kind"] == "Deployment")
        self.service = next(o for o in found["objects"] if o["kind"] == "Service")
        record = runtimes.get(engine.prefix)
        if record.request_metrics is None:  # the catalog check refuses a canary for such a runtime
            raise DeployError("runtime {0} exposes no request metrics a canary can be judged by".format(record.name))
        self.metrics = record.request_metrics
        metrics_port = found["server"]["metrics"]["port"]
        self.metrics_path = found["server"]["metrics"]["path"]
        self.metrics_port = int([p["port"] for p in found["server"]["ports"] if p["name"] == metrics_port][0])
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic
        self.proxy: Callable[[int], Any] = lambda timeout: ServiceProxy(self.client.api_client, timeout)
        #: With analysis.metrics prometheus: the Prometheus the figures are read from (None: the pods themselves).
        url = str(engine.args.get("canary_prometheus_url") or "")
        self.prometheus: Optional[Any] = (PrometheusApi(url, SCRAPE_TIMEOUT)
                                          if canary.metrics == "prometheus" and url else None)
        self.stable_hash = ""
        self._simulated: Dict[str, bool] = {}
        self.checks: List[Dict[str, Any]] = []
        #: The pods the last scrape could not read, with why.
        self.unread: List[str] = []

    # ---- the whole progression ----

    def run(self) -> Dict[str, Any]:
        """Steps, then the promotion; returns the stable Deployment's rollout (for the verify steps)."""
        first = self._prepare()
        steps = self.plan["steps"]
        for step in steps[first - 1:]:
            self._step(step, last=step is steps[-1])
        return self._promote(steps[-1])

    def by_hand(self, action: str) -> Dict[str, Any]:
        """``canary_action``: promote the canary that runs now (the steps left are skipped), or abort it."""
        try:
            live = self.client.get("Deployment", traffic.canary_name(self.name), self.namespace, api_version="apps/v1")
            stable = self.client.get("Deployment", self.name, self.namespace, api_version="apps/v1") or {}
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "reading the canary") from exc
        if live is None:
            raise DeployError("canary_action {0}: no canary of {1} runs in namespace {2} (no Deployment {3}). Nothing "
                              "was applied.".format(action, self.name, self.namespace, traffic.canary_name(self.name)))
        if action == "abort":
            with self.engine.step("Canary | Abort (canary_action abort)") as record:
                record["changed"] = True
                removed, rollout = self._restore_stable()
                record["msg"] = "removed {0}; {1}".format(", ".join(removed), rollout.get("msg") or "")
                if not rollout.get("complete"):
                    record["failed"] = True
                    raise DeployError("The canary of {0} was removed, but the stable Deployment did not get back to {1} "
                                      "available pod(s): {2}".format(self.name, self.replicas, rollout.get("msg")))
            return rollout
        if not traffic.canary_of_version(live, self.deployment):
            raise DeployError("canary_action promote: the canary of {0} that runs is not of the version the catalog "
                              "gives now (its template differs): deploy to replace it, or abort it with "
                              "canary_action abort. Nothing was applied.".format(self.name))
        counts = {"stable_replicas": int((stable.get("spec") or {}).get("replicas") or 0),
                  "canary_replicas": int((live.get("spec") or {}).get("replicas") or 0)}
        self._apply_configmaps()
        return self._promote(counts)

    def _prepare(self) -> int:
        """The stable pods' hash, the leftover canary (continued or removed), the new version's ConfigMaps; the step
        to start from."""
        with self.engine.step("Canary | Start") as record:
            source = self._check_prometheus()
            try:
                stable = self.client.get("Deployment", self.name, self.namespace, api_version="apps/v1")
                if stable is None:
                    raise DeployError("Deployment {0} disappeared from namespace {1} before its canary started: deploy "
                                      "again (a first deploy is a plain one).".format(self.name, self.namespace))
                self.stable_hash = state.stable_hash(stable, self.engine.replicasets(stable, self.namespace)) or ""
                if not self.stable_hash:
                    raise DeployError("Deployment {0} in namespace {1} has no ReplicaSet yet, so its pods cannot be "
                                      "told from the canary's: wait for it to roll out, then deploy again.".format(
                                          self.name, self.namespace))
                live = self.client.get("Deployment", traffic.canary_name(self.name), self.namespace,
                                       api_version="apps/v1")
            except K8sAccessError as exc:
                raise self.engine.unreachable(exc, "reading the stable version") from exc
            first, said = 1, []
            if live is not None and not traffic.canary_of_version(live, self.deployment):
                self._remove_canary()
                said.append("removed the canary of another version that a run left")
            elif live is not None:
                found_step = state.resume_step(self.plan, live, self._route_weight())
                if found_step is None:
                    self._abort("the canary Deployment {0} a run left matches no step of this plan ({1} pods): "
                                "changed by hand or by another catalog".format(
                                    traffic.canary_name(self.name), (live.get("spec") or {}).get("replicas")),
                                record)
                first = max(1, int(found_step or 1))
                said.append("continues from step {0}, where an interrupted run left the canary".format(first))
            record["changed"] = self._apply_configmaps() or bool(said)
            record["msg"] = "; ".join(said + ["stable pods: pod-template-hash {0}; {1}".format(
                self.stable_hash, self.plan["why"])] + ([source] if source else []))
        return first

    def _check_prometheus(self) -> str:
        """With analysis.metrics prometheus: that a Prometheus answers a query at the URL, before anything of the
        canary is applied (otherwise every step would run blind, then abort for want of figures); what the step
        lines read from."""
        if self.prometheus is None:
            return ""
        status, body, error = self.prometheus.get(prometheus.query_path(prometheus.PROBE_QUERY))
        try:
            if status != 200:
                raise prometheus.PrometheusError(error or "HTTP {0}: {1}".format(status, body[:200].strip()))
            prometheus.check_probe(body)
        except prometheus.PrometheusError as exc:
            raise DeployError("strategy.canary of {0}: analysis.metrics prometheus: no Prometheus answers a query at {1} "
                              "(ai_serving_canary_prometheus_url): {2}. Set the URL of the Prometheus' HTTP API as the "
                              "controller reaches it (without /api/v1), or analysis.metrics: pods. The canary was not "
                              "started: nothing of it was applied.".format(self.name, self.prometheus.url, exc)) from exc
        return "figures from the Prometheus at {0}".format(self.prometheus.url)

    def _route_weight(self) -> Optional[int]:
        """The canary's weight in the live route (split gateway or istio), or None (none, or split replicas)."""
        if self.split == "replicas":
            return None
        api_version, kind, name = traffic.removal_order(self.name, self.split, self.istio_version)[0]
        try:
            route = self.client.get_if_served(kind, name, self.namespace, api_version)[1]
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "reading the canary's route") from exc
        return state.route_weight(route, self.name)

    def _apply_configmaps(self) -> bool:
        """The new version's ConfigMaps (named by their content, so the stable pods keep theirs)."""
        changed = False
        known = self.found["snapshot"].get("configmaps") or []
        try:
            for obj in self.found["objects"]:
                if obj["kind"] != "ConfigMap":
                    continue
                if manifests.is_create_only(obj) and obj["metadata"]["name"] in known:
                    continue
                self.client.apply(obj, self.field_manager)
                changed = changed or obj["metadata"]["name"] not in known
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "applying the canary's ConfigMaps", applied=True) from exc
        return changed

    # ---- a step ----

    def _step(self, step: Mapping[str, Any], last: bool) -> None:
        number, weight = int(step["step"]), int(step["weight"])
        pause = float(step["pause_seconds"])
        title = "Canary | Step {0}: {1}% for {2} ({3} canary, {4} stable pod(s))".format(
            number, weight, format_seconds(pause), step["canary_replicas"], step["stable_replicas"])
        with self.engine.step(title) as record:
            record["changed"] = True
            self._scale_to(step, record)
            started = self.clock()
            before = self._scrape()
            elapsed = 0.0
            while True:
                self.sleep(progress.next_check(elapsed, pause, self.canary.interval_seconds))
                elapsed = self.clock() - started
                now = self._scrape()
                verdict = self._verdict(before, now)
                decision = progress.decide(verdict, elapsed, pause, last)
                line = verdict.line(number, weight)
                self.checks.append(dict(verdict.to_dict(), step=number, weight=weight, seconds=round(elapsed, 1),
                                        action=decision.action))
                said = " -> " + decision.reason if decision.reason else ""
                self.engine.notify("    {0:.0f}s: {1}{2}".format(elapsed, line, said))
                if decision.action == progress.WAIT:
                    continue
                record["msg"] = line
                if decision.action == progress.ABORT:
                    self._abort(decision.reason, record, line)
                return

    def _scale_to(self, step: Mapping[str, Any], record: Dict[str, Any]) -> None:
        """The canary at the step's pods (applied, waited for), then the stable version at its share (split
        replicas) or the step's route (gateway, istio: the stable version keeps its pods)."""
        objects = traffic.step_objects(self.split, self.deployment, self.service, int(step["weight"]),
                                       int(step["canary_replicas"]), self.stable_hash, self.canary.header,
                                       self.canary.gateway, self.istio_version)
        try:
            self.client.apply(objects[0], self.field_manager)
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "applying the canary", applied=True) from exc
        rollout = self._wait(traffic.canary_name(self.name))
        if not rollout.get("complete"):
            self._abort("the canary did not roll out: {0}".format(rollout.get("msg")), record)
        if self.split == "replicas":
            self._scale_stable(int(step["stable_replicas"]))
            return
        try:
            # The version Services (or subsets) before the route that names them.
            for obj in objects[1:]:
                self.client.apply(obj, self.field_manager)
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "applying the canary's route", applied=True) from exc

    def _scale_stable(self, replicas: int) -> None:
        try:
            self.client.scale(self.name, self.namespace, replicas, self.field_manager)
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "scaling the stable version", applied=True) from exc

    def _wait(self, name: str) -> Dict[str, Any]:
        params = dict(ROLLOUT_DEFAULTS, namespace=self.namespace, name=name,
                      timeout=int(self.engine.args["rollout_timeout"]),
                      fail_fast=int(self.engine.args["rollout_fail_fast"]))
        try:
            result = Rollout(params, self.client).run()
        except RolloutError as exc:
            return {"complete": False, "msg": str(exc)}
        except K8sAccessError as exc:
            if exc.unreachable:
                raise self.engine.unreachable(exc, "waiting for Deployment " + name, applied=True) from exc
            return {"complete": False, "msg": str(exc)}
        result.pop("failed", None)
        return result

    # ---- the analysis ----

    def _scrape(self) -> Dict[str, Dict[str, analysis.Counts]]:
        """Each version's pods' figures now (pod -> counts); pods on simulated nodes and pods that did not answer
        are left out (``self.unread`` says which)."""
        selector = ",".join("{0}={1}".format(k, v) for k, v in sorted(manifests.selector(self.found["model"]).items()))
        try:
            pods = self.client.list("Pod", "v1", self.namespace, label_selector=selector)
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "listing the model's pods", applied=True) from exc
        nodes = {str((p.get("metadata") or {}).get("name")): str((p.get("spec") or {}).get("nodeName") or "")
                 for p in pods}
        figures: Dict[str, Dict[str, analysis.Counts]] = {}
        self.unread = []
        sender = self.proxy(SCRAPE_TIMEOUT)
        for track, names in state.version_pods(pods, self.stable_hash).items():
            figures[track] = {}
            if self.prometheus is not None:
                figures[track] = self._from_prometheus(names)
                continue
            for pod in names:
                if self._on_simulated_node(nodes.get(pod, "")):
                    self.unread.append("{0} (simulated node)".format(pod))
                    continue
                status, body, error = sender.send(
                    ensure.pod_proxy_path(self.namespace, pod, self.metrics_port, self.metrics_path), "GET", None)
                if status != 200:
                    self.unread.append("{0} ({1})".format(pod, error or "HTTP {0}".format(status)))
                    continue
                try:
                    figures[track][pod] = analysis.read_counts(parse(body), self.metrics)
                except ExpositionError as exc:
                    self.unread.append("{0} ({1})".format(pod, exc))
        return figures

    def _from_prometheus(self, pods: List[str]) -> Dict[str, analysis.Counts]:
        """The pods' figures as the Prometheus has them now (one instant query); pods it has no series of yet (not
        scraped since they started) are left out, named in ``self.unread``."""
        if not pods or self.prometheus is None:
            return {}
        status, body, error = self.prometheus.get(
            prometheus.query_path(prometheus.series_query(self.metrics, self.namespace, pods)))
        where = "Prometheus at {0}".format(self.prometheus.url)
        if status != 200:
            self.unread.append("{0} ({1})".format(where, error or "HTTP {0}: {1}".format(status, body[:200])))
            return {}
        try:
            by_pod = prometheus.samples_by_pod(body)
        except prometheus.PrometheusError as exc:
            self.unread.append("{0} ({1})".format(where, exc))
            return {}
        figures = {}
        for pod in pods:
            if pod in by_pod:
                figures[pod] = analysis.read_counts(by_pod[pod], self.metrics)
            else:
                self.unread.append("{0} (no series in the Prometheus yet)".format(pod))
        return figures

    def _on_simulated_node(self, node: str) -> bool:
        if not node:
            return False
        if node not in self._simulated:
            try:
                found = self.client.get("Node", node)
            except K8sAccessError:
                found = None
            self._simulated[node] = found is not None and smoke.is_simulated(found)
        return self._simulated[node]

    def _verdict(self, before: Mapping[str, Mapping[str, analysis.Counts]],
                 now: Mapping[str, Mapping[str, analysis.Counts]]) -> analysis.Verdict:
        canary = analysis.version_stats(before.get(traffic.CANARY) or {}, now.get(traffic.CANARY) or {})
        stable = analysis.version_stats(before.get(traffic.STABLE) or {}, now.get(traffic.STABLE) or {})
        verdict = analysis.judge(canary, stable, self.canary.bounds)
        if self.prometheus is not None:  # every line says where its figures come from
            verdict.notes.append("figures from the Prometheus at {0}".format(self.prometheus.url))
        if self.unread:
            verdict.notes.append("metrics not read: " + ", ".join(sorted(self.unread)))
        return verdict

    # ---- abort and promote ----

    def _remove_canary(self) -> List[str]:
        removed = []
        try:
            for api_version, kind, name in traffic.removal_order(self.name, self.split, self.istio_version):
                if self.client.delete(api_version, kind, name, self.namespace):
                    removed.append("{0}/{1}".format(kind, name))
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "deleting the canary's objects", applied=True) from exc
        return removed

    def _restore_stable(self) -> Tuple[List[str], Dict[str, Any]]:
        """Delete the canary's objects, give the stable version its replicas back and wait for it: what was removed,
        and the stable rollout's result. A second signal does not cut this short (an abort owes it)."""
        self.engine.shielded = True
        try:
            removed = self._remove_canary()
            if self.split == "replicas":  # the route splits never scale the stable version
                self._scale_stable(self.replicas)
            return removed, self._wait(self.name)
        finally:
            self.engine.shielded = False

    def _abort(self, reason: str, record: Dict[str, Any], line: str = "") -> None:
        """Delete the canary (its requests go back to the stable pods at once), give the stable version its replicas
        back and wait for them, then fail with ``reason``."""
        removed, rollout = self._restore_stable()
        record["failed"] = True
        record["msg"] = (line + "; " if line else "") + "aborted: " + reason
        restored = ("the stable version is back at {0} available pod(s)".format(self.replicas)
                    if rollout.get("complete") else "the stable version was scaled back to {0} pod(s) but is not "
                    "available yet: {1}".format(self.replicas, rollout.get("msg")))
        raise Aborted("The canary of {n} was aborted at {at}: {why}. {gone}; {restored}; the new version was not "
                      "recorded as the last good one. Fix the version, then deploy again.".format(
                          n=self.name, at=record["name"].split(": ")[0].replace("Canary | ", "").lower(), why=reason,
                          gone="Removed " + ", ".join(removed) if removed else "No canary object was left",
                          restored=restored), canary_checks=self.checks)

    def _promote(self, step: Mapping[str, Any]) -> Dict[str, Any]:
        """The stable Deployment takes the new version at its current size, then grows to the replica count while
        the canary shrinks, one pod each way; then the canary goes. The route splits: :meth:`_promote_routed`."""
        if self.split != "replicas":
            return self._promote_routed(int(step["canary_replicas"]))
        stable, canary = int(step["stable_replicas"]), int(step["canary_replicas"])
        title = "Canary | Promote: the stable Deployment takes the new version at {0} pod(s), then grows to {1} while the " \
            "canary's {2} pod(s) go".format(stable, self.replicas, canary)
        with self.engine.step(title) as record:
            record["changed"] = True
            objects = copy.deepcopy(self.found["objects"])
            for obj in objects:
                if obj["kind"] == "Deployment":
                    obj["spec"]["replicas"] = stable
            rollout = self._apply_promoted(objects, record)
            for stable_pods, canary_pods in progress.promotion_moves(stable, canary, self.replicas):
                if stable_pods != stable:
                    stable = stable_pods
                    self._scale_stable(stable)
                    rollout = self._wait(self.name)
                    if not rollout.get("complete"):
                        self._failed_promotion(rollout.get("msg") or "the rollout failed", record)
                elif canary_pods > 0:
                    try:
                        self.client.scale(traffic.canary_name(self.name), self.namespace, canary_pods,
                                          self.field_manager)
                    except K8sAccessError as exc:
                        raise self.engine.unreachable(exc, "scaling the canary down", applied=True) from exc
            try:
                # The whole Deployment once more, at the replica count: the scale subresource's writes took
                # spec.replicas from the apply's ownership, which would make the next deploy's apply a change.
                self.client.apply(self.deployment, self.field_manager)
            except K8sAccessError as exc:
                raise self.engine.unreachable(exc, "applying the promoted Deployment", applied=True) from exc
            removed = self._remove_canary()
            record["msg"] = "{0} runs the new version with {1} pod(s); removed {2}".format(
                self.name, self.replicas, ", ".join(removed) or "nothing")
        return rollout

    def _apply_promoted(self, objects: List[Dict[str, Any]], record: Dict[str, Any]) -> Dict[str, Any]:
        """The model's objects as promoted applied, what it no longer has removed, the stable rollout waited for."""
        promoted = dict(self.found, objects=objects)
        self.engine.apply_all(promoted, self.field_manager)
        self.found["changed"] = promoted.get("changed")
        self._remove_absent()
        rollout = self._wait(self.name)
        if not rollout.get("complete"):
            self._failed_promotion(rollout.get("msg") or "the rollout failed", record)
        return rollout

    def _promote_routed(self, canary: int) -> Dict[str, Any]:
        """Split gateway or istio: every request to the model's Service (both versions' pods: the stable Service and
        subset select the old pod-template-hash, which the rolling update replaces), the stable Deployment's own
        rolling update to the new version at the replica count, then the route, the version objects and the canary."""
        title = "Canary | Promote: every request to the model's Service, the stable Deployment takes the new version " \
            "({0} pod(s)), then the route and the canary's {1} pod(s) go".format(self.replicas, canary)
        with self.engine.step(title) as record:
            record["changed"] = True
            try:
                self.client.apply(traffic.promotion_route(self.split, self.service, self.canary.gateway,
                                                          self.istio_version), self.field_manager)
            except K8sAccessError as exc:
                raise self.engine.unreachable(exc, "pointing the route at the model's Service", applied=True) from exc
            rollout = self._apply_promoted(copy.deepcopy(self.found["objects"]), record)
            removed = self._remove_canary()
            record["msg"] = "{0} runs the new version with {1} pod(s); removed {2}".format(
                self.name, self.replicas, ", ".join(removed) or "nothing")
        return rollout

    def _remove_absent(self) -> None:
        """What the model no longer has (an HPA, a PDB switched off...); the canary's own objects go at the end."""
        canary = {(kind, name) for _api, kind, name in traffic.removal_order(self.name, "gateway") +
                  traffic.removal_order(self.name, "istio")}
        try:
            for item in self.found.get("absent") or []:
                if (item["kind"], item["name"]) not in canary:
                    self.client.delete(item["api_version"], item["kind"], item["name"], self.namespace)
        except K8sAccessError as exc:
            raise self.engine.unreachable(exc, "removing what the model no longer has", applied=True) from exc

    def _failed_promotion(self, failure: str, record: Dict[str, Any]) -> None:
        """The stable Deployment did not take the new version: the canary goes, the last good version comes back."""
        record["failed"] = True
        record["msg"] = "the stable Deployment did not roll out: " + failure
        self.engine.shielded = True
        try:
            self._remove_canary()
        finally:
            self.engine.shielded = False
        self.engine.roll_back(self.found, "The promotion of the canary of {0} failed: {1}".format(self.name, failure),
                              self.field_manager, replicas=self.replicas)


def leftovers(client: Any, name: str, namespace: str) -> List[Dict[str, str]]:
    """The objects a canary left (a run interrupted, or a canary taken out of the catalog), in the order they are
    removed: looked for only when the canary Deployment is there (it is always deleted last)."""
    live = client.get("Deployment", traffic.canary_name(name), namespace, api_version="apps/v1")
    if live is None or ((live.get("metadata") or {}).get("labels") or {}).get(traffic.TRACK_LABEL) != traffic.CANARY:
        return []
    found: List[Dict[str, str]] = []
    candidates = traffic.removal_order(name, "gateway")[:-1]
    for version in ISTIO_VERSIONS:  # a cluster may serve Istio's v1beta1 only
        candidates += traffic.removal_order(name, "istio", version)[:-1]
    for api_version, kind, obj_name in candidates:
        if any(item["kind"] == kind and item["name"] == obj_name for item in found):
            continue
        if kind == "Service":
            obj = client.get(kind, obj_name, namespace, api_version=api_version)
        else:
            obj = client.get_if_served(kind, obj_name, namespace, api_version)[1]
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        if obj is not None and labels.get("app.kubernetes.io/managed-by") == manifests.MANAGED_BY:
            found.append({"api_version": api_version, "kind": kind, "name": obj_name})
    return found + [{"api_version": "apps/v1", "kind": "Deployment", "name": traffic.canary_name(name)}]


def check_split(split: str, metrics: str = "pods", prometheus_url: str = "") -> Optional[str]:
    """Why a real run cannot progress with ``split`` and ``analysis.metrics`` (``prometheus`` needs the inventory's
    URL), or None: a canary is never run otherwise than the catalog says."""
    if split not in ("replicas", "gateway", "istio"):
        return "split {0}: expected replicas, gateway or istio. Nothing was applied.".format(split)
    if metrics == "prometheus" and not prometheus_url:
        return ("analysis.metrics prometheus needs the URL of the Prometheus to query: set "
                "ai_serving_canary_prometheus_url in the inventory (or -e), for example "
                "http://prometheus.monitoring:9090, or set strategy.canary.analysis.metrics: pods. Nothing was applied.")
    if metrics not in ("pods", "prometheus"):
        return "analysis.metrics {0}: expected pods or prometheus. Nothing was applied.".format(metrics)
    return None


class PrometheusApi:
    """GETs of the HTTP API of the Prometheus at ``url`` (``ai_serving_canary_prometheus_url``), from the controller."""

    def __init__(self, url: str, timeout: int) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str) -> Tuple[Optional[int], str, str]:
        """(status, body text, error): status None when no HTTP answer came back."""
        # Imported here: ansible.module_utils.urls loads cryptography, which a deploy without this canary never needs.
        from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel

        try:
            response = open_url(self.url + path, method="GET", timeout=self.timeout,
                                headers={"Accept": "application/json"})
            return int(response.getcode()), response.read().decode("utf-8", "replace"), ""
        except HTTPError as exc:
            return int(exc.code), (exc.read() or b"").decode("utf-8", "replace"), ""
        except Exception as exc:  # no answer: DNS, refused, timeout, TLS
            return None, "", "{0}: {1}".format(type(exc).__name__, exc)
