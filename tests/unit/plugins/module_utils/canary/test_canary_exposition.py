# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the Prometheus text format parser.

fixtures/custom_server_metrics.txt is custom_server's real /metrics (custom_server.metrics.Metrics rendered by
prometheus_client 0.26.0 after a known set of requests: see test_canary_analysis.py); prometheus_client's own parser
reads 149 samples from it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import (
    ExpositionError,
    Sample,
    parse,
    parse_value,
)

FIXTURE = Path(__file__).parent / "fixtures" / "custom_server_metrics.txt"


def test_custom_servers_metrics():
    samples = parse(FIXTURE.read_text())
    assert len(samples) == 149
    assert Sample("custom_server_requests_total", {"code": "500", "endpoint": "/predict"}, 4.0) in samples
    assert Sample("custom_server_request_duration_seconds_bucket", {"endpoint": "/predict", "le": "+Inf"},
                  200.0) in samples
    assert Sample("custom_server_requests_in_flight", {}, 0.0) in samples


@pytest.mark.parametrize("line, sample", [
    ("up 1", Sample("up", {}, 1.0)),
    ('a{x="1"} 2.5', Sample("a", {"x": "1"}, 2.5)),
    ('a{x="1",y="two words"} 3 1700000000000', Sample("a", {"x": "1", "y": "two words"}, 3.0)),  # timestamp
    ('a{x="q\\"u\\\\o\\nte"} 1', Sample("a", {"x": 'q"u\\o\nte'}, 1.0)),  # the three escapes
    ('a{x="}{,"} 1', Sample("a", {"x": "}{,"}, 1.0)),
    ("a{} 1e3", Sample("a", {}, 1000.0)),
    (':tensorflow:serving:request_count{status="OK"} 7', Sample(":tensorflow:serving:request_count", {"status": "OK"}, 7.0)),
    ("vllm:e2e_request_latency_seconds_count 4", Sample("vllm:e2e_request_latency_seconds_count", {}, 4.0)),
    ('b_bucket{le="0.5"} 3 # {trace_id="abc"} 0.4 1700000000.1', Sample("b_bucket", {"le": "0.5"}, 3.0)),  # exemplar
    ('{"my.metric", a="1"} 2', Sample("my.metric", {"a": "1"}, 2.0)),  # a quoted (UTF-8) name
    ("c -Inf", Sample("c", {}, -math.inf)),
])
def test_parse_line(line, sample):
    assert parse(line + "\n") == [sample]


def test_nan_value():
    assert math.isnan(parse("a NaN\n")[0].value)


@pytest.mark.parametrize("line", ["a one", 'a{x="1",x="2"} 1', 'a{x="1} 1'])
def test_a_line_that_is_not_a_sample_is_named(line):
    with pytest.raises(ExpositionError) as raised:
        parse("ok 1\n" + line + "\n")
    assert str(raised.value).startswith("the metrics are not in the Prometheus text format: ")


def test_parse_skips_comments_and_blank_lines():
    assert parse("# HELP a x\n# TYPE a counter\n\na_total 1\n") == [Sample("a_total", {}, 1.0)]


@pytest.mark.parametrize("text, value", [("+Inf", math.inf), ("-inf", -math.inf), ("0.005", 0.005), ("30.0", 30.0),
                                         ("1e-3", 0.001), (".5", 0.5), ("-2", -2.0)])
def test_parse_value(text, value):
    assert parse_value(text) == value
