"""Batch size from what the model costs (``BATCH_POLICY=cost``).

A model call costs a fixed part plus a part per row: ``t(rows) ≈ fixed + per_row * rows``. Rows per
second, ``rows / t(rows)``, grow with the batch as long as the fixed part is not negligible, so the best
batch is the largest whose call still fits the latency bound (``MAX_LATENCY_MS``):
``rows* = (bound - fixed) / per_row``, within [1, ``CEILING_ROWS``]. A cheap linear model (fixed ≈ 0)
gains nothing from big batches and is not hurt by them; a tree ensemble with a 7 ms fixed cost gains
up to the bound.

The costs are measured on the model's real calls, as they happen: each call's rows and seconds go
into buckets by powers of two (an average per bucket, recent calls weighing more), and a least-squares
line through the buckets gives ``fixed`` and ``per_row``. Until two buckets are known the limit grows
by doubling while calls stay well within the bound (under load batches fill up to the limit, so the
next bucket gets measured). With ``BATCH_POLICY=fixed`` the limit stays ``MAX_BATCH_SIZE``.

Filling the batch. Taking whatever waits the moment the model is free splits closed-loop clients into
groups that alternate: the clients answered by one call send their next requests while the next call
already runs without them, so 32 clients make calls of about 16 requests, each paying the fixed cost.
With a known fixed cost the free model therefore waits for the requests it expects (as many as were
in the server at once lately, ``RecentPeak``), each at most ``gather_wait`` after the one before: the
call's fixed cost (a wait that saves a call must cost less than the call) and a quarter of the latency
bound; in all at most half the latency bound (``gather_cap``). While requests keep coming the event loop
is busy taking them in, and a call started meanwhile would share the CPU with it (on one core a
gRPC request costs the loop ~0.5 ms: 32 of them take longer than a tree ensemble's fixed cost). Under
light load the peak is the one request waiting, and nothing waits; a cheap model has no fixed cost to save.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: The most rows one call may merge under the cost policy.
CEILING_ROWS = 4096
#: Weight of a new call in its bucket's average.
_ALPHA = 0.2
#: Calls between two choices of the limit.
_EVERY = 8


@dataclass(frozen=True, slots=True)
class CostFit:
    """``seconds(rows) = fixed_s + per_row_s * rows``."""

    fixed_s: float
    per_row_s: float

    def seconds(self, rows: int) -> float:
        """The predicted seconds of a call with ``rows`` rows."""
        return self.fixed_s + self.per_row_s * rows


def fit_cost(points: list[tuple[float, float]]) -> CostFit | None:
    """Least-squares line through ``(rows, seconds)`` points; None with fewer than two distinct rows.
    The fixed part and the per-row part are kept non-negative (noise can tilt the line)."""
    if len({rows for rows, _ in points}) < 2:
        return None
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = max(0.0, sxy / sxx)
    intercept = mean_y - slope * mean_x
    if intercept < 0:
        intercept = 0.0
        slope = max(0.0, sum(x * y for x, y in points) / sum(x * x for x, _ in points))
    return CostFit(intercept, slope)


def choose_batch_size(fit: CostFit, max_latency_s: float, ceiling: int = CEILING_ROWS) -> int:
    """The rows per call with the most rows per second whose call fits ``max_latency_s``."""
    if fit.per_row_s <= 0:
        return ceiling
    rows = math.floor((max_latency_s - fit.fixed_s) / fit.per_row_s)
    return max(1, min(ceiling, rows))


@dataclass(slots=True)
class CostPolicy:
    """The batch limit of one model under ``BATCH_POLICY=cost``: feed it every call, read ``limit``."""

    initial: int
    max_latency_s: float
    ceiling: int = CEILING_ROWS
    limit: int = 0
    fit: CostFit | None = None
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)  # bucket -> (rows, seconds)
    _calls: int = 0

    def __post_init__(self) -> None:
        self.limit = max(1, min(self.initial, self.ceiling))

    def observe(self, rows: int, seconds: float) -> None:
        """One model call: ``rows`` rows took ``seconds``."""
        if rows < 1 or seconds < 0:
            return
        bucket = rows.bit_length()
        old = self._buckets.get(bucket)
        if old is None:
            self._buckets[bucket] = (float(rows), seconds)
        else:
            self._buckets[bucket] = (
                old[0] + _ALPHA * (rows - old[0]),
                old[1] + _ALPHA * (seconds - old[1]),
            )
        self._calls += 1
        if self._calls % _EVERY == 0 or old is None:
            self._choose(rows, seconds)

    def _choose(self, rows: int, seconds: float) -> None:
        self.fit = fit_cost(list(self._buckets.values()))
        if self.fit is not None:
            self.limit = choose_batch_size(self.fit, self.max_latency_s, self.ceiling)
        elif rows >= self.limit and seconds < self.max_latency_s / 2:
            # one size known so far, and full calls are cheap: try bigger ones
            self.limit = min(self.ceiling, self.limit * 2)


def gather_wait(fit: CostFit | None, max_latency_s: float) -> float:
    """The longest a free model waits for the next expected request to join its batch (0 until the
    cost is known)."""
    if fit is None:
        return 0.0
    return max(0.0, min(fit.fixed_s, max_latency_s / 4))


def gather_cap(max_latency_s: float) -> float:
    """The longest a free model waits for expected requests in all (each one's wait is ``gather_wait``)."""
    return max_latency_s / 2


@dataclass(slots=True)
class RecentPeak:
    """The most requests in the server (queued, running or being read) lately: over the current and the
    previous window of ``window`` model calls, so a drop in load is forgotten within two windows."""

    window: int = 16
    _current: int = 0
    _previous: int = 0
    _calls: int = 0

    def observe(self, requests: int) -> None:
        """Requests in the server now."""
        if requests > self._current:
            self._current = requests

    def call(self) -> None:
        """One model call started."""
        self._calls += 1
        if self._calls >= self.window:
            self._previous, self._current, self._calls = self._current, 0, 0

    @property
    def value(self) -> int:
        """The peak of the current and the previous window."""
        return max(self._current, self._previous)
