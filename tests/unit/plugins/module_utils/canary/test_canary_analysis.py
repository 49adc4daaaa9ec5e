# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of a canary step's analysis: figures from scrapes, increases, p99, verdicts, PromQL.

The fixture is custom_server's real /metrics after: /predict 196 x 200 (5-80 ms) and 4 x 500 (300 ms); v2 infer
40 x 200 (20 ms) and 2 x 422 (1 ms); gRPC ModelInfer 10 x 200 (10 ms); /health/ready 30 x 200 and 5 x 503, /metrics
once (not inference: left out).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import runtimes
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.analysis import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Counts,
    VersionStats,
    histogram_quantile,
    increase,
    judge,
    read_counts,
    stats,
    total,
    version_stats,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import parse
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import Bounds

FIXTURE = Path(__file__).parent / "fixtures" / "custom_server_metrics.txt"
CUSTOM = runtimes.get("custom_python").request_metrics
INF = math.inf


def fixture_counts() -> Counts:
    assert CUSTOM is not None
    return read_counts(parse(FIXTURE.read_text()), CUSTOM)


# ---- reading a scrape

def test_custom_server_counts_inference_only():
    counts = fixture_counts()
    assert counts.requests == 252  # 200 + 42 + 10; health checks and scrapes left out
    assert counts.errors == 4  # the 500s; 422 is the client's fault, 503 of a probe is not inference
    assert counts.buckets == ((0.0005, 0), (0.001, 2), (0.0025, 2), (0.005, 15), (0.01, 38), (0.025, 116),
                              (0.05, 176), (0.1, 248), (0.25, 248), (0.5, 252), (1.0, 252), (2.5, 252), (5.0, 252),
                              (10.0, 252), (30.0, 252), (INF, 252))


def test_custom_server_p99():
    # rank 0.99 x 252 = 249.48, in (0.25, 0.5] holding 248..252: 0.25 + 0.25 x 1.48 / 4
    found = stats(fixture_counts())
    assert (found.requests, found.errors, found.p99_beyond) == (252, 4, False)
    assert found.p99 == pytest.approx(0.3425)


def test_every_runtime_with_request_metrics_is_read_from_its_own_names():
    text = "\n".join([
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 90',
        ':tensorflow:serving:request_count{model_name="m",status="Invalid argument"} 10',
        ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="REST",le="10000"} 50',
        ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="REST",le="+Inf"} 100',
        'Requests2XX{Level="Host",Hostname="h"} 70', 'Requests4XX{Level="Host",Hostname="h"} 5',
        'Requests5XX{Level="Host",Hostname="h"} 25',
        'nv_inference_request_success{model="d",version="1"} 30', 'nv_inference_request_failure{model="d",version="1"} 3',
        'http_requests_total{handler="/v1/chat/completions",method="POST",status="2xx"} 40',
        'http_requests_total{handler="/v1/chat/completions",method="POST",status="5xx"} 2',
        'http_requests_total{handler="/health",method="GET",status="2xx"} 500',
        'vllm:e2e_request_latency_seconds_bucket{model_name="m",le="1.0"} 30',
        'vllm:e2e_request_latency_seconds_bucket{model_name="m",le="+Inf"} 40',
    ])
    samples = parse(text)
    found = {name: read_counts(samples, runtimes.get(name).request_metrics)
             for name in runtimes.names() if runtimes.get(name).request_metrics is not None}
    assert {name: (counts.requests, counts.errors) for name, counts in found.items()} == {
        "tf_serving": (100, 10), "torchserve": (100, 25), "triton": (33, 3), "custom_python": (0, 0),
        "vllm": (42, 2)}
    # TF Serving's histogram counts microseconds: 10000 us = 10 ms
    assert found["tf_serving"].buckets == ((0.01, 50), (INF, 100))
    assert found["vllm"].buckets == ((1.0, 30), (INF, 40))
    assert runtimes.get("ollama").request_metrics is None


def test_counters_typed_without_total_are_read():
    """Servers that declare a counter without the _total suffix (TF Serving, TorchServe, Triton): prometheus_client's
    parser renames its samples <name>_total, and they are still counted."""
    text = "\n".join([
        "# TYPE :tensorflow:serving:request_count counter",
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 90',
        ':tensorflow:serving:request_count{model_name="m",status="UNAVAILABLE"} 10',
        "# TYPE Requests5XX counter", 'Requests5XX{Level="Host",Hostname="h"} 25',
        "# TYPE Requests2XX counter", 'Requests2XX{Level="Host",Hostname="h"} 75',
        "# TYPE nv_inference_request_success counter", 'nv_inference_request_success{model="d",version="1"} 30',
        "# TYPE nv_inference_request_failure counter", 'nv_inference_request_failure{model="d",version="1"} 3', ""])
    samples = parse(text)
    assert samples[0].name == ":tensorflow:serving:request_count_total"
    found = {name: read_counts(samples, runtimes.get(name).request_metrics) for name in ("tf_serving", "torchserve",
                                                                                         "triton")}
    assert {name: (counts.requests, counts.errors) for name, counts in found.items()} == {
        "tf_serving": (100, 10), "torchserve": (100, 25), "triton": (33, 3)}


# ---- increases between scrapes

def test_increase_between_two_scrapes():
    before = Counts(100, 2, ((0.1, 90), (INF, 100)))
    after = Counts(150, 7, ((0.1, 130), (INF, 150)))
    assert increase(before, after) == Counts(50, 5, ((0.1, 40), (INF, 50)))


def test_a_pod_that_restarted_counts_from_zero():
    before = Counts(100, 2, ((0.1, 90), (INF, 100)))
    after = Counts(30, 1, ((0.1, 29), (INF, 30)))
    assert increase(before, after) == after


def test_a_pod_new_since_the_first_scrape_counts_whole():
    assert increase(None, Counts(5, 0, ((INF, 5),))) == Counts(5, 0, ((INF, 5),))


def test_version_stats_sum_the_pods():
    before = {"m-canary-a": Counts(10, 0, ((0.1, 10), (INF, 10)))}
    after = {"m-canary-a": Counts(60, 5, ((0.1, 55), (INF, 60))),
             "m-canary-b": Counts(40, 0, ((0.1, 40), (INF, 40)))}  # started during the step
    found = version_stats(before, after)
    assert (found.requests, found.errors) == (90, 5)
    assert found.p99 == pytest.approx(0.1)  # 85 of 90 under 100 ms, the rest in +Inf: beyond
    assert found.p99_beyond


def test_total_of_nothing():
    assert total([]) == Counts(0, 0, ())


# ---- p99

@pytest.mark.parametrize("buckets, expected", [
    (((0.1, 0), (0.2, 100), (INF, 100)), (0.199, False)),  # rank 99 of 100 in (0.1, 0.2]
    (((0.1, 100), (INF, 100)), (0.099, False)),  # first bucket: from 0
    (((0.1, 50), (0.5, 98), (INF, 100)), (0.5, True)),  # the 99th is in +Inf: the highest finite bound, beyond
    (((0.1, 0), (INF, 0)), (None, False)),  # no observations
    (((0.1, 5),), (None, False)),  # no +Inf bucket: not a histogram
    ((), (None, False)),
    (((INF, 3),), (None, True)),
    (((0.1, 60), (0.2, 59), (INF, 100)), (0.2, True)),  # not cumulative (a torn scrape): smoothed as PromQL does
])
def test_histogram_quantile(buckets, expected):
    value, beyond = histogram_quantile(0.99, buckets)
    assert beyond == expected[1]
    assert value == (None if expected[0] is None else pytest.approx(expected[0]))


# ---- verdicts

BOUNDS = Bounds(min_requests=20, max_error_ratio=0.02, max_error_ratio_increase=0.01, max_p99_seconds=0.5,
                max_p99_factor=1.5)
STABLE = VersionStats(1000, 5, 0.2)


def test_a_good_canary_passes():
    verdict = judge(VersionStats(100, 1, 0.25), STABLE, BOUNDS)
    assert (verdict.status, verdict.reasons, verdict.notes) == (PASS, [], [])
    assert verdict.canary_share == pytest.approx(100 * 100 / 1100)
    assert verdict.line(1, 10) == ("step 1 (10%): canary 100 requests, error ratio 0.010, p99 250ms (share 9.1%); "
                                   "stable 1000 requests, error ratio 0.005, p99 200ms: pass")


def test_too_few_requests_is_no_verdict_yet():
    verdict = judge(VersionStats(12, 0, 0.1), STABLE, BOUNDS)
    assert (verdict.status, verdict.reasons, verdict.notes) == (INCONCLUSIVE, [], ["12 of the 20 canary requests a "
                                                                                   "verdict needs"])


def test_twenty_percent_errors_fail_at_the_first_requests():
    # 4 errors in 5 requests: even 15 good requests more end the step at 4/20 = 0.2 > 0.02
    verdict = judge(VersionStats(5, 4, 0.1), STABLE, BOUNDS)
    assert verdict.status == FAIL
    assert verdict.reasons == ["error ratio 0.800 (4 of 5 requests) is above the bound 0.02"]


def test_one_early_error_waits_for_enough_requests():
    # 1 error in 5: 1/20 = 0.05 would still fail; with a bound of 0.1 it may pass: wait
    verdict = judge(VersionStats(5, 1, 0.1), STABLE, Bounds(min_requests=20, max_error_ratio=0.1))
    assert verdict.status == INCONCLUSIVE


def test_error_ratio_above_the_absolute_bound():
    verdict = judge(VersionStats(100, 3, 0.1), STABLE, BOUNDS)
    assert verdict.reasons == ["error ratio 0.030 (3 of 100 requests) is above the bound 0.02",
                               "error ratio 0.030 is more than 0.01 above the stable version's 0.005"]


def test_error_ratio_relative_to_the_stable_version():
    bounds = Bounds(min_requests=20, max_error_ratio_increase=0.01)
    assert judge(VersionStats(100, 1, None), VersionStats(1000, 10, None), bounds).status == PASS  # 0.01 <= 0.02
    verdict = judge(VersionStats(100, 3, None), VersionStats(1000, 10, None), bounds)
    assert verdict.reasons == ["error ratio 0.030 is more than 0.01 above the stable version's 0.010"]


def test_relative_bounds_need_stable_traffic():
    bounds = Bounds(min_requests=20, max_error_ratio_increase=0.01, max_p99_factor=1.5)
    verdict = judge(VersionStats(100, 5, 2.0), VersionStats(3, 0, 0.1), bounds)
    assert verdict.status == PASS
    assert verdict.notes == [
        "error ratio not compared with the stable version: it served 3 requests, fewer than 20",
        "p99 not compared with the stable version: too few of its requests"]


def test_slow_canary_fails_by_latency():
    verdict = judge(VersionStats(100, 0, 0.8), STABLE, BOUNDS)
    assert verdict.status == FAIL
    assert verdict.reasons == ["p99 800ms is above the bound 500ms",
                               "p99 800ms is more than 1.5 times the stable version's 200ms"]


def test_p99_relative_only():
    bounds = Bounds(min_requests=20, max_p99_factor=1.5)
    assert judge(VersionStats(100, 0, 0.29), STABLE, bounds).status == PASS
    assert judge(VersionStats(100, 0, 0.31), STABLE, bounds).reasons == [
        "p99 310ms is more than 1.5 times the stable version's 200ms"]


def test_p99_beyond_the_last_bucket_fails_any_bound():
    verdict = judge(VersionStats(100, 0, 30.0, p99_beyond=True), STABLE, Bounds(min_requests=20, max_p99_seconds=60))
    assert verdict.reasons == ["p99 > 30s is above the bound 1m"]


def test_p99_without_observations_is_a_note():
    verdict = judge(VersionStats(100, 0, None), STABLE, Bounds(min_requests=20, max_p99_seconds=0.5))
    assert (verdict.status, verdict.notes) == (PASS, ["p99 not judged: the canary's latency histogram has no "
                                                      "observations"])


def test_verdict_to_dict():
    found = judge(VersionStats(100, 3, 0.1), STABLE, Bounds(min_requests=20, max_error_ratio=0.02)).to_dict()
    assert found == {"status": FAIL, "reasons": ["error ratio 0.030 (3 of 100 requests) is above the bound 0.02"],
                     "notes": [], "canary_share": pytest.approx(9.0909, rel=1e-3),
                     "canary": {"requests": 100, "errors": 3, "error_ratio": 0.03, "rejected": 0, "p99_seconds": 0.1},
                     "stable": {"requests": 1000, "errors": 5, "error_ratio": 0.005, "rejected": 0,
                                "p99_seconds": 0.2}}


def test_a_canary_refusing_what_the_stable_accepts_fails_without_any_bound():
    """custom_server answers a model that raises with 400: a canary of such a version refuses every request."""
    verdict = judge(VersionStats(40, 0, 0.01, rejected=40), VersionStats(120, 0, 0.01, rejected=1),
                    Bounds(min_requests=20, max_error_ratio=0.05))
    assert verdict.status == FAIL
    assert verdict.reasons == ["refuses 1.000 of its requests (40 of 40, 4xx) against the stable version's 0.008: it "
                               "rejects what the stable version accepts"]
    assert "refused 1.000" in verdict.line(1, 25)


def test_refusals_like_the_stable_version_s_pass():
    # clients sending bad input to both versions: 10 % refused by each, within 0.05 of each other
    assert judge(VersionStats(100, 0, None, rejected=12), VersionStats(1000, 0, None, rejected=100),
                 Bounds(min_requests=20)).status == PASS


def test_refusals_need_stable_traffic_to_be_compared():
    verdict = judge(VersionStats(100, 0, None, rejected=100), VersionStats(3, 0, None), Bounds(min_requests=20))
    assert verdict.status == PASS
    assert verdict.notes == ["refused requests not compared with the stable version: it served 3 requests, fewer "
                             "than 20"]


def test_custom_server_refusals_are_read_and_increase():
    counts = fixture_counts()
    assert counts.rejected == 2  # the two 422s of v2 infer; the 503s are probes
    assert increase(counts, Counts(262, 4, counts.buckets, 7)).rejected == 5
    assert total([counts, counts]).rejected == 4
    assert stats(counts).rejected == 2
