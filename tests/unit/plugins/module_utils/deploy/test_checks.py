# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's input checks: each refuses with the message that names the variable, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import checks
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import DeployError


def test_entry_needs_a_name_and_the_runtime() -> None:
    checks.check_entry({"name": "m", "runtime": "triton"}, "triton")
    with pytest.raises(DeployError, match="got name '(none)' and runtime 'triton'".replace("(", r"\(").replace(")", r"\)")):
        checks.check_entry({"runtime": "triton"}, "triton")
    with pytest.raises(DeployError, match="runtime 'tf_serving'"):
        checks.check_entry({"name": "m", "runtime": "tf_serving"}, "triton")


@pytest.mark.parametrize("namespace", ["Bad_NS", "", "a" * 64, 5, None])
def test_namespace_must_be_a_dns_label(namespace) -> None:
    with pytest.raises(DeployError, match=r"triton_namespace '.*' is not a namespace name"):
        checks.check_namespace(namespace, "triton")


def test_namespace_accepts_a_dns_label() -> None:
    checks.check_namespace("ai-serving", "triton")


@pytest.mark.parametrize("labels, fragment", [
    ({"team": None}, "Kubernetes rejects"),
    ({"team": True}, "Kubernetes rejects"),
    ({"team": "a b"}, "Kubernetes rejects"),
    ({"-bad": "x"}, "Kubernetes rejects"),
    ({"creativeflow.ai/model-name": "x"}, "is set by the role"),
])
def test_pod_labels_refused(labels, fragment) -> None:
    with pytest.raises(DeployError, match=fragment) as err:
        checks.check_pod_labels(labels, "tf_serving")
    assert str(err.value).startswith("tf_serving_pod_labels has '{0}: ".format(next(iter(labels))))


def test_pod_labels_accepted() -> None:
    checks.check_pod_labels({"team": "ml", "example.com/tier": 2, "empty": ""}, "tf_serving")


def test_annotation_keys() -> None:
    checks.check_keys({"example.com/a": "x", "b": ""}, "w")
    with pytest.raises(DeployError, match=r"'bad key' \(triton_pod_annotations\) is not a valid key"):
        checks.check_keys({"bad key": "x"}, "triton_pod_annotations")
    with pytest.raises(DeployError, match="or its value is empty"):
        checks.check_keys({"a": None}, "w")


@pytest.mark.parametrize("values", [(0, 30, 600, 10, 60), (600, -1, 600, 10, 60), (600, 30, 0, 10, 60),
                                    (600, 30, 600, -1, 60), (600, 30, 600, 10, 10)])
def test_timing_knobs_refused(values) -> None:
    with pytest.raises(DeployError, match="triton_rollout_timeout .* must be at least 1"):
        checks.check_timing("triton", *values)


def test_timing_knobs_accepted() -> None:
    checks.check_timing("triton", 1, 0, 1, 0, 1)


@pytest.mark.parametrize("uid", [0, -1, "root", None])
def test_run_as_user_must_be_non_root(uid) -> None:
    with pytest.raises(DeployError, match="must be a non-root uid"):
        checks.check_run_as_user(uid, "triton")


def test_fetch_scheme() -> None:
    images = {"s3": "amazon/aws-cli:2"}
    checks.check_fetch({"name": "m", "model": {"source": "uri", "uri": "s3://b/k"}}, images, "triton")
    checks.check_fetch({"name": "m", "model": {"source": "image"}}, {}, "triton")
    with pytest.raises(DeployError, match="scheme 'gs' has no fetch image: add it to triton_model_fetch_images"):
        checks.check_fetch({"name": "m", "model": {"source": "uri", "uri": "gs://b/k"}}, images, "triton")
    with pytest.raises(DeployError, match="scheme 'ftp' has no fetch command"):
        checks.check_fetch({"name": "m", "model": {"source": "uri", "uri": "ftp://h/k"}}, {"ftp": "x"}, "triton")


def test_build_wanted_only_with_a_build_section_enabled_and_the_switch_on() -> None:
    model = {"image": {"build": {"context": "ctx"}}}
    assert checks.wants_build(model, True)
    assert not checks.wants_build(model, False)
    assert not checks.wants_build({"image": {"build": {"context": "c", "enabled": False}}}, True)
    assert not checks.wants_build({"image": {}}, True)


def test_build_context_relative_to_the_base_dir(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    model = {"name": "m", "image": {"build": {"context": "ctx"}}}
    assert checks.check_build_context(model, str(tmp_path), "tf_serving", "img:1") == str(tmp_path / "ctx")
    missing = {"name": "m", "image": {"build": {"context": "nope"}}}
    with pytest.raises(DeployError, match=r"image.build.context of m is 'nope', which is not a directory .*"
                                          r"set tf_serving_image_build=false to deploy img:1 as it is"):
        checks.check_build_context(missing, str(tmp_path), "tf_serving", "img:1")
