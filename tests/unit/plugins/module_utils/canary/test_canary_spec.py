# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the catalog's strategy.canary: schema and rules through the catalog check, durations, settings."""

from __future__ import annotations

import copy
from typing import Any, Dict, List

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import (
    Bounds,
    Canary,
    DurationError,
    Step,
    canary_of,
    format_seconds,
    parse_duration,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import CatalogError, resolve_model, validate_catalog

M = "models.m.strategy.canary"


def entry(canary: Dict[str, Any], runtime: str = "custom_python", **extra: Any) -> Dict[str, Any]:
    data: Dict[str, Any] = {
        "runtime": runtime,
        "image": {"repository": "registry.example.com/m", "tag": "2"},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
        "replicas": 4,
        "strategy": {"canary": canary},
    }
    sections = {"custom_python": {"model_format": "sklearn", "model_path": "/models/model.joblib"},
                "triton": {"models": [{"name": "densenet"}]},
                "torchserve": {"model_name": "bert", "mar_file": "bert.mar"},
                "tf_serving": {"model_name": "m", "model_base_path": "/models/m"},
                "ollama": {"models": ["llama3:8b"]},
                "vllm": {"model": "tiny", "kv_cache_memory": "256Mi"}}
    data[runtime] = sections[runtime]
    data.update(extra)
    return data


def good() -> Dict[str, Any]:
    return {"steps": [{"weight": 10, "pause": "2m"}, {"weight": 50, "pause": 300}],
            "analysis": {"error_ratio": {"max": 0.02, "max_increase": 0.01},
                         "p99_latency": {"max": "800ms", "max_factor": 1.5}, "min_requests": 50}}


def problems(canary: Dict[str, Any], runtime: str = "custom_python", **extra: Any) -> List[str]:
    return validate_catalog({"m": entry(canary, runtime, **extra)})


def with_changes(**changes: Any) -> Dict[str, Any]:
    canary = good()
    canary.update(changes)
    return canary


# ---- valid input

@pytest.mark.parametrize("runtime", ["custom_python", "tf_serving", "vllm"])
def test_a_full_canary_is_valid_for_runtimes_with_a_latency_histogram(runtime):
    assert problems(good(), runtime) == []


@pytest.mark.parametrize("runtime", ["triton", "torchserve"])
def test_runtimes_without_a_latency_histogram_take_error_bounds(runtime):
    canary = good()
    del canary["analysis"]["p99_latency"]
    assert problems(canary, runtime) == []


def test_istio_ab_by_header_is_valid():
    assert problems(with_changes(split="istio", header={"name": "x-canary", "value": "1"})) == []


def test_gateway_parent_is_valid_with_split_gateway():
    assert problems(with_changes(split="gateway", gateway={"name": "public", "namespace": "gateways",
                                                           "section_name": "https"})) == []


def test_a_single_step_of_100_percent_is_valid():
    assert problems(with_changes(steps=[{"weight": 100, "pause": "1m30s"}])) == []


# ---- bad input: each names the field and the fix

def test_weights_not_increasing():
    found = problems(with_changes(steps=[{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"},
                                         {"weight": 50, "pause": "1m"}, {"weight": 20, "pause": "1m"}]))
    assert found == [
        M + ".steps[2].weight: 50 is not more than the step before (steps[1].weight 50): weights must increase "
            "step by step, e.g. 10, 50, 100",
        M + ".steps[3].weight: 20 is not more than the step before (steps[2].weight 50): weights must increase "
            "step by step, e.g. 10, 50, 100",
    ]


@pytest.mark.parametrize("weight", [101, 0, -5, 12.5, "10%", True])
def test_weight_outside_1_to_100_or_not_whole(weight):
    found = problems(with_changes(steps=[{"weight": weight, "pause": "1m"}]))
    assert found == [M + ".steps[0].weight: %r is not a traffic percentage, a whole number from 1 to 100" % (weight,)]


def test_no_analysis_at_all():
    canary = good()
    del canary["analysis"]
    assert problems(canary) == [
        M + ".analysis: has no metric to judge the canary by: set error_ratio.max (e.g. 0.01) and/or p99_latency.max "
            "(e.g. 500ms), or their bounds relative to the stable version (error_ratio.max_increase, "
            "p99_latency.max_factor)"]


def test_analysis_without_a_metric():
    found = problems(with_changes(analysis={"min_requests": 10, "metrics": "pods"}))
    assert found == [M + ".analysis: has no metric to judge the canary by: set error_ratio.max (e.g. 0.01) and/or "
                         "p99_latency.max (e.g. 500ms), or their bounds relative to the stable version "
                         "(error_ratio.max_increase, p99_latency.max_factor)"]


@pytest.mark.parametrize("pause", ["2 minutes", "2", "m", "1d", "-1m", 1.5, "", None])
def test_pause_that_is_not_a_duration(pause):
    found = problems(with_changes(steps=[{"weight": 10, "pause": pause}]))
    assert found == [M + ".steps[0].pause: %r is not a duration such as 30s, 2m or 1h30m (or whole seconds)"
                     % (pause,)]


@pytest.mark.parametrize("pause", [0, "0s", "500ms"])
def test_pause_shorter_than_a_second(pause):
    found = problems(with_changes(steps=[{"weight": 10, "pause": pause}]))
    assert found == [M + ".steps[0].pause: %r is shorter than 1s: a step needs time for requests to reach the canary; "
                         "write a duration such as 30s, 2m or 1h30m (or whole seconds)" % (pause,)]


def test_missing_pause_or_weight():
    found = problems(with_changes(steps=[{"weight": 10}, {"pause": "1m"}]))
    assert found == [M + ".steps[0].pause: required field is missing", M + ".steps[1].weight: required field is missing"]


def test_header_rule_without_a_value():
    found = problems(with_changes(split="istio", header={"name": "x-canary"}))
    assert found == [M + ".header.value: is missing: A/B sends the requests whose header x-canary has this exact value "
                         "to the canary; set it"]


def test_header_rule_with_an_empty_value():
    found = problems(with_changes(split="istio", header={"name": "x-canary", "value": ""}))
    assert found == [M + ".header.value: '' is not the header's exact value, not empty"]


@pytest.mark.parametrize("split", ["replicas", "gateway", "auto", None])
def test_header_rule_with_a_split_other_than_istio(split):
    canary = with_changes(header={"name": "x-canary", "value": "1"})
    if split is not None:
        canary["split"] = split
    assert problems(canary) == [
        M + ".header: A/B by header needs split istio (a VirtualService routes by header), and split is %s: set "
            "split: istio, or remove header" % (split or "auto")]


def test_header_name_must_be_lowercase():
    found = problems(with_changes(split="istio", header={"name": "X-Canary", "value": "1"}))
    assert found == [M + ".header.name: 'X-Canary' is not a lowercase HTTP header name such as x-canary"]


def test_unknown_split_and_on_failure():
    found = problems(with_changes(split="linkerd", on_failure="promote"))
    assert found == [M + ".on_failure: 'promote' is not one of ['abort']",
                     M + ".split: 'linkerd' is not one of ['auto', 'replicas', 'gateway', 'istio']"]


def test_gateway_parent_with_another_split():
    found = problems(with_changes(split="replicas", gateway={"name": "public"}))
    assert found == [M + ".gateway: applies to split gateway (the HTTPRoute's parent), and split is replicas: remove "
                         "it, or set split: gateway"]


@pytest.mark.parametrize("field, value, expected", [
    ("error_ratio", {"max": 1.5}, ".analysis.error_ratio.max: 1.5 is not a ratio from 0 to 1 (0.01 is 1% of the "
                                  "requests)"),
    ("error_ratio", {"max_increase": -0.1}, ".analysis.error_ratio.max_increase: -0.1 is not a ratio from 0 to 1 "
                                            "(0.01 is 1% of the requests)"),
    ("p99_latency", {"max": "fast"}, ".analysis.p99_latency.max: 'fast' is not a latency such as 250ms or 1.5s (or "
                                     "seconds as a number above 0)"),
    ("p99_latency", {"max": 0}, ".analysis.p99_latency.max: 0 is not a latency such as 250ms or 1.5s (or seconds as "
                                "a number above 0)"),
    ("p99_latency", {"max_factor": 0.5}, ".analysis.p99_latency.max_factor: 0.5 is not a factor of the stable "
                                         "version's p99 of at least 1 (1.5: 50% slower)"),
    ("min_requests", -1, ".analysis.min_requests: -1 is not a count of canary requests (0: none needed)"),
    ("interval", "soon", ".analysis.interval: 'soon' is not a duration such as 30s, 2m or 1h30m (or whole seconds)"),
    ("metrics", "datadog", ".analysis.metrics: 'datadog' is not one of ['pods', 'prometheus']"),
])
def test_bad_analysis_fields(field, value, expected):
    canary = good()
    canary["analysis"][field] = value
    assert problems(canary) == [M + expected]


def test_p99_bound_for_a_runtime_without_a_latency_histogram():
    assert problems(good(), "triton") == [
        M + ".analysis.p99_latency: triton exposes no latency histogram (its request metrics: Triton's "
            "nv_inference_request_success and nv_inference_request_failure): remove p99_latency and bound "
            "error_ratio only"]


def test_runtime_without_request_metrics():
    canary = good()
    del canary["analysis"]["p99_latency"]
    assert problems(canary, "ollama") == [
        M + ".analysis: ollama exposes no request metrics to judge a canary by: deploy it without strategy.canary (a "
            "rolling update)"]


def test_canary_needs_a_serving_stable_version_and_no_autoscaler():
    found = problems(good(), replicas=0)
    assert found == [M + ": needs a stable version that serves: replicas is 0; set replicas to 1 or more, or remove "
                         "strategy.canary"]
    found = problems(good(), autoscaling={"enabled": True, "max_replicas": 4, "target_cpu_utilization": 70})
    assert found == [M + ": cannot run with autoscaling enabled yet (the autoscaler would resize the stable version "
                         "under the canary's steps): disable autoscaling for the canary's environment, or remove "
                         "strategy.canary"]


def test_no_steps():
    assert problems(with_changes(steps=[])) == [M + ".steps: [] should be non-empty"]
    canary = good()
    del canary["steps"]
    assert problems(canary) == [M + ".steps: required field is missing"]


def test_an_environment_override_breaking_the_canary_is_named():
    data = entry(good(), environments={"prod": {"strategy": {"canary": {"steps": [{"weight": 50, "pause": "1m"},
                                                                                  {"weight": 40, "pause": "1m"}]}}}})
    assert validate_catalog({"m": data}) == [
        "models.m.environments.prod.strategy.canary.steps[1].weight: 40 is not more than the step before "
        "(steps[0].weight 50): weights must increase step by step, e.g. 10, 50, 100"]


def test_the_deploy_refuses_a_bad_canary_before_anything():
    # resolve_model is the deploy's first step (model_catalog, and the engine's input check): nothing is applied.
    with pytest.raises(CatalogError) as raised:
        resolve_model({"m": entry(with_changes(steps=[{"weight": 200, "pause": "1m"}]))}, "m")
    assert "models.m.strategy.canary.steps[0].weight: 200 is not a traffic percentage" in str(raised.value)


# ---- durations

@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), ("90s", 90.0), ("2m", 120.0), ("1h30m", 5400.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5s", 1.5),
    ("0s", 0.0), (0.25, 0.25),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "1d", "m", "2 m", "-1s", "1h-30m", True, None, -3, [1]])
def test_parse_duration_refuses(text):
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize("seconds, text", [(120, "2m"), (90, "1m30s"), (5400, "1h30m"), (0.25, "250ms"), (1.5, "1.5s"),
                                           (0, "0ms"), (3600, "1h"), (7, "7s")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


# ---- settings

def test_canary_of_a_full_entry():
    data = entry(with_changes(split="istio", header={"name": "x-canary", "value": "1"}, on_failure="abort"))
    data["strategy"]["canary"]["analysis"].update(metrics="prometheus", interval="30s")
    assert canary_of(data) == Canary(
        steps=(Step(10, 120.0), Step(50, 300.0)),
        split="istio",
        bounds=Bounds(min_requests=50, max_error_ratio=0.02, max_error_ratio_increase=0.01, max_p99_seconds=0.8,
                      max_p99_factor=1.5),
        metrics="prometheus",
        interval_seconds=30.0,
        header=("x-canary", "1"),
        on_failure="abort",
        gateway=None,
    )


def test_canary_of_takes_the_defaults():
    data = entry({"steps": [{"weight": 20, "pause": "1m"}], "analysis": {"error_ratio": {"max": 0.05}}})
    assert canary_of(data) == Canary(steps=(Step(20, 60.0),), split="auto",
                                     bounds=Bounds(min_requests=20, max_error_ratio=0.05), metrics="pods",
                                     interval_seconds=15.0)


def test_canary_of_an_entry_without_a_canary():
    data = entry(good())
    del data["strategy"]
    assert canary_of(data) is None
    assert canary_of(copy.deepcopy(entry({}))) is None
