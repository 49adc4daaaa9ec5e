# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.cluster_placement: the clusters of a run, where the model goes, the waves.

Run once (``run_once: true``) by the playbooks' first play, after every cluster's own checks: it reads the play's
hosts and their variables, and the logic is plugins/module_utils/clusters.py's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import clusters as _clusters

display = Display()

ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = dict(
    model=dict(type="str"),
    placement=dict(type="raw"),
    waves=dict(type="raw"),
    require_all=dict(type="bool", default=False),
    preflight_var=dict(type="str", default="__ai_serving_preflight"),
    where_runs=dict(type="bool", default=False),
)

#: The host variables a cluster is described by.
HOST_VARS = _clusters.CONNECTION_VARS + ("ai_serving_cluster_label", "ai_serving_cluster_preference",
                                         "ai_serving_environment")


def _host_view(name: str, hostvars: Mapping[str, Any], single: bool) -> Dict[str, Any]:
    """The variables of host ``name`` that describe its cluster (templated only when asked: a kubeconfig may be a
    lookup); the lone localhost of a single-cluster inventory needs none of its connection."""
    view: Dict[str, Any] = {"name": name}
    found = hostvars.get(name) or {}
    for key in HOST_VARS:
        if single and key in _clusters.CONNECTION_VARS:
            continue
        value = found.get(key) if hasattr(found, "get") else None
        if value is not None:
            view[key] = value
    return view


def _preflight(value: Any) -> Optional[_clusters.Preflight]:
    if not isinstance(value, Mapping):
        return None
    runs = value.get("runs")
    return _clusters.Preflight(fits=bool(value.get("fits")), runs=None if runs is None else bool(runs),
                               reason=_clusters.short_reason(value.get("msg") or ""))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        variables = task_vars or {}
        names: List[str] = list(variables.get("ansible_play_hosts_all") or [])
        remaining = set(variables.get("ansible_play_hosts") or names)
        model = args["model"] or "the model"
        failed = [name for name in names if name not in remaining]
        if failed:
            pronoun = "it" if len(failed) == 1 else "them"
            raise AnsibleActionFail(
                "the checks above failed on {0}: nothing is applied on any cluster of this run ({1}). Fix what they "
                "name, or leave {2} out of the run (--limit).".format(", ".join(failed), ", ".join(names), pronoun))
        hostvars = variables.get("hostvars") or {}
        single = names == ["localhost"]
        try:
            clusters = _clusters.clusters_from_hosts([_host_view(name, hostvars, single) for name in names])
            placement = _clusters.parse_placement(args["placement"], model)
            waves = _clusters.parse_waves(args["waves"])
            problems = _clusters.placement_problems(placement, clusters, model)
            if problems:
                raise _clusters.ClusterError(problems, summary="the placement of {0} does not fit this run's "
                                                               "clusters; nothing was applied".format(model))
            preflights: Dict[str, _clusters.Preflight] = {}
            for cluster in clusters:
                found = _preflight((hostvars.get(cluster.name) or {}).get(args["preflight_var"]))
                if found is not None:
                    preflights[cluster.name] = found
            if args["require_all"]:
                problems = _clusters.require_all_problems(clusters, preflights, placement)
                if problems:
                    raise _clusters.ClusterError(problems, summary="ai_serving_require_all_clusters is true and the "
                                                                   "preflight failed; nothing was applied anywhere")
            if (placement.kind == "fit" or args["where_runs"]) and len(preflights) < len(clusters):
                missing = [c.name for c in clusters if c.name not in preflights]
                raise _clusters.ClusterError(["no preflight result for {0} (the host variable {1}): placement fit "
                                              "or where_runs needs one per cluster".format(
                                                  ", ".join(missing), args["preflight_var"])])
            if args["where_runs"]:
                selection = _clusters.select_where_runs(clusters, preflights, model)
            else:
                selection = _clusters.select(placement, clusters, preflights, model)
        except _clusters.ClusterError as err:
            raise AnsibleActionFail(str(err)) from err
        for note in selection.notes:
            display.warning(note)
        result.update(
            changed=False,
            clusters=[{"name": c.name, "label": c.label, "preference": c.preference} for c in clusters],
            targets=selection.targets,
            skipped=selection.skipped,
            notes=selection.notes,
            placement={"kind": placement.kind, "clusters": list(placement.clusters), "fit": placement.fit},
            preflight={name: {"fits": p.fits, "runs": p.runs, "reason": p.reason} for name, p in preflights.items()},
            waves=waves,
            batches=_clusters.batches(waves, selection.targets),
        )
        return result
