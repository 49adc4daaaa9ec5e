# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the Prometheus text format parser.

fixtures/custom_server_metrics.txt is custom_server's real /metrics (custom_server.metrics.Metrics rendered by
prometheus_client 0.26.0 after a known set of requests: see test_canary_analysis.py); prometheus_client's own parser
read the same 149 samples from it when this parser was written.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import (
    ExpositionError,
    Sample,
    parse,
    parse_line,
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
    ('a{ x = "1" , } 3', Sample("a", {"x": "1"}, 3.0)),  # spaces and a trailing comma
    ('a{x="q\\"u\\\\o\\nte"} 1', Sample("a", {"x": 'q"u\\o\nte'}, 1.0)),  # the three escapes
    ('a{x="}{,"} 1', Sample("a", {"x": "}{,"}, 1.0)),
    ("a{} 1e3", Sample("a", {}, 1000.0)),
    (':tensorflow:serving:request_count{status="OK"} 7', Sample(":tensorflow:serving:request_count", {"status": "OK"}, 7.0)),
    ("vllm:e2e_request_latency_seconds_count 4", Sample("vllm:e2e_request_latency_seconds_count", {}, 4.0)),
    ('b_bucket{le="0.5"} 3 # {trace_id="abc"} 0.4 1700000000.1', Sample("b_bucket", {"le": "0.5"}, 3.0)),  # exemplar
    ('{"my.metric", a="1"} 2', Sample("my.metric", {"a": "1"}, 2.0)),  # a quoted (UTF-8) name
    ('m{"label.with.dot"="v"} 2', Sample("m", {"label.with.dot": "v"}, 2.0)),
    ("c -Inf", Sample("c", {}, -math.inf)),
])
def test_parse_line(line, sample):
    assert parse_line(line) == sample


def test_nan_value():
    assert math.isnan(parse_line("a NaN").value)


@pytest.mark.parametrize("line, reason", [
    ("a", "one value (and an optional timestamp) is expected after a"),
    ("a 1 2 3", "one value (and an optional timestamp) is expected after a"),
    ("a one", "'one' is not a number"),
    ('a{x=1} 1', "the value of label x must be quoted"),
    ('a{x="1" 1', "',' or '}' is expected at column 9"),
    ('a{x="1} 1', "a quoted value is not closed"),
    ('a{x="1",x="2"} 1', "label x is given twice"),
    ('a{1x="1"} 1', "a label name is expected at column 3"),
    ('a{x} 1', "'=' is expected after label x"),
    ('{a="1"} 1', "a metric name is expected"),
    ('a{x="1"}1', "a space is expected after the metric name and labels"),
    ('1a 1', "a metric name is expected"),
])
def test_parse_line_refuses(line, reason):
    with pytest.raises(ValueError) as raised:
        parse_line(line)
    assert str(raised.value) == reason


def test_parse_skips_comments_and_blank_lines_and_names_a_bad_line():
    assert parse("# HELP a x\n# TYPE a counter\n\n  a_total 1\n# EOF\n") == [Sample("a_total", {}, 1.0)]
    with pytest.raises(ExpositionError) as raised:
        parse("a 1\nb{oops\n")
    assert str(raised.value) == ("line 2 of the metrics is not in the Prometheus text format ('=' is expected after "
                                 "label oops): b{oops")


@pytest.mark.parametrize("text, value", [("+Inf", math.inf), ("-inf", -math.inf), ("0.005", 0.005), ("30.0", 30.0),
                                         ("1e-3", 0.001), (".5", 0.5), ("-2", -2.0)])
def test_parse_value(text, value):
    assert parse_value(text) == value
