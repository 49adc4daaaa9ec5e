# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canary's steps against an in-memory API (issue 15): a good canary is promoted, a bad or slow one aborted with the
stable version restored, a silent one aborted for want of requests; a leftover canary is continued, replaced or removed.

The fake API plays the Deployment controller just enough: each Deployment has one ReplicaSet per template (its
pod-template-hash a digest of the template) and ``spec.replicas`` running pods of it. Every pod serves 10 requests per
second of the fake clock; canary pods fail ``BAD_RATIO`` of theirs or answer slowly, as the test asks. The pods' /metrics
are TensorFlow Serving's (the fixture's model), read through a fake pod proxy.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Dict, List, Optional, Tuple

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import last_good
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.traffic import TRACK_LABEL, template_digest
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import engine as engine_mod
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import progression
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.engine import Engine, Interrupted
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import DeployError

from test_engine import NS, OK, FakeApi, ScriptedRollout, args

NAME = "image-classifier"
CANARY = NAME + "-canary"
STEPS = [{"weight": 25, "pause": "60s"}, {"weight": 50, "pause": "60s"}]


class Clock:
    """The fake time: sleeping moves it, and every pod serves 10 requests a second meanwhile."""

    def __init__(self, api: "CanaryApi") -> None:
        self.now = 1000.0
        self.api = api
        self.slept: List[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.api.serve(seconds)


class CanaryApi(FakeApi):
    api_client = None

    def __init__(self) -> None:
        super().__init__()
        self.scaled: List[Tuple[str, int]] = []
        self.served: Dict[str, List[float]] = {}  # pod -> [requests, errors, slow]
        self.bad_ratio = 0.0
        self.slow = False
        self.uids = 0
        self.fail_rollout: List[str] = []
        self.applied: List[Dict[str, Any]] = []  # every object applied for real, in order

    def apply(self, obj: Dict[str, Any], field_manager: str, dry_run: bool = False):
        key = (obj["kind"], obj["metadata"]["name"])
        if field_manager == last_good.FIELD_MANAGER and key in self.objects:  # the record's annotation only
            self.objects[key]["metadata"].setdefault("annotations", {}).update(obj["metadata"]["annotations"])
            return copy.deepcopy(self.objects[key]), []
        before = copy.deepcopy(self.objects.get(key))
        if before is not None and obj["kind"] == "Deployment":
            # A server-side apply keeps what other managers own (the last-good annotation).
            obj = copy.deepcopy(obj)
            kept = {k: v for k, v in (before["metadata"].get("annotations") or {}).items()
                    if k == last_good.ANNOTATION}
            obj["metadata"]["annotations"] = dict(kept, **(obj["metadata"].get("annotations") or {}))
        if not dry_run:
            self.applied.append(copy.deepcopy(obj))
        answer = super().apply(obj, field_manager, dry_run)
        if obj["kind"] == "Deployment" and not dry_run:
            stored = self.objects[key]
            stored["metadata"]["annotations"].update(obj["metadata"].get("annotations") or {})
            stored["metadata"]["uid"] = (before or {}).get("metadata", {}).get("uid") or self._uid()
            if before is not None and before.get("status"):
                stored["status"] = before["status"]
            stored["metadata"]["generation"] = int((before or {}).get("metadata", {}).get("generation", 0)) + 1
            if before is not None and before.get("status"):
                self.settle()  # the controller observes the change
        return answer

    def _uid(self) -> str:
        self.uids += 1
        return "uid-%d" % self.uids

    def scale(self, name: str, namespace: str, replicas: int, field_manager: str) -> Dict[str, Any]:
        self.calls.append("scale %s %d" % (name, replicas))
        self.scaled.append((name, replicas))
        deployment = self.objects[("Deployment", name)]
        deployment["spec"]["replicas"] = replicas
        deployment["metadata"]["generation"] = int(deployment["metadata"].get("generation", 0)) + 1
        self.settle()
        return copy.deepcopy(deployment)

    def list(self, kind, api_version="v1", namespace=None, label_selector=None, field_selector=None):
        found = super().list(kind, api_version, namespace, label_selector, field_selector)
        if kind == "Pod" and label_selector:
            wanted = dict(part.split("=", 1) for part in label_selector.split(","))
            found = [p for p in found if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        return found

    def settle(self) -> None:
        """The controller's work: a ReplicaSet per Deployment template, its pods, the Deployment's status."""
        for key in [k for k in self.objects if k[0] in ("Pod", "ReplicaSet")]:
            if key[0] == "ReplicaSet":
                continue  # kept: the history
            del self.objects[key]
        for (kind, name), deployment in list(self.objects.items()):
            if kind != "Deployment" or "template" not in deployment.get("spec", {}):
                continue  # (a hand-made leftover without a template)
            digest = template_digest(deployment)[:10]
            revision = deployment["metadata"]["annotations"].get("deployment.kubernetes.io/revision", "1")
            labels = dict(deployment["spec"]["template"]["metadata"]["labels"], **{"pod-template-hash": digest})
            self.objects[("ReplicaSet", name + "-" + digest)] = {
                "metadata": {"name": name + "-" + digest, "labels": labels, "uid": "rs-" + digest,
                             "annotations": {"deployment.kubernetes.io/revision": revision},
                             "ownerReferences": [{"kind": "Deployment", "name": name,
                                                  "uid": deployment["metadata"]["uid"]}]},
                "spec": {"template": deployment["spec"]["template"]}}
            replicas = int(deployment["spec"]["replicas"])
            for index in range(replicas):
                pod = "%s-%s-%d" % (name, digest, index)
                # Owned by the ReplicaSet, with the template's containers (their GPUs): what the GPU check reads.
                self.objects[("Pod", pod)] = {"metadata": {"name": pod, "labels": labels,
                                                           "ownerReferences": [{"kind": "ReplicaSet",
                                                                                "uid": "rs-" + digest}]},
                                              "spec": {"nodeName": "node-1", "containers": copy.deepcopy(
                                                  deployment["spec"]["template"]["spec"]["containers"])},
                                              "status": {"phase": "Running", "podIP": "10.0.0.%d" % index}}
            deployment["status"] = {"observedGeneration": deployment["metadata"]["generation"], "replicas": replicas,
                                    "updatedReplicas": replicas, "readyReplicas": replicas,
                                    "availableReplicas": replicas}

    def serve(self, seconds: float) -> None:
        for (kind, pod), obj in self.objects.items():
            if kind != "Pod":
                continue
            canary = obj["metadata"]["labels"].get(TRACK_LABEL) == "canary"
            figures = self.served.setdefault(pod, [0.0, 0.0, 0.0])
            figures[0] += 10 * seconds
            figures[1] += 10 * seconds * (self.bad_ratio if canary else 0.0)
            figures[2] += 10 * seconds if canary and self.slow else 0.0

    def metrics(self, pod: str) -> str:
        requests, errors, slow = self.served.get(pod, [0.0, 0.0, 0.0])
        name = ":tensorflow:serving:request_count"
        latency = ":tensorflow:serving:request_latency"
        # Latency in microseconds: fast requests take under 10 ms, slow ones 2 s.
        return "\n".join([
            "# TYPE %s counter" % name,
            '%s{model_name="m",status="OK"} %g' % (name, requests - errors),
            '%s{model_name="m",status="UNAVAILABLE"} %g' % (name, errors),
            "# TYPE %s histogram" % latency,
            '%s_bucket{le="10000"} %g' % (latency, requests - slow),
            '%s_bucket{le="5e+06"} %g' % (latency, requests),
            '%s_bucket{le="+Inf"} %g' % (latency, requests),
            "%s_sum %g" % (latency, 1000 * (requests - slow) + 2e6 * slow),
            "%s_count %g" % (latency, requests), ""])


class Proxy:
    api: Optional[CanaryApi] = None

    def __init__(self, api_client: Any, request_timeout: int) -> None:
        self.timeout = request_timeout

    def send(self, path: str, method: str, body: Any) -> Tuple[Optional[int], str, str]:
        found = re.match(r"/api/v1/namespaces/[^/]+/pods/([^:]+):(\d+)/proxy/monitoring/prometheus/metrics$", path)
        if found is None or self.api is None:
            return 404, "", ""
        return 200, self.api.metrics(found.group(1)), ""


class Rollout:
    """The rollout wait: the controller settles at once; a name in ``api.fail_rollout`` fails."""

    api: Optional[CanaryApi] = None
    waited: List[str] = []

    def __init__(self, params: Dict[str, Any], client: Any) -> None:
        self.params = params

    def run(self) -> Dict[str, Any]:
        if self.api is None:
            raise AssertionError("no api")
        Rollout.waited.append(self.params["name"])
        if self.params["name"] in self.api.fail_rollout:
            return {"failed": True, "complete": False, "msg": "Deployment %s did not roll out: CrashLoopBackOff"
                    % self.params["name"]}
        self.api.settle()
        return dict(OK, state={"available": 4, "desired": 4})


@pytest.fixture
def api(monkeypatch) -> CanaryApi:
    fake = CanaryApi()
    clock = Clock(fake)
    monkeypatch.setattr(engine_mod, "Rollout", ScriptedRollout)
    monkeypatch.setattr(progression, "Rollout", Rollout)
    monkeypatch.setattr(progression, "ServiceProxy", Proxy)
    monkeypatch.setattr(progression, "time", clock)
    ScriptedRollout.script = []
    Proxy.api = Rollout.api = fake
    Rollout.waited = []
    fake.clock = clock  # type: ignore[attr-defined]
    # The stable version: 1.4.0 with 4 replicas, rolled out and recorded as good.
    ScriptedRollout.script = [OK]
    deploy(fake, model(tag="1.4.0", canary=None))
    fake.settle()
    Engine(args(), lambda: fake).record_last_good({"name": NAME, "namespace": NS})
    return fake


def model(tag: str = "1.5.0", canary: Optional[Dict[str, Any]] = None, **analysis: Any) -> Dict[str, Any]:
    entry = copy.deepcopy(args()["model"])
    entry["replicas"] = 4
    entry["image"]["tag"] = tag
    strategy: Dict[str, Any] = {"type": "RollingUpdate", "max_surge": 1, "max_unavailable": 0}
    if canary is not False:
        strategy["canary"] = canary or {"steps": STEPS, "split": "replicas", "analysis": dict({
            "interval": "20s", "min_requests": 50, "error_ratio": {"max": 0.05},
            "p99_latency": {"max": "500ms"}}, **analysis)}
    if canary is None and tag == "1.4.0":
        strategy.pop("canary")
    entry["strategy"] = strategy
    return entry


def deploy(api: CanaryApi, entry: Dict[str, Any]) -> Engine:
    engine = Engine(args(model=entry), lambda: api)
    lines: List[str] = []
    engine.notify = lines.append
    engine.lines = lines  # type: ignore[attr-defined]
    try:
        found = engine.preflight()
        engine.apply(found)
        engine.keep_as_last_good(found)
    finally:
        engine.release()
    return engine


def deploy_failing(api: CanaryApi, entry: Dict[str, Any], **more: Any) -> Tuple[Engine, DeployError]:
    """A deploy of ``entry`` (``more``: the module's other arguments) that must fail; the engine and its error."""
    engine = Engine(args(model=entry, **more), lambda: api)
    engine.notify = lambda line: None
    with pytest.raises(DeployError) as raised:
        try:
            engine.apply(engine.preflight())
        finally:
            engine.release()
    return engine, raised.value


def steps(engine: Engine) -> List[str]:
    return [s["name"] for s in engine.steps if s["name"].startswith("Canary")]


def tag_of(api: CanaryApi, name: str = NAME) -> str:
    return api.objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]


def test_a_good_canary_runs_every_step_then_is_promoted(api: CanaryApi) -> None:
    engine = deploy(api, model())
    assert steps(engine) == [
        "Canary | Start",
        "Canary | Step 1: 25% for 1m (1 canary, 3 stable pod(s))",
        "Canary | Step 2: 50% for 1m (2 canary, 2 stable pod(s))",
        "Canary | Promote: the stable Deployment takes the new version at 2 pod(s), then grows to 4 while the canary's 2 "
        "pod(s) go"]
    step1 = next(s for s in engine.steps if s["name"].startswith("Canary | Step 1"))
    # 1 canary pod of 4: a quarter of the requests, as the step asks.
    assert step1["msg"] == ("step 1 (25%): canary 600 requests, error ratio 0.000, p99 9.9ms (share 25.0%); stable "
                            "1800 requests, error ratio 0.000, p99 9.9ms: pass")
    # Checks every 20 s of the 60 s pause, one line each.
    assert api.clock.slept == [20, 20, 20, 20, 20, 20]  # type: ignore[attr-defined]
    assert [line.split(":")[0] for line in engine.lines] == ["    20s", "    40s", "    60s"] * 2  # type: ignore
    # The canary scales up before the stable version scales down; the promotion moves one pod each way.
    assert api.scaled == [(NAME, 3), (NAME, 2), (NAME, 3), (CANARY, 1), (NAME, 4)]
    assert ("Deployment", CANARY) not in api.objects
    assert tag_of(api) == "1.5.0" and api.objects[("Deployment", NAME)]["spec"]["replicas"] == 4
    good, _why = last_good.read(api.objects[("Deployment", NAME)])
    assert good is not None, engine.warnings
    assert good.template_hash == template_digest(api.objects[("Deployment", NAME)])[:10]


def test_a_canary_with_errors_is_aborted_at_the_first_step_and_the_stable_version_restored(api: CanaryApi) -> None:
    api.bad_ratio = 0.2
    recorded = api.objects[("Deployment", NAME)]["metadata"]["annotations"][last_good.ANNOTATION]
    engine, error = deploy_failing(api, model())
    assert str(error).startswith(
        "The canary of image-classifier was aborted at step 1: error ratio 0.200 (40 of 200 requests) is above the "
        "bound 0.05. Removed Deployment/image-classifier-canary; the stable version is back at 4 available pod(s); "
        "the new version was not recorded as the last good one.")
    assert [s["name"] for s in engine.steps if s.get("failed")] == ["Canary | Step 1: 25% for 1m (1 canary, 3 stable "
                                                                    "pod(s))"]
    assert ("Deployment", CANARY) not in api.objects
    assert api.scaled == [(NAME, 3), (NAME, 4)]
    assert tag_of(api) == "1.4.0"
    assert api.objects[("Deployment", NAME)]["metadata"]["annotations"][last_good.ANNOTATION] == recorded
    assert error.result["canary_checks"][0]["canary"]["errors"] == 40
    # Aborted at the first check: the errors clients saw are one interval of the canary's share.
    assert api.clock.slept == [20]  # type: ignore[attr-defined]


def test_a_slow_canary_is_aborted_by_its_latency(api: CanaryApi) -> None:
    api.slow = True
    _engine, error = deploy_failing(api, model())
    assert "aborted at step 1: p99 > 5s is above the bound 500ms" in str(error) or \
        "aborted at step 1: p99 4.95s is above the bound 500ms" in str(error), str(error)
    assert tag_of(api) == "1.4.0" and ("Deployment", CANARY) not in api.objects


def test_a_canary_without_requests_is_aborted_after_a_second_pause(api: CanaryApi) -> None:
    _engine, error = deploy_failing(api, model(min_requests=100000))
    assert "aborted at step 1: not enough canary requests in 2m" in str(error)
    assert api.clock.slept == [20] * 6  # type: ignore[attr-defined]
    assert tag_of(api) == "1.4.0"


def test_a_canary_that_does_not_roll_out_is_aborted(api: CanaryApi) -> None:
    api.fail_rollout = [CANARY]
    _engine, error = deploy_failing(api, model())
    assert "aborted at step 1: the canary did not roll out: Deployment image-classifier-canary did not roll out: " \
           "CrashLoopBackOff" in str(error)
    assert ("Deployment", CANARY) not in api.objects and api.scaled == [(NAME, 4)]


def test_a_new_version_that_does_not_change_the_pods_is_a_plain_apply(api: CanaryApi) -> None:
    ScriptedRollout.script = [OK]
    engine = deploy(api, model(tag="1.4.0", canary={"steps": STEPS, "split": "replicas",
                                                    "analysis": {"error_ratio": {"max": 0.05}}}))
    assert steps(engine) == []
    assert engine.lines == ["  canary of image-classifier not run: the new version does not change the pods (a plain "  # type: ignore
                            "apply)"]


def test_an_interrupted_canary_stays_and_a_rerun_continues_from_its_step(api: CanaryApi, monkeypatch) -> None:
    error = interrupted_at_step_2(api, monkeypatch)
    assert str(error).startswith("Interrupted by SIGINT during 'Canary | Step 2: 50% for 1m (2 canary, 2 stable "
                                 "pod(s))'. The canary stays as it is")
    engine = deploy(api, model())
    assert steps(engine)[:2] == ["Canary | Start", "Canary | Step 2: 50% for 1m (2 canary, 2 stable pod(s))"]
    assert engine.steps[[s["name"] for s in engine.steps].index("Canary | Start")]["msg"].startswith(
        "continues from step 2, where an interrupted run left the canary")
    assert tag_of(api) == "1.5.0" and ("Deployment", CANARY) not in api.objects


def check_run(api: CanaryApi, entry: Dict[str, Any]) -> Engine:
    """deploy_model.yml --check: the preflight, the dry runs, nothing applied or deleted."""
    engine = Engine(args(model=entry), lambda: api, check_mode=True)
    engine.notify = lambda line: None
    try:
        engine.apply(engine.preflight())
    finally:
        engine.release()
    return engine


def interrupted_at_step_2(api: CanaryApi, monkeypatch, entry: Optional[Dict[str, Any]] = None) -> Exception:
    """A canary deploy of ``entry`` (default: :func:`model`) interrupted by SIGINT in step 2's pause; its error."""
    sleep = api.clock.sleep  # type: ignore[attr-defined]
    calls = {"n": 0}

    def interrupting(seconds: float) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # in step 2
            raise Interrupted("SIGINT")
        sleep(seconds)

    monkeypatch.setattr(api.clock, "sleep", interrupting)  # type: ignore[attr-defined]
    _engine, error = deploy_failing(api, entry or model())
    monkeypatch.setattr(api.clock, "sleep", sleep)  # type: ignore[attr-defined]
    assert api.objects[("Deployment", CANARY)]["spec"]["replicas"] == 2
    return error


def test_check_mode_does_not_list_a_canary_the_real_run_continues_as_removed(api: CanaryApi, monkeypatch) -> None:
    """--check of the version whose canary an interrupted run left: the real run continues that canary (its steps),
    it does not remove it as a plain apply would."""
    interrupted_at_step_2(api, monkeypatch)
    api.calls.clear()
    engine = check_run(api, model())
    removal = next(s for s in engine.steps if s["name"] == "Apply | Remove what the model no longer has")
    assert "Deployment/image-classifier-canary" not in removal["msg"].split("; ")[0], removal["msg"]
    assert removal["msg"] == ("nothing to remove; the canary a run left (Deployment/image-classifier-canary) is this "
                              "version's: the run continues its steps from where it stands")
    assert not removal["changed"]
    assert ("Deployment", CANARY) in api.objects and not any(c.startswith(("apply ", "scale")) for c in api.calls)


def test_check_mode_says_a_canary_of_another_version_is_replaced(api: CanaryApi, monkeypatch) -> None:
    interrupted_at_step_2(api, monkeypatch)
    engine = check_run(api, model(tag="1.6.0"))
    removal = next(s for s in engine.steps if s["name"] == "Apply | Remove what the model no longer has")
    assert removal["msg"] == ("nothing to remove; the canary a run left (Deployment/image-classifier-canary) is of "
                              "another version: the run removes it, then starts its steps from step 1")


def test_check_mode_of_canary_yml_lists_the_canary_as_removed(api: CanaryApi, monkeypatch) -> None:
    """canary.yml --check (canary_action promote or abort): the real run removes the canary in the end."""
    interrupted_at_step_2(api, monkeypatch)
    engine = Engine(dict(args(model=model()), canary_action="abort"), lambda: api, check_mode=True)
    engine.notify = lambda line: None
    try:
        engine.apply(engine.preflight())
    finally:
        engine.release()
    removal = next(s for s in engine.steps if s["name"] == "Apply | Remove what the model no longer has")
    assert removal["msg"] == "Deployment/image-classifier-canary"


def test_check_mode_still_lists_a_canary_a_plain_deploy_removes(api: CanaryApi, monkeypatch) -> None:
    """The canary taken out of the catalog: the real run is a plain apply that removes what the canary left."""
    interrupted_at_step_2(api, monkeypatch)
    engine = check_run(api, model(canary=False))
    removal = next(s for s in engine.steps if s["name"] == "Apply | Remove what the model no longer has")
    assert removal["msg"] == "Deployment/image-classifier-canary" and removal["changed"]


def test_a_canary_of_another_version_is_replaced(api: CanaryApi) -> None:
    api.objects[("Deployment", CANARY)] = {"apiVersion": "apps/v1", "kind": "Deployment",
                                           "metadata": {"name": CANARY, "labels": {TRACK_LABEL: "canary"},
                                                        "annotations": {"creativeflow.ai/canary-template": "old"}},
                                           "spec": {"replicas": 2}}
    engine = deploy(api, model())
    start = next(s for s in engine.steps if s["name"] == "Canary | Start")
    assert start["msg"].startswith("removed the canary of another version that a run left")
    assert steps(engine)[1].startswith("Canary | Step 1")
    assert tag_of(api) == "1.5.0" and ("Deployment", CANARY) not in api.objects


def test_a_plain_deploy_removes_what_a_canary_left(api: CanaryApi) -> None:
    api.objects[("Deployment", CANARY)] = {"apiVersion": "apps/v1", "kind": "Deployment",
                                           "metadata": {"name": CANARY, "labels": {TRACK_LABEL: "canary"}},
                                           "spec": {"replicas": 1}}
    ScriptedRollout.script = [OK]
    engine = deploy(api, model(canary=False))
    removed = next(s for s in engine.steps if s["name"] == "Apply | Remove what the model no longer has")
    assert removed["msg"] == "Deployment/image-classifier-canary"
    assert ("Deployment", CANARY) not in api.objects


GATEWAY = ("gateway.networking.k8s.io/v1", "HTTPRoute")
ISTIO = {("networking.istio.io/v1", "VirtualService"), ("networking.istio.io/v1", "DestinationRule")}


def serve_kinds(monkeypatch, kinds) -> None:
    """The API server serves these (apiVersion, kind) pairs (the CRDs are installed)."""
    def get_if_served(self, kind, name, namespace, api_version):
        if (api_version, kind) not in kinds:
            return False, None
        return True, self.get(kind, name, namespace, api_version)

    monkeypatch.setattr(CanaryApi, "get_if_served", get_if_served)


def routed(split: str, **canary: Any) -> Dict[str, Any]:
    entry = model()
    entry["strategy"]["canary"].update(split=split, **canary)
    return entry


def applied(api: CanaryApi, kind: str) -> List[Dict[str, Any]]:
    return [o for o in api.applied if o["kind"] == kind]


def backends(route: Dict[str, Any]) -> List[Tuple[str, int]]:
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def deletes(api: CanaryApi) -> List[str]:
    return [call.split(" ", 1)[1] for call in api.calls if call.startswith("delete")]


def test_a_gateway_canary_moves_the_httproute_weights_step_by_step_then_promotes(api: CanaryApi, monkeypatch) -> None:
    serve_kinds(monkeypatch, {GATEWAY})
    stable_hash = template_digest(api.objects[("Deployment", NAME)])[:10]
    api.calls.clear()
    api.applied.clear()
    engine = deploy(api, routed("auto"))
    assert steps(engine) == [
        "Canary | Start",
        "Canary | Step 1: 25% for 1m (1 canary, 4 stable pod(s))",
        "Canary | Step 2: 50% for 1m (2 canary, 4 stable pod(s))",
        "Canary | Promote: every request to the model's Service, the stable Deployment takes the new version (4 "
        "pod(s)), then the route and the canary's 2 pod(s) go"]
    # Each step's route, exactly; then, for the stable version's rolling update, the model's Service alone.
    routes = applied(api, "HTTPRoute")
    assert [backends(r) for r in routes] == [[(NAME + "-stable", 75), (CANARY, 25)],
                                             [(NAME + "-stable", 50), (CANARY, 50)], [(NAME, 100)]]
    assert all(r["spec"]["parentRefs"] == [{"group": "", "kind": "Service", "name": NAME}] for r in routes)
    services = {o["metadata"]["name"]: o["spec"]["selector"] for o in applied(api, "Service")
                if o["metadata"]["name"] != NAME}
    assert services[NAME + "-stable"]["pod-template-hash"] == stable_hash
    assert services[CANARY][TRACK_LABEL] == "canary" and "pod-template-hash" not in services[CANARY]
    # The canary's Deployment comes first at each step, the Services before the route that names them.
    kinds = [o["kind"] for o in api.applied if o["kind"] in ("Deployment", "Service", "HTTPRoute")]
    assert kinds[:8] == ["Deployment", "Service", "Service", "HTTPRoute", "Deployment", "Service", "Service",
                         "HTTPRoute"]
    # The stable version keeps its 4 pods during the steps (the route splits the requests, not the pods).
    assert [name for name, _count in api.scaled if name == NAME] == []
    # The route goes first, the canary's Deployment last.
    assert deletes(api)[-4:] == ["HTTPRoute", "Service", "Service", "Deployment"]
    for kind, name in [("HTTPRoute", NAME), ("Service", NAME + "-stable"), ("Service", CANARY),
                       ("Deployment", CANARY)]:
        assert (kind, name) not in api.objects
    assert tag_of(api) == "1.5.0" and api.objects[("Deployment", NAME)]["spec"]["replicas"] == 4
    # No data plane in the fake either: the share is the pods' (1 canary pod beside 4 stable ones).
    step1 = next(s for s in engine.steps if s["name"].startswith("Canary | Step 1"))
    assert "(share 20.0%)" in step1["msg"], step1["msg"]


def test_a_gateway_canary_attaches_its_route_to_the_catalogs_gateway(api: CanaryApi, monkeypatch) -> None:
    serve_kinds(monkeypatch, {GATEWAY})
    deploy(api, routed("gateway", gateway={"name": "edge", "namespace": "infra", "section_name": "http"}))
    parents = [r["spec"]["parentRefs"] for r in applied(api, "HTTPRoute")]
    assert parents == [[{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge",
                         "namespace": "infra", "sectionName": "http"}]] * 3


def test_an_istio_canary_moves_the_virtualservice_weights_with_its_header_rule(api: CanaryApi, monkeypatch) -> None:
    serve_kinds(monkeypatch, ISTIO)
    stable_hash = template_digest(api.objects[("Deployment", NAME)])[:10]
    api.calls.clear()
    engine = deploy(api, routed("istio", header={"name": "x-canary", "value": "1"}))
    assert steps(engine)[1:3] == ["Canary | Step 1: 25% for 1m (1 canary, 4 stable pod(s))",
                                  "Canary | Step 2: 50% for 1m (2 canary, 4 stable pod(s))"]
    host = "%s.%s.svc.cluster.local" % (NAME, NS)
    services = applied(api, "VirtualService")
    assert [vs["apiVersion"] for vs in services] == ["networking.istio.io/v1"] * 3
    for vs, weight in zip(services, (25, 50)):
        assert vs["spec"] == {"hosts": [host], "http": [
            {"name": "ab-canary", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
             "route": [{"destination": {"host": host, "subset": "canary"}}]},
            {"name": "weighted", "route": [{"destination": {"host": host, "subset": "stable"}, "weight": 100 - weight},
                                           {"destination": {"host": host, "subset": "canary"}, "weight": weight}]}]}
    assert services[2]["spec"] == {"hosts": [host], "http": [{"name": "promotion",
                                                              "route": [{"destination": {"host": host}}]}]}
    rules = applied(api, "DestinationRule")
    assert len(rules) == 2 and rules[0]["spec"] == {"host": host, "subsets": [
        {"name": "stable", "labels": {"pod-template-hash": stable_hash}},
        {"name": "canary", "labels": {TRACK_LABEL: "canary"}}]}
    assert deletes(api)[-3:] == ["VirtualService", "DestinationRule", "Deployment"]
    assert ("VirtualService", NAME) not in api.objects and ("DestinationRule", NAME) not in api.objects
    assert tag_of(api) == "1.5.0" and [name for name, _count in api.scaled if name == NAME] == []


def test_a_gateway_canary_with_errors_is_aborted_its_route_removed_first(api: CanaryApi, monkeypatch) -> None:
    serve_kinds(monkeypatch, {GATEWAY})
    api.bad_ratio = 0.2
    api.calls.clear()
    _engine, error = deploy_failing(api, routed("gateway"))
    assert str(error).startswith(
        "The canary of image-classifier was aborted at step 1: error ratio 0.200 (40 of 200 requests) is above the "
        "bound 0.05. Removed HTTPRoute/image-classifier, Service/image-classifier-stable, "
        "Service/image-classifier-canary, Deployment/image-classifier-canary; the stable version is back at 4 "
        "available pod(s)"), str(error)
    assert deletes(api) == ["HTTPRoute", "Service", "Service", "Deployment"]
    assert tag_of(api) == "1.4.0" and ("HTTPRoute", NAME) not in api.objects
    assert api.scaled == []  # the stable version kept its pods: nothing to give back


def test_an_interrupted_gateway_canary_continues_from_the_step_its_route_shows(api: CanaryApi, monkeypatch) -> None:
    serve_kinds(monkeypatch, {GATEWAY})
    interrupted_at_step_2(api, monkeypatch, routed("gateway"))
    assert backends(api.objects[("HTTPRoute", NAME)]) == [(NAME + "-stable", 50), (CANARY, 50)]
    engine = deploy(api, routed("gateway"))
    start = next(s for s in engine.steps if s["name"] == "Canary | Start")
    assert start["msg"].startswith("continues from step 2, where an interrupted run left the canary")
    assert steps(engine)[1] == "Canary | Step 2: 50% for 1m (2 canary, 4 stable pod(s))"
    assert tag_of(api) == "1.5.0" and ("HTTPRoute", NAME) not in api.objects


def test_a_gateway_canary_whose_route_matches_no_step_is_aborted(api: CanaryApi, monkeypatch) -> None:
    serve_kinds(monkeypatch, {GATEWAY})
    sleep = api.clock.sleep  # type: ignore[attr-defined]

    def interrupting(seconds: float) -> None:
        raise Interrupted("SIGINT")

    monkeypatch.setattr(api.clock, "sleep", interrupting)  # type: ignore[attr-defined]
    deploy_failing(api, routed("gateway"))
    monkeypatch.setattr(api.clock, "sleep", sleep)  # type: ignore[attr-defined]
    api.objects[("HTTPRoute", NAME)]["spec"]["rules"][0]["backendRefs"][1]["weight"] = 30  # edited by hand
    _engine, error = deploy_failing(api, routed("gateway"))
    assert "matches no step of this plan" in str(error) and "Removed HTTPRoute/image-classifier" in str(error)
    assert tag_of(api) == "1.4.0" and ("Deployment", CANARY) not in api.objects


def test_the_promotion_failing_rolls_back_to_the_last_good_version(api: CanaryApi) -> None:
    api.fail_rollout = [NAME]
    ScriptedRollout.script = [dict(OK, state={"available": 4})]  # the rollback's undo
    engine, error = deploy_failing(api, model())
    assert "The promotion of the canary of image-classifier failed" in str(error)
    assert ("Deployment", CANARY) not in api.objects
    assert ScriptedRollout.seen[-1]["replicas"] == 4 and ScriptedRollout.seen[-1]["undo"] is True
    assert any(s["name"] == "Rollout | Roll back" for s in engine.steps)


def test_leftovers_are_found_only_with_the_canary_deployment(api: CanaryApi) -> None:
    assert not progression.leftovers(api, NAME, NS)
    api.objects[("Deployment", CANARY)] = {"metadata": {"name": CANARY, "labels": {TRACK_LABEL: "canary"}}}
    api.objects[("Service", NAME + "-stable")] = {"metadata": {"name": NAME + "-stable", "labels": {
        "app.kubernetes.io/managed-by": "creativeflow.ai_serving"}}}
    api.objects[("Service", NAME + "-canary")] = {"metadata": {"name": NAME + "-canary", "labels": {}}}
    assert progression.leftovers(api, NAME, NS) == [
        {"api_version": "v1", "kind": "Service", "name": NAME + "-stable"},
        {"api_version": "apps/v1", "kind": "Deployment", "name": CANARY}]


def gpu_node(gpus: int) -> Dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {}}, "spec": {},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def test_the_gpu_preflight_counts_a_resumed_canarys_pods_once(api: CanaryApi, monkeypatch) -> None:
    """A rerun that continues a canary: its running pods are within the canary's peak (4 replicas + 1), not other
    pods beside it. The node has room for exactly that peak: 5 GPUs, the model's pods take 1 each."""
    api.objects[("Node", "node-1")] = gpu_node(5)
    original = Engine.__init__

    def with_gpu_preflight(self, arguments, *rest, **kwargs):
        original(self, dict(arguments, gpu_preflight=True), *rest, **kwargs)

    monkeypatch.setattr(Engine, "__init__", with_gpu_preflight)
    interrupted_at_step_2(api, monkeypatch)  # the first run's preflight fitted: 4 stable pods, peak 5
    used = sum(1 for key in api.objects if key[0] == "Pod")
    assert used == 4  # 2 canary + 2 stable pods, 1 GPU each: 1 free
    engine = deploy(api, model())
    gpu = next(s for s in engine.steps if s["name"] == "Preflight | GPU capacity")
    assert gpu["msg"].startswith("with the canary's 1 more pod(s) at its peak (the pods of image-classifier-canary, "
                                 "which a run left, counted in it): "), gpu["msg"]
    assert steps(engine)[1] == "Canary | Step 2: 50% for 1m (2 canary, 2 stable pod(s))"
    assert tag_of(api) == "1.5.0" and ("Deployment", CANARY) not in api.objects


def test_the_gpu_preflight_still_refuses_what_does_not_fit_beside_a_resumed_canary(api: CanaryApi,
                                                                                   monkeypatch) -> None:
    api.objects[("Node", "node-1")] = gpu_node(5)
    original = Engine.__init__

    def with_gpu_preflight(self, arguments, *rest, **kwargs):
        original(self, dict(arguments, gpu_preflight=True), *rest, **kwargs)

    monkeypatch.setattr(Engine, "__init__", with_gpu_preflight)
    interrupted_at_step_2(api, monkeypatch)
    api.objects[("Node", "node-1")] = gpu_node(4)  # a GPU went: the peak of 5 no longer fits
    api.calls.clear()
    _engine, error = deploy_failing(api, model())
    assert str(error).startswith("GPU preflight for image-classifier in namespace ai-serving: "), str(error)
    assert not any(call.startswith(("apply", "scale")) for call in api.calls)


def test_canary_action_abort_removes_the_canary_and_restores_the_stable_replicas(api: CanaryApi, monkeypatch) -> None:
    interrupted_at_step_2(api, monkeypatch)
    entry = model()
    engine = Engine(dict(args(model=entry), canary_action="abort"), lambda: api)
    try:
        found = engine.preflight()
        engine.apply(found)
    finally:
        engine.release()
    assert steps(engine) == ["Canary | Abort (canary_action abort)"]
    assert ("Deployment", CANARY) not in api.objects
    assert api.objects[("Deployment", NAME)]["spec"]["replicas"] == 4 and tag_of(api) == "1.4.0"


def test_canary_action_promote_promotes_now(api: CanaryApi, monkeypatch) -> None:
    interrupted_at_step_2(api, monkeypatch)
    api.clock.slept.clear()  # type: ignore[attr-defined]
    engine = Engine(dict(args(model=model()), canary_action="promote"), lambda: api)
    try:
        engine.apply(engine.preflight())
    finally:
        engine.release()
    assert [name.split(":")[0] for name in steps(engine)] == ["Canary | Promote"]
    assert api.clock.slept == []  # type: ignore[attr-defined]
    assert tag_of(api) == "1.5.0" and ("Deployment", CANARY) not in api.objects
    assert api.objects[("Deployment", NAME)]["spec"]["replicas"] == 4


def test_canary_action_without_a_canary_says_so(api: CanaryApi) -> None:
    _engine, error = deploy_failing(api, model(), canary_action="abort")
    assert str(error) == ("canary_action abort: no canary of image-classifier runs in namespace ai-serving (no "
                          "Deployment image-classifier-canary). Nothing was applied.")


def test_every_check_is_kept_for_the_result(api: CanaryApi) -> None:
    engine = deploy(api, model())
    assert [(c["step"], c["seconds"], c["status"], c["action"]) for c in engine.canary_checks] == [
        (1, 20.0, "pass", "wait"), (1, 40.0, "pass", "wait"), (1, 60.0, "pass", "next"),
        (2, 20.0, "pass", "wait"), (2, 40.0, "pass", "wait"), (2, 60.0, "pass", "promote")]
    assert engine.canary_checks[2]["canary_share"] == 25.0


def test_analysis_by_prometheus_without_its_url_is_refused_before_anything_is_applied(api: CanaryApi) -> None:
    api.calls.clear()
    _engine, error = deploy_failing(api, model(metrics="prometheus"))
    assert str(error).startswith("strategy.canary of image-classifier: analysis.metrics prometheus needs the URL of the "
                                 "Prometheus to query: set ai_serving_canary_prometheus_url in the inventory")
    assert not any(call.startswith(("apply", "scale")) for call in api.calls)


class FakePrometheus:
    """The HTTP API of a Prometheus that scraped the fake API's pods just now: instant queries of series by name,
    namespace and pod (the pods' exposition, with the ``namespace`` and ``pod`` labels discovery adds)."""

    api: Optional[CanaryApi] = None
    queries: List[str] = []
    down = False
    #: Queries answered before it goes down (None: it stays up).
    up_for: Optional[int] = None

    def __init__(self, url: str, timeout: int) -> None:
        self.url = url

    def get(self, path: str) -> Tuple[Optional[int], str, str]:
        from urllib.parse import parse_qs, urlsplit

        from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import parse

        if self.down or self.api is None or (self.up_for is not None and len(self.queries) >= self.up_for):
            return None, "", "URLError: <urlopen error [Errno 111] Connection refused>"
        parts = urlsplit(path)
        assert parts.path == "/api/v1/query", path
        query = parse_qs(parts.query)["query"][0]
        FakePrometheus.queries.append(query)
        if query == "vector(1)":  # the probe before the first step
            return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [1000.0, "1"]}]}}), ""
        found = re.fullmatch(r'\{__name__=~"(.*)",namespace="(.*)",pod=~"(.*)"\}', query)
        assert found, query
        names, pods = [re.compile(p.replace("\\\\", "\\")) for p in (found.group(1), found.group(3))]
        result = []
        for (kind, pod), _obj in self.api.objects.items():
            if kind != "Pod" or not pods.fullmatch(pod):
                continue
            for sample in parse(self.api.metrics(pod)):
                if names.fullmatch(sample.name):
                    labels = dict(sample.labels, __name__=sample.name, namespace=found.group(2), pod=pod)
                    result.append({"metric": labels, "value": [1000.0, repr(sample.value)]})
        return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}), ""


def deploy_with_prometheus(api: CanaryApi, monkeypatch, entry: Dict[str, Any]) -> Tuple[Engine, Optional[DeployError]]:
    monkeypatch.setattr(progression, "PrometheusApi", FakePrometheus)
    FakePrometheus.api, FakePrometheus.queries = api, []
    engine = Engine(dict(args(model=entry), canary_prometheus_url="http://prometheus.monitoring:9090"), lambda: api)
    engine.notify = lambda line: None
    try:
        found = engine.preflight()
        engine.apply(found)
        return engine, None
    except DeployError as exc:
        return engine, exc
    finally:
        engine.release()


def test_a_canary_analysed_by_prometheus_reads_the_pods_series_there_and_is_promoted(api: CanaryApi,
                                                                                     monkeypatch) -> None:
    engine, error = deploy_with_prometheus(api, monkeypatch, model(metrics="prometheus"))
    assert error is None, error
    step1 = next(s for s in engine.steps if s["name"].startswith("Canary | Step 1"))
    # Every line says where its figures come from.
    assert step1["msg"] == ("step 1 (25%): canary 600 requests, error ratio 0.000, p99 9.9ms (share 25.0%); stable "
                            "1800 requests, error ratio 0.000, p99 9.9ms: pass (figures from the Prometheus at "
                            "http://prometheus.monitoring:9090)")
    start = next(s for s in engine.steps if s["name"] == "Canary | Start")
    assert start["msg"].endswith("; figures from the Prometheus at http://prometheus.monitoring:9090")
    assert tag_of(api) == "1.5.0"
    # The probe first, then one query per version per read, by the pods' names: never a scrape through the pod proxy.
    assert FakePrometheus.queries[0] == "vector(1)"
    assert FakePrometheus.queries[1].startswith('{__name__=~":tensorflow:serving:request_count|')
    assert ',namespace="ai-serving",pod=~"' in FakePrometheus.queries[1]


def test_a_canary_analysed_by_prometheus_with_errors_is_aborted(api: CanaryApi, monkeypatch) -> None:
    api.bad_ratio = 0.2
    _engine, error = deploy_with_prometheus(api, monkeypatch, model(metrics="prometheus"))
    assert error is not None and str(error).startswith(
        "The canary of image-classifier was aborted at step 1: error ratio 0.200 (40 of 200 requests) is above the "
        "bound 0.05."), error
    assert tag_of(api) == "1.4.0"


def test_a_url_where_no_prometheus_answers_stops_the_canary_before_anything_is_applied(
        api: CanaryApi, monkeypatch) -> None:
    FakePrometheus.down = True
    api.calls.clear()
    try:
        engine, error = deploy_with_prometheus(api, monkeypatch, model(metrics="prometheus"))
    finally:
        FakePrometheus.down = False
    assert error is not None and str(error) == (
        "strategy.canary of image-classifier: analysis.metrics prometheus: no Prometheus answers a query at "
        "http://prometheus.monitoring:9090 (ai_serving_canary_prometheus_url): URLError: <urlopen error [Errno 111] "
        "Connection refused>. Set the URL of the Prometheus' HTTP API as the controller reaches it (without "
        "/api/v1), or analysis.metrics: pods. The canary was not started: nothing of it was applied."), error
    assert [s["name"] for s in engine.steps if s.get("failed")] == ["Canary | Start"]
    assert not any(call.startswith(("apply", "scale")) for call in api.calls), api.calls
    assert ("Deployment", CANARY) not in api.objects and tag_of(api) == "1.4.0"


def test_a_url_that_answers_something_else_stops_the_canary_too(api: CanaryApi, monkeypatch) -> None:
    """A web server that is not a Prometheus (a path prefix missing, a UI): its 404 page is quoted."""

    class NotPrometheus(FakePrometheus):
        def get(self, path: str) -> Tuple[Optional[int], str, str]:
            return 404, "404 page not found\n", ""

    monkeypatch.setattr(progression, "PrometheusApi", NotPrometheus)
    _engine, error = deploy_failing(api, model(metrics="prometheus"), canary_prometheus_url="http://web:80")
    assert "no Prometheus answers a query at http://web:80 (ai_serving_canary_prometheus_url): HTTP 404: 404 page " \
        "not found. Set the URL" in str(error), error
    assert ("Deployment", CANARY) not in api.objects


def test_a_prometheus_that_stops_answering_leaves_the_canary_without_figures(api: CanaryApi, monkeypatch) -> None:
    FakePrometheus.up_for = 1  # the probe only
    try:
        _engine, error = deploy_with_prometheus(api, monkeypatch, model(metrics="prometheus"))
    finally:
        FakePrometheus.up_for = None
    assert error is not None and "aborted at step 1: not enough canary requests" in str(error), error
    assert ("metrics not read: Prometheus at http://prometheus.monitoring:9090 (URLError: <urlopen error [Errno 111] "
            "Connection refused>)") in str(error)
    assert tag_of(api) == "1.4.0"
