# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection settings' checks: each message names the variable, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.connection import (
    connection_problem,
    kubeconfig_contexts,
)

KUBECONFIG = """
apiVersion: v1
kind: Config
contexts:
  - name: dev
    context: {cluster: dev, user: dev}
  - name: prod-eu
    context: {cluster: prod, user: prod}
"""


@pytest.fixture(name="kubeconfig")
def fixture_kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    return str(path)


@pytest.mark.parametrize("value", [None, {"apiVersion": "v1", "clusters": []}])
def test_unset_or_inline_is_left_to_the_client(value: object) -> None:
    assert connection_problem(value, "anything") is None


def test_a_file_and_one_of_its_contexts_pass(kubeconfig: str) -> None:
    assert connection_problem(kubeconfig, None) is None
    assert connection_problem(kubeconfig, "prod-eu") is None


def test_a_missing_file_is_named_in_full(tmp_path: Path) -> None:
    missing = tmp_path / "kube" / "config-that-is-not-there"
    problem = connection_problem(str(missing), "dev")
    assert problem is not None
    assert problem.startswith("The kubeconfig file '{0}' (ai_serving_kubeconfig) does not exist.".format(missing))
    assert "AI_SERVING_KUBECONFIG" in problem and problem.endswith("Nothing was changed.")


def test_a_directory_is_not_a_regular_file(tmp_path: Path) -> None:
    problem = connection_problem(str(tmp_path), None)
    assert problem is not None and "(ai_serving_kubeconfig) is not a regular file." in problem


def test_a_home_relative_path_shows_its_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    problem = connection_problem("~/no-such-config", None)
    assert problem is not None
    assert "'~/no-such-config' (ai_serving_kubeconfig, {0}) does not exist".format(tmp_path / "no-such-config") in problem


@pytest.mark.parametrize("value, kind", [("", "str"), (["a"], "list"), (3, "int")])
def test_an_empty_or_non_path_value_is_named_with_its_type(value: object, kind: str) -> None:
    problem = connection_problem(value, None)
    assert problem is not None
    assert problem.startswith("ai_serving_kubeconfig is empty or not a path (a {0}).".format(kind))


def test_an_unknown_context_lists_those_the_kubeconfig_has(kubeconfig: str) -> None:
    problem = connection_problem(kubeconfig, "no-such-context")
    assert problem is not None
    assert problem.startswith("ai_serving_context is 'no-such-context', which kubeconfig {0} does not have; it has: "
                              "dev, prod-eu.".format(kubeconfig))


def test_a_kubeconfig_without_contexts_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_text("")
    problem = connection_problem(str(path), "dev")
    assert problem is not None and "it has: (no context)." in problem


def test_a_context_that_is_not_a_string_is_refused(kubeconfig: str) -> None:
    problem = connection_problem(kubeconfig, ["dev"])
    assert problem is not None and "ai_serving_context is '['dev']'" in problem


def test_a_file_that_is_not_a_kubeconfig_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("- just\n- a list\n")
    problem = connection_problem(str(path), "dev")
    assert problem is not None
    assert "The kubeconfig file '{0}' (ai_serving_kubeconfig) cannot be read: it is not a kubeconfig".format(path) in problem
    with pytest.raises(ValueError, match="not YAML"):
        kubeconfig_contexts("a: [b")


def test_a_subclass_is_named_by_its_plain_type() -> None:
    class TaggedList(list):  # what Ansible 2.19 hands for a list variable
        pass

    problem = connection_problem(TaggedList(["a"]), None)
    assert problem is not None and "(a list)." in problem
