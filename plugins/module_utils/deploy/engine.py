# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's steps in order, in one process: preflight, then apply, wait and roll back.

:class:`Engine` runs each step timed (``steps``: name, seconds, changed, msg) and
reports it as it ends. :meth:`Engine.preflight` returns the plan (what the
objects are made of, the snapshot of what exists, the objects to apply and to
remove); :meth:`Engine.apply` takes it. A failure raises :class:`DeployError`
with the message the role's YAML steps gave.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import knobs, manifests, runtimes, smoke, smoke_check
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import (
    HAS_JSONSCHEMA,
    CatalogError,
    check_catalog,
    resolve_model,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import checks, plan
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.kube import DeployClient
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import DeployError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit import GpuFitError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.cluster import (
    DEFAULTS as GPU_CHECK_DEFAULTS,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.cluster import CapacityCheck
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import K8sAccessError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout import RolloutError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import (
    DEFAULTS as ROLLOUT_DEFAULTS,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import Rollout
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.smoke_check import ServiceProxy

MANAGED_BY = "creativeflow.ai_serving"

#: How long the verify step waits for the Service's endpoints after a completed rollout, and how often it looks.
ENDPOINTS_TIMEOUT = 30.0
ENDPOINTS_INTERVAL = 0.5

#: Shared knobs are named ai_serving_<knob> in messages; runtime knobs keep the runtime's prefix.
KNOB_PREFIX = knobs.PREFIX.rstrip("_")


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
        self.steps: List[Dict[str, Any]] = []
        self.warnings: List[str] = []
        self.diffs: List[Dict[str, Any]] = []

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
        try:
            yield record
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
        with self.step("Preflight | Cluster") as record:
            self._cluster(found)
            record["msg"] = "namespace {0}: {1}".format(
                found["namespace"], "Deployment {0} at revision {1}".format(
                    found["name"], plan.snapshot_revision(found["snapshot"]))
                if found["snapshot"]["deployment"] is not None else "first deploy of {0}".format(found["name"]))
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
            configmaps = self.client.list("ConfigMap", "v1", namespace, label_selector=(
                "creativeflow.ai/model-name={0},app.kubernetes.io/managed-by={1}".format(name, MANAGED_BY)))
            missing = [ref for ref in refs if self.client.get(ref["kind"], ref["name"], namespace) is None]
        except K8sAccessError as exc:
            raise self._unreachable(exc, "") from exc
        snapshot["namespace"] = namespace_obj
        snapshot["configmaps"] = sorted((c.get("metadata") or {}).get("name") for c in configmaps)
        snapshot["configmap_versions"] = {(c.get("metadata") or {}).get("name"):
                                          (c.get("metadata") or {}).get("resourceVersion") for c in configmaps}
        problem = plan.namespace_problem(namespace_obj, namespace, KNOB_PREFIX)
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

    def _gpu(self, found: Dict[str, Any]) -> str:
        model, name, namespace = found["model"], found["name"], found["namespace"]
        gpu = model.get("gpu") or {}
        found["gpu_fit"] = None
        if not self.args.get("gpu_preflight", True):
            return "skipped ({0}_gpu_preflight is false)".format(KNOB_PREFIX)
        if int(gpu.get("count", 0)) <= 0 or int(found["replicas"]) <= 0:
            return "skipped (no GPU requested)"
        strategy = model.get("strategy") or {}
        params = dict(GPU_CHECK_DEFAULTS, namespace=namespace, deployment=name, resource_name=gpu["resource"],
                      gpus_per_replica=int(gpu["count"]), replicas=int(found["replicas"]),
                      node_selector=found["node_selector"], tolerations=found["tolerations"],
                      strategy=strategy.get("type"), max_surge=strategy.get("max_surge"),
                      max_unavailable=strategy.get("max_unavailable"))
        try:
            result = CapacityCheck(params, self.client).run()
            if not result["fits"]:
                raise GpuFitError(result["msg"])
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
        return str(result.get("msg") or "fits")

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

    # ---- apply, wait, roll back ----

    def apply(self, found: Dict[str, Any]) -> Dict[str, Any]:
        """Dry run, apply, remove, wait; on a failed rollout, roll back and raise. Returns the rollout's result."""
        field_manager = self.args.get("field_manager") or "creativeflow-ai-serving"
        objects: List[Dict[str, Any]] = found["objects"]
        name, namespace = found["name"], found["namespace"]
        if not self.check_mode:
            with self.step("Apply | Dry run of every object on the API server") as record:
                warnings: List[str] = []
                try:
                    for obj in objects:
                        warnings.extend(self.client.apply(obj, field_manager, dry_run=True)[1])
                except K8sAccessError as exc:
                    raise self._dry_run_error(exc, name) from exc
                violations = plan.pod_security_violations(warnings)
                if violations:
                    raise DeployError(plan.pod_security_message(name, namespace, violations, KNOB_PREFIX))
                record["msg"] = "{0} objects admitted".format(len(objects))
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
            record["msg"] = ", ".join(removed) or "nothing to remove"
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
            except (RolloutError, K8sAccessError) as exc:
                failure = str(exc)
            record["msg"] = failure or rollout.get("msg", "")
            record["failed"] = bool(failure)
        if failure:
            self._roll_back(found, failure, field_manager)
        return rollout

    # ---- verify ----

    def verify(self, found: Dict[str, Any], rollout: Mapping[str, Any]) -> Dict[str, Any]:
        """After a completed rollout: the Service's endpoints, the smoke requests, the stale ConfigMaps.

        The smoke part (endpoints, then the runtime's health paths and the
        catalog's smoke inference through the API server's service proxy) runs
        when there are replicas and ``smoke_check`` is on; a wrong answer raises
        (the rollout stays: the pods pass their probes). Returns what the
        model_smoke module returns (``smoke``) and the ConfigMaps deleted.
        """
        result: Dict[str, Any] = {"smoke": None, "deleted_configmaps": []}
        if self.check_mode:
            return result
        name, namespace = found["name"], found["namespace"]
        if int(found["replicas"]) > 0 and self.args.get("smoke_check", True):
            with self.step("Verify | Wait for the Service's ready endpoints") as record:
                wanted = min(int((rollout.get("state") or {}).get("available", 1)), 1)
                endpoints = self._ready_endpoints(name, namespace, wanted)
                record["msg"] = "{0} ready endpoint(s) behind Service {1}/{2}".format(len(endpoints), namespace, name)
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
        return changed

    def _before(self, obj: Mapping[str, Any], snapshot: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The object as it was: from the snapshot, or read now (ConfigMaps, for --diff and check mode)."""
        key = plan.KEY_OF_KIND.get(obj["kind"])
        if key is not None:
            return snapshot.get(key)
        name = obj["metadata"]["name"]
        if name not in (snapshot.get("configmaps") or []):
            return None
        if self.diff_mode or self.check_mode:
            return self.client.get(obj["kind"], name, obj["metadata"]["namespace"], api_version=obj["apiVersion"])
        return None

    def _roll_back(self, found: Dict[str, Any], failure: str, field_manager: str) -> None:
        name, namespace, snapshot = found["name"], found["namespace"], found["snapshot"]
        first = snapshot.get("deployment") is None
        rollback = bool(self.args.get("rollback_on_failure", True))
        revision = plan.snapshot_revision(snapshot)
        undo: Optional[Dict[str, Any]] = None
        if rollback:
            with self.step("Rollout | Roll back") as record:
                try:
                    if not first:
                        undo = self._undo(found, revision, field_manager)
                        for obj in plan.restore_objects(snapshot):
                            self.client.apply(obj, field_manager)
                    for obj in plan.added_objects(found["objects"], snapshot):
                        self.client.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace)
                except K8sAccessError as exc:
                    raise self._unreachable(
                        exc, "rolling back after: " + failure.rstrip("."), applied=True) from exc
                record["changed"] = True
                record["msg"] = ("removed the first deploy's objects" if first else
                                 (undo or {}).get("msg") or "put back revision {0}".format(revision))
        raise DeployError(plan.failure_message(failure, name, namespace, KNOB_PREFIX, rollback, first, undo, revision),
                          rollout=undo or {})

    def _undo(self, found: Dict[str, Any], revision: Optional[int], field_manager: str) -> Dict[str, Any]:
        snapshot = found["snapshot"]
        definition = next(o for o in found["objects"] if o["kind"] == "Deployment")
        params = dict(ROLLOUT_DEFAULTS, namespace=found["namespace"], name=found["name"], undo=True,
                      to_revision=revision, replicas=plan.current_replicas(snapshot), definition=definition,
                      timeout=int(self.args["rollout_timeout"]), fail_fast=int(self.args["rollout_fail_fast"]),
                      field_manager=field_manager)
        try:
            result = Rollout(params, self.client).run()
        except (RolloutError, K8sAccessError) as exc:
            if isinstance(exc, K8sAccessError) and exc.unreachable:
                raise
            return {"complete": False, "msg": str(exc)}
        result.pop("failed", None)
        return result
