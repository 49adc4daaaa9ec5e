# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the smoke check's pure logic: proxy paths, requests, judging answers, endpoints."""

from __future__ import annotations

import json

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import catalog, runtimes, smoke

TRITON_BODY = {"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2, 3.5]}]}
TRITON_EXPECT = {"outputs": [{"name": "OUTPUT0", "data": [2, 4, 7]}]}
TRITON_ANSWER = {"model_name": "double", "model_version": "1",
                 "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [3], "data": [2.0, 4.0, 7.0]}]}


def test_proxy_path_names_namespace_service_port_and_path() -> None:
    assert (smoke.proxy_path("ai-serving", "double", "http", "/v2/models/double/infer")
            == "/api/v1/namespaces/ai-serving/services/double:http/proxy/v2/models/double/infer")
    assert smoke.proxy_path("ns", "svc", 8080, "/ping") == "/api/v1/namespaces/ns/services/svc:8080/proxy/ping"
    # A query string is kept; characters that would change the path are escaped.
    assert smoke.proxy_path("ns", "svc", "http", "/a b?x=1") == "/api/v1/namespaces/ns/services/svc:http/proxy/a%20b?x=1"


def test_proxy_path_refuses_a_relative_path() -> None:
    with pytest.raises(smoke.SmokeError, match="'ping' must start with /"):
        smoke.proxy_path("ns", "svc", "http", "ping")


def test_inference_request_defaults_port_and_method() -> None:
    model = {"smoke": {"path": "/v2/models/double/infer", "body": TRITON_BODY, "expect": TRITON_EXPECT}}
    assert smoke.inference_request(model, ["http", "grpc", "metrics"]) == {
        "path": "/v2/models/double/infer", "port": "http", "method": "POST", "status": 200, "inference": True,
        "body": TRITON_BODY, "expect": TRITON_EXPECT}
    # No body: a GET; a status of its own.
    got = smoke.inference_request({"smoke": {"path": "/v1/models/m", "port": "rest", "status": 204}}, ["grpc", "rest"])
    assert got == {"path": "/v1/models/m", "port": "rest", "method": "GET", "status": 204, "inference": True}
    assert smoke.inference_request({}, ["http"]) is None


def test_inference_request_refuses_a_port_the_service_lacks() -> None:
    with pytest.raises(smoke.SmokeError, match=r"smoke.port 'management' is not one of the Service's ports "
                                               r"\(inference, metrics\)"):
        smoke.inference_request({"smoke": {"path": "/models", "port": "management"}}, ["inference", "metrics"])


def test_server_spec_puts_the_inference_after_the_health_paths() -> None:
    model = {"name": "doubler", "torchserve": {"model_name": "doubler", "mar_file": "doubler.mar"},
             "smoke": {"path": "/predictions/doubler", "body": {"data": [1, 2, 3.5]}, "expect": [2, 4, 7]}}
    paths = runtimes.server_spec("torchserve", model).smoke_paths
    assert [item["path"] for item in paths] == ["/ping", "/predictions/doubler"]
    assert paths[-1]["inference"] and paths[-1]["port"] == "inference"
    assert smoke.requests(paths)[0] == {"path": "/ping", "port": "inference", "method": "GET", "status": 200,
                                        "inference": False}


@pytest.mark.parametrize("expected, actual", [
    (TRITON_EXPECT, TRITON_ANSWER),
    ([2, 4, 7], [2.0, 4.0, 7.0]),
    ([0.1], [0.10000000149011612]),  # an FP32 answer
    ({"a": {"b": "x"}}, {"a": {"b": "x", "c": 1}, "d": 2}),
])
def test_contains_accepts(expected, actual) -> None:
    assert smoke.contains(expected, actual) is None


@pytest.mark.parametrize("expected, actual, message", [
    (TRITON_EXPECT, {"outputs": [{"name": "OUTPUT0", "data": [2, 4, 8]}]}, "outputs[0].data[2] is 8, expected 7"),
    (TRITON_EXPECT, {"error": "no model"}, "the answer has no key 'outputs'"),
    ([2, 4, 7], [2, 4], "the answer has 2 item(s), expected 3"),
    ([2, 4, 7], {"code": 503}, 'the answer is {"code": 503}, not a list'),
    ({"status": "Healthy"}, {"status": "Unhealthy"}, "status is Unhealthy, expected Healthy"),
    ([True], [1], "[0] is 1, expected true"),
])
def test_contains_says_where_it_differs(expected, actual, message) -> None:
    assert smoke.contains(expected, actual) == message


def test_judge_passes_and_fails_with_the_answer() -> None:
    request = smoke.inference_request({"smoke": {"path": "/v2/models/double/infer", "body": TRITON_BODY,
                                                 "expect": TRITON_EXPECT}}, ["http"])
    assert smoke.judge(request, 200, json.dumps(TRITON_ANSWER)) is None
    wrong = smoke.judge(request, 200, json.dumps({"outputs": [{"name": "OUTPUT0", "data": [1, 2, 3.5]}]}))
    assert wrong.startswith("POST /v2/models/double/infer (port http) answered {")
    assert "outputs[0].data[0] is 1, expected 2" in wrong
    assert smoke.judge(request, 400, '{"error":"unexpected inference input \'X\'"}') == (
        "POST /v2/models/double/infer (port http) answered HTTP 400, expected 200: "
        "{\"error\":\"unexpected inference input 'X'\"}")
    assert "but not JSON: <html>" in smoke.judge(request, 200, "<html>")
    assert smoke.judge(request, None, "", "ConnectionRefusedError") == (
        "POST /v2/models/double/infer (port http) got no answer: ConnectionRefusedError")
    health = smoke.health_request("/ping", "inference")
    assert smoke.judge(health, 200, "anything") is None
    assert "answered HTTP 503, expected 200: (empty body)" in smoke.judge(health, 503, "")


def test_a_long_answer_is_shortened() -> None:
    message = smoke.judge(smoke.health_request("/", "http"), 500, "x" * 1000)
    assert message.endswith("x" * 300 + "...")


SLICES = [{"endpoints": [
    {"addresses": ["10.244.0.5"], "nodeName": "real-0", "conditions": {"ready": True},
     "targetRef": {"kind": "Pod", "name": "m-abc"}},
    {"addresses": ["10.244.0.6"], "nodeName": "real-0", "conditions": {"ready": False}},
]}, {"endpoints": None}]


def test_ready_endpoints_and_whether_they_can_answer() -> None:
    endpoints = smoke.ready_endpoints(SLICES)
    assert endpoints == [{"address": "10.244.0.5", "node": "real-0", "pod": "m-abc"}]
    assert smoke.cannot_check(endpoints, ["gpu-a100-0"]) == ("", "")
    assert smoke.cannot_check([], []) == ("no_ready_endpoint", "the Service has no ready endpoint")
    code, reason = smoke.cannot_check(endpoints, ["real-0"])
    assert code == "simulated_node" and reason == (
        "every ready endpoint is on a simulated (kwok) node (real-0), where no container runs")
    code, reason = smoke.cannot_check(endpoints + [{"address": "10.0.1.2", "node": "cpu-0", "pod": "x"}], ["cpu-0"])
    assert code == "simulated_node" and reason.startswith("1 of 2 ready endpoints are on simulated (kwok) nodes")


def test_simulated_nodes_are_kwoks() -> None:
    assert smoke.is_simulated({"metadata": {"labels": {"type": "kwok"}}})
    assert smoke.is_simulated({"metadata": {"annotations": {"kwok.x-k8s.io/node": "fake"}}})
    assert not smoke.is_simulated({"metadata": {"name": "real-0", "labels": {"creativeflow.ai/real-node": "true"}}})


def _entry(**extra):
    entry = {"runtime": "triton", "image": {"repository": "r/t", "tag": "1"},
             "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}, "triton": {"models": [{"name": "double"}]}}
    entry.update(extra)
    return entry


def test_catalog_checks_the_smoke_field() -> None:
    good = _entry(smoke={"path": "/v2/models/double/infer", "body": TRITON_BODY, "expect": TRITON_EXPECT})
    assert catalog.validate_catalog({"m": good}) == []
    problems = catalog.validate_catalog({"m": _entry(smoke={"path": "v2/infer", "port": "rest", "verb": "POST"})})
    assert any(p.startswith("models.m.smoke.path") for p in problems), problems
    assert any("models.m.smoke.port: 'rest' is not a port of triton's Service: name one of http, grpc, metrics" in p
               for p in problems), problems
    assert any(p.startswith("models.m.smoke.verb: unknown field") for p in problems), problems
