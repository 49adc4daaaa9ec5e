# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_knobs' guard of the internal role _common (require_runtime_role): pure logic, no playbook."""

from __future__ import annotations

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.action.model_knobs import caller_problem

ENTRY = {"name": "m", "runtime": "triton", "triton": {"models": ["m"]}}


@pytest.mark.parametrize("parents", [["creativeflow.ai_serving.triton"], ["triton"],
                                     ["creativeflow.ai_serving.triton", "creativeflow.ai_serving.other"]])
def test_inside_the_runtime_role_with_its_entry_it_runs(parents) -> None:
    assert caller_problem("triton", ENTRY, parents) is None


@pytest.mark.parametrize("parents, where", [
    (None, "outside any role"),
    ([], "outside any role"),
    (["creativeflow.ai_serving.torchserve"], "inside role creativeflow.ai_serving.torchserve"),
    (["my.collection.not_triton"], "inside role my.collection.not_triton"),
])
def test_outside_the_runtime_role_it_refuses_naming_where(parents, where) -> None:
    problem = caller_problem("triton", ENTRY, parents)
    assert problem is not None and "_common is internal" in problem and where in problem
    assert "playbooks/deploy_model.yml -e model=NAME" in problem


@pytest.mark.parametrize("entry, got", [
    ({"name": "m", "runtime": "torchserve", "torchserve": {}}, "got runtime 'torchserve'"),
    ({"name": "m"}, "got runtime '(none)'"),
    ({"name": "m", "runtime": "triton"}, "got runtime 'triton'"),
    ({"name": "m", "runtime": "triton", "triton": "not a section"}, "got runtime 'triton'"),
])
def test_an_entry_of_another_runtime_or_without_its_section_is_refused(entry, got) -> None:
    problem = caller_problem("triton", entry, ["creativeflow.ai_serving.triton"])
    assert problem is not None and got in problem
    assert problem.startswith("triton_model must be a catalog entry with runtime triton and a triton section")
