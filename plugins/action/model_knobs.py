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
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        variables = task_vars or {}
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
