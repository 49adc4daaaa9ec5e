# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the deploy Lease decisions (no cluster)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, Optional

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import deploy_lease as lease

NOW = dt.datetime(2026, 12, 1, 4, 0, 0, tzinfo=dt.timezone.utc)
ME = lease.identity("run-me", "ops", "awx-1", 42)
OTHER = lease.identity("run-other", "alice", "laptop", 7)


def lease_obj(holder: Optional[str], renewed_ago: float = 0, acquired_ago: float = 30, duration: int = 60,
              transitions: int = 0, rv: str = "100") -> Dict[str, Any]:
    spec: Dict[str, Any] = {"leaseDurationSeconds": duration, "leaseTransitions": transitions,
                            "acquireTime": lease.format_time(NOW - dt.timedelta(seconds=acquired_ago))}
    if holder is not None:
        spec["holderIdentity"] = holder
        spec["renewTime"] = lease.format_time(NOW - dt.timedelta(seconds=renewed_ago))
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "ai-serving-deploy-m", "namespace": "ns", "resourceVersion": rv}, "spec": spec}


def test_names_and_identity() -> None:
    assert lease.lease_name("image-classifier") == "ai-serving-deploy-image-classifier"
    assert ME == "ops@awx-1 pid 42 run run-me"


@pytest.mark.parametrize("text,expected", [
    ("2026-12-01T04:00:00.123456Z", dt.datetime(2026, 12, 1, 4, 0, 0, 123456, tzinfo=dt.timezone.utc)),
    ("2026-12-01T04:00:00Z", dt.datetime(2026, 12, 1, 4, 0, 0, tzinfo=dt.timezone.utc)),
    ("2026-12-01T04:00:00.123456789Z", dt.datetime(2026, 12, 1, 4, 0, 0, 123456, tzinfo=dt.timezone.utc)),
    ("2026-12-01T06:00:00+02:00", dt.datetime(2026, 12, 1, 4, 0, 0, tzinfo=dt.timezone.utc)),
    ("yesterday", None), ("", None), (None, None),
])
def test_parse_time(text, expected) -> None:
    assert lease.parse_time(text) == expected


def test_format_time_is_utc_microtime() -> None:
    local = NOW.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert lease.format_time(local) == "2026-12-01T04:00:00.000000Z"
    assert lease.parse_time(lease.format_time(NOW)) == NOW


def test_no_lease_is_created() -> None:
    decision = lease.decide(None, ME, NOW)
    assert decision.action == lease.CREATE
    body = lease.lease_object("ai-serving-deploy-m", "ns", ME, NOW, decision, run="deploy m")
    assert body["spec"] == {"holderIdentity": ME, "leaseDurationSeconds": 60,
                            "acquireTime": "2026-12-01T04:00:00.000000Z", "renewTime": "2026-12-01T04:00:00.000000Z",
                            "leaseTransitions": 0}
    assert "resourceVersion" not in body["metadata"]
    assert body["metadata"]["annotations"] == {lease.RUN_ANNOTATION: "deploy m"}
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "creativeflow.ai_serving"


def test_a_live_lease_of_another_run_is_held_with_its_time_left() -> None:
    decision = lease.decide(lease_obj(OTHER, renewed_ago=10), ME, NOW)
    assert decision.action == lease.HELD
    assert decision.seconds == pytest.approx(60 + lease.CLOCK_SKEW_S - 10)
    assert decision.holder.identity == OTHER
    with pytest.raises(ValueError, match="held by alice@laptop"):
        lease.lease_object("n", "ns", ME, NOW, decision)
    message = lease.held_message("m", "ns", decision, NOW, waited_s=30)
    assert "m is being deployed by another run after waiting 30 s: alice@laptop pid 7 run run-other" in message
    assert "holds Lease ns/ai-serving-deploy-m since 2026-12-01T03:59:30.000000Z (renewed 10 s ago)" in message
    assert "expires 55 s from now" in message


def test_the_skew_allowance_keeps_a_just_expired_lease_held() -> None:
    assert lease.decide(lease_obj(OTHER, renewed_ago=62), ME, NOW).action == lease.HELD
    assert lease.decide(lease_obj(OTHER, renewed_ago=66), ME, NOW).action == lease.TAKE


def test_an_expired_lease_is_taken_over_with_a_transition() -> None:
    decision = lease.decide(lease_obj(OTHER, renewed_ago=125, transitions=3, rv="7"), ME, NOW)
    assert decision.action == lease.TAKE and decision.expired
    assert decision.seconds == pytest.approx(125 - 60 - lease.CLOCK_SKEW_S)
    body = lease.lease_object("n", "ns", ME, NOW, decision)
    assert body["spec"]["holderIdentity"] == ME
    assert body["spec"]["leaseTransitions"] == 4
    assert body["spec"]["acquireTime"] == lease.format_time(NOW)
    # The write carries the version read: a second taker gets a conflict.
    assert body["metadata"]["resourceVersion"] == "7"
    message = lease.takeover_message("m", "ns", decision)
    assert "from alice@laptop pid 7 run run-other, which stopped renewing it 2 min 5 s ago" in message


def test_our_own_lease_is_renewed_keeping_its_acquire_time() -> None:
    decision = lease.decide(lease_obj(ME, renewed_ago=20, acquired_ago=300, transitions=2), ME, NOW)
    assert decision.action == lease.RENEW
    body = lease.lease_object("n", "ns", ME, NOW, decision)
    assert body["spec"]["acquireTime"] == lease.format_time(NOW - dt.timedelta(seconds=300))
    assert body["spec"]["renewTime"] == lease.format_time(NOW)
    assert body["spec"]["leaseTransitions"] == 2


def test_a_released_lease_is_free() -> None:
    held = lease_obj(OTHER, transitions=1)
    free = lease.released(held)
    assert "holderIdentity" not in free["spec"] and "renewTime" not in free["spec"]
    assert held["spec"]["holderIdentity"] == OTHER  # the input is not changed
    decision = lease.decide(free, ME, NOW)
    assert decision.action == lease.TAKE and not decision.expired
    body = lease.lease_object("n", "ns", ME, NOW, decision)
    assert body["spec"]["leaseTransitions"] == 2
    assert body["metadata"]["resourceVersion"] == "100"


def test_a_lease_without_times_counts_as_expired() -> None:
    odd = {"metadata": {"resourceVersion": "1"}, "spec": {"holderIdentity": OTHER}}
    decision = lease.decide(odd, ME, NOW)
    assert decision.action == lease.TAKE and decision.expired
