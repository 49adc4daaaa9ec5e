# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's steps in order, in one process: preflight, then apply, wait and roll back.

:class:`Engine` runs each step timed (``steps``: name, seconds, changed, msg) and
reports it as it ends. :meth:`Engine.preflight` returns the plan (what the
objects are made of, the snapshot of what exists, the objects to apply and to
remove); :meth:`Engine.apply` takes it. A failure raises :class:`DeployError`
with the message the role's YAML steps gave.

Safety (issue 18): a run holds the model's Lease (:mod:`deploy_lease`) from
before the cluster is read to its end, renewing it from a thread; the apply
phase first checks it still holds it. A rollout that completed is recorded as
the last known good version (:mod:`last_good`), and every rollback targets
that record, never "what exists now"; a run that finds the Deployment in the
middle of a failed or interrupted rollout puts the last good version back
first. SIGINT/SIGTERM (:class:`Interrupted`, raised by the action's handler)
during the apply or the wait makes the run roll back what it owes, bounded.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import (
    deploy_lease,
    ensure,
    knobs,
    last_good,
    manifests,
    runtimes,
    smoke,
    smoke_check,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import (
    HAS_JSONSCHEMA,
    CatalogError,
    check_catalog,
    resolve_model,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.plan import (
    GATEWAY_KINDS,
    ISTIO_KINDS,
    ISTIO_VERSIONS,
    CanaryPlanError,
    istio_api_version,
    plan_canary,
    resolve_split,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import canary_of
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.traffic import (
    canary_name,
    canary_of_version,
    name_problem,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import checks, plan, progression
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.kube import Conflict, DeployClient
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import DeployError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit import GpuFitError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.cluster import (
    DEFAULTS as GPU_CHECK_DEFAULTS,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.cluster import CapacityCheck
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import K8sAccessError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout import (
    RolloutError,
    revision_of,
    same_template,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import (
    DEFAULTS as ROLLOUT_DEFAULTS,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import Rollout
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.smoke_check import ServiceProxy
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.strategy import (
    DEFAULT_MAX_SURGE,
    DEFAULT_MAX_UNAVAILABLE,
    ROLLING_UPDATE,
    resolve_fenceposts,
)

MANAGED_BY = "creativeflow.ai_serving"
#: Longest wait for the rollback a run owes after SIGINT/SIGTERM (the operator wants the prompt back).
INTERRUPT_ROLLBACK_S = 120

#: How long the verify step waits for the Service's endpoints after a completed rollout, and how often it looks.
ENDPOINTS_TIMEOUT = 30.0
ENDPOINTS_INTERVAL = 0.5

#: Shared knobs are named ai_serving_<knob> in messages; runtime knobs keep the runtime's prefix.
KNOB_PREFIX = knobs.PREFIX.rstrip("_")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised by the action's handler in the engine's thread.

    A BaseException, like KeyboardInterrupt, so the client's ``except Exception`` never turns it into an API error.
    """

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


class Engine:
    """One deploy of one model. ``connect`` builds the client (once, on first use)."""

    def __init__(self, args: Mapping[str, Any], connect: Callable[[], DeployClient], check_mode: bool = False,
                 diff: bool = False, base_dir: str = ".", report: Optional[Callable[[Dict[str, Any]], None]] = None
                 ) -> None:
        self.args = args
        self.prefix: str = args["runtime"]
        self.check_mode = check_mode
        self.diff_mode = diff
        self.base_dir = base_dir
        self._connect = connect
        self._client: Optional[DeployClient] = None
        self._report = report or (lambda step: None)
        #: A line for the operator outside the step lines (waiting for the Lease).
        self.notify: Callable[[str], None] = lambda line: None
        self.steps: List[Dict[str, Any]] = []
        self.warnings: List[str] = []
        self.diffs: List[Dict[str, Any]] = []
        # The Lease: where (namespace, model), who we are, whether we hold it, the renewal thread.
        self._lease_at: Optional[Dict[str, str]] = None
        self.identity = ""
        self.run_id = ""
        self.holding = False
        self._renewer: Optional[threading.Thread] = None
        self._stop_renewing = threading.Event()
        self.lease_problem = ""
        # Interrupts: the first signal's name; while shielded (a rollback owed) signals only get noted.
        self.interrupted: Optional[str] = None
        self.signals: List[str] = []
        self.shielded = False
        self.current_step = ""
        #: Every check of a canary's steps, when they ran (the action returns them).
        self.canary_checks: List[Dict[str, Any]] = []

    # ---- plumbing ----

    @property
    def client(self) -> DeployClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    @contextmanager
    def step(self, name: str) -> Iterator[Dict[str, Any]]:
        """Time one step; the body may set ``changed`` and ``msg`` on the dict it gets."""
        record: Dict[str, Any] = {"name": name, "seconds": 0.0, "changed": False, "msg": ""}
        started = time.monotonic()
        self.current_step = name
        try:
            yield record
        except Interrupted as exc:
            record["failed"] = True
            record["msg"] = (record["msg"] + "; " if record["msg"] else "") + "interrupted by " + exc.signame
            raise
        except Exception:
            record["failed"] = True
            raise
        finally:
            record["seconds"] = round(time.monotonic() - started, 3)
            self.steps.append(record)
            self._report(record)

    def _unreachable(self, exc: K8sAccessError, doing: str, applied: bool = False) -> DeployError:
        return DeployError(plan.unreachable_message(self.args.get("kubeconfig"), self.args.get("context"),
                                                    str(exc), doing, applied))

    # ---- preflight ----

    def preflight(self) -> Dict[str, Any]:
        with self.step("Preflight | Inputs"):
            found = self._inputs()
        if not self.check_mode:
            with self.step("Lock | Take Lease {0}".format(deploy_lease.lease_name(found["name"]))) as record:
                record["msg"] = self.lock(found)
        with self.step("Preflight | Cluster") as record:
            self._cluster(found)
            found["last_good"] = self._last_good_state(found)
            record["msg"] = "namespace {0}: {1}".format(
                found["namespace"], "Deployment {0} at revision {1}; {2}".format(
                    found["name"], plan.snapshot_revision(found["snapshot"]), found["last_good"]["msg"])
                if found["snapshot"]["deployment"] is not None else "first deploy of {0}".format(found["name"]))
        found["canary_plan"] = None
        if canary_of(found["model"]) is not None:
            with self.step("Preflight | Canary plan") as record:
                record["msg"] = self._canary(found)
        with self.step("Preflight | GPU capacity") as record:
            record["msg"] = self._gpu(found)
        with self.step("Render") as record:
            self._render(found)
            record["msg"] = ", ".join("{0}/{1}".format(o["kind"], o["metadata"]["name"]) for o in found["objects"])
        return found

    def _inputs(self) -> Dict[str, Any]:
        args = self.args
        entry = args.get("model") or {}
        settings_values = dict(args.get("settings") or {})
        checks.check_entry(entry, self.prefix)
        if not HAS_JSONSCHEMA:
            raise DeployError("model_deploy needs the Python library jsonschema on the controller: pip install "
                              "jsonschema")
        # The same validation and defaults as the catalog's, for entries handed to the role directly too.
        name = entry["name"]
        try:
            catalog = {name: {k: v for k, v in entry.items() if k != "name"}}
            check_catalog(catalog)
            model = resolve_model(catalog, name)
        except CatalogError as exc:
            raise DeployError(str(exc), problems=exc.problems) from exc
        checks.settings_checks(settings_values, KNOB_PREFIX)
        checks.check_timing(KNOB_PREFIX, int(args["rollout_timeout"]), int(args["rollout_fail_fast"]),
                            int(settings_values.get("progress_deadline_seconds", 600)),
                            int(settings_values.get("pre_stop_sleep_seconds", 10)),
                            int(settings_values.get("termination_grace_period_seconds", 60)))
        try:
            settings = manifests.settings_from(settings_values)
            spec = runtimes.server_spec(self.prefix, model, args.get("knobs") or {})
            server = manifests.server_view(spec, model, settings)
        except (runtimes.UnknownRuntimeError, KeyError, TypeError, ValueError) as err:
            raise DeployError("model_deploy could not work out {0}'s server: {1}".format(name, err)) from err
        checks.check_run_as_user(server["run_as_user"], self.prefix)
        checks.check_fetch(model, settings.model_fetch_images, KNOB_PREFIX)
        build = checks.wants_build(model, args.get("image_build", True))
        if build:
            checks.check_build_context(model, self.base_dir, KNOB_PREFIX, server["image"])
        node_selector, tolerations = manifests.scheduling(model)
        return {"name": name, "namespace": settings.namespace, "model": model, "server": server,
                "image": server["image"], "build": build, "node_selector": node_selector,
                "tolerations": tolerations}

    def _cluster(self, found: Dict[str, Any]) -> None:
        name, namespace, model = found["name"], found["namespace"], found["model"]
        refs = plan.references(model)
        try:
            namespace_obj = self.client.get("Namespace", namespace)
            snapshot: Dict[str, Any] = {}
            for key, (api_version, kind) in plan.SNAPSHOT_KINDS.items():
                if key == "service_monitor":
                    served, obj = self.client.get_if_served(kind, name, namespace, api_version)
                    snapshot["service_monitor_api"] = served
                else:
                    obj = self.client.get(kind, name, namespace, api_version=api_version)
                snapshot[key] = obj
            model_selector = "creativeflow.ai/model-name={0},app.kubernetes.io/managed-by={1}".format(name, MANAGED_BY)
            configmaps = self.client.list("ConfigMap", "v1", namespace, label_selector=model_selector)
            extras: Dict[str, Any] = {}
            kinds = {o["kind"] for o in self._record_objects(found)}
            if runtimes.get(self.prefix).adds_objects:
                # What a catalog change switched off is found too (a claim is never removed that way: it holds data).
                kinds |= {kind for kind, _api in plan.EXTRA_KINDS if kind != "PersistentVolumeClaim"}
            for kind in sorted(kinds & dict(plan.EXTRA_KINDS).keys()):
                for obj in self.client.list(kind, dict(plan.EXTRA_KINDS)[kind], namespace,
                                            label_selector=model_selector):
                    extras[plan.extra_key(kind, (obj.get("metadata") or {}).get("name", ""))] = obj
            missing = [ref for ref in refs if self.client.get(ref["kind"], ref["name"], namespace) is None]
            # A canary a run left: removed by a plain deploy, continued by a canary of the same version.
            snapshot["canary_leftovers"] = progression.leftovers(self.client, name, namespace)
            node_port_range = self._node_port_range() if (model.get("service") or {}).get("node_ports") else None
        except K8sAccessError as exc:
            raise self._unreachable(exc, "") from exc
        snapshot["namespace"] = namespace_obj
        snapshot["extras"] = extras
        snapshot["configmaps"] = sorted((c.get("metadata") or {}).get("name") for c in configmaps)
        snapshot["configmap_versions"] = {(c.get("metadata") or {}).get("name"):
                                          (c.get("metadata") or {}).get("resourceVersion") for c in configmaps}
        problem = plan.namespace_problem(namespace_obj, namespace, KNOB_PREFIX)
        if problem:
            raise DeployError(problem)
        if node_port_range is not None:
            problem = checks.node_ports_outside(model, node_port_range)
            if problem:
                raise DeployError(problem)
        required = [ref for ref in missing if ref["required"]]
        if required:
            raise DeployError(plan.missing_references_message(name, namespace, required))
        pull = [ref["name"] for ref in missing if not ref["required"]]
        if pull:
            self.warnings.append(plan.pull_secrets_warning(name, namespace, pull))
        found["snapshot"] = snapshot
        found["replicas"] = manifests.replica_count(model, plan.current_replicas(snapshot))

    def _record_objects(self, found: Dict[str, Any]) -> List[Dict[str, Any]]:
        """The objects the record adds beside the server (built again here: the snapshot needs their kinds)."""
        try:
            settings = manifests.settings_from(dict(self.args.get("settings") or {}))
            spec = runtimes.server_spec(self.prefix, found["model"], self.args.get("knobs") or {})
            return manifests.pvc(spec, found["model"], settings) + manifests.extras(spec, found["model"], settings)
        except (runtimes.UnknownRuntimeError, KeyError, TypeError, ValueError) as err:
            raise DeployError("model_deploy could not build {0}'s objects: {1}".format(found["name"], err)) from err

    def _node_port_range(self) -> Optional[Any]:
        """The cluster's NodePort range, from the API server's --service-node-port-range where its pod shows it
        (kubeadm's static pod); the API server's default otherwise."""
        try:
            pods = self.client.list("Pod", "v1", "kube-system", label_selector="component=kube-apiserver")
        except K8sAccessError:
            pods = []  # not readable with these credentials: the default
        return checks.node_port_range(pods)

    def _canary(self, found: Dict[str, Any]) -> str:
        """The canary's plan on this cluster (``found["canary_plan"]``), as lines; :meth:`apply` runs it
        (:mod:`.progression`) when the new version changes the pods. Outside check mode a split whose steps this
        version does not run stops the deploy here, before anything is applied."""
        model, name, namespace = found["model"], found["name"], found["namespace"]
        canary = canary_of(model)
        if canary is None:  # called only for an entry with strategy.canary
            raise AssertionError("the entry has no strategy.canary")
        if found["snapshot"]["deployment"] is None:
            return "first deploy of {0}: no stable version to run a canary against, a plain deploy".format(name)
        served = set()
        try:
            # The split's kinds, asked for the model's own objects (a later run continues from them).
            for api_version, kind in GATEWAY_KINDS + tuple((v, k) for v in ISTIO_VERSIONS for k in ISTIO_KINDS):
                if self.client.get_if_served(kind, name, namespace, api_version)[0]:
                    served.add((api_version, kind))
        except K8sAccessError as exc:
            raise self._unreachable(exc, "") from exc
        strategy = model.get("strategy") or {}
        replicas = int(found["replicas"])
        try:
            split, why = resolve_split(canary.split, served)
            surge = resolve_fenceposts(strategy.get("type", ROLLING_UPDATE), strategy.get("max_surge", DEFAULT_MAX_SURGE),
                                       strategy.get("max_unavailable", DEFAULT_MAX_UNAVAILABLE), replicas)[0]
            canary_plan = plan_canary(canary, replicas, split, why, surge)
            problem = name_problem(name, split)
            if problem:
                raise CanaryPlanError(problem + ". Nothing was applied.")
        except CanaryPlanError as exc:
            raise DeployError("strategy.canary of {0}: {1}".format(name, exc)) from exc
        found["canary_plan"] = canary_plan.to_dict()
        found["canary_istio_version"] = istio_api_version(served) if split == "istio" else None
        problem = progression.check_split(split, canary.metrics, self.args.get("canary_prometheus_url") or "")
        if not self.check_mode and problem:
            raise DeployError("strategy.canary of {0}: {1}".format(name, problem), canary_plan=found["canary_plan"])
        if self.check_mode:
            # The apply steps below still dry-run the model's objects as a rolling update would change them.
            self.warnings.append("--check of {0}: the plan is the 'Preflight | Canary plan' step; the dry run and diff "
                                 "that follow show a rolling update's changes, while the canary leaves Deployment "
                                 "{0}'s template as it is until the promotion.".format(name))
        return "\n    ".join(canary_plan.lines() + (["note: " + problem] if problem else []))

    def _gpu(self, found: Dict[str, Any]) -> str:
        model, name, namespace = found["model"], found["name"], found["namespace"]
        gpu = model.get("gpu") or {}
        found["gpu_fit"] = None
        if not self.args.get("gpu_preflight", True):
            return "skipped ({0}_gpu_preflight is false)".format(KNOB_PREFIX)
        if int(gpu.get("count", 0)) <= 0 or int(found["replicas"]) <= 0:
            return "skipped (no GPU requested)"
        strategy = dict(model.get("strategy") or {})
        canary_plan = found.get("canary_plan")
        companions: List[str] = []
        if canary_plan:
            # The canary's pods run beside the stable ones: its peak must fit at once, as a surge of that many pods.
            strategy = {"type": ROLLING_UPDATE, "max_surge": int(canary_plan["extra_pods"]), "max_unavailable": 0}
            # A canary a run left is continued or replaced within that peak: its pods are the model's, not others.
            companions = plan.canary_companions(found["snapshot"])
        params = dict(GPU_CHECK_DEFAULTS, namespace=namespace, deployment=name, resource_name=gpu["resource"],
                      gpus_per_replica=int(gpu["count"]), replicas=int(found["replicas"]),
                      node_selector=found["node_selector"], tolerations=found["tolerations"],
                      strategy=strategy.get("type"), max_surge=strategy.get("max_surge"),
                      max_unavailable=strategy.get("max_unavailable"), companions=companions)
        try:
            result = CapacityCheck(params, self.client).run()
            if not result["fits"]:
                # The check's own message, then why no rollout order helps when no node is big enough.
                why = checks.one_node_message(result, int(gpu["count"]), gpu["resource"],
                                              found["server"].get("gpus_on_one_node", ""))
                raise GpuFitError(result["msg"] + ("; " + why if why else ""))
        except (GpuFitError, K8sAccessError) as exc:
            raise DeployError(
                "GPU preflight for {n} in namespace {ns}: {m}. Nothing was applied. (To deploy anyway, for example "
                "when a cluster autoscaler adds GPU nodes, set {p}_gpu_preflight=false.)".format(
                    n=name, ns=namespace, m=exc, p=KNOB_PREFIX)) from exc
        found["gpu_fit"] = {"max_replicas": result.get("max_replicas"), "msg": result.get("msg")}
        autoscaling = model.get("autoscaling") or {}
        fit_max = result.get("max_replicas")
        if autoscaling.get("enabled") and fit_max is not None and int(autoscaling.get("max_replicas", 1)) > fit_max:
            self.warnings.append(
                "autoscaling.max_replicas of {n} is {m}, but only {f} replicas fit the GPU quota and nodes now: the "
                "HorizontalPodAutoscaler will leave pods Pending above that.".format(
                    n=name, m=autoscaling.get("max_replicas"), f=fit_max))
        counted = "with the canary's {0} more pod(s) at its peak{1}: ".format(
            canary_plan["extra_pods"], " (the pods of {0}, which a run left, counted in it)".format(
                ", ".join(companions)) if companions else "") if canary_plan else ""
        return counted + str(result.get("msg") or "fits")

    def _render(self, found: Dict[str, Any]) -> None:
        args, model = self.args, found["model"]
        try:
            settings = manifests.settings_from(dict(args.get("settings") or {}))
            spec = runtimes.server_spec(self.prefix, model, args.get("knobs") or {})
            config_files = args.get("config_files") or {}
            config_name = manifests.configmap_name(model, config_files)
            objects = manifests.objects(spec, model, settings, config_files, int(found["replicas"]), config_name,
                                        bool(found["snapshot"].get("service_monitor_api")))
        except (runtimes.UnknownRuntimeError, KeyError, TypeError, ValueError) as err:
            raise DeployError("model_deploy could not build {0}'s objects: {1}".format(found["name"], err)) from err
        found["configmap_name"] = config_name
        found["objects"] = objects
        found["absent"] = plan.absent_objects(found["snapshot"], objects, found["name"])

    # ---- the Lease: one deploy of a model at a time ----

    def lock(self, found: Dict[str, Any]) -> str:
        """Take the model's Lease (waiting up to ``lock_wait`` s for another run), then renew it from a thread."""
        name, namespace = found["name"], found["namespace"]
        try:
            if self.client.get("Namespace", namespace) is None:
                return "not taken: namespace {0} does not exist (the next step says what to do)".format(namespace)
        except K8sAccessError as exc:
            raise self._unreachable(exc, "taking the deploy's Lease") from exc
        self.run_id = uuid.uuid4().hex[:12]
        self.identity = deploy_lease.identity(self.run_id, _user(), socket.gethostname(), os.getppid())
        self._lease_at = {"name": name, "namespace": namespace}
        msg = self._hold(renew_only=False)
        found["lock"] = {"identity": self.identity, "run": self.run_id, "namespace": namespace}
        self._start_renewing()
        return msg

    def recheck_lock(self, found: Dict[str, Any]) -> str:
        """In the apply phase: this run (the preflight's identity) still holds the Lease; renew it."""
        held = found.get("lock") or {}
        if not held.get("identity"):
            return "no Lease taken in the preflight"
        self.identity, self.run_id = held["identity"], held["run"]
        self._lease_at = {"name": found["name"], "namespace": held["namespace"]}
        msg = self._hold(renew_only=True)
        self._start_renewing()
        return msg

    def _hold(self, renew_only: bool) -> str:
        where = self._lease_at or {}
        name, namespace = where["name"], where["namespace"]
        lease = deploy_lease.lease_name(name)
        wait = max(0, int(self.args.get("lock_wait") or 0))
        started = time.monotonic()
        told = False
        try:
            while True:
                now = _dt.datetime.now(_dt.timezone.utc)
                current = self.client.get(deploy_lease.KIND, lease, namespace, api_version=deploy_lease.API_VERSION)
                decision = deploy_lease.decide(current, self.identity, now)
                if renew_only and decision.action != deploy_lease.RENEW:
                    holder = decision.holder.identity if decision.holder else "nobody (it was released or deleted)"
                    raise DeployError(
                        "This run no longer holds Lease {ns}/{lease} of {n}: {who} holds it now (this run's Lease "
                        "expired while it worked between its phases, e.g. during a long image build). Nothing of this "
                        "run was applied; run the deploy again.".format(ns=namespace, lease=lease, n=name, who=holder))
                if decision.action == deploy_lease.HELD:
                    waited = time.monotonic() - started
                    if waited < wait:
                        if not told:
                            told = True
                            self.notify("  waiting up to {0} s for Lease {1}/{2}, held by {3}".format(
                                wait, namespace, lease, decision.holder.identity if decision.holder else "?"))
                        time.sleep(min(2.0, wait - waited))
                        continue
                    raise DeployError(deploy_lease.held_message(name, namespace, decision, now,
                                                                waited if wait else 0))
                body = deploy_lease.lease_object(
                    lease, namespace, self.identity, now, decision, run="deploy of {0} by {1}".format(
                        name, self.identity), labels={"creativeflow.ai/model-name": name})
                try:
                    if decision.action == deploy_lease.CREATE:
                        self.client.create(body)
                    else:
                        self.client.replace(body)
                except Conflict:
                    continue  # another run wrote it between our read and write: read and decide again
                self.holding = True
                waited = time.monotonic() - started
                if decision.expired:
                    message = deploy_lease.takeover_message(name, namespace, decision)
                    self.warnings.append(message)
                    return message
                if decision.action == deploy_lease.RENEW:
                    return "held by this run ({0})".format(self.identity)
                return "taken by {0}{1}".format(self.identity, " after waiting {0:.0f} s".format(waited)
                                                if waited >= 1 else "")
        except K8sAccessError as exc:
            raise self._unreachable(exc, "taking the deploy's Lease") from exc

    def _start_renewing(self) -> None:
        if self._renewer is not None or not self.holding:
            return
        self._stop_renewing.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease-renewal", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        # A holder renews every third of the duration, so one missed renewal does not lose the Lease.
        while not self._stop_renewing.wait(deploy_lease.DEFAULT_DURATION_S / 3.0):
            try:
                self._hold(renew_only=True)
            except Exception as exc:  # noted; the apply phase's check and the release say it
                self.lease_problem = str(exc)

    def stop_renewing(self) -> None:
        self._stop_renewing.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
        self._renewer = None

    def release(self) -> str:
        """Give the Lease up (kept, without a holder). Never raises: a Lease left behind expires by itself."""
        self.stop_renewing()
        if not self.holding or not self._lease_at:
            return ""
        name, namespace = self._lease_at["name"], self._lease_at["namespace"]
        lease = deploy_lease.lease_name(name)
        client = self.client
        saved, client.retry_seconds = client.retry_seconds, min(client.retry_seconds, 10)
        try:
            current = client.get(deploy_lease.KIND, lease, namespace, api_version=deploy_lease.API_VERSION)
            holder = deploy_lease.holder_of(current)
            if current is not None and holder is not None and holder.identity == self.identity:
                client.replace(deploy_lease.released(current))
            self.holding = False
            return ""
        except (K8sAccessError, DeployError) as exc:
            message = ("Could not release Lease {0}/{1} ({2}): it expires {3} s after its last renewal, then the "
                       "next deploy of {4} takes it over.").format(namespace, lease, exc,
                                                                   deploy_lease.DEFAULT_DURATION_S, name)
            self.warnings.append(message)
            return message
        finally:
            client.retry_seconds = saved

    # ---- the last known good version ----

    def _replicasets(self, deployment: Mapping[str, Any], namespace: str) -> List[Dict[str, Any]]:
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join("{0}={1}".format(k, v) for k, v in sorted(labels.items())) or None
        return self.client.list("ReplicaSet", "apps/v1", namespace, label_selector=selector)

    def _last_good_state(self, found: Dict[str, Any]) -> Dict[str, Any]:
        """Where the Deployment stands against its recorded good version (for the repair and the rollback)."""
        deployment = found["snapshot"].get("deployment")
        if deployment is None:
            return {"record": None, "position": last_good.UNRECORDED, "msg": "first deploy"}
        try:
            replicasets = self._replicasets(deployment, found["namespace"])
        except K8sAccessError as exc:
            raise self._unreachable(exc, "reading the Deployment's ReplicaSets") from exc
        good, why = last_good.read(deployment)
        position = last_good.position(deployment, replicasets, good)
        record = good.__dict__ if good is not None else None
        if position == last_good.AT_GOOD:
            msg = "at the last good version, " + good.describe()
        elif position == last_good.UNRECORDED:
            msg = "no last good version recorded ({0}): a rollback goes to the revision before".format(why)
        elif position == last_good.AWAY_COMPLETE:
            msg = "rolled out, but not the last good version ({0}): changed outside this collection?".format(
                good.describe())
        else:
            msg = ("IN THE MIDDLE OF A FAILED OR INTERRUPTED ROLLOUT (revision {0} not available); the last good "
                   "version is {1}".format(plan.snapshot_revision(found["snapshot"]), good.describe()))
            self.warnings.append("Deployment {0} in namespace {1} is in the middle of a failed or interrupted "
                                 "rollout: {2}.".format(found["name"], found["namespace"], "this run rolls back to "
                                                        "the last good version first" if not
                                                        self.args.get("continue_forward") else
                                                        "continue_forward is set: this run deploys over it"))
        return {"record": record, "position": position, "msg": msg}

    def _good_revision(self, found: Dict[str, Any]) -> Optional[int]:
        """The revision number the last good template has now (``rollout undo`` renumbers); None if unknown."""
        record = (found.get("last_good") or {}).get("record")
        if not record:
            return None
        deployment = self.client.get("Deployment", found["name"], found["namespace"], api_version="apps/v1")
        if deployment is None:
            return None
        good = last_good.LastGood(**record)
        replicaset = last_good.replicaset_of(deployment, self._replicasets(deployment, found["namespace"]), good)
        if replicaset is None:
            self.warnings.append("The last good template {0} of {1} is no longer in the Deployment's history "
                                 "(revisionHistoryLimit): the rollback goes to the revision the run found."
                                 .format(good.template_hash, found["name"]))
            return None
        return revision_of(replicaset)

    def record_last_good(self, found: Dict[str, Any]) -> str:
        """After a completed (and verified) rollout: record the Deployment's version as the last good one."""
        name, namespace = found["name"], found["namespace"]
        try:
            deployment = self.client.get("Deployment", name, namespace, api_version="apps/v1")
            if deployment is None:
                return ""
            good = last_good.record(deployment, self._replicasets(deployment, namespace),
                                    self.run_id or "-", _dt.datetime.now(_dt.timezone.utc))
            known, _why = last_good.read(deployment)
            if known is not None and known.template_hash == good.template_hash:
                return "last good version unchanged: " + known.describe()
            self.client.apply(last_good.annotation_patch(deployment, good), last_good.FIELD_MANAGER)
        except ValueError as exc:
            self.warnings.append("The last good version of {0} was not recorded: {1}.".format(name, exc))
            return ""
        except K8sAccessError as exc:
            self.warnings.append("The last good version of {0} was not recorded: {1}.".format(name, exc))
            return ""
        return "recorded as the last good version: " + good.describe()

    def _repair(self, found: Dict[str, Any], field_manager: str) -> None:
        """The Deployment is in the middle of a failed or interrupted rollout: put the last good version back."""
        revision = self._good_revision(found)
        if revision is None:
            return
        with self.step("Rollout | Back to the last good version first (an unfinished rollout was found)") as record:
            self.shielded = True
            try:
                undo = self._undo(found, revision, field_manager)
            finally:
                self.shielded = False
            record["changed"] = bool(undo.get("changed"))
            if not undo.get("complete"):
                raise DeployError(
                    "Deployment {n} in namespace {ns} was in the middle of a failed or interrupted rollout, and "
                    "putting back its last good version (revision {r}) did not complete: {why}. Nothing of this "
                    "run's version was applied. Inspect with 'kubectl -n {ns} describe deployment {n}'.".format(
                        n=found["name"], ns=found["namespace"], r=revision, why=undo.get("msg")))
            record["msg"] = "put back revision {0}, the last good version: {1}".format(revision, undo.get("msg"))

    # ---- apply, wait, roll back ----

    def apply(self, found: Dict[str, Any]) -> Dict[str, Any]:
        """Dry run, apply, remove, wait; on a failed rollout, roll back and raise. Returns the rollout's result.

        Before: the Lease is still this run's, and an unfinished rollout found by the preflight is rolled back to
        the last good version. After the verify steps, :meth:`keep_as_last_good` records the version.
        """
        field_manager = self.args.get("field_manager") or "creativeflow-ai-serving"
        objects: List[Dict[str, Any]] = found["objects"]
        name, namespace = found["name"], found["namespace"]
        canary = False
        if not self.check_mode:
            if not self.holding and (found.get("lock") or {}).get("identity"):
                with self.step("Lock | Check that this run still holds Lease {0}".format(
                        deploy_lease.lease_name(name))) as record:
                    record["msg"] = self.recheck_lock(found)
            action = self.args.get("canary_action") or "none"
            if action != "none":
                return self._canary_by_hand(found, action, field_manager)
            if (found.get("last_good") or {}).get("position") == last_good.AWAY_UNFINISHED and \
                    not self.args.get("continue_forward"):
                self._repair(found, field_manager)
            with self.step("Apply | Dry run of every object on the API server") as record:
                warnings: List[str] = []
                try:
                    for obj in objects:
                        after, said = self.client.apply(obj, field_manager, dry_run=True)
                        warnings.extend(said)
                        if obj["kind"] == "Deployment":
                            canary = self._runs_canary(found, after)
                except K8sAccessError as exc:
                    raise self._dry_run_error(exc, name) from exc
                violations = plan.pod_security_violations(warnings)
                if violations:
                    raise DeployError(plan.pod_security_message(name, namespace, violations, KNOB_PREFIX))
                record["msg"] = "{0} objects admitted".format(len(objects))
        try:
            if canary:
                run = progression.Progression(self, found, field_manager)
                self.canary_checks = run.checks  # the same list, filled as the steps run
                return run.run()
            kept = self._leftovers_the_canary_takes(found, field_manager) if self.check_mode else ""
            rollout = self._apply_and_wait(found, field_manager, kept)
        except Interrupted as exc:
            if canary:
                raise DeployError(self._canary_interrupted(found, exc.signame)) from exc
            self._after_interrupt(found, exc.signame, field_manager)
            raise  # not reached: _after_interrupt raises DeployError
        return rollout

    def _canary_by_hand(self, found: Dict[str, Any], action: str, field_manager: str) -> Dict[str, Any]:
        """canary_action promote or abort: what the operator asked of the canary a run left, nothing else."""
        if not found.get("canary_plan"):
            raise DeployError("canary_action {0}: {1} has no canary to {0}: {2}. Nothing was applied.".format(
                action, found["name"], "its catalog entry has no strategy.canary (a plain deploy removes what a canary "
                "left)" if canary_of(found["model"]) is None else "it is not deployed yet"))
        try:
            return progression.Progression(self, found, field_manager).by_hand(action)
        except Interrupted as exc:
            raise DeployError(self._canary_interrupted(found, exc.signame)) from exc

    def _runs_canary(self, found: Dict[str, Any], dry_run: Mapping[str, Any]) -> bool:
        """Whether this run is a canary: the model has one planned and the new version changes the pods (the dry run's
        template differs from the stable Deployment's); otherwise a plain apply, which also removes a canary's
        leftovers (``plan.absent_objects``)."""
        if not found.get("canary_plan") or found["snapshot"].get("deployment") is None:
            return False
        try:  # read now: a repair of an unfinished rollout may have changed it since the preflight
            stable = self.client.get("Deployment", found["name"], found["namespace"], api_version="apps/v1") or {}
        except K8sAccessError as exc:
            raise self._unreachable(exc, "reading the stable version") from exc
        if same_template(((stable.get("spec") or {}).get("template") or {}),
                         ((dry_run.get("spec") or {}).get("template") or {})):
            self.notify("  canary of {0} not run: the new version does not change the pods (a plain apply)".format(
                found["name"]))
            return False
        return True

    def _canary_interrupted(self, found: Dict[str, Any], signame: str) -> str:
        name = found["name"]
        during = self.current_step or "the canary"
        if "Promote" in during:
            then = ("The promotion was cut short: the stable Deployment may be half rolled out and the canary still "
                    "runs. Deploy again: a deploy puts the last good version back first, then starts the canary over "
                    "(or removes what the canary left when the pods no longer change)")
        else:
            then = ("The canary stays as it is, beside the stable version, unwatched. Deploy the same version again to "
                    "continue from the step the cluster shows, or abort it: ansible-playbook -i <inventory> "
                    "playbooks/canary.yml -e model={0} -e canary_action=abort".format(name))
        return "Interrupted by {0} during '{1}'. {2}.".format(signame, during, then)

    def keep_as_last_good(self, found: Dict[str, Any]) -> None:
        """After the rollout completed and the verify steps passed (or were not selected): the last good version."""
        if self.check_mode:
            return
        with self.step("Rollout | Record the last good version") as record:
            self.shielded = True  # the rollout completed: nothing is owed, the record is one write
            try:
                record["msg"] = self.record_last_good(found)
            finally:
                self.shielded = False

    def _leftovers_the_canary_takes(self, found: Dict[str, Any], field_manager: str) -> str:
        """--check of a model whose canary would run, with objects a canary left: the real run's canary continues
        them (this version's) or removes them first (another version's), so they are taken out of what the plain
        apply's dry run lists as removed; what the real run does with them instead (empty: nothing to say)."""
        leftovers = found["snapshot"].get("canary_leftovers") or []
        if not leftovers or not found.get("canary_plan") or (self.args.get("canary_action") or "none") != "none":
            return ""  # (canary.yml's promote and abort remove the canary too)
        name, namespace = found["name"], found["namespace"]
        deployment = next(obj for obj in found["objects"] if obj["kind"] == "Deployment")
        try:
            if not self._runs_canary(found, self.client.apply(deployment, field_manager, dry_run=True)[0]):
                return ""  # the pods do not change: a plain apply, which removes them
            live = self.client.get("Deployment", canary_name(name), namespace, api_version="apps/v1")
        except K8sAccessError as exc:
            raise self._dry_run_error(exc, name) from exc
        taken = {(item["kind"], item["name"]) for item in leftovers}
        found["absent"] = [item for item in found["absent"] if (item["kind"], item["name"]) not in taken]
        listed = ", ".join("{0}/{1}".format(item["kind"], item["name"]) for item in leftovers)
        if canary_of_version(live, deployment):
            return ("the canary a run left ({0}) is this version's: the run continues its steps from where it "
                    "stands".format(listed))
        return ("the canary a run left ({0}) is of another version: the run removes it, then starts its steps from "
                "step 1".format(listed))

    def _apply_and_wait(self, found: Dict[str, Any], field_manager: str, kept: str = "") -> Dict[str, Any]:
        name, namespace = found["name"], found["namespace"]
        with self.step("Apply | Every object of the model") as record:
            changed = self._apply_all(found, field_manager)
            record["changed"] = bool(changed)
            record["msg"] = ("would change: " if self.check_mode else "changed: ") + (", ".join(changed) or "nothing")
        with self.step("Apply | Remove what the model no longer has") as record:
            removed = []
            try:
                for item in found["absent"]:
                    if self.client.delete(item["api_version"], item["kind"], item["name"], namespace,
                                          dry_run=self.check_mode):
                        removed.append("{0}/{1}".format(item["kind"], item["name"]))
                        if self.diff_mode:
                            self.diffs.append(plan.diff_entry(found["snapshot"].get(plan.KEY_OF_KIND[item["kind"]]),
                                                              None, "{0}/{1}".format(item["kind"], item["name"])))
            except K8sAccessError as exc:
                raise self._unreachable(exc, "removing what the model no longer has", applied=True) from exc
            record["changed"] = bool(removed)
            record["msg"] = "; ".join([", ".join(removed) or "nothing to remove"] + ([kept] if kept else []))
        if self.check_mode:
            return {}
        with self.step("Rollout | Wait for the new version to be available") as record:
            params = dict(ROLLOUT_DEFAULTS, namespace=namespace, name=name, timeout=int(self.args["rollout_timeout"]),
                          fail_fast=int(self.args["rollout_fail_fast"]))
            failure = ""
            rollout: Dict[str, Any] = {}
            try:
                rollout = Rollout(params, self.client).run()
                if rollout.pop("failed", False):
                    failure = rollout.get("msg") or "the rollout failed"
            except K8sAccessError as exc:
                if exc.unreachable:
                    record["msg"] = str(exc)
                    raise DeployError(self._outage_during_wait(found, exc)) from exc
                failure = str(exc)
            except RolloutError as exc:
                failure = str(exc)
            record["msg"] = failure or rollout.get("msg", "")
            record["failed"] = bool(failure)
        if failure:
            self._roll_back(found, failure, field_manager)
        return rollout

    def _repair_command(self, name: str) -> str:
        return ("ansible-playbook -i <inventory> playbooks/rollback_model.yml -e model={0} (puts the last good "
                "version back), or deploy again: a deploy that finds an unfinished rollout rolls back to the last "
                "good version first".format(name))

    def _outage_during_wait(self, found: Dict[str, Any], exc: K8sAccessError) -> str:
        name, namespace = found["name"], found["namespace"]
        return (
            "The API server stopped answering while this run waited for the rollout of {n} in namespace {ns}: {d}. "
            "The new version was applied; whether it came up is unknown, so a rollback may still be owed (automatic "
            "rollback: {rb}). Once the API server answers, repair with: {cmd}. This run's Lease expires by itself."
        ).format(n=name, ns=namespace, d=str(exc).rstrip("."),
                 rb="on" if self.args.get("rollback_on_failure", True) else "off", cmd=self._repair_command(name))

    def _after_interrupt(self, found: Dict[str, Any], signame: str, field_manager: str) -> None:
        """SIGINT/SIGTERM during the apply or the wait: the rollback this run owes (bounded), then the failure."""
        name, namespace = found["name"], found["namespace"]
        during = self.current_step or "the apply"
        failure = "Interrupted by {0} during '{1}'".format(signame, during)
        if not self.args.get("rollback_on_failure", True):
            raise DeployError(
                "{f}. The model was left as it is (rollback_on_failure is false): the new version may be half rolled "
                "out. Repair with: {cmd}.".format(f=failure, cmd=self._repair_command(name)))
        self.shielded = True
        try:
            self._roll_back(found, failure, field_manager, bound=INTERRUPT_ROLLBACK_S)
        except DeployError as err:
            if (err.result.get("rollout") or {}).get("complete") or found["snapshot"].get("deployment") is None:
                raise
            raise DeployError("{0} State left: the model may run a half rolled out version ('kubectl -n {1} rollout "
                              "status deployment {2}'); repair with: {3}.".format(
                                  err, namespace, name, self._repair_command(name)), **err.result) from err
        except K8sAccessError as exc:
            raise DeployError("{f}; the rollback it owes could not run: {e}. Repair with: {cmd}.".format(
                f=failure, e=exc, cmd=self._repair_command(name))) from exc
        finally:
            self.shielded = False

    # ---- verify ----

    def verify(self, found: Dict[str, Any], rollout: Mapping[str, Any]) -> Dict[str, Any]:
        """After a completed rollout: the Service's endpoints, the smoke requests, the stale ConfigMaps.

        The smoke part (endpoints, then the runtime's health paths and the
        catalog's smoke inference through the API server's service proxy) runs
        when there are replicas and ``smoke_check`` is on; a wrong answer raises
        (the rollout stays: the pods pass their probes). Before it, a record's
        EnsurePresent makes every ready pod hold what the catalog lists
        (``ensure``), whatever ``smoke_check`` says. Returns what the model_smoke
        module returns (``smoke``), ``ensure`` and the ConfigMaps deleted.
        """
        result: Dict[str, Any] = {"smoke": None, "deleted_configmaps": []}
        if self.check_mode:
            return result
        name, namespace = found["name"], found["namespace"]
        ensure_spec = found["server"].get("ensure") or {}
        smoke_on = bool(self.args.get("smoke_check", True))
        if int(found["replicas"]) > 0 and (smoke_on or ensure_spec):
            with self.step("Verify | Wait for the Service's ready endpoints") as record:
                available = int((rollout.get("state") or {}).get("available", 1))
                # Every replica must hold what the record ensures; the smoke check needs one.
                wanted = available if ensure_spec else min(available, 1)
                endpoints = self._ready_endpoints(name, namespace, wanted)
                record["msg"] = "{0} ready endpoint(s) behind Service {1}/{2}".format(len(endpoints), namespace, name)
        if int(found["replicas"]) > 0 and ensure_spec:
            with self.step("Verify | Make sure every pod holds the catalog's {0}s".format(ensure_spec["what"])) as record:
                result["ensure"] = self._ensure(found, ensure_spec, endpoints)
                record["changed"], record["msg"] = result["ensure"].pop("changed"), result["ensure"].pop("msg")
        if int(found["replicas"]) > 0 and smoke_on:
            with self.step("Verify | Ask the Service through the API server's service proxy") as record:
                result["smoke"] = self._smoke(found, endpoints)
                record["msg"] = smoke_check.report(result["smoke"], found["server"]["smoke_paths"])
                if result["smoke"].get("failed"):
                    raise DeployError(result["smoke"]["msg"], smoke=result["smoke"])
        if "replicaset_configmaps" in rollout:
            with self.step("Verify | Delete the ConfigMaps no revision refers to any more") as record:
                result["deleted_configmaps"] = self._delete_stale_configmaps(found, rollout)
                record["changed"] = bool(result["deleted_configmaps"])
                record["msg"] = ", ".join(result["deleted_configmaps"]) or "none"
        return result

    def _ready_endpoints(self, name: str, namespace: str, wanted: int) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + ENDPOINTS_TIMEOUT
        try:
            while True:
                endpoints = smoke_check.read_endpoints(self.client, namespace, name)
                if len(endpoints) >= wanted or time.monotonic() + ENDPOINTS_INTERVAL > deadline:
                    break
                time.sleep(ENDPOINTS_INTERVAL)
        except K8sAccessError as exc:
            raise self._unreachable(exc, "reading the Service's endpoints", applied=True) from exc
        if len(endpoints) < wanted:
            raise DeployError(
                "{n} rolled out, but its Service {ns}/{n} has no ready endpoint {t:.0f}s later: check that the "
                "Service's selector matches the pods (kubectl get endpointslices -n {ns} -l "
                "kubernetes.io/service-name={n}).".format(n=name, ns=namespace, t=ENDPOINTS_TIMEOUT))
        return endpoints

    def _ensure(self, found: Dict[str, Any], spec: Mapping[str, Any], endpoints: List[Dict[str, Any]]) -> Dict[str, Any]:
        """The record's EnsurePresent on each ready pod that runs a container (not on simulated nodes)."""
        name, namespace = found["name"], found["namespace"]
        try:
            simulated = set(smoke_check.simulated_nodes(self.client, endpoints))
        except K8sAccessError as exc:
            raise self._unreachable(exc, "reading the pods' nodes", applied=True) from exc
        pods = sorted(item["pod"] for item in endpoints if item.get("pod") and item.get("node") not in simulated)
        if not pods:
            return {"changed": False, "present": {}, "fetched": {},
                    "msg": "not asked: every ready pod is on a simulated (kwok) node, where no container runs"}
        port = [p["port"] for p in found["server"]["ports"] if p["name"] == spec["port"]][0]
        try:
            done = ensure.ensure(lambda timeout: ServiceProxy(self.client.api_client, timeout), namespace, pods, spec,
                                 int(port), say=self.notify)
        except ensure.EnsureError as exc:
            raise DeployError("{n} rolled out, but {e}. The new version stays (its pods pass their probes); it is not "
                              "recorded as the last good version. Check the catalog's list and that the server reaches "
                              "where it pulls from, then deploy again.".format(n=name, e=exc)) from exc
        except K8sAccessError as exc:
            raise self._unreachable(exc, "asking the pods through the API server", applied=True) from exc
        changed, line = ensure.summary(done, str(spec.get("what")))
        done.update(changed=changed, msg=line)
        return done

    def _smoke(self, found: Dict[str, Any], endpoints: List[Dict[str, Any]]) -> Dict[str, Any]:
        name, namespace = found["name"], found["namespace"]
        requests = [item for item in found["server"]["smoke_paths"] if "path" in item]
        timeout = int(self.args.get("smoke_timeout") or 60)
        try:
            return smoke_check.check(self.client, lambda: ServiceProxy(self.client.api_client, min(timeout, 15)),
                                     namespace, name, requests, timeout, endpoints=endpoints)
        except smoke.SmokeError as exc:
            raise DeployError("The smoke check of {0} cannot be sent: {1}".format(name, exc)) from exc
        except K8sAccessError as exc:
            raise self._unreachable(exc, "asking the Service", applied=True) from exc

    def _delete_stale_configmaps(self, found: Dict[str, Any], rollout: Mapping[str, Any]) -> List[str]:
        """The model's ConfigMaps that no ReplicaSet refers to any more (and not the current one), deleted."""
        keep = set(rollout.get("replicaset_configmaps") or []) | {found.get("configmap_name")}
        deleted: List[str] = []
        try:
            for name in found["snapshot"].get("configmaps") or []:
                if not plan.config_configmap(found["name"], name):
                    continue  # a record's ConfigMap (a check's script, shared data), not a configuration
                if name not in keep and self.client.delete("v1", "ConfigMap", name, found["namespace"]):
                    deleted.append(name)
        except K8sAccessError as exc:
            raise self._unreachable(exc, "deleting the ConfigMaps no revision refers to", applied=True) from exc
        return deleted

    def _dry_run_error(self, exc: K8sAccessError, name: str) -> DeployError:
        if exc.unreachable:
            return self._unreachable(exc, "the dry run")
        return DeployError("The API server refused an object of {0} in the dry run: {1}. Nothing was applied."
                           .format(name, exc))

    def _apply_all(self, found: Dict[str, Any], field_manager: str) -> List[str]:
        snapshot = found["snapshot"]
        changed: List[str] = []
        applied_any = False
        try:
            for obj in found["objects"]:
                label = "{0}/{1}".format(obj["kind"], obj["metadata"]["name"])
                if manifests.is_create_only(obj) and obj["metadata"]["name"] in (snapshot.get("configmaps") or []):
                    continue  # another workload writes it now
                before = self._before(obj, snapshot)
                after = self.client.apply(obj, field_manager, dry_run=self.check_mode)[0]
                applied_any = not self.check_mode
                if before is None and not self.check_mode and obj["kind"] == "ConfigMap":
                    versions = snapshot.get("configmap_versions") or {}
                    is_new = obj["metadata"]["name"] not in versions
                    was_changed = is_new or versions.get(obj["metadata"]["name"]) != (
                        after.get("metadata") or {}).get("resourceVersion")
                else:
                    was_changed = plan.applied_changed(before, after, self.check_mode)
                if was_changed:
                    changed.append(label)
                    if self.diff_mode:
                        self.diffs.append(plan.diff_entry(before, after, label))
        except K8sAccessError as exc:
            if exc.unreachable:
                raise self._unreachable(exc, "applying the objects", applied=applied_any) from exc
            raise DeployError("The API server refused to apply an object of {0}: {1}.{2}".format(
                found["name"], exc, " Objects before it were applied: deploy again once it is fixed."
                if applied_any else " Nothing was applied.")) from exc
        found["changed"] = changed
        return changed

    def _before(self, obj: Mapping[str, Any], snapshot: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The object as it was: from the snapshot, or read now (ConfigMaps, for --diff and check mode)."""
        key = plan.KEY_OF_KIND.get(obj["kind"])
        if key is not None:
            return snapshot.get(key)
        name = obj["metadata"]["name"]
        if obj["kind"] != "ConfigMap":
            return (snapshot.get("extras") or {}).get(plan.extra_key(obj["kind"], name))
        if name not in (snapshot.get("configmaps") or []):
            return None
        if self.diff_mode or self.check_mode:
            return self.client.get(obj["kind"], name, obj["metadata"]["namespace"], api_version=obj["apiVersion"])
        return None

    # What the canary's progression (:mod:`.progression`) uses of the engine.

    def replicasets(self, deployment: Mapping[str, Any], namespace: str) -> List[Dict[str, Any]]:
        return self._replicasets(deployment, namespace)

    def unreachable(self, exc: K8sAccessError, doing: str, applied: bool = False) -> DeployError:
        return self._unreachable(exc, doing, applied)

    def apply_all(self, found: Dict[str, Any], field_manager: str) -> List[str]:
        return self._apply_all(found, field_manager)

    def roll_back(self, found: Dict[str, Any], failure: str, field_manager: str, replicas: Optional[int] = None) -> None:
        self._roll_back(found, failure, field_manager, replicas=replicas)

    def _roll_back(self, found: Dict[str, Any], failure: str, field_manager: str,
                   bound: Optional[int] = None, replicas: Optional[int] = None) -> None:
        name, namespace, snapshot = found["name"], found["namespace"], found["snapshot"]
        first = snapshot.get("deployment") is None
        rollback = bool(self.args.get("rollback_on_failure", True))
        revision = plan.snapshot_revision(snapshot)
        undo: Optional[Dict[str, Any]] = None
        if rollback:
            with self.step("Rollout | Roll back") as record:
                self.shielded = True
                try:
                    if not first:
                        # The last good version, never "what exists now" (which may be a broken rollout).
                        good = self._good_revision(found)
                        revision = good if good is not None else revision
                        undo = self._undo(found, revision, field_manager, bound, replicas)
                        for obj in plan.restore_objects(snapshot) + plan.restore_extras(
                                snapshot, found.get("changed") or []):
                            self.client.apply(obj, field_manager)
                    for obj in plan.added_objects(found["objects"], snapshot):
                        self.client.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace)
                except K8sAccessError as exc:
                    record["msg"] = "did not finish: " + str(exc)
                    raise DeployError(
                        "The API server stopped answering while this run rolled back {n} in namespace {ns} after: "
                        "{f}: {e}. The rollback is unfinished: repair with: {cmd}.".format(
                            n=name, ns=namespace, f=failure.rstrip("."), e=str(exc).rstrip("."),
                            cmd=self._repair_command(name))) from exc
                finally:
                    self.shielded = False
                record["changed"] = True
                record["msg"] = ("removed the first deploy's objects" if first else
                                 (undo or {}).get("msg") or "put back revision {0}".format(revision))
                if undo is not None and not undo.get("complete"):
                    record["failed"] = True
        raise DeployError(plan.failure_message(failure, name, namespace, KNOB_PREFIX, rollback, first, undo, revision),
                          rollout=undo or {})

    def _undo(self, found: Dict[str, Any], revision: Optional[int], field_manager: str,
              bound: Optional[int] = None, replicas: Optional[int] = None) -> Dict[str, Any]:
        snapshot = found["snapshot"]
        definition = next(o for o in found["objects"] if o["kind"] == "Deployment")
        timeout = int(self.args["rollout_timeout"])
        params = dict(ROLLOUT_DEFAULTS, namespace=found["namespace"], name=found["name"], undo=True,
                      to_revision=revision, definition=definition,
                      replicas=replicas if replicas is not None else plan.current_replicas(snapshot),
                      timeout=min(timeout, bound) if bound else timeout,
                      fail_fast=int(self.args["rollout_fail_fast"]), field_manager=field_manager)
        try:
            result = Rollout(params, self.client).run()
        except (RolloutError, K8sAccessError) as exc:
            if isinstance(exc, K8sAccessError) and exc.unreachable:
                raise
            return {"complete": False, "msg": str(exc)}
        result.pop("failed", None)
        return result


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's uid)
        return str(os.getuid())
