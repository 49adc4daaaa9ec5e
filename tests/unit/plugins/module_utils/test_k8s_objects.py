# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the shared Kubernetes object readers."""

from __future__ import annotations

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import (
    condition,
    condition_true,
    get_path,
    meta,
    name,
    owned_by,
    owned_by_uid,
    pod_is_terminated,
    pod_is_terminating,
)

POD = {
    "metadata": {"name": "p1", "uid": "u-p1", "ownerReferences": [{"kind": "ReplicaSet", "name": "rs1", "uid": "u-rs1"}]},
    "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"},
                                                  {"type": "Ready", "status": "False"}]},
}


def test_get_path_stops_at_missing_or_null_levels():
    assert get_path(POD, "metadata", "name") == "p1"
    assert get_path(POD, "spec", "nodeName") is None
    assert get_path({"spec": None}, "spec", "nodeName") is None
    assert get_path({"spec": "text"}, "spec", "nodeName") is None
    assert get_path(None, "metadata") is None


def test_meta_and_name_tolerate_absent_metadata():
    assert meta({}) == {} and name({}) == "" and name(None) == ""
    assert name(POD) == "p1"


def test_conditions():
    assert condition(POD, "Ready") == {"type": "Ready", "status": "False"}
    assert condition(POD, "Initialized") is None
    assert condition_true(POD, "PodScheduled") and not condition_true(POD, "Ready")
    assert not condition_true({}, "Ready")


def test_ownership_by_uid_then_by_kind_and_name():
    assert owned_by_uid(POD, ["u-rs1", None]) and not owned_by_uid(POD, ["u-other"])
    assert not owned_by_uid(POD, [None, ""])
    assert owned_by(POD, {"kind": "ReplicaSet", "metadata": {"name": "other", "uid": "u-rs1"}})
    # an owner with a uid is matched by uid only, never by name
    assert not owned_by(POD, {"kind": "ReplicaSet", "metadata": {"name": "rs1", "uid": "u-rs2"}})
    # an owner without a uid (read before it was created) is matched by kind and name
    assert owned_by(POD, {"kind": "ReplicaSet", "metadata": {"name": "rs1"}})
    assert not owned_by(POD, {"kind": "Deployment", "metadata": {"name": "rs1"}})


def test_pod_lifecycle():
    assert not pod_is_terminated(POD) and not pod_is_terminating(POD)
    assert pod_is_terminated({"status": {"phase": "Succeeded"}}) and pod_is_terminated({"status": {"phase": "Failed"}})
    assert pod_is_terminating({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})
