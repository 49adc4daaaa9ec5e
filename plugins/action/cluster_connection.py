# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.cluster_connection: the connection settings checked in the controller.

One Python call in place of an assert whose message Ansible templated at every run (a third of a second of a
no-change deploy); the checks are plugins/module_utils/connection.py's.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.plugins.action import ActionBase

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.connection import connection_problem


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("kubeconfig", "context"))

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        # Raw values, not an argument spec: a list or a number given as the kubeconfig is named as such.
        problem = connection_problem(self._task.args.get("kubeconfig"), self._task.args.get("context"))
        result["changed"] = False
        if problem:
            result.update(failed=True, msg=problem)
        return result
