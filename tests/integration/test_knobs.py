"""The shared knobs, declared once (plugins/module_utils/knobs.py): where a value comes from, and bad values.

render_model.yml goes through the same role entry and knob resolution as a deploy but needs no cluster (the
kubeconfig named here does not exist, so a render that reached for the cluster would fail), so the precedence
-e > the catalog entry's deploy section > the inventory's ai_serving_X > the deprecated <runtime>_X > the default is
read off the Deployment it writes. The deploy's own use of the values is covered by test_deploy_model.py.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from playbooks import INVENTORY, Run, run_playbook

MODEL = "image-classifier"  # tf_serving
ANNOTATION = "example.com/from"


def catalog(deploy: Dict[str, Any] | None = None) -> Dict[str, Any]:
    models = yaml.safe_load((INVENTORY / "group_vars" / "all" / "models.yml").read_text())["ai_serving_models"]
    models = copy.deepcopy(models)
    if deploy is not None:
        models[MODEL]["deploy"] = deploy
    return models


def render(tmp_path: Path, extra: Dict[str, Any], inventory: Path = INVENTORY) -> Run:
    return run_playbook("render_model.yml", str(tmp_path / "no-such-kubeconfig"),
                        {"model": MODEL, "dest": str(tmp_path / "out"), **extra}, inventory=inventory)


def rendered_annotations(tmp_path: Path) -> Dict[str, str]:
    for doc in yaml.safe_load_all((tmp_path / "out" / "base" / "deployment.yaml").read_text()):
        if doc and doc.get("kind") == "Deployment":
            return doc["spec"]["template"]["metadata"].get("annotations") or {}
    raise AssertionError("no Deployment rendered")


@pytest.fixture()
def inventory_with_knobs(tmp_path: Path) -> Path:
    """The local inventory with an environment-wide ai_serving_pod_annotations and a deprecated tf_serving_ one."""
    inventory = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inventory, symlinks=False)
    (inventory / "group_vars" / "all" / "knobs.yml").write_text(yaml.safe_dump({
        "ai_serving_pod_annotations": {ANNOTATION: "inventory"},
        "tf_serving_pod_annotations": {ANNOTATION: "old-name"},
    }))
    return inventory


def test_the_catalog_entry_outranks_the_inventory_and_the_run_outranks_both(tmp_path: Path,
                                                                            inventory_with_knobs: Path) -> None:
    run = render(tmp_path / "inventory", {}, inventory_with_knobs)
    assert run.returncode == 0, run.explain()
    assert rendered_annotations(tmp_path / "inventory") == {ANNOTATION: "inventory"}

    models = catalog({"pod_annotations": {ANNOTATION: "catalog"}})
    run = render(tmp_path / "catalog", {"ai_serving_models": models}, inventory_with_knobs)
    assert run.returncode == 0, run.explain()
    assert rendered_annotations(tmp_path / "catalog") == {ANNOTATION: "catalog"}

    run = render(tmp_path / "run", {"ai_serving_models": models, "ai_serving_pod_annotations": {ANNOTATION: "run"}},
                 inventory_with_knobs)
    assert run.returncode == 0, run.explain()
    assert rendered_annotations(tmp_path / "run") == {ANNOTATION: "run"}


def test_an_old_per_runtime_name_still_works_with_a_deprecation_warning(tmp_path: Path) -> None:
    run = render(tmp_path, {"tf_serving_pod_annotations": {ANNOTATION: "old-name"}})
    assert run.returncode == 0, run.explain()
    assert rendered_annotations(tmp_path) == {ANNOTATION: "old-name"}
    assert "tf_serving_pod_annotations is deprecated: set ai_serving_pod_annotations" in run.output, run.explain()


def test_no_deprecation_warning_without_old_names(tmp_path: Path) -> None:
    run = render(tmp_path, {"ai_serving_pod_annotations": {ANNOTATION: "new-name"}})
    assert run.returncode == 0, run.explain()
    assert rendered_annotations(tmp_path) == {ANNOTATION: "new-name"}
    assert "is deprecated" not in run.output, run.explain()


def test_a_bad_value_names_where_it_came_from_and_writes_nothing(tmp_path: Path) -> None:
    run = render(tmp_path, {"ai_serving_rollout_timeout": "soon"})
    assert run.returncode != 0, run.explain()
    assert "-e ai_serving_rollout_timeout is 'soon': expected a whole number" in run.output, run.explain()
    assert not (tmp_path / "out").exists()

    run = render(tmp_path, {"ai_serving_models": catalog({"termination_grace_period_seconds": 5})})
    assert run.returncode != 0, run.explain()
    assert ("termination_grace_period_seconds (5, from deploy.termination_grace_period_seconds of the catalog entry) "
            "must be more than pre_stop_sleep_seconds (10, from default)") in run.output, run.explain()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("deploy, message", [
    ({"rollout_timeout": 0}, f"models.{MODEL}.deploy.rollout_timeout"),
    # Not a per-model knob: the builder belongs to the environment (the inventory).
    ({"image_builder": "podman"}, f"models.{MODEL}.deploy"),
    ({"rollout_timeout": "soon"}, f"models.{MODEL}.deploy.rollout_timeout"),
])
def test_the_catalog_refuses_a_bad_deploy_section(tmp_path: Path, deploy: Dict[str, Any], message: str) -> None:
    run = render(tmp_path, {"ai_serving_models": catalog(deploy)})
    assert run.returncode != 0, run.explain()
    assert message in run.output, run.explain()
    assert not (tmp_path / "out").exists()
