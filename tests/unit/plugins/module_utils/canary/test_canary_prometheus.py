# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""analysis.metrics prometheus: the instant query of a version's pods' series, and its answer read as samples."""

from __future__ import annotations

import json
import re

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import runtimes
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary import analysis
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.prometheus import (
    PROBE_QUERY,
    PrometheusError,
    check_probe,
    query_path,
    samples_by_pod,
    series_names,
    series_query,
)


def metrics(runtime: str) -> runtimes.RequestMetrics:
    found = runtimes.get(runtime).request_metrics
    assert found is not None
    return found


def test_the_query_asks_every_series_the_analysis_reads_of_the_pods_by_name():
    custom = metrics("custom_python")
    query = series_query(custom, "ai", ["m-canary-5d8c-x2", "m-canary-5d8c-a1"])
    names = series_names(custom)
    assert "custom_server_requests_total" in names
    assert "custom_server_request_duration_seconds_bucket" in names
    # The pods sorted and escaped (a name is a regular expression in PromQL: its '-' stays literal).
    assert query.endswith(',namespace="ai",pod=~"m\\\\-canary\\\\-5d8c\\\\-a1|m\\\\-canary\\\\-5d8c\\\\-x2"}')
    pods = re.search(r'pod=~"(.*)"', query).group(1).replace("\\\\", "\\")
    assert re.fullmatch(pods, "m-canary-5d8c-x2") and not re.fullmatch(pods, "m-canary-5d8c-x")
    assert query_path(query).startswith("/api/v1/query?query=%7B__name__%3D~%22")


def test_counters_are_asked_with_and_without_total():
    """TF Serving declares its counter without _total: Prometheus stores it as written."""
    names = series_names(metrics("tf_serving"))
    assert ":tensorflow:serving:request_count" in names and ":tensorflow:serving:request_count_total" in names


def test_no_pod_no_query():
    with pytest.raises(ValueError):
        series_query(metrics("custom_python"), "ai", [])


def answer(*result) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(result)}})


def test_the_answer_becomes_each_pods_samples_and_the_same_counts_as_a_scrape():
    body = answer(
        {"metric": {"__name__": "custom_server_requests_total", "namespace": "ai", "pod": "p1",
                    "endpoint": "/v2/models/{model_name}/infer", "code": "200"}, "value": [1, "90"]},
        {"metric": {"__name__": "custom_server_requests_total", "namespace": "ai", "pod": "p1",
                    "endpoint": "/v2/models/{model_name}/infer", "code": "500"}, "value": [1, "10"]},
        {"metric": {"__name__": "custom_server_requests_total", "namespace": "ai", "pod": "p2",
                    "endpoint": "/v2/models/{model_name}/infer", "code": "200"}, "value": [1, "5"]},
    )
    found = samples_by_pod(body)
    assert sorted(found) == ["p1", "p2"]
    assert found["p1"][1].name == "custom_server_requests_total" and found["p1"][1].labels["code"] == "500"
    counts = analysis.read_counts(found["p1"], metrics("custom_python"))
    assert (counts.requests, counts.errors) == (100.0, 10.0)


@pytest.mark.parametrize("body, expected", [
    ("<html>bad gateway</html>", "the answer is not JSON"),
    (json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}),
     "the query failed: parse error at char 3"),
    (json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}),
     "expected an instant vector, got 'matrix'"),
    (answer({"metric": {"__name__": "x", "pod": "p"}}), "a sample of x has no value"),
])
def test_answers_that_are_not_a_result_are_said(body, expected):
    with pytest.raises(PrometheusError) as raised:
        samples_by_pod(body)
    assert str(raised.value).startswith(expected)


def infer(pod: str, code: str, value: str, job: str) -> dict:
    return {"metric": {"__name__": "custom_server_requests_total", "namespace": "ai", "pod": pod, "job": job,
                       "instance": "10.244.0.7:8080", "endpoint": "/v2/models/{model_name}/infer", "code": code},
            "value": [1, value]}


def test_a_pod_two_scrape_jobs_read_is_counted_once():
    """A ServiceMonitor's job and a pod discovery job both scraping a pod: every series twice, with another job label.
    Summed, each request would count twice; one job's series are kept (the one with the most, then by name)."""
    body = answer(infer("p1", "200", "90", "ai/m-monitor"), infer("p1", "500", "10", "ai/m-monitor"),
                  infer("p1", "200", "90", "kubernetes-pods"), infer("p1", "500", "10", "kubernetes-pods"),
                  infer("p2", "200", "7", "kubernetes-pods"))
    found = samples_by_pod(body)
    assert {sample.labels["job"] for sample in found["p1"]} == {"ai/m-monitor"}
    counts = analysis.read_counts(found["p1"], metrics("custom_python"))
    assert (counts.requests, counts.errors) == (100.0, 10.0)
    assert analysis.read_counts(found["p2"], metrics("custom_python")).requests == 7.0


def test_the_job_with_more_series_is_kept():
    """A second job that reads only part of a pod's series (another port of it) does not replace the full one."""
    body = answer(infer("p1", "200", "90", "b-full"), infer("p1", "500", "10", "b-full"),
                  infer("p1", "200", "3", "a-part"))
    assert {sample.labels["job"] for sample in samples_by_pod(body)["p1"]} == {"b-full"}


def test_the_probe_query_is_one_sample_of_value_1():
    """Before the first step the progression asks vector(1): the answer of a real Prometheus passes."""
    assert PROBE_QUERY == "vector(1)"
    check_probe(answer({"metric": {}, "value": [1733440000.123, "1"]}))


@pytest.mark.parametrize("body, expected", [
    ("404 page not found", "the answer is not JSON"),
    (answer(), "vector(1) did not give one sample of value 1"),
    (answer({"metric": {}, "value": [1, "2"]}), "vector(1) did not give one sample of value 1"),
    (json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}}),
     "expected an instant vector, got 'scalar'"),
])
def test_what_is_not_a_prometheus_answer_to_the_probe_is_said(body, expected):
    with pytest.raises(PrometheusError) as raised:
        check_probe(body)
    assert str(raised.value).startswith(expected)
