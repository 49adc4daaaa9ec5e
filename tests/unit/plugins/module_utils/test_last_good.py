# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the last-known-good record (no cluster)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Dict

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import last_good
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.last_good import LastGood

from test_rollout import NEW_RS, OLD_RS, deployment, replicaset

NOW = dt.datetime(2026, 12, 1, 4, 0, 0, tzinfo=dt.timezone.utc)


def with_annotation(obj: Dict[str, Any], value: str) -> Dict[str, Any]:
    obj["metadata"]["annotations"][last_good.ANNOTATION] = value
    return obj


def test_a_complete_rollout_is_recorded_by_its_template_hash() -> None:
    good = last_good.record(deployment(revision=2), [OLD_RS, NEW_RS], "run-1", NOW)
    assert good == LastGood(template_hash="new222", revision=2, time="2026-12-01T04:00:00Z", run="run-1")
    patch = last_good.annotation_patch(deployment(), good)
    assert patch["metadata"]["name"] == "model" and patch["metadata"]["namespace"] == "ai-serving"
    assert json.loads(patch["metadata"]["annotations"][last_good.ANNOTATION]) == {
        "template_hash": "new222", "revision": 2, "time": "2026-12-01T04:00:00Z", "run": "run-1"}
    assert set(patch) == {"apiVersion", "kind", "metadata"}  # nothing else is claimed by its field manager


def test_an_unfinished_rollout_cannot_be_recorded() -> None:
    with pytest.raises(ValueError, match="is not rolled out"):
        last_good.record(deployment(available=0, ready=0), [OLD_RS, NEW_RS], "run-1", NOW)
    with pytest.raises(ValueError, match="no ReplicaSet of its revision 3"):
        last_good.record(deployment(revision=3), [OLD_RS, NEW_RS], "run-1", NOW)


def test_read_round_trip_and_unreadable_annotations() -> None:
    good = last_good.record(deployment(), [OLD_RS, NEW_RS], "run-1", NOW)
    annotated = with_annotation(deployment(), last_good.annotation_patch(deployment(), good)["metadata"][
        "annotations"][last_good.ANNOTATION])
    assert last_good.read(annotated) == (good, "")
    assert last_good.read(None)[1] == "the model is not deployed"
    assert "no version of Deployment model was recorded as good yet" in last_good.read(deployment())[1]
    found, why = last_good.read(with_annotation(deployment(), "{not json"))
    assert found is None and "is not readable" in why and "{not json" in why
    found, why = last_good.read(with_annotation(deployment(), json.dumps({"revision": 1})))
    assert found is None and "'template_hash'" in why


def test_the_good_template_is_found_by_hash_even_after_renumbering() -> None:
    good = LastGood(template_hash="old111", revision=1, time="t", run="r")
    # kubectl rollout undo gave the old ReplicaSet revision 3: the hash still finds it.
    renumbered = replicaset("model-old111", 3, "repo/model:1", "model-config-aaa")
    template = last_good.good_template(deployment(revision=2), [renumbered, NEW_RS], good)
    assert template["spec"]["containers"][0]["image"] == "repo/model:1"
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert last_good.good_template(deployment(), [NEW_RS], good) is None  # pruned by the history limit


def test_position() -> None:
    good_new = LastGood(template_hash="new222", revision=2, time="t", run="r")
    good_old = LastGood(template_hash="old111", revision=1, time="t", run="r")
    rss = [OLD_RS, NEW_RS]
    assert last_good.position(deployment(), rss, good_new) == last_good.AT_GOOD
    assert last_good.position(deployment(), rss, None) == last_good.UNRECORDED
    assert last_good.position(None, rss, good_new) == last_good.UNRECORDED
    assert last_good.position(deployment(), rss, good_old) == last_good.AWAY_COMPLETE
    broken = deployment(available=0, ready=0)
    assert last_good.position(broken, rss, good_old) == last_good.AWAY_UNFINISHED
    # The rollback to the good template under way: its ReplicaSet is current again.
    rolling_back = deployment(revision=3, available=0, ready=0)
    assert last_good.position(rolling_back, [replicaset("model-old111", 3, "repo/model:1"), NEW_RS],
                              good_old) == last_good.AT_GOOD


def test_the_manual_rollback_targets_the_last_good_version_only_when_away_from_it() -> None:
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import Rollout

    three = replicaset("model-bad333", 3, "repo/model:3")
    broken = deployment(revision=3, available=0, ready=0)
    good_old = LastGood(template_hash="old111", revision=1, time="t", run="r")
    rollout = Rollout({"namespace": "ai-serving", "name": "model", "undo": True, "to_last_good": True}, None)
    # In the middle of a failed rollout of revision 3: the recorded good one (revision 1), not revision 2.
    assert rollout.target(with_annotation(broken, json.dumps(good_old.__dict__)), [OLD_RS, NEW_RS, three]) == (
        1, good_old.__dict__)
    # At the good version, or nothing recorded: the default (the previous revision).
    good_new = LastGood(template_hash="new222", revision=2, time="t", run="r")
    assert rollout.target(with_annotation(deployment(), json.dumps(good_new.__dict__)), [OLD_RS, NEW_RS]) == (None, {})
    assert rollout.target(deployment(), [OLD_RS, NEW_RS]) == (None, {})
    explicit = Rollout({"namespace": "ai-serving", "name": "model", "undo": True, "to_last_good": True,
                        "to_revision": 2}, None)
    assert explicit.target(broken, [OLD_RS, NEW_RS, three]) == (2, {})
