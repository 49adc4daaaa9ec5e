# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The model_catalog module, run for real by ansible-playbook (no cluster).

Each test runs a one-task playbook against one of the example inventories,
so the catalog comes from the inventory's group_vars (a symlink to the shared
catalog) and the environment from its ai_serving_environment, exactly as
``playbooks/deploy_model.yml -e model=...`` gets them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[4]
KNOWN = ["chat-ollama", "double-triton-cpu", "doubler-python-cpu", "doubler-torchserve-cpu", "image-classifier",
         "llama-vllm", "sentiment-analysis", "text-generation-gpt", "tiny-ollama-cpu", "tiny-vllm-cpu",
         "vision-models"]

PLAYBOOK = """\
- name: Resolve a model from the inventory's catalog
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Validate the catalog and resolve the model
      creativeflow.ai_serving.model_catalog:
        catalog: "{{ ai_serving_models }}"
        model: "{{ model | default(omit) }}"
        environment: "{{ ai_serving_environment }}"
"""


def ansible_playbook() -> str:
    beside = Path(sys.executable).with_name("ansible-playbook")
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if not found:
        pytest.skip("ansible-playbook is not installed (run the tests from the project venv)")
    return found


def run_playbook(tmp_path: Path, inventory: str, *args: str) -> Dict[str, Any]:
    """Run the playbook; return the task's result for localhost, plus the exit status as ``rc``."""
    playbook = tmp_path / "resolve.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    proc = subprocess.run(
        [ansible_playbook(), "-i", str(REPO_ROOT / "inventories" / inventory), str(playbook), *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    try:
        output = json.loads(proc.stdout)
        result = output["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        pytest.fail("unexpected ansible-playbook output (%s):\nstdout:\n%s\nstderr:\n%s"
                    % (exc, proc.stdout[-4000:], proc.stderr[-4000:]))
    result["rc"] = proc.returncode
    return result


def write_vars(tmp_path: Path, data: Dict[str, Any]) -> str:
    path = tmp_path / "vars.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return "@%s" % path


def test_unknown_model_fails_with_the_known_models(tmp_path: Path):
    result = run_playbook(tmp_path, "prod", "-e", "model=foo")
    assert result["rc"] != 0
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == ("model 'foo' is not in the catalog (ai_serving_models); known models: "
                             + ", ".join(KNOWN))
    assert result["known_models"] == KNOWN


@pytest.mark.parametrize(
    ("inventory", "replicas", "autoscaling", "pdb"),
    [("local", 1, False, False), ("dev", 1, False, False), ("prod", 3, True, True)],
)
def test_model_is_resolved_with_the_inventorys_environment(tmp_path: Path, inventory: str, replicas: int,
                                                           autoscaling: bool, pdb: bool):
    result = run_playbook(tmp_path, inventory, "-e", "model=image-classifier")
    assert result["rc"] == 0, result.get("msg")
    assert result["changed"] is False
    assert result["models"] == KNOWN
    model = result["model"]
    assert model["name"] == "image-classifier" and model["runtime"] == "tf_serving"
    assert "environments" not in model
    assert model["replicas"] == replicas
    assert model["autoscaling"]["enabled"] is autoscaling
    assert model["pdb"]["enabled"] is pdb
    assert model["tf_serving"]["version_policy"] == {"type": "latest", "num_versions": 1}


def test_dev_gets_its_small_resources(tmp_path: Path):
    result = run_playbook(tmp_path, "dev", "-e", "model=image-classifier")
    assert result["model"]["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                            "limits": {"cpu": "1", "memory": "2Gi"}}


def test_check_mode_validates_only(tmp_path: Path):
    result = run_playbook(tmp_path, "local", "--check")
    assert result["rc"] == 0, result.get("msg")
    assert result["changed"] is False
    assert result["models"] == KNOWN
    assert "model" not in result


def test_invalid_catalog_fails_with_every_problem(tmp_path: Path):
    catalog: Dict[str, Any] = {
        "image-classifier": {
            "runtime": "tf_serving",
            "image": {"repository": "tensorflow/serving", "tag": "2.15.0-gpu"},
            "replicas": -1,
            "resources": {"requests": {"cpu": "4", "memory": "2Gi"}, "limits": {"cpu": "2"}},
            "tf_serving": {"model_name": "image_classifier_model", "model_base_path": "/models/ic"},
            "environments": {"prod": {"replicas": "three"}},
        },
    }
    result = run_playbook(tmp_path, "prod", "-e", write_vars(tmp_path, {"ai_serving_models": catalog}),
                          "-e", "model=image-classifier")
    assert result["rc"] != 0 and result["failed"] is True
    problems: Optional[List[str]] = result.get("problems")
    assert problems == [
        "models.image-classifier.replicas: -1 is less than the minimum of 0",
        "models.image-classifier.resources.requests.cpu: '4' is more than the limit '2' (resources.limits.cpu); "
        "a request must not exceed its limit",
        "models.image-classifier.environments.prod.replicas: 'three' is not of type 'integer'",
    ]
    assert result["msg"].startswith("the model catalog (ai_serving_models) has 3 problems:")


def test_an_update_without_an_available_replica_warns_and_can_be_refused(tmp_path: Path):
    entry: Dict[str, Any] = {
        "runtime": "tf_serving",
        "image": {"repository": "tensorflow/serving", "tag": "2.15.0-gpu"},
        "replicas": 3,
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
        "strategy": {"max_surge": 0, "max_unavailable": 1},
        "tf_serving": {"model_name": "image_classifier_model", "model_base_path": "/models/ic"},
        "environments": {"dev": {"replicas": 1}},
    }
    dev = run_playbook(tmp_path, "dev", "-e", write_vars(tmp_path, {"ai_serving_models": {"image-classifier": entry}}),
                       "-e", "model=image-classifier")
    assert dev["rc"] == 0, dev.get("msg")
    assert dev["warnings"] == [
        "models.image-classifier (with environments.dev): an update leaves no replica available (replicas 1, "
        "max_surge 0, max_unavailable 1): every update stops serving until the new pod is Ready; set max_surge 1 and max_unavailable 0 (a surge pod: "
        "the old pod serves until its successor is Ready), or set strategy.downtime: accept if that is deliberate "
        "(refuse makes it an error)"]
    prod = run_playbook(tmp_path, "prod", "-e", write_vars(tmp_path, {"ai_serving_models": {"image-classifier": entry}}),
                        "-e", "model=image-classifier")
    assert prod["rc"] == 0 and not prod.get("warnings")  # 3 replicas: 2 stay available
    entry["strategy"]["downtime"] = "refuse"
    refused = run_playbook(tmp_path, "dev", "-e", write_vars(tmp_path, {"ai_serving_models": {"image-classifier": entry}}),
                           "-e", "model=image-classifier")
    assert refused["rc"] != 0 and refused["failed"] is True
    assert refused["problems"] == [
        "models.image-classifier.strategy.downtime (with environments.dev): is refuse, and an update leaves no replica "
        "available (replicas 1, max_surge 0, max_unavailable 1): set max_surge 1 and max_unavailable 0 (a surge pod: "
        "the old pod serves until its successor is Ready)"]
