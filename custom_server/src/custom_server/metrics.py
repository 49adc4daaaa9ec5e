"""Prometheus metrics (``/metrics``). With several workers, prometheus_client's multiprocess mode."""

from __future__ import annotations

import os
import threading
from collections.abc import Sized

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

PREFIX = "custom_server"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def multiprocess_enabled() -> bool:
    """True when workers share metrics through ``PROMETHEUS_MULTIPROC_DIR``."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The server's metrics, in a registry of their own (several apps may live in one process)."""

    def __init__(self, model_name: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call] # no *_created series: they double the exposition for nothing here
        self.registry = CollectorRegistry(auto_describe=True)
        self.model_name = model_name
        registry = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests_total",
            "HTTP requests by endpoint (route template) and status code.",
            ["endpoint", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "HTTP request latency by endpoint, from the first byte read to the last byte sent.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight",
            "HTTP requests being served.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Rows per model call (several requests' rows when dynamic batching merges them).",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_requests = Histogram(
            f"{PREFIX}_batch_requests",
            "Requests merged into one model call.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            f"{PREFIX}_inference_duration_seconds",
            "Time of one model call (a whole batch).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_length = Gauge(
            f"{PREFIX}_queue_length",
            "Requests waiting for the model.",
            ["model"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.shed = Counter(
            f"{PREFIX}_requests_shed_total",
            "Requests refused without running the model, by reason (queue_full, not_ready, draining).",
            ["model", "reason"],
            registry=registry,
        )
        self.load_duration = Gauge(
            f"{PREFIX}_model_load_duration_seconds",
            "How long loading the model took.",
            ["model"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.model_ready = Gauge(
            f"{PREFIX}_model_ready",
            "1 when the model is loaded and serving, else 0.",
            ["model"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._duration_children: dict[str, Histogram] = {}
        self._lock = threading.Lock()
        model = model_name
        self.model_batch_size = self.batch_size.labels(model)
        self.model_batch_requests = self.batch_requests.labels(model)
        self.model_inference_duration = self.inference_duration.labels(model)
        self.model_queue_length = self.queue_length.labels(model)
        self.model_load_duration = self.load_duration.labels(model)
        self.model_ready_gauge = self.model_ready.labels(model)
        self.model_ready_gauge.set(0)
        # One process: the gauges that change with every request are read when scraped (a Python int
        # and the queue's length) instead of being set under a lock each time. Several workers share
        # their values through files, which only set/inc/dec write.
        self._shared = multiprocess_enabled()
        self._in_flight = 0
        self._queue: Sized | None = None
        if not self._shared:
            self.in_flight.set_function(lambda: self._in_flight)
            self.model_queue_length.set_function(lambda: len(self._queue) if self._queue is not None else 0)

    def request_started(self) -> None:
        """One more HTTP request in flight."""
        if self._shared:
            self.in_flight.inc()
        else:
            self._in_flight += 1

    def request_finished(self) -> None:
        """One HTTP request less in flight."""
        if self._shared:
            self.in_flight.dec()
        else:
            self._in_flight -= 1

    def watch_queue(self, queue: Sized) -> None:
        """The queue whose length ``queue_length`` reports (one process: read when scraped)."""
        self._queue = queue

    def queue_changed(self, length: int) -> None:
        """The queue's length changed (several workers: written to the shared value)."""
        if self._shared:
            self.model_queue_length.set(length)

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        """Count one finished HTTP request."""
        key = (endpoint, code)
        counter = self._request_children.get(key)
        if counter is None:
            with self._lock:
                counter = self.requests.labels(endpoint, str(code))
                self._request_children[key] = counter
        counter.inc()
        histogram = self._duration_children.get(endpoint)
        if histogram is None:
            with self._lock:
                histogram = self.request_duration.labels(endpoint)
                self._duration_children[endpoint] = histogram
        histogram.observe(seconds)

    def shed_request(self, reason: str) -> None:
        """Count one request refused without inference."""
        self.shed.labels(self.model_name, reason).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if multiprocess_enabled():
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
