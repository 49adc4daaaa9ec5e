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
    PrometheusError,
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
