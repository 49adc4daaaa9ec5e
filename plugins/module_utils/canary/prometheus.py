# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``analysis.metrics: prometheus``: the pods' series read from a Prometheus instead of the pods themselves.

One instant query per check asks for the current value of every series the runtime's analysis reads (its request
and error counters, its latency histogram's buckets) of the version's pods, by the ``namespace`` and ``pod`` labels
Prometheus' Kubernetes discovery puts on them (the ServiceMonitor the deploy creates does too). The answer becomes the
same samples a scrape of the pod gives, per pod, so the analysis is the one of the pods' own metrics
(:mod:`.analysis`: the increase between the step's first read and each check, a restarted pod counted from 0). The
figures lag the pods by the Prometheus' scrape interval. A pod two scrape jobs read (a ServiceMonitor beside a pod
discovery job) is counted once: the samples of one job (:func:`samples_by_pod`).

Before the first step the progression asks :data:`PROBE_QUERY`: a URL where no Prometheus answers stops the canary
before anything is applied (:func:`check_probe`), rather than leaving every step without figures.

Pure functions here; the HTTP GET is the caller's (``open_url``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, Sequence, Tuple
from urllib.parse import urlencode

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import Sample
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.runtimes import RequestMetrics

#: The labels the query selects pods by (Prometheus' Kubernetes service discovery and the Prometheus operator's).
NAMESPACE_LABEL = "namespace"
POD_LABEL = "pod"
#: The label of the scrape job a series came from (Prometheus sets it on every scraped series).
JOB_LABEL = "job"
#: A query every Prometheus query API evaluates (Thanos, Mimir... too), to tell that one answers at the URL.
PROBE_QUERY = "vector(1)"


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


def _result(body: str) -> List[Any]:
    """The result of an instant query's answer (``data.result``, an instant vector), or why there is none."""
    try:
        answer: Any = json.loads(body)
    except ValueError as exc:
        raise PrometheusError("the answer is not JSON: %s" % exc) from exc
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, Mapping) else None
        raise PrometheusError("the query failed: %s" % (error or str(answer)[:200]))
    data = answer.get("data") or {}
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        raise PrometheusError("expected an instant vector, got %r" % (
            data.get("resultType") if isinstance(data, Mapping) else data))
    return list(data.get("result") or [])


def check_probe(body: str) -> None:
    """That ``body`` is a Prometheus' answer to :data:`PROBE_QUERY` (one sample, 1); :class:`PrometheusError` if not."""
    result = _result(body)
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PrometheusError("%s did not give one sample of value 1: %s" % (PROBE_QUERY, body[:200])) from exc
    if len(result) != 1 or value != 1.0:
        raise PrometheusError("%s did not give one sample of value 1: %s" % (PROBE_QUERY, body[:200]))


def samples_by_pod(body: str) -> Dict[str, List[Sample]]:
    """The answer of :func:`series_query` as each pod's samples (``__name__`` as the name, the ``pod`` label kept).

    A pod whose series come from several scrape jobs (a ServiceMonitor and a pod discovery job both reading it) would
    count each request once per job: only one job's samples are kept, the one with the most series (then by name)."""
    found: Dict[str, Dict[str, List[Sample]]] = {}
    for item in _result(body):
        labels = dict(item.get("metric") or {}) if isinstance(item, Mapping) else {}
        name = labels.pop("__name__", "")
        pod = labels.get(POD_LABEL, "")
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusError("a sample of %s has no value: %r" % (name, item)) from exc
        if name and pod:
            found.setdefault(pod, {}).setdefault(labels.get(JOB_LABEL, ""), []).append(Sample(name, labels, value))
    return {pod: _one_job(jobs) for pod, jobs in found.items()}


def _one_job(jobs: Mapping[str, List[Sample]]) -> List[Sample]:
    ranked: List[Tuple[int, str]] = sorted((-len(samples), job) for job, samples in jobs.items())
    return jobs[ranked[0][1]]
