# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's steps in order against an in-memory API (the real one runs in test_deploy_model.py).

The fake API stores what is applied and bumps resourceVersion only when the content
changes, as the API server does for a server-side apply; the rollout wait is scripted.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import engine as engine_mod
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import plan
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.engine import Engine
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.kube import Conflict
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import DeployError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import K8sUnreachableError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "objects" / "image-classifier-base.json"
NS = "ai-serving"


class FakeApi:
    def __init__(self) -> None:
        self.objects: Dict[Tuple[str, str], Dict[str, Any]] = {("Namespace", NS): {"metadata": {"name": NS}}}
        self.version = 100
        self.warnings: List[str] = []
        self.calls: List[str] = []
        self.down = False
        self.retry_seconds = 0

    def _check(self) -> None:
        if self.down:
            raise K8sUnreachableError("cannot get: the API server is unreachable (API server https://x): refused")

    def get(self, kind: str, name: str, namespace: Optional[str] = None, api_version: str = "v1"):
        self._check()
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    def get_if_served(self, kind, name, namespace, api_version):
        return False, None

    def list(self, kind, api_version="v1", namespace=None, label_selector=None, field_selector=None):
        self._check()
        return [copy.deepcopy(o) for (k, _name), o in self.objects.items() if k == kind]

    def apply(self, obj: Dict[str, Any], field_manager: str, dry_run: bool = False):
        self._check()
        self.calls.append("{0} {1}".format("dry-run" if dry_run else "apply", obj["kind"]))
        key = (obj["kind"], obj["metadata"]["name"])
        before = self.objects.get(key)
        after = copy.deepcopy(obj)
        if before is not None and plan.comparable(before) == plan.comparable(dict(after, metadata=dict(
                after["metadata"], resourceVersion=before["metadata"]["resourceVersion"]))):
            return copy.deepcopy(before), list(self.warnings)
        self.version += 1
        after["metadata"]["resourceVersion"] = str(self.version)
        if obj["kind"] == "Deployment":
            revision = int(((before or {}).get("metadata", {}).get("annotations") or {}).get(
                plan.REVISION_ANNOTATION, 0)) + 1
            after["metadata"]["annotations"] = {plan.REVISION_ANNOTATION: str(revision)}
        if not dry_run:
            self.objects[key] = after
        return copy.deepcopy(after), list(self.warnings)

    def create(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        self._check()
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.objects:
            raise Conflict("exists")
        return self._store(key, obj)

    def replace(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        self._check()
        key = (obj["kind"], obj["metadata"]["name"])
        if self.objects[key]["metadata"]["resourceVersion"] != obj["metadata"].get("resourceVersion"):
            raise Conflict("changed")
        return self._store(key, obj)

    def _store(self, key: Tuple[str, str], obj: Dict[str, Any]) -> Dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def delete(self, api_version, kind, name, namespace, dry_run=False):
        self.calls.append("delete {0}".format(kind))
        if dry_run:
            return (kind, name) in self.objects
        return self.objects.pop((kind, name), None) is not None


class ScriptedRollout:
    """Stands in for rollout_wait.Rollout: answers from a script, remembers its params."""

    script: List[Dict[str, Any]] = []
    seen: List[Dict[str, Any]] = []

    def __init__(self, params: Dict[str, Any], client: Any, check_mode: bool = False) -> None:
        self.params = params

    def run(self) -> Dict[str, Any]:
        ScriptedRollout.seen.append(self.params)
        return copy.deepcopy(ScriptedRollout.script.pop(0))


OK = {"complete": True, "msg": "rolled out", "state": {"available": 1, "desired": 1}, "replicaset_configmaps": []}
FAILED = {"failed": True, "complete": False, "msg": "Deployment image-classifier in namespace ai-serving did not roll "
                                                    "out: its new pods are stuck for 3s or more: CrashLoopBackOff"}


@pytest.fixture
def api(monkeypatch) -> FakeApi:
    monkeypatch.setattr(engine_mod, "Rollout", ScriptedRollout)
    ScriptedRollout.script = []
    ScriptedRollout.seen = []
    return FakeApi()


def args(**override: Any) -> Dict[str, Any]:
    inputs = json.loads(FIXTURE.read_text())["inputs"]
    model = copy.deepcopy(inputs["model"])
    model.pop("autoscaling", None)
    model.pop("pdb", None)
    base = {"phase": "all", "runtime": model["runtime"], "model": model, "knobs": {},
            "settings": {"namespace": NS}, "config_files": inputs["config_files"], "gpu_preflight": False,
            "rollout_timeout": 30, "rollout_fail_fast": 3, "rollback_on_failure": True, "image_build": False,
            "plan": None, "field_manager": "creativeflow-ai-serving", "kubeconfig": "/kc", "context": None}
    base.update(override)
    return base


def run(api: FakeApi, check_mode: bool = False, diff: bool = False, **override: Any) -> Engine:
    engine = Engine(args(**override), lambda: api, check_mode=check_mode, diff=diff)
    try:
        found = engine.preflight()
        engine.apply(found)
        engine.keep_as_last_good(found)
    finally:
        engine.release()  # as the action does
    return engine


def step_names(engine: Engine) -> List[str]:
    return [s["name"] for s in engine.steps]


def test_first_deploy_applies_everything_and_a_second_changes_nothing(api: FakeApi) -> None:
    ScriptedRollout.script = [OK, OK]
    first = run(api)
    assert step_names(first) == ["Preflight | Inputs", "Lock | Take Lease ai-serving-deploy-image-classifier",
                                 "Preflight | Cluster", "Preflight | GPU capacity", "Render",
                                 "Apply | Dry run of every object on the API server",
                                 "Apply | Every object of the model", "Apply | Remove what the model no longer has",
                                 "Rollout | Wait for the new version to be available",
                                 "Rollout | Record the last good version"]
    assert any(s["changed"] for s in first.steps)
    assert ("Deployment", "image-classifier") in api.objects
    # Every object is dry-run before the first real apply.
    assert api.calls.index("apply ConfigMap") > max(i for i, c in enumerate(api.calls) if c.startswith("dry-run"))
    second = run(api)
    assert not any(s["changed"] for s in second.steps)


def test_check_mode_dry_runs_and_reports_the_diff(api: FakeApi) -> None:
    ScriptedRollout.script = [OK]
    run(api)
    before = copy.deepcopy(api.objects)
    checked = run(api, check_mode=True, diff=True, settings={"namespace": NS, "pod_annotations": {"a/b": "c"}})
    assert api.objects == before
    assert "Rollout | Wait for the new version to be available" not in step_names(checked)
    assert [d["before_header"] for d in checked.diffs] == ["Deployment/image-classifier"]
    after = checked.diffs[0]["after"]
    assert after["spec"]["template"]["metadata"]["annotations"] == {"a/b": "c"}


def test_pod_security_warning_stops_before_anything_is_applied(api: FakeApi) -> None:
    api.warnings = ['would violate PodSecurity "restricted:latest": privileged']
    with pytest.raises(DeployError, match="would be refused by Pod Security admission") as err:
        run(api)
    assert "Nothing was applied" in str(err.value)
    assert not any(c.startswith("apply") for c in api.calls)


def test_missing_namespace_and_secrets_are_refused(api: FakeApi) -> None:
    del api.objects[("Namespace", NS)]
    with pytest.raises(DeployError, match="Namespace ai-serving does not exist"):
        run(api)
    assert api.calls == []


def test_failed_first_deploy_removes_everything(api: FakeApi) -> None:
    ScriptedRollout.script = [FAILED]
    with pytest.raises(DeployError) as err:
        run(api)
    assert "CrashLoopBackOff. This was the first deploy of image-classifier" in str(err.value)
    assert set(api.objects) - {("Lease", "ai-serving-deploy-image-classifier")} == {("Namespace", NS)}


def test_failed_update_puts_the_previous_revision_back(api: FakeApi) -> None:
    ScriptedRollout.script = [OK]
    run(api)
    undone = dict(OK, undone_to_revision=1, changed=True)
    ScriptedRollout.script = [FAILED, undone]
    with pytest.raises(DeployError) as err:
        run(api, settings={"namespace": NS, "pod_annotations": {"a/b": "c"}})
    assert "Rolled back automatically: Deployment image-classifier runs revision 1's template again" in str(err.value)
    undo = ScriptedRollout.seen[-1]
    assert undo["undo"] is True and undo["to_revision"] == 1 and undo["definition"]["kind"] == "Deployment"


def test_no_rollback_when_switched_off(api: FakeApi) -> None:
    ScriptedRollout.script = [OK]
    run(api)
    ScriptedRollout.script = [FAILED]
    engine = Engine(args(rollback_on_failure=False, settings={"namespace": NS, "pod_annotations": {"a/b": "c"}}),
                    lambda: api)
    with pytest.raises(DeployError, match="rollback_on_failure is false"):
        try:
            engine.apply(engine.preflight())
        finally:
            engine.release()
    assert step_names(engine)[-1] == "Rollout | Wait for the new version to be available"
    assert len(ScriptedRollout.seen) == 2  # the two waits, no undo
    template = api.objects[("Deployment", "image-classifier")]["spec"]["template"]
    assert template["metadata"]["annotations"] == {"a/b": "c"}  # left as it is


def test_unreachable_api_gives_the_clear_message(api: FakeApi) -> None:
    api.down = True
    with pytest.raises(DeployError) as err:
        run(api)
    msg = str(err.value)
    assert msg.startswith("Cannot reach the Kubernetes API server") and "kubeconfig '/kc'" in msg
    assert "Nothing was applied" in msg and "urllib3" not in msg


# --------------------------------------------------------------------------- verify

def endpoint_slice(node: str, ready: bool = True) -> Dict[str, Any]:
    return {"metadata": {"name": "image-classifier-abcde", "labels": {"kubernetes.io/service-name": "image-classifier"}},
            "endpoints": [{"addresses": ["10.1.0.7"], "nodeName": node, "conditions": {"ready": ready},
                           "targetRef": {"kind": "Pod", "name": "image-classifier-5d9c-x"}}]}


class FakeProxy:
    """Stands in for smoke_check.ServiceProxy: answers by path from ``answers``, remembers what was sent."""

    answers: Dict[str, Tuple[Optional[int], str]] = {}
    sent: List[str] = []

    def __init__(self, api_client: Any, request_timeout: int) -> None:
        assert api_client == "api-client"

    def send(self, path: str, method: str, body: Any) -> Tuple[Optional[int], str, str]:
        FakeProxy.sent.append("{0} {1}".format(method, path))
        status, text = FakeProxy.answers.get(path.split("/proxy", 1)[1], (404, "not found"))
        return status, text, ""


@pytest.fixture
def verify_api(api: FakeApi, monkeypatch) -> FakeApi:
    monkeypatch.setattr(engine_mod, "ServiceProxy", FakeProxy)
    monkeypatch.setattr(engine_mod, "ENDPOINTS_TIMEOUT", 0.3)
    monkeypatch.setattr(engine_mod, "ENDPOINTS_INTERVAL", 0.1)
    FakeProxy.answers, FakeProxy.sent = {}, []
    api.api_client = "api-client"  # type: ignore[attr-defined]
    api.objects[("Node", "gpu-a100-0")] = {"metadata": {"name": "gpu-a100-0",
                                                        "annotations": {"kwok.x-k8s.io/node": "fake"}}}
    api.objects[("Node", "real-0")] = {"metadata": {"name": "real-0", "labels": {"type": "real"}}}
    return api


def deploy_and_verify(api: FakeApi, **override: Any) -> Tuple[Engine, Dict[str, Any]]:
    engine = Engine(args(**override), lambda: api)
    try:
        found = engine.preflight()
        return engine, engine.verify(found, engine.apply(found))
    finally:
        engine.release()  # as the action does


def step(engine: Engine, name: str) -> Dict[str, Any]:
    return next(s for s in engine.steps if s["name"] == name)


ENDPOINTS = "Verify | Wait for the Service's ready endpoints"
ASK = "Verify | Ask the Service through the API server's service proxy"
CLEANUP = "Verify | Delete the ConfigMaps no revision refers to any more"


def test_verify_on_simulated_nodes_sends_nothing_and_says_why(verify_api: FakeApi) -> None:
    verify_api.objects[("EndpointSlice", "image-classifier-abcde")] = endpoint_slice("gpu-a100-0")
    ScriptedRollout.script = [OK]
    engine, found = deploy_and_verify(verify_api)
    assert step_names(engine)[-3:] == [ENDPOINTS, ASK, CLEANUP]
    assert step(engine, ENDPOINTS)["msg"] == "1 ready endpoint(s) behind Service ai-serving/image-classifier"
    msg = step(engine, ASK)["msg"]
    assert ("image-classifier: 1 ready endpoint(s) behind Service ai-serving/image-classifier; not asked: every ready "
            "endpoint is on a simulated (kwok) node (gpu-a100-0), where no container runs.") in msg
    assert msg.endswith("Nothing was sent: the deploy is verified by the API server only.")
    assert found["smoke"]["checked"] is False and found["smoke"]["reason_code"] == "simulated_node"
    assert FakeProxy.sent == []


def test_verify_asks_the_health_path_and_the_smoke_inference_through_the_service_proxy(verify_api: FakeApi) -> None:
    verify_api.objects[("EndpointSlice", "image-classifier-abcde")] = endpoint_slice("real-0")
    model = args()["model"]
    model["smoke"] = {"path": "/v1/models/image_classifier_model:predict", "port": "rest", "body": {"instances": [[1.0]]},
                      "expect": {"predictions": [[0.5]]}}
    FakeProxy.answers = {"/v1/models/image_classifier_model": (200, '{"model_version_status": []}'),
                         "/v1/models/image_classifier_model:predict": (200, '{"predictions": [[0.5000001]]}')}
    ScriptedRollout.script = [OK]
    engine, found = deploy_and_verify(verify_api, model=model)
    assert FakeProxy.sent == [
        "GET /api/v1/namespaces/ai-serving/services/image-classifier:rest/proxy/v1/models/image_classifier_model",
        "POST /api/v1/namespaces/ai-serving/services/image-classifier:rest/proxy/v1/models/"
        "image_classifier_model:predict"]
    msg = step(engine, ASK)["msg"]
    assert "through the API server's service proxy GET /v1/models/image_classifier_model -> 200" in msg
    assert "answered as expected. Inference answer: {\"predictions\": [[0.5000001]]}" in msg
    assert "Nothing was sent" not in msg and "no smoke field" not in msg
    assert found["smoke"]["checked"] is True


def test_verify_without_a_smoke_field_says_no_inference_was_asked(verify_api: FakeApi) -> None:
    verify_api.objects[("EndpointSlice", "image-classifier-abcde")] = endpoint_slice("real-0")
    FakeProxy.answers = {"/v1/models/image_classifier_model": (200, "{}")}
    ScriptedRollout.script = [OK]
    engine, _found = deploy_and_verify(verify_api)
    assert step(engine, ASK)["msg"].endswith(
        "The catalog entry has no smoke field: no inference was asked (docs/model_catalog.md, smoke).")


def test_a_wrong_smoke_answer_fails_with_the_answer_and_keeps_the_rollout(verify_api: FakeApi, monkeypatch) -> None:
    verify_api.objects[("EndpointSlice", "image-classifier-abcde")] = endpoint_slice("real-0")
    model = args()["model"]
    model["smoke"] = {"path": "/v1/models/image_classifier_model:predict", "port": "rest", "body": {"instances": [[1.0]]},
                      "expect": {"predictions": [[0.5]]}}
    FakeProxy.answers = {"/v1/models/image_classifier_model": (200, "{}"),
                         "/v1/models/image_classifier_model:predict": (200, '{"predictions": [[0.9]]}')}
    ScriptedRollout.script = [OK]
    with pytest.raises(DeployError) as err:
        deploy_and_verify(verify_api, model=model, smoke_timeout=0)
    msg = str(err.value)
    assert msg.startswith("image-classifier rolled out, but its Service ai-serving/image-classifier does not answer as "
                          "it should: POST /v1/models/image_classifier_model:predict (port rest) answered")
    assert "predictions[0][0] is 0.9, expected 0.5" in msg and "kubectl logs -n ai-serving deploy/image-classifier" in msg
    assert err.value.result["smoke"]["failed"] is True
    assert ("Deployment", "image-classifier") in verify_api.objects  # no rollback: the pods pass their probes


def test_verify_waits_for_ready_endpoints_and_fails_without_any(verify_api: FakeApi) -> None:
    verify_api.objects[("EndpointSlice", "image-classifier-abcde")] = endpoint_slice("gpu-a100-0", ready=False)
    ScriptedRollout.script = [OK]
    with pytest.raises(DeployError, match="has no ready endpoint 0s later: check that the Service's selector"):
        deploy_and_verify(verify_api)


def test_verify_deletes_only_the_configmaps_no_revision_refers_to(verify_api: FakeApi) -> None:
    verify_api.objects[("EndpointSlice", "image-classifier-abcde")] = endpoint_slice("gpu-a100-0")
    ScriptedRollout.script = [OK]
    deploy_and_verify(verify_api)
    first = [name for kind, name in verify_api.objects if kind == "ConfigMap"]
    verify_api.objects[("ConfigMap", "image-classifier-config-old")] = {
        "metadata": {"name": "image-classifier-config-old", "resourceVersion": "1"}}
    verify_api.objects[("ConfigMap", "image-classifier-config-older")] = {
        "metadata": {"name": "image-classifier-config-older", "resourceVersion": "1"}}
    # The older revision's ReplicaSet still mounts -old: it stays.
    ScriptedRollout.script = [dict(OK, replicaset_configmaps=["image-classifier-config-old"])]
    engine, found = deploy_and_verify(verify_api)
    assert found["deleted_configmaps"] == ["image-classifier-config-older"]
    assert step(engine, CLEANUP)["changed"] is True
    assert sorted(name for kind, name in verify_api.objects if kind == "ConfigMap") == sorted(
        first + ["image-classifier-config-old"])


def test_verify_skips_the_smoke_steps_when_switched_off_and_everything_in_check_mode(verify_api: FakeApi) -> None:
    ScriptedRollout.script = [OK]
    engine, found = deploy_and_verify(verify_api, smoke_check=False)
    assert step_names(engine)[-1] == CLEANUP and ENDPOINTS not in step_names(engine)
    assert found["smoke"] is None
    checked = Engine(args(), lambda: verify_api, check_mode=True)
    plan_found = checked.preflight()
    assert checked.verify(plan_found, checked.apply(plan_found)) == {"smoke": None, "deleted_configmaps": []}
    assert not [s for s in step_names(checked) if s.startswith("Verify")]


# --------------------------------------------------------------------------- safety: Lease, last good, interrupts


def test_a_second_run_fails_naming_the_holder_and_a_released_lease_is_free(api: FakeApi) -> None:
    first = Engine(args(), lambda: api)
    first.preflight()
    try:
        second = Engine(args(), lambda: api)
        with pytest.raises(DeployError, match="is being deployed by another run") as err:
            second.preflight()
        assert first.identity in str(err.value) and "since 20" in str(err.value)
        assert step_names(second) == ["Preflight | Inputs", "Lock | Take Lease ai-serving-deploy-image-classifier"]
    finally:
        first.release()
    lease = api.objects[("Lease", "ai-serving-deploy-image-classifier")]
    assert "holderIdentity" not in lease["spec"]
    third = Engine(args(), lambda: api)
    third.preflight()
    third.release()
    assert third.steps[1]["msg"].startswith("taken by ")


def test_a_lease_its_holder_stopped_renewing_is_taken_over_saying_so(api: FakeApi) -> None:
    dead = Engine(args(), lambda: api)
    dead.preflight()
    dead.stop_renewing()  # as a SIGKILLed run: no renewal, no release
    lease = api.objects[("Lease", "ai-serving-deploy-image-classifier")]
    lease["spec"]["renewTime"] = "2020-01-01T00:00:00.000000Z"
    taker = Engine(args(), lambda: api)
    taker.preflight()
    taker.release()
    assert any(w.startswith("Took over Lease ai-serving/ai-serving-deploy-image-classifier of image-classifier from "
                            + dead.identity) for w in taker.warnings), taker.warnings


def test_the_apply_phase_stops_when_another_run_took_the_lease(api: FakeApi) -> None:
    ScriptedRollout.script = [OK]
    engine = Engine(args(phase="preflight"), lambda: api)
    found = engine.preflight()
    engine.stop_renewing()
    lease = api.objects[("Lease", "ai-serving-deploy-image-classifier")]
    lease["spec"]["holderIdentity"] = "alice@laptop pid 7 run other"
    # The apply phase is another process: a new engine with the preflight's plan.
    apply_phase = Engine(args(phase="apply"), lambda: api)
    with pytest.raises(DeployError, match="no longer holds Lease .* alice@laptop pid 7 run other holds it now"):
        apply_phase.apply(json.loads(json.dumps(found)))
    assert not any(c.startswith("apply") for c in api.calls)


def test_check_mode_takes_no_lease(api: FakeApi) -> None:
    ScriptedRollout.script = [OK]
    run(api)
    api.objects.pop(("Lease", "ai-serving-deploy-image-classifier"))
    run(api, check_mode=True)
    assert ("Lease", "ai-serving-deploy-image-classifier") not in api.objects


def test_the_rollback_targets_the_last_good_version_not_the_snapshot(api: FakeApi, monkeypatch) -> None:
    ScriptedRollout.script = [OK]
    run(api)
    monkeypatch.setattr(Engine, "_good_revision", lambda self, found: 7)
    ScriptedRollout.script = [FAILED, dict(OK, undone_to_revision=7, changed=True)]
    with pytest.raises(DeployError, match="runs revision 7's template again"):
        run(api, settings={"namespace": NS, "pod_annotations": {"a/b": "c"}})
    assert ScriptedRollout.seen[-1]["to_revision"] == 7


def test_an_unfinished_rollout_is_rolled_back_to_the_last_good_version_first(api: FakeApi, monkeypatch) -> None:
    ScriptedRollout.script = [OK]
    run(api)
    monkeypatch.setattr(Engine, "_last_good_state", lambda self, found: {
        "record": {"template_hash": "abc", "revision": 3, "time": "t", "run": "r"},
        "position": "away-unfinished", "msg": "in the middle"})
    monkeypatch.setattr(Engine, "_good_revision", lambda self, found: 3)
    ScriptedRollout.script = [dict(OK, undone_to_revision=3, changed=True), OK]
    engine = run(api)
    assert "Rollout | Back to the last good version first (an unfinished rollout was found)" in step_names(engine)
    assert ScriptedRollout.seen[1]["undo"] is True and ScriptedRollout.seen[1]["to_revision"] == 3
    ScriptedRollout.seen.clear()
    ScriptedRollout.script = [OK]
    forward = run(api, continue_forward=True)
    assert not any(s.startswith("Rollout | Back") for s in step_names(forward))


def test_an_interrupt_during_the_wait_rolls_back_bounded(api: FakeApi, monkeypatch) -> None:
    ScriptedRollout.script = [OK]
    run(api)

    class Interrupting(ScriptedRollout):
        def run(self) -> Dict[str, Any]:
            if not self.params.get("undo"):
                raise engine_mod.Interrupted("SIGINT")
            return super().run()

    monkeypatch.setattr(engine_mod, "Rollout", Interrupting)
    ScriptedRollout.script = [dict(OK, undone_to_revision=1, changed=True)]
    with pytest.raises(DeployError) as err:
        run(api, rollout_timeout=600, settings={"namespace": NS, "pod_annotations": {"a/b": "c"}})
    assert "Interrupted by SIGINT during 'Rollout | Wait for the new version to be available'" in str(err.value)
    assert "Rolled back automatically" in str(err.value)
    assert ScriptedRollout.seen[-1]["timeout"] == engine_mod.INTERRUPT_ROLLBACK_S
    assert "holderIdentity" not in api.objects[("Lease", "ai-serving-deploy-image-classifier")]["spec"]


# ---- the objects a record adds beside the server (ollama: claim, model check, usage stats) ----

def ollama_model(**extra: Any) -> Dict[str, Any]:
    model: Dict[str, Any] = {
        "name": "chat", "runtime": "ollama", "image": {"repository": "r/ollama", "tag": "0.5.7"},
        "resources": {"requests": {"cpu": "1", "memory": "4Gi"}},
        "model": {"source": "pvc", "pvc": {"claim_name": "chat-models", "create": {"size": "10Gi"}}},
        "service": {"type": "NodePort", "node_ports": {"http": 30501}},
        "ollama": {"models": ["tiny"], "usage_stats": {"enabled": True}},
    }
    model.update(extra)
    return model


def ollama_args(model: Dict[str, Any]) -> Dict[str, Any]:
    return {"runtime": "ollama", "model": model, "config_files": {}}


def test_a_records_objects_are_applied_once_and_a_second_deploy_changes_nothing(api: FakeApi) -> None:
    ScriptedRollout.script = [OK, OK]
    first = run(api, **ollama_args(ollama_model()))
    kinds = {key for key in api.objects if key[0] != "Namespace"}
    assert {("PersistentVolumeClaim", "chat-models"), ("CronJob", "chat-model-check"),
            ("ServiceAccount", "chat-model-check"), ("Role", "chat-model-check"), ("RoleBinding", "chat-model-check"),
            ("ConfigMap", "chat-model-check-script"), ("ConfigMap", "chat-model-check-report"),
            ("ConfigMap", "chat-usage-stats"), ("Role", "chat-usage-stats"), ("RoleBinding", "chat-usage-stats"),
            ("Service", "chat"), ("Deployment", "chat")} <= kinds
    assert api.objects[("Service", "chat")]["spec"]["ports"][0]["nodePort"] == 30501
    assert any(s["changed"] for s in first.steps)
    # The model manager wrote its statistics: a deploy must leave them.
    api.objects[("ConfigMap", "chat-usage-stats")]["data"] = {"usage_data": '{"tiny": 3}'}
    second = run(api, **ollama_args(ollama_model()))
    assert not any(s["changed"] for s in second.steps), [s for s in second.steps if s["changed"]]
    assert api.objects[("ConfigMap", "chat-usage-stats")]["data"] == {"usage_data": '{"tiny": 3}'}
    # None of the record's ConfigMaps is taken for a stale configuration.
    assert ("ConfigMap", "chat-model-check-script") in api.objects


def test_objects_a_record_no_longer_asks_for_are_removed(api: FakeApi) -> None:
    ScriptedRollout.script = [OK, OK]
    run(api, **ollama_args(ollama_model()))
    model = ollama_model(ollama={"models": ["tiny"], "model_check": {"enabled": False}})
    engine = run(api, **ollama_args(model))
    removed = [s for s in engine.steps if s["name"] == "Apply | Remove what the model no longer has"][0]["msg"]
    for gone in ("CronJob/chat-model-check", "Role/chat-model-check", "ConfigMap/chat-usage-stats",
                 "ConfigMap/chat-model-check-script"):
        assert gone in removed
        assert tuple(gone.split("/")) not in api.objects
    assert ("PersistentVolumeClaim", "chat-models") in api.objects


def test_a_failed_first_deploy_removes_the_records_objects_too(api: FakeApi) -> None:
    ScriptedRollout.script = [FAILED]
    with pytest.raises(DeployError, match="first deploy"):
        run(api, **ollama_args(ollama_model()))
    assert [key for key in api.objects if key[0] not in ("Namespace", "Lease")] == []


def test_a_claim_the_deploy_creates_need_not_exist_but_an_existing_one_must(api: FakeApi) -> None:
    model = ollama_model(model={"source": "pvc", "pvc": {"claim_name": "chat-models"}})
    with pytest.raises(DeployError, match="PersistentVolumeClaim chat-models"):
        run(api, **ollama_args(model))


def test_the_plan_of_a_record_with_objects_travels_as_json(api: FakeApi) -> None:
    """phase=preflight hands the plan to phase=apply through Ansible: plain JSON, the record's parts included."""
    engine = Engine(args(**ollama_args(ollama_model())), lambda: api)
    try:
        found = engine.preflight()
    finally:
        engine.release()
    again = json.loads(json.dumps(found))
    assert again["server"]["ensure"]["wanted"] == ["tiny"]
    kinds = {o["kind"] for o in again["objects"]}
    assert kinds >= {"CronJob", "Role", "RoleBinding", "ServiceAccount", "PersistentVolumeClaim"}
