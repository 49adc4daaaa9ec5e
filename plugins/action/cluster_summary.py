# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.cluster_summary: one row per cluster at the end of a run.

Run once by the playbooks' last play: reads what cluster_placement decided and each cluster's result (a host
variable the playbook sets), prints the table and fails the run when a cluster failed. The rows are
plugins/module_utils/clusters.py's.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import clusters as _clusters

display = Display()

ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = dict(
    what=dict(type="str", required=True),
    placement=dict(type="dict", required=True),
    result_var=dict(type="str", required=True),
    version=dict(type="str", default=""),
)


def _result(value: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(value, Mapping):
        return None
    changed = value.get("changed")
    return {"failed": bool(value.get("failed")), "changed": None if changed is None else bool(changed),
            "msg": str(value.get("msg") or ""), "version": str(value.get("version") or "")}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        placement = args["placement"]
        if not isinstance(placement.get("clusters"), list) or not isinstance(placement.get("targets"), list):
            raise AnsibleActionFail("placement must be the registered result of creativeflow.ai_serving."
                                    "cluster_placement (with clusters and targets); got keys {0}".format(
                                        ", ".join(sorted(placement)) or "(none)"))
        clusters = [_clusters.Cluster(name=c["name"], label=c.get("label") or c["name"],
                                      preference=int(c.get("preference", _clusters.DEFAULT_PREFERENCE)),
                                      position=index) for index, c in enumerate(placement["clusters"])]
        selection = _clusters.Selection(targets=list(placement["targets"]), skipped=dict(placement.get("skipped") or {}))
        hostvars = (task_vars or {}).get("hostvars") or {}
        results: Dict[str, Dict[str, Any]] = {}
        for name in selection.targets:
            found = _result((hostvars.get(name) or {}).get(args["result_var"]))
            if found is not None:
                results[name] = found
        rows = _clusters.summary_rows(clusters, selection, results, args["version"])
        lines = _clusters.format_summary(rows, title="Summary: {0}".format(args["what"]))
        # The table is for the operator whatever the verbosity; the rows are the task's result too.
        display.display("\n".join(lines))
        failure = _clusters.failure_message(rows, args["what"])
        if failure:
            # The table above says it all; the result only the failure.
            result.update(changed=False, failed=True, msg=failure)
        else:
            result.update(changed=False, rows=rows)
        return result
