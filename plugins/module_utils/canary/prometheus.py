# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``analysis.metrics: prometheus``: the pods' series read from a Prometheus instead of the pods themselves.

One instant query per check asks for the current value of every series the runtime's analysis reads (its request
and error counters, its latency histogram's buckets) of the version's pods, by the ``namespace`` and ``pod`` labels
Prometheus' Kubernetes discovery puts on them (the ServiceMonitor the deploy creates does too). The answer becomes the
same samples a scrape of the pod gives, per pod, so the analysis is the one of the pods' own metrics
(:mod:`.analysis`: the increase between the step's first read and each check, a restarted pod counted from 0). The
figures lag the pods by the Prometheus' scrape interval.

Pure functions here; the HTTP GET is the caller's (``open_url``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, Sequence
from urllib.parse import urlencode

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import Sample
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.runtimes import RequestMetrics

#: The labels the query selects pods by (Prometheus' Kubernetes service discovery and the Prometheus operator's).
NAMESPACE_LABEL = "namespace"
POD_LABEL = "pod"


class PrometheusError(ValueError):
    """The Prometheus answered something that is not a query result: the message says what."""


def series_names(metrics: RequestMetrics) -> List[str]:
    """The series names the analysis reads, as Prometheus stores them: a counter under its name or with ``_total``
    (servers differ), a histogram's ``_bucket`` series."""
    names: List[str] = []
    for series in tuple(metrics.requests) + tuple(metrics.errors) + tuple(metrics.rejected):
        for name in (series.name, series.name + "_total"):
            if name not in names:
                names.append(name)
    if metrics.latency is not None:
        names.append(metrics.latency.name + "_bucket")
    return names


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def series_query(metrics: RequestMetrics, namespace: str, pods: Sequence[str]) -> str:
    """The PromQL instant query of every series the analysis reads, of ``pods`` in ``namespace``."""
    if not pods:
        raise ValueError("no pod to query")
    names = "|".join(re.escape(name) for name in series_names(metrics))
    pod_names = "|".join(re.escape(pod) for pod in sorted(pods))
    values = (_quoted(names), NAMESPACE_LABEL, _quoted(namespace), POD_LABEL, _quoted(pod_names))
    return '{__name__=~"%s",%s="%s",%s=~"%s"}' % values


def query_path(query: str) -> str:
    """The HTTP API path of an instant query (``GET /api/v1/query``)."""
    return "/api/v1/query?" + urlencode({"query": query})


def samples_by_pod(body: str) -> Dict[str, List[Sample]]:
    """The answer of :func:`series_query` as each pod's samples (``__name__`` as the name, the ``pod`` label kept)."""
    try:
        answer: Any = json.loads(body)
    except ValueError as exc:
        raise PrometheusError("the answer is not JSON: %s" % exc) from exc
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, Mapping) else None
        raise PrometheusError("the query failed: %s" % (error or str(answer)[:200]))
    data = answer.get("data") or {}
    if data.get("resultType") != "vector":
        raise PrometheusError("expected an instant vector, got %r" % data.get("resultType"))
    found: Dict[str, List[Sample]] = {}
    for item in data.get("result") or []:
        labels = dict(item.get("metric") or {})
        name = labels.pop("__name__", "")
        pod = labels.get(POD_LABEL, "")
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusError("a sample of %s has no value: %r" % (name, item)) from exc
        if name and pod:
            found.setdefault(pod, []).append(Sample(name, labels, value))
    return found
