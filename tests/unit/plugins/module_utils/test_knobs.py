# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the shared knobs: precedence, old names, coercion and the catalog's deploy section."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import knobs


def test_defaults_without_any_variable() -> None:
    resolved = knobs.resolve("triton", {}, {})
    assert resolved.values["rollout_timeout"] == 600
    assert resolved.values["namespace"] == "ai-serving"
    assert resolved.values["model_fetch_images"]["s3"].startswith("amazon/aws-cli:")
    assert set(resolved.values) == {knob.name for knob in knobs.KNOBS}
    assert set(resolved.sources.values()) == {"default"}
    assert resolved.warnings == []


def test_precedence_extra_vars_then_catalog_then_inventory_then_old_name() -> None:
    inventory = {"ai_serving_rollout_timeout": 300, "triton_rollout_timeout": 200}
    deploy = {"rollout_timeout": 900}
    got = knobs.resolve("triton", inventory, {}, deploy, names=["rollout_timeout"])
    assert (got.values["rollout_timeout"], got.sources["rollout_timeout"]) == (
        900, "deploy.rollout_timeout of the catalog entry")
    extra = {"ai_serving_rollout_timeout": "1200"}  # -e ai_serving_rollout_timeout=1200: a string
    got = knobs.resolve("triton", {**inventory, **extra}, extra, deploy, names=["rollout_timeout"])
    assert (got.values["rollout_timeout"], got.sources["rollout_timeout"]) == (1200, "-e ai_serving_rollout_timeout")
    got = knobs.resolve("triton", inventory, {}, {}, names=["rollout_timeout"])
    assert (got.values["rollout_timeout"], got.sources["rollout_timeout"]) == (300, "ai_serving_rollout_timeout")
    assert got.warnings == []  # the old name is shadowed, so not used


def test_old_names_work_with_a_deprecation_warning() -> None:
    got = knobs.resolve("torchserve", {"torchserve_rollback_on_failure": "no"}, {}, names=["rollback_on_failure"])
    assert got.values["rollback_on_failure"] is False
    assert got.warnings == [
        "torchserve_rollback_on_failure is deprecated: set ai_serving_rollback_on_failure (every model) or "
        "deploy.rollback_on_failure in the model's catalog entry instead; the old name stops working in 2.0.0."]
    got = knobs.resolve("triton", {"triton_image_builder": "podman"}, {}, names=["image_builder"])
    assert got.values["image_builder"] == "podman"
    assert "set ai_serving_image_builder instead" in got.warnings[0]
    # Another runtime's old name is not this model's.
    assert knobs.resolve("triton", {"torchserve_rollout_timeout": 5}, {}).values["rollout_timeout"] == 600


def test_a_knob_that_is_not_per_model_ignores_the_catalog() -> None:
    got = knobs.resolve("triton", {}, {}, {"image_builder": "podman"}, names=["image_builder"])
    assert got.values["image_builder"] == "docker"


def test_defaults_taken_from_the_namespace_role() -> None:
    got = knobs.resolve("triton", {"ai_namespace_name": "ml-prod", "ai_namespace_service_account_name": "sa"}, {})
    assert got.values["namespace"] == "ml-prod" and got.sources["namespace"] == "ai_namespace_name"
    assert got.values["service_account_name"] == "sa"


@pytest.mark.parametrize("variables,message", [
    ({"ai_serving_rollout_timeout": "soon"}, "ai_serving_rollout_timeout is 'soon': expected a whole number"),
    ({"ai_serving_rollout_timeout": 0}, "ai_serving_rollout_timeout is 0: expected at least 1"),
    ({"ai_serving_rollout_timeout": True}, "ai_serving_rollout_timeout is True: expected a whole number"),
    ({"ai_serving_rollout_timeout": 2.5}, "ai_serving_rollout_timeout is 2.5: expected a whole number"),
    ({"ai_serving_smoke_check": "maybe"}, "ai_serving_smoke_check is 'maybe': expected true or false"),
    ({"ai_serving_image_builder": "kaniko"}, "ai_serving_image_builder is 'kaniko': expected one of docker, podman"),
    ({"ai_serving_namespace": "Prod_NS"}, "ai_serving_namespace is 'Prod_NS': expected a DNS label"),
    ({"ai_serving_pod_labels": ["a=b"]}, "ai_serving_pod_labels is a list: expected a mapping"),
    ({"triton_rollout_fail_fast": -1}, "triton_rollout_fail_fast is -1: expected at least 0"),
    ({"ai_serving_termination_grace_period_seconds": 10},
     "termination_grace_period_seconds (10, from ai_serving_termination_grace_period_seconds) must be more than "
     "pre_stop_sleep_seconds (10, from default)"),
])
def test_bad_values_name_the_variable_and_the_value(variables, message) -> None:
    with pytest.raises(knobs.KnobError) as info:
        knobs.resolve("triton", variables, {})
    assert message in str(info.value)


def test_catalog_schema_holds_only_per_model_knobs() -> None:
    schema = knobs.catalog_schema()
    assert set(schema["properties"]) == set(knobs.PER_MODEL)
    assert "image_builder" not in schema["properties"] and "namespace" not in schema["properties"]
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors({"rollout_timeout": 900, "smoke_check": False}))
    assert list(validator.iter_errors({"rollout_timeout": 0}))
    assert list(validator.iter_errors({"image_builder": "podman"}))


def test_secrets_are_masked_for_output() -> None:
    got = knobs.resolve("triton", {"ai_serving_image_registry": {"username": "u", "password": "hunter2"}}, {})
    assert knobs.redacted(got)["image_registry"] == {"username": "u", "password": "********"}
    assert got.values["image_registry"]["password"] == "hunter2"


def test_no_role_declares_a_shared_knob_again() -> None:
    """Declared once: no runtime role (nor _common) has a default or an argument spec of its own for a shared knob."""
    from pathlib import Path

    import yaml

    from ansible_collections.creativeflow.ai_serving.plugins.module_utils import runtimes

    roles = Path(__file__).resolve().parents[4] / "roles"
    for role in list(runtimes.names()) + ["_common"]:
        defaults_file = roles / role / "defaults" / "main.yml"
        defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
        specs = yaml.safe_load((roles / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        options = {name for entry in specs.values() for name in entry.get("options", {})}
        for knob in knobs.KNOBS:
            for name in ("{0}_{1}".format(role, knob.name), "_common_" + knob.name):
                assert name not in defaults, (role, name)
                assert name not in options, (role, name)


def test_the_module_doc_lists_every_knob_with_its_default() -> None:
    """ansible-doc creativeflow.ai_serving.model_knobs is the knobs' reference: it must not drift from KNOBS."""
    from pathlib import Path

    import yaml

    source = (Path(__file__).resolve().parents[4] / "plugins" / "modules" / "model_knobs.py").read_text()
    doc = yaml.safe_load(source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])
    entries = {line.split(")", 1)[0][len("C("):]: line for line in doc["description"] if line.startswith("C(ai_serving_")}
    assert sorted(entries) == sorted(knob.variable for knob in knobs.KNOBS)
    for knob in knobs.KNOBS:
        entry = entries[knob.variable]
        assert ("catalog C(deploy)" in entry) == knob.per_model, knob.name
        default = knob.default
        if isinstance(default, bool):
            assert "default V({0})".format(str(default).lower()) in entry, knob.name
        elif isinstance(default, (int, str)):
            assert "V({0})".format(default) in entry, knob.name
        else:
            assert all(str(value) in entry for value in default.values()), knob.name


def test_the_docs_knob_table_has_one_row_per_knob() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[4] / "docs" / "deploy_model.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `ai_serving_([a-z_]+)` \|.*$", text, re.MULTILINE)}
    assert sorted(rows) == sorted(knob.name for knob in knobs.KNOBS)
    for knob in knobs.KNOBS:
        assert rows[knob.name].split(" | ")[3] == ("yes" if knob.per_model else "no"), knob.name
