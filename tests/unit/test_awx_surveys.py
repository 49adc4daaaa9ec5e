"""The AWX objects of awx/job_templates.yml, checked against what AWX accepts.

playbooks/awx_configure.yml hands each job template's ``survey_spec`` to AWX
(awx.awx.job_template posts it to ``/api/v2/job_templates/<id>/survey_spec/``),
which refuses a spec that breaks its rules. ``survey_spec_errors`` below
implements those rules, following AWX 24's source:

- ``awx/api/views/__init__.py``, ``JobTemplateSurveySpec._validate_spec_data``:
  the rules checked when a spec is saved (top-level ``name``/``description``/
  ``spec``, the fields and types of each question, unique variables, question
  types from ``SURVEY_TYPE_MAPPING`` in ``awx/main/constants.py``, defaults of
  the question's type, integer ``min``/``max``, ``choices`` for the choice
  types with defaults among them, ``$encrypted$`` only for passwords);
- ``awx/main/models/mixins.py``, ``SurveyJobTemplateMixin._survey_element_validation``:
  the rules a launch applies to each answer, applied here to the defaults, which
  a launch submits unchanged (length bounds of text, bounds of numbers, choices).

On top of AWX's rules, ours: a variable must be a name Ansible can use (an
identifier that is not a reserved name such as ``environment``), the model
questions offer exactly the catalog's models, and each template's playbook is in
the repository.
"""

from __future__ import annotations

import copy
import keyword
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB_TEMPLATES = REPO_ROOT / "awx" / "job_templates.yml"
CATALOG = REPO_ROOT / "inventories" / "shared" / "group_vars" / "all" / "models.yml"
CONFIGURE_PLAYBOOK = REPO_ROOT / "playbooks" / "awx_configure.yml"

# awx/main/constants.py SURVEY_TYPE_MAPPING: question type -> Python type(s) of its default.
SURVEY_TYPE_MAPPING: dict[str, type | tuple[type, ...]] = {
    "text": str,
    "textarea": str,
    "password": str,
    "multiplechoice": str,
    "multiselect": str,
    "integer": int,
    "float": (float, int),
}
CHOICE_TYPES = {"multiplechoice", "multiselect"}
# Playbooks that the runtime roles' work adds; their templates are skipped
# (not failed) until the file exists.
PENDING_PLAYBOOKS = {"playbooks/deploy_model.yml", "playbooks/rollback_model.yml", "playbooks/undeploy_model.yml"}


# ---------------------------------------------------------------- the rules


def _choice_list(choices: Any) -> list[Any]:
    """AWX accepts choices as a list or as one string, one choice a line."""
    if isinstance(choices, str):
        return [c for c in choices.splitlines() if c.strip() != ""]
    return list(choices)


def _question_errors(idx: int, item: Any, seen: set[str]) -> list[str]:
    where = f"survey question {idx}"
    if not isinstance(item, dict):
        return [f"{where} is not a json object"]
    for field in ("type", "question_name", "variable", "required"):
        if field not in item:
            return [f"'{field}' missing from {where}"]
        expected = bool if field == "required" else str
        if not isinstance(item[field], expected):
            return [f"'{field}' in {where} expected to be {'boolean' if expected is bool else 'string'}"]
    errors: list[str] = []
    variable = item["variable"]
    if variable in seen:
        errors.append(f"'variable' '{variable}' duplicated in {where}")
    seen.add(variable)

    qtype = item["type"]
    if qtype not in SURVEY_TYPE_MAPPING:
        return errors + [f"'{qtype}' in {where} is not one of {', '.join(SURVEY_TYPE_MAPPING)}"]
    has_default = "default" in item and item["default"] != ""
    # bool is an int in Python, and AWX's isinstance check lets it through; we do not.
    if has_default and (
        not isinstance(item["default"], SURVEY_TYPE_MAPPING[qtype]) or isinstance(item["default"], bool)
    ):
        errors.append(f"default {item['default']!r} in {where} expected to be of type {qtype}")
        has_default = False
    for key in ("min", "max"):
        if item.get(key) is not None and (not isinstance(item[key], int) or isinstance(item[key], bool)):
            errors.append(f"the {key} limit in {where} expected to be integer")

    if qtype in CHOICE_TYPES:
        if "choices" not in item:
            return errors + [f"{where} of type {qtype} must specify choices"]
        if not isinstance(item["choices"], (str, list)):
            return errors + [f"choices of {where} must be a list or a newline-separated string"]
        choices = _choice_list(item["choices"])
        if not choices:
            errors.append(f"{where} of type {qtype} has no choices")
        if "default" in item:
            default = item["default"]
            defaults = _choice_list(default) if isinstance(default, str) else list(default)
            if qtype == "multiplechoice" and len(defaults) > 1:
                errors.append(f"{where}: Multiple Choice (Single Select) can only have one default value")
            # AWX tests `in` against the raw choices, a substring test when they are a
            # string; we ask for whole choices, what a launch then accepts.
            missing = [d for d in defaults if d not in choices]
            if missing:
                errors.append(f"{where}: default {missing} must be answered from the choices {choices}")

    if isinstance(item.get("default"), str) and item["default"].startswith("$encrypted$"):
        errors.append(f"$encrypted$ is a reserved keyword (password defaults kept by AWX), not a default, in {where}")

    # What a launch checks of an answer, for the default a launch submits
    # (with bounds that are integers; others were reported above).
    bounds_ok = all(not isinstance(item.get(k), (str, bool, float)) for k in ("min", "max"))
    if has_default and bounds_ok:
        default = item["default"]
        low, high = item.get("min"), item.get("max")
        if qtype in ("text", "textarea", "password"):
            if low is not None and len(default) < low:
                errors.append(f"default of {where} is shorter than its min {low}")
            if high is not None and len(default) > high:
                errors.append(f"default of {where} is longer than its max {high}")
        elif qtype in ("integer", "float"):
            if low is not None and default < low:
                errors.append(f"default {default} of {where} is below its min {low}")
            if high is not None and default > high:
                errors.append(f"default {default} of {where} is above its max {high}")
    if bounds_ok and item.get("min") is not None and item.get("max") is not None and item["min"] > item["max"]:
        errors.append(f"{where}: min {item['min']} is above max {item['max']}, no answer fits")
    return errors


def survey_spec_errors(spec: Any) -> list[str]:
    """Every reason AWX would refuse ``spec`` (empty when it accepts it)."""
    if not isinstance(spec, dict):
        return ["a survey spec is a json object"]
    errors = []
    for field, expected, label in (("name", str, "string"), ("description", str, "string"), ("spec", list, "list of items")):
        if field not in spec:
            errors.append(f"Field '{field}' is missing from survey spec")
        elif not isinstance(spec[field], expected):
            errors.append(f"Expected {label} for field '{field}', received {type(spec[field]).__name__} type")
    if isinstance(spec.get("spec"), list) and len(spec["spec"]) < 1:
        errors.append("'spec' doesn't contain any items")
    if errors:
        return errors
    seen: set[str] = set()
    for idx, item in enumerate(spec["spec"]):
        errors += _question_errors(idx, item, seen)
    return errors


def ansible_variable_errors(spec: dict[str, Any]) -> list[str]:
    """Our rule: every survey variable is a name a playbook can use."""
    from ansible.vars.reserved import is_reserved_name

    errors = []
    for item in spec["spec"]:
        name = item["variable"]
        if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
            errors.append(f"survey variable '{name}' is not a valid Ansible variable name")
        elif is_reserved_name(name):
            errors.append(f"survey variable '{name}' is a name Ansible reserves (a play keyword or magic variable)")
    return errors


# ---------------------------------------------------------------- the data


class _UnsafeLoader(yaml.SafeLoader):
    """Reads Ansible's !unsafe tag as the plain string it marks."""


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_definitions() -> dict[str, Any]:
    return yaml.load(JOB_TEMPLATES.read_text(), Loader=_UnsafeLoader)  # noqa: S506 - a SafeLoader subclass


DEFINITIONS = load_definitions()
TEMPLATES = DEFINITIONS["ai_serving_awx_job_templates"]
SURVEYED = [t for t in TEMPLATES if t["survey_spec"]]


def test_every_action_has_a_template() -> None:
    names = [t["name"] for t in TEMPLATES]
    assert sorted(names) == ["bootstrap", "canary", "deploy_model", "rollback_model", "undeploy_model"]
    assert len(set(names)) == len(names)


def test_the_canary_template_asks_an_action_canary_yml_accepts() -> None:
    """playbooks/canary.yml asserts canary_action in its list: the survey offers exactly those, with no default."""
    template = next(t for t in TEMPLATES if t["name"] == "canary")
    assert template["playbook"] == "playbooks/canary.yml"
    question = next(q for q in template["survey_spec"]["spec"] if q["variable"] == "canary_action")
    assert question["required"] is True and question["default"] == ""
    plays = yaml.safe_load((REPO_ROOT / "playbooks" / "canary.yml").read_text())
    check = plays[0]["tasks"][0]["ansible.builtin.assert"]["that"][0]
    accepted = yaml.safe_load(check.split(" in ", 1)[1])
    assert sorted(_choice_list(question["choices"])) == sorted(accepted) == ["abort", "promote"]


@pytest.mark.parametrize("template", SURVEYED, ids=lambda t: t["name"])
def test_survey_is_accepted_by_awx(template: dict[str, Any]) -> None:
    assert survey_spec_errors(template["survey_spec"]) == []


@pytest.mark.parametrize("template", SURVEYED, ids=lambda t: t["name"])
def test_survey_variables_are_usable_by_ansible(template: dict[str, Any]) -> None:
    assert ansible_variable_errors(template["survey_spec"]) == []


@pytest.mark.parametrize("template", SURVEYED, ids=lambda t: t["name"])
def test_model_question_offers_exactly_the_catalog(template: dict[str, Any]) -> None:
    catalog = yaml.safe_load(CATALOG.read_text())["ai_serving_models"]
    questions = [q for q in template["survey_spec"]["spec"] if q["variable"] == "model"]
    assert len(questions) == 1, f"{template['name']}: the playbook takes the model as `model`"
    question = questions[0]
    assert question["type"] == "multiplechoice"
    assert question["required"] is True
    assert sorted(_choice_list(question["choices"])) == sorted(catalog), (
        "awx/job_templates.yml ai_serving_awx_models must list the catalog's models "
        "(inventories/shared/group_vars/all/models.yml)"
    )


def test_bootstrap_has_no_survey() -> None:
    bootstrap = next(t for t in TEMPLATES if t["name"] == "bootstrap")
    assert bootstrap["survey_spec"] == {}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t["name"])
def test_template_playbook_is_in_the_repository(template: dict[str, Any]) -> None:
    path = REPO_ROOT / template["playbook"]
    if not path.is_file() and template["playbook"] in PENDING_PLAYBOOKS:
        pytest.skip(f"{template['playbook']} is not written yet (runtime roles work)")
    assert path.is_file(), f"{template['name']}: {template['playbook']} does not exist"


def test_environments_match_the_inventories() -> None:
    envs = DEFINITIONS["ai_serving_awx_environments"]
    assert len({e["name"] for e in envs}) == len(envs)
    assert len({e["inventory"] for e in envs}) == len(envs)
    assert len({e["credential"] for e in envs}) == len(envs)
    for env in envs:
        inventory = REPO_ROOT / env["source_path"]
        assert (inventory / "hosts.yml").is_file(), f"{env['source_path']} is not an inventory directory"
        connection = yaml.safe_load((inventory / "group_vars" / "all" / "connection.yml").read_text())
        assert connection["ai_serving_environment"] == env["name"], (
            f"AWX environment {env['name']} syncs {env['source_path']}, whose ai_serving_environment is "
            f"{connection['ai_serving_environment']}"
        )


@pytest.mark.parametrize("definition", ["ai_serving_awx_credential_type", "ai_serving_awx_multi_cluster_credential_type"])
def test_credential_type_is_consistent(definition: str) -> None:
    """AWX's rules for a credential type (awx/main/fields.py, CredentialInputField and
    CredentialTypeInjectorField): fields with id, label and type string/boolean, required
    ids among them, injectors referencing only inputs and tower.filename.<file>; only
    cloud and net kinds can be created."""
    ctype = DEFINITIONS[definition]
    assert ctype["kind"] in ("cloud", "net")
    fields = ctype["inputs"]["fields"]
    ids = [f["id"] for f in fields]
    assert len(set(ids)) == len(ids)
    for field in fields:
        assert {"id", "label", "type"} <= field.keys()
        assert field["type"] in ("string", "boolean")
    assert set(ctype["inputs"]["required"]) <= set(ids)
    injectors = ctype["injectors"]
    assert set(injectors) <= {"file", "env", "extra_vars"}
    files = {key.split(".", 1)[1] for key in injectors.get("file", {})}
    assert all(key.startswith("template.") for key in injectors.get("file", {}))

    import jinja2
    from jinja2 import meta

    env = jinja2.Environment()  # noqa: S701 - templates are parsed, never rendered to HTML
    for section in ("file", "env", "extra_vars"):
        for key, template in injectors.get(section, {}).items():
            names = meta.find_undeclared_variables(env.parse(template))
            assert names <= set(ids) | {"tower"}, f"injectors.{section}.{key} uses {names - set(ids)}"
            for ref in ("tower.filename.",):
                if ref in template:
                    assert template.split(ref, 1)[1].split()[0].strip("}") in files
    # What the playbooks read: the kubeconfig and the context, as extra variables
    # that beat the inventory's ~/.kube paths; for several clusters the kubeconfig
    # only: an injected context would beat every cluster host's own.
    if definition == "ai_serving_awx_credential_type":
        assert {"ai_serving_kubeconfig", "ai_serving_context"} <= set(injectors["extra_vars"])
    else:
        assert set(injectors["extra_vars"]) == {"ai_serving_kubeconfig"}
        assert "K8S_AUTH_CONTEXT" not in injectors.get("env", {})


def test_configure_playbook_reads_these_definitions() -> None:
    plays = yaml.safe_load(CONFIGURE_PLAYBOOK.read_text())
    assert plays[0]["vars_files"] == ["../awx/job_templates.yml"]
    modules = {next(k for k in task if "." in k and k not in ("loop_control",)) for task in plays[0]["tasks"]}
    assert {m for m in modules if not m.startswith("ansible.builtin.")} <= {
        "awx.awx.organization",
        "awx.awx.execution_environment",
        "awx.awx.project",
        "awx.awx.credential_type",
        "awx.awx.credential",
        "awx.awx.inventory",
        "awx.awx.inventory_source",
        "awx.awx.job_template",
    }


# ---------------------------------------------------------------- the rules themselves

VALID = {
    "name": "Deploy",
    "description": "",
    "spec": [
        {
            "question_name": "Model",
            "variable": "model",
            "type": "multiplechoice",
            "choices": ["a", "b"],
            "required": True,
            "default": "a",
        },
        {"question_name": "Replicas", "variable": "replicas", "type": "integer", "required": False, "min": 1, "max": 5, "default": 2},
        {"question_name": "Ratio", "variable": "ratio", "type": "float", "required": False, "default": 1},
        {"question_name": "Note", "variable": "note", "type": "text", "required": False, "min": 0, "max": 20, "default": ""},
        {"question_name": "Tags", "variable": "tags_", "type": "multiselect", "choices": "x\ny\n\nz", "required": False, "default": "x\nz"},
    ],
}


def _broken(path: tuple[Any, ...], value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    spec = copy.deepcopy(VALID)
    target = spec
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


def test_a_valid_spec_passes() -> None:
    assert survey_spec_errors(VALID) == []
    assert ansible_variable_errors(VALID) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_broken(("name",), delete=True), "Field 'name' is missing"),
        (_broken(("description",), 3), "Expected string for field 'description'"),
        (_broken(("spec",), {}), "Expected list of items for field 'spec'"),
        (_broken(("spec",), []), "'spec' doesn't contain any items"),
        (_broken(("spec", 0), "model"), "is not a json object"),
        (_broken(("spec", 0, "variable"), delete=True), "'variable' missing"),
        (_broken(("spec", 0, "required"), "yes"), "'required' in survey question 0 expected to be boolean"),
        (_broken(("spec", 1, "variable"), "model"), "'variable' 'model' duplicated"),
        (_broken(("spec", 0, "type"), "select"), "is not one of"),
        (_broken(("spec", 1, "default"), "2"), "expected to be of type integer"),
        (_broken(("spec", 1, "default"), True), "expected to be of type integer"),
        (_broken(("spec", 1, "min"), "1"), "the min limit in survey question 1 expected to be integer"),
        (_broken(("spec", 0, "choices"), delete=True), "must specify choices"),
        (_broken(("spec", 0, "default"), "c"), "must be answered from the choices"),
        (_broken(("spec", 0, "default"), "a\nb"), "can only have one default value"),
        (_broken(("spec", 4, "default"), "x\nw"), "must be answered from the choices"),
        (_broken(("spec", 3, "default"), "$encrypted$"), "$encrypted$ is a reserved keyword"),
        (_broken(("spec", 1, "default"), 9), "is above its max 5"),
        (_broken(("spec", 3, "default"), "x" * 21), "is longer than its max 20"),
        (_broken(("spec", 1, "min"), 6), "min 6 is above max 5"),
    ],
)
def test_each_awx_rule_is_enforced(spec: dict[str, Any], message: str) -> None:
    errors = survey_spec_errors(spec)
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize("name", ["environment", "hosts", "1model", "model-name", "class"])
def test_unusable_variable_names_are_refused(name: str) -> None:
    spec = _broken(("spec", 0, "variable"), name)
    assert ansible_variable_errors(spec), name
