# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime registry (runtimes.py) against the roles, the catalog and the docs.

A runtime is one record; these tests prove that what else exists for it agrees: its role
(entry point, argument specs, Dockerfile template, configuration file templates, knob
defaults), the catalog's runtime list and section schemas, and the docs' runtime table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import catalog, runtimes

ROOT = Path(__file__).resolve().parents[4]
ROLES = ROOT / "roles"
NAMES = list(runtimes.names())


def role_defaults(name: str) -> Dict[str, Any]:
    return yaml.safe_load((ROLES / name / "defaults" / "main.yml").read_text())


def runtime_roles() -> set:
    """Roles that include _common: the runtime roles."""
    return {path.parts[-3] for path in ROLES.glob("*/tasks/main.yml")
            if "creativeflow.ai_serving._common" in path.read_text() and not path.parts[-3].startswith("_")}


def test_every_runtime_role_has_a_record_and_every_record_a_role() -> None:
    assert runtime_roles() == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_role_has_what_the_record_names(name: str) -> None:
    record = runtimes.get(name)
    role = ROLES / record.role
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert "%s_model" % name in specs
    assert (role / "templates" / record.dockerfile_template).is_file()
    for config_file in record.config_files:
        assert (role / "templates" / (config_file + ".j2")).is_file(), config_file
    tasks = (role / "tasks" / "main.yml").read_text()
    assert "_common_runtime: %s\n" % name in tasks
    for config_file in record.config_files:
        assert "%s: \"{{ lookup('ansible.builtin.template', '%s.j2') }}\"" % (config_file, config_file) in tasks


@pytest.mark.parametrize("name", NAMES)
def test_the_role_passes_every_knob_and_its_defaults_are_the_records(name: str) -> None:
    record = runtimes.get(name)
    defaults = role_defaults(name)
    specs = yaml.safe_load((ROLES / name / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    tasks = (ROLES / name / "tasks" / "main.yml").read_text()
    for knob, value in record.knobs.items():
        variable = "%s_%s" % (name, knob)
        assert defaults[variable] == value, variable
        assert variable in specs, variable
        assert '      %s: "{{ %s }}"' % (knob, variable) in tasks, variable


def test_the_catalog_takes_the_runtimes_and_their_sections_from_the_registry() -> None:
    assert catalog.RUNTIMES == tuple(NAMES)
    properties = catalog.ENTRY_SCHEMA["properties"]
    assert properties["runtime"] == {"enum": NAMES}
    for name in NAMES:
        assert properties[name] is runtimes.get(name).section_schema


def test_the_docs_runtime_table_has_one_row_per_record_with_its_ports() -> None:
    text = (ROOT / "docs" / "deploy_model.md").read_text()
    row = re.compile(r"^\| `([a-z_]+)` \| `creativeflow\.ai_serving\.\1` \|.*$", re.MULTILINE)
    rows = {m.group(1): m.group(0) for m in row.finditer(text)}
    assert set(rows) == set(NAMES)
    for name in NAMES:
        record = runtimes.get(name)
        for port in record.port_numbers(record.knobs):
            assert "%s %d" % (port["name"], port["port"]) in rows[name], (name, port)


def test_an_unknown_runtime_is_refused_with_the_known_ones() -> None:
    expected = ("runtime 'onnxruntime' has no record: the runtimes are tf_serving, torchserve, triton, custom_python, "
                "ollama, vllm")
    with pytest.raises(runtimes.UnknownRuntimeError, match=expected):
        runtimes.get("onnxruntime")


@pytest.mark.parametrize("name", NAMES)
def test_knobs_change_the_container(name: str) -> None:
    record = runtimes.get(name)
    model = {"name": "m", "model": {"source": "image"}}
    knobs = {port.knob: 9000 + index for index, port in enumerate(record.ports)}
    spec = runtimes.server_spec(name, model, knobs)
    assert [p["port"] for p in spec.ports] == [9000 + i for i in range(len(record.ports))]
    # A port number given to the server on its command line follows the knob.
    for port in record.ports:
        if any(str(record.knobs[port.knob]) in arg for arg in record.args(model, record.knobs)):
            assert any(str(knobs[port.knob]) in arg for arg in spec.args), port


def test_triton_arguments_follow_the_section() -> None:
    model = {"name": "m", "model": {"source": "uri", "mount_path": "/data"},
             "triton": {"models": [{"name": "a"}, {"name": "b", "version": 2}], "model_control_mode": "poll",
                        "repository_poll_secs": 30, "strict_model_config": False, "extra_args": ["--x"]}}
    spec = runtimes.server_spec("triton", model, {"shm_size": "2Gi"})
    assert spec.args == ["--model-repository=/data", "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002",
                         "--model-control-mode=poll", "--repository-poll-secs=30", "--strict-model-config=false", "--x"]
    assert {"path": "/dev/shm", "medium": "Memory", "size_limit": "2Gi"} in spec.writable_paths
    smoke = ["/v2/health/ready", "/v2/models/a/ready", "/v2/models/b/versions/2/ready"]
    assert [p["path"] for p in spec.smoke_paths] == smoke
