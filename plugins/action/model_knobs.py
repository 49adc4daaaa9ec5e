# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.model_knobs: the shared knobs' values, on the controller.

The knobs are declared once in plugins/module_utils/knobs.py; this reads the
task's variables and the run's extra variables (which outrank the catalog
entry's ``deploy`` section, so they are told apart) and returns the values.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import load_extra_vars

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import knobs

display = Display()

ARGUMENT_SPEC = dict(
    runtime=dict(type="str", required=True),
    model=dict(type="dict", default={}),
    require_runtime_role=dict(type="bool", default=False),
)


def caller_problem(runtime: str, model: Dict[str, Any], parent_roles: Any) -> Optional[str]:
    """Why the internal role must not run here: not inside the runtime's role, or an entry of another runtime."""
    first = parent_roles[0] if isinstance(parent_roles, list) and parent_roles else ""
    if not (isinstance(first, str) and (first == runtime or first.endswith("." + runtime))):
        return ("creativeflow.ai_serving._common is internal: it is called by a runtime role "
                "(creativeflow.ai_serving.<runtime>, one per runtime of the catalog), which sets its variables; here "
                "it runs {0}. Use playbooks/deploy_model.yml -e model=NAME, or include one of those roles.".format(
                    "inside role " + first if first else "outside any role"))
    if model.get("runtime") != runtime or not isinstance(model.get(runtime), dict):
        return ("{0}_model must be a catalog entry with runtime {0} and a {0} section (what "
                "creativeflow.ai_serving.model_catalog returns); got runtime '{1}'. playbooks/deploy_model.yml "
                "-e model=NAME picks the right role.".format(runtime, model.get("runtime") or "(none)"))
    return None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        variables = task_vars or {}
        if args["require_runtime_role"]:
            problem = caller_problem(args["runtime"], args["model"], variables.get("ansible_parent_role_names"))
            if problem:
                raise AnsibleActionFail(problem)
        # -e values reach task_vars too, but must outrank the catalog's deploy section: read them apart.
        extra = load_extra_vars(self._loader)
        try:
            resolved = knobs.resolve(args["runtime"], variables, extra, args["model"].get("deploy") or {})
        except knobs.KnobError as err:
            raise AnsibleActionFail(str(err)) from err
        for warning in resolved.warnings:
            display.deprecated(warning, version="2.0.0", collection_name="creativeflow.ai_serving")  # knobs.LEGACY_REMOVED_IN
        # The registry credentials are a knob: their password must not reach the output (-v prints results).
        secrets = knobs.redacted(resolved) != resolved.values
        result.update(changed=False, values=resolved.values, sources=resolved.sources, secrets=secrets)
        if secrets:
            result["_ansible_no_log"] = True
        return result
