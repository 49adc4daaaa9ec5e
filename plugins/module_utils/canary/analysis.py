# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A canary step's analysis: what each version served between two scrapes, and the step's verdict.

The pods' own metrics are cumulative counters, so a step is judged by their increase between a scrape at the step's
start and one at each check: per pod (a pod that restarted starts from 0 again, as Prometheus' ``increase`` takes
it), then summed per version. The request counters, error counters and latency histogram are the runtime's
(``runtimes.RequestMetrics``). p99 is estimated from the histogram's buckets as PromQL's ``histogram_quantile`` does.

With ``analysis.metrics: prometheus`` the same cumulative values are read from the Prometheus (one instant query,
:mod:`.prometheus`) and the increase is taken here the same way, not by PromQL's ``increase()`` over the step's
window, which needs two scrapes within the window and extrapolates.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.exposition import Sample, parse_value
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import Bounds, format_seconds
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.runtimes import RequestMetrics, Series

PASS = "pass"
FAIL = "fail"
INCONCLUSIVE = "inconclusive"
QUANTILE = 0.99
#: How far the canary's share of refused (4xx) requests may exceed the stable version's, in ratio points.
MAX_REJECTED_INCREASE = 0.05


@dataclass(frozen=True)
class Counts:
    """Requests, errors and latency buckets (``le`` in seconds -> cumulative count) of a pod or a version."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: Tuple[Tuple[float, float], ...] = ()
    rejected: float = 0.0

    def bucket_map(self) -> Dict[float, float]:
        return dict(self.buckets)


def _matches(sample: Sample, series: Series) -> bool:
    # prometheus_client's parser names a counter's samples <family>_total even when the server wrote them without
    # the suffix (TF Serving's request_count, TorchServe's Requests2XX, Triton's nv_inference_request_success).
    if sample.name not in (series.name, series.name + "_total"):
        return False
    for label, pattern in series.match:
        if not re.fullmatch(pattern, sample.labels.get(label, "")):
            return False
    for label, pattern in series.exclude:
        if re.fullmatch(pattern, sample.labels.get(label, "")):
            return False
    return True


def _sum(samples: Sequence[Sample], series: Iterable[Series]) -> float:
    return sum(sample.value for one in series for sample in samples if _matches(sample, one)
               and not math.isnan(sample.value))


def read_counts(samples: Sequence[Sample], metrics: RequestMetrics) -> Counts:
    """One scrape's cumulative figures (its latency bounds in seconds)."""
    buckets: Dict[float, float] = {}
    if metrics.latency is not None:
        bucket_series = Series(metrics.latency.name + "_bucket", metrics.latency.match, metrics.latency.exclude)
        for sample in samples:
            if _matches(sample, bucket_series) and "le" in sample.labels:
                bound = parse_value(sample.labels["le"])
                bound = bound if math.isinf(bound) else bound * metrics.latency_unit
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Counts(_sum(samples, metrics.requests), _sum(samples, metrics.errors), tuple(sorted(buckets.items())),
                  _sum(samples, metrics.rejected))


def _increase(before: float, after: float) -> float:
    # A counter that went down was reset (the pod's server restarted): all of ``after`` is new.
    return after if after < before else after - before


def increase(before: Optional[Counts], after: Counts) -> Counts:
    """What a pod served between two scrapes (None before: a pod that started since)."""
    if before is None:
        return after
    old = before.bucket_map()
    reset = after.requests < before.requests
    buckets = tuple((bound, count if reset else _increase(old.get(bound, 0.0), count)) for bound, count in after.buckets)
    return Counts(after.requests if reset else after.requests - before.requests,
                  after.errors if reset or after.errors < before.errors else after.errors - before.errors, buckets,
                  after.rejected if reset or after.rejected < before.rejected else after.rejected - before.rejected)


def total(counts: Iterable[Counts]) -> Counts:
    """The sum over a version's pods."""
    requests = errors = rejected = 0.0
    buckets: Dict[float, float] = {}
    for item in counts:
        requests += item.requests
        errors += item.errors
        rejected += item.rejected
        for bound, count in item.buckets:
            buckets[bound] = buckets.get(bound, 0.0) + count
    return Counts(requests, errors, tuple(sorted(buckets.items())), rejected)


def histogram_quantile(quantile: float, buckets: Sequence[Tuple[float, float]]) -> Tuple[Optional[float], bool]:
    """``(value, beyond)``: the quantile of cumulative ``buckets`` (bound, count), as PromQL estimates it (linear
    within the bucket it falls in, from 0 for the first); ``beyond`` when it falls in the ``+Inf`` bucket, where
    the value is the highest finite bound and the real one is above it. ``(None, False)`` without observations."""
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]) or ordered[-1][1] <= 0:
        return None, False
    # Buckets must be cumulative; a scrape taken mid-update can break that, PromQL smooths it the same way.
    counts: List[float] = []
    for _bound, count in ordered:
        counts.append(max(count, counts[-1]) if counts else count)
    rank = quantile * counts[-1]
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(ordered) - 1:
        finite = [bound for bound, _count in ordered[:-1]]
        return (finite[-1] if finite else None), True
    upper = ordered[index][0]
    lower = ordered[index - 1][0] if index > 0 else 0.0
    below = counts[index - 1] if index > 0 else 0.0
    in_bucket = counts[index] - below
    if index == 0 and upper <= 0:
        return upper, False
    if in_bucket <= 0:
        return upper, False
    return lower + (upper - lower) * (rank - below) / in_bucket, False


@dataclass(frozen=True)
class VersionStats:
    """What one version served in a step."""

    requests: int
    errors: int
    p99: Optional[float] = None
    p99_beyond: bool = False
    rejected: int = 0

    @property
    def error_ratio(self) -> Optional[float]:
        return self.errors / self.requests if self.requests else None

    @property
    def rejected_ratio(self) -> Optional[float]:
        return self.rejected / self.requests if self.requests else None

    def describe(self) -> str:
        ratio = "-" if self.error_ratio is None else "%.3f" % self.error_ratio
        refused = ", refused %.3f" % self.rejected_ratio if self.rejected and self.rejected_ratio is not None else ""
        return "%d requests, error ratio %s%s, p99 %s" % (self.requests, ratio, refused,
                                                          _latency(self.p99, self.p99_beyond))


def _latency(value: Optional[float], beyond: bool = False) -> str:
    if value is None:
        return "-"
    return ("> " if beyond else "") + format_seconds(value)


def stats(counts: Counts) -> VersionStats:
    p99, beyond = histogram_quantile(QUANTILE, counts.buckets)
    return VersionStats(int(round(counts.requests)), int(round(counts.errors)), p99, beyond, int(round(counts.rejected)))


def version_stats(before: Mapping[str, Counts], after: Mapping[str, Counts]) -> VersionStats:
    """A version's step from its pods' scrapes (pod name -> figures) at the step's start and now."""
    return stats(total(increase(before.get(pod), counts) for pod, counts in after.items()))


@dataclass
class Verdict:
    """A step's verdict: ``pass``, ``fail`` (``reasons`` say which bound broke), or ``inconclusive`` (too few
    requests yet); ``notes`` say what could not be judged (a relative bound without stable traffic)."""

    status: str
    canary: VersionStats
    stable: VersionStats
    reasons: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def canary_share(self) -> Optional[float]:
        """The canary's share of the requests both versions served, in percent."""
        served = self.canary.requests + self.stable.requests
        return 100.0 * self.canary.requests / served if served else None

    def line(self, step: int, weight: int) -> str:
        """How the deploy prints a step's check."""
        share = "-" if self.canary_share is None else ("%.1f%%" % self.canary_share)
        text = "step %d (%d%%): canary %s (share %s); stable %s: %s" % (
            step, weight, self.canary.describe(), share, self.stable.describe(), self.status)
        if self.reasons:
            text += ": " + "; ".join(self.reasons)
        if self.notes:
            text += " (" + "; ".join(self.notes) + ")"
        return text

    def to_dict(self) -> Dict[str, object]:
        return {"status": self.status, "reasons": list(self.reasons), "notes": list(self.notes),
                "canary_share": self.canary_share,
                "canary": {"requests": self.canary.requests, "errors": self.canary.errors,
                           "error_ratio": self.canary.error_ratio, "rejected": self.canary.rejected,
                           "p99_seconds": self.canary.p99},
                "stable": {"requests": self.stable.requests, "errors": self.stable.errors,
                           "error_ratio": self.stable.error_ratio, "rejected": self.stable.rejected,
                           "p99_seconds": self.stable.p99}}


def judge(canary: VersionStats, stable: VersionStats, bounds: Bounds) -> Verdict:
    """The verdict of a step so far. A bound already broken whatever the next requests bring fails at once (errors
    over the absolute bound even if every further request up to ``min_requests`` succeeds); otherwise a step is
    judged once the canary served ``min_requests``."""
    reasons: List[str] = []
    notes: List[str] = []
    need = bounds.min_requests
    if bounds.max_error_ratio is not None and canary.errors:
        # the lowest ratio the step can still end with
        floor = canary.errors / max(canary.requests, need)
        if floor > bounds.max_error_ratio:
            reasons.append("error ratio %.3f (%d of %d requests) is above the bound %g" % (
                canary.errors / max(canary.requests, 1), canary.errors, canary.requests, bounds.max_error_ratio))
    if canary.requests < need:
        if reasons:
            return Verdict(FAIL, canary, stable, reasons)
        return Verdict(INCONCLUSIVE, canary, stable,
                       notes=["%d of the %d canary requests a verdict needs" % (canary.requests, need)])
    ratio = canary.error_ratio or 0.0
    stable_known = stable.requests >= need
    if bounds.max_error_ratio_increase is not None:
        if not stable_known:
            notes.append("error ratio not compared with the stable version: it served %d requests, fewer than %d"
                         % (stable.requests, need))
        elif ratio > (stable.error_ratio or 0.0) + bounds.max_error_ratio_increase:
            reasons.append("error ratio %.3f is more than %g above the stable version's %.3f" % (
                ratio, bounds.max_error_ratio_increase, stable.error_ratio or 0.0))
    _rejected_reasons(canary, stable, stable_known, need, reasons, notes)
    if bounds.max_p99_seconds is not None or bounds.max_p99_factor is not None:
        if canary.p99 is None:
            notes.append("p99 not judged: the canary's latency histogram has no observations")
        else:
            _latency_reasons(canary, stable, stable_known, bounds, reasons, notes)
    return Verdict(FAIL if reasons else PASS, canary, stable, reasons, notes)


def _rejected_reasons(canary: VersionStats, stable: VersionStats, stable_known: bool, need: int,
                      reasons: List[str], notes: List[str]) -> None:
    """Always judged, whatever the bounds: a canary that refuses (4xx) what the stable version accepts."""
    if not canary.rejected:
        return
    ratio = canary.rejected_ratio or 0.0
    if not stable_known:
        notes.append("refused requests not compared with the stable version: it served %d requests, fewer than %d"
                     % (stable.requests, need))
    elif ratio > (stable.rejected_ratio or 0.0) + MAX_REJECTED_INCREASE:
        reasons.append("refuses %.3f of its requests (%d of %d, 4xx) against the stable version's %.3f: it rejects "
                       "what the stable version accepts" % (ratio, canary.rejected, canary.requests,
                                                            stable.rejected_ratio or 0.0))


def _latency_reasons(canary: VersionStats, stable: VersionStats, stable_known: bool, bounds: Bounds,
                     reasons: List[str], notes: List[str]) -> None:
    if canary.p99 is None:  # called only when the canary has a p99
        raise AssertionError("the canary's p99 is needed")
    shown = _latency(canary.p99, canary.p99_beyond)
    # Beyond the last bucket the real p99 is unknown but above it: judged as over any bound.
    if bounds.max_p99_seconds is not None and (canary.p99_beyond or canary.p99 > bounds.max_p99_seconds):
        reasons.append("p99 %s is above the bound %s" % (shown, format_seconds(bounds.max_p99_seconds)))
    if bounds.max_p99_factor is None:
        return
    if not stable_known or stable.p99 is None:
        notes.append("p99 not compared with the stable version: too few of its requests")
    elif stable.p99_beyond:
        notes.append("p99 not compared with the stable version: its p99 is beyond the histogram's last bucket")
    elif canary.p99_beyond or canary.p99 > stable.p99 * bounds.max_p99_factor:
        reasons.append("p99 %s is more than %g times the stable version's %s" % (
            shown, bounds.max_p99_factor, format_seconds(stable.p99)))
