# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.model_catalog: the catalog resolved in the controller process.

The module (plugins/modules/model_catalog.py) would be a process of its own
that imports jsonschema at every deploy; this runs the same module_utils code
(validation, defaults, environment overrides, warnings) where Ansible already
runs, with the same arguments, result and messages.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.clusters import ClusterError, with_cluster_overrides
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import (
    ENVIRONMENTS,
    HAS_JSONSCHEMA,
    CatalogError,
    UnknownModelError,
    availability_warnings,
    check_catalog,
    model_names,
    resolve_model,
    unnamed_model_message,
)

ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = dict(
    catalog=dict(type="dict", required=True),
    model=dict(type="str"),
    require_model=dict(type="bool", default=False),
    environment=dict(type="str", choices=list(ENVIRONMENTS)),
    overrides=dict(type="raw"),
    cluster=dict(type="str"),
)


def _as_module_sees_it(value: Any) -> Any:
    """The value as a module gets it: through JSON (string keys, plain types), so the result is the module's."""
    return json.loads(json.dumps(value, default=to_text))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        # Before the argument check, which refuses or turns into text a dict or list given as the model.
        raw = self._task.args
        if boolean(raw.get("require_model", False), strict=False):
            unnamed = unnamed_model_message(raw.get("model"), raw.get("catalog") if isinstance(raw.get("catalog"), dict)
                                            else {})
            if unnamed:
                result.update(failed=True, changed=False, msg=unnamed)
                return result
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        result["changed"] = False
        if not HAS_JSONSCHEMA:
            result.update(failed=True, msg=missing_required_lib("jsonschema") + " (on the controller)")
            return result
        catalog = _as_module_sees_it(args["catalog"])
        model, environment = args["model"], args["environment"]
        try:
            check_catalog(catalog)
            found: Dict[str, Any] = {"models": model_names(catalog)}
            if model is not None:
                found["model"] = resolve_model(catalog, model, environment)
                overrides = _as_module_sees_it(args["overrides"]) if args["overrides"] is not None else None
                if overrides:
                    found["model"] = with_cluster_overrides(catalog, model, environment, overrides,
                                                            args["cluster"] or "this cluster")
        except ClusterError as exc:
            result.update(failed=True, msg=str(exc), problems=exc.problems)
            return result
        except UnknownModelError as exc:
            result.update(failed=True, msg=str(exc), problems=exc.problems, known_models=exc.known)
            return result
        except CatalogError as exc:
            result.update(failed=True, msg=str(exc), problems=exc.problems)
            return result
        result.update(found)
        warnings = list(availability_warnings(catalog, model=model, environment=environment))
        if warnings:
            result["warnings"] = warnings
        return result
