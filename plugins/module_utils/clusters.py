# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Several clusters in one inventory: a host is a cluster.

The playbooks run on the hosts of the inventory (``ai_serving_clusters``, or
``--limit`` to an environment's group); each host carries its cluster's
connection (``ai_serving_kubeconfig`` + ``ai_serving_context``, or
``ai_serving_host`` + ``ai_serving_api_key``), its overrides (any host
variable), a preference and a label. An inventory whose only host is
``localhost`` is one cluster, exactly as before.

Pure functions, no Ansible and no cluster: the clusters of a run checked
(:func:`clusters_from_hosts`), the catalog's ``placement`` parsed and checked
against them (:func:`parse_placement`, :func:`placement_problems`), the clusters
a model goes to (:func:`select`), ``-e ai_serving_waves=1,rest``
(:func:`parse_waves`, :func:`batches`) and the summary rows
(:func:`summary_rows`, :func:`format_summary`). Problems raise
:class:`ClusterError`, whose message names the value and the fix.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

#: The placement of an entry without one: every cluster of the run.
ALL = "all"
PLACEMENT_KINDS = ("all", "clusters", "fit")

#: The variables a cluster host takes (README of the inventory model: docs/deploy_model.md, "Several clusters").
CONNECTION_VARS = ("ai_serving_kubeconfig", "ai_serving_context", "ai_serving_host")
#: The preference of a cluster that states none: after every cluster that states one.
DEFAULT_PREFERENCE = 100

#: The wave item that takes every cluster left.
REST = "rest"

Wave = Union[int, str]


class ClusterError(Exception):
    """The clusters, the placement or the waves of a run are not usable; nothing was applied."""

    def __init__(self, problems: Sequence[str], summary: str = "") -> None:
        self.problems = list(problems)
        text = summary or "; ".join(self.problems)
        if summary and self.problems:
            text += ":\n  " + "\n  ".join(self.problems)
        super().__init__(text)


@dataclass(frozen=True)
class Cluster:
    """One cluster of the run: an inventory host."""

    name: str
    label: str
    preference: int
    position: int
    environment: Optional[str] = None


@dataclass(frozen=True)
class Placement:
    """Where a model runs: ``all`` clusters, the named ``clusters``, or the first ``fit`` where it fits."""

    kind: str = ALL
    clusters: Tuple[str, ...] = ()
    fit: int = 0

    def describe(self) -> str:
        if self.kind == "clusters":
            return "placement clusters [{0}]".format(", ".join(self.clusters))
        if self.kind == "fit":
            return "placement fit {0}".format(self.fit)
        return "placement all"


@dataclass(frozen=True)
class Preflight:
    """A cluster's preflight for the model (the deploy's checks in check mode): does it fit, does it run there."""

    fits: bool
    runs: Optional[bool] = None
    reason: str = ""


@dataclass
class Selection:
    """The clusters a model goes to (in order of preference) and why each other one is skipped."""

    targets: List[str]
    skipped: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# The clusters of a run
# --------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _connection_key(host: Mapping[str, Any]) -> Optional[str]:
    """What identifies the cluster a host reaches; None when the host names no connection of its own."""
    kubeconfig = host.get("ai_serving_kubeconfig")
    context = host.get("ai_serving_context")
    api_host = host.get("ai_serving_host")
    if not any(value not in (None, "") for value in (kubeconfig, context, api_host)):
        return None
    if isinstance(kubeconfig, Mapping):
        kubeconfig = json.dumps(kubeconfig, sort_keys=True, default=str)
    return json.dumps([api_host or None, kubeconfig or None, context or None])


def _describe_connection(host: Mapping[str, Any]) -> str:
    if host.get("ai_serving_host"):
        return "API server {0}".format(host["ai_serving_host"])
    kubeconfig = host.get("ai_serving_kubeconfig")
    where = "(inline)" if isinstance(kubeconfig, Mapping) else (kubeconfig or "(the default kubeconfig)")
    return "kubeconfig {0}, context {1}".format(where, host.get("ai_serving_context") or "(its current context)")


def clusters_from_hosts(hosts: Sequence[Mapping[str, Any]]) -> List[Cluster]:
    """The clusters of a run from its hosts' variables, in order of preference; raises ClusterError.

    Each item of ``hosts`` holds ``name`` (the inventory host name, in inventory order) and the host's
    ``ai_serving_kubeconfig``, ``ai_serving_context``, ``ai_serving_host``, ``ai_serving_cluster_label``,
    ``ai_serving_cluster_preference`` and ``ai_serving_environment``. A run with one host named ``localhost``
    is the single-cluster inventory: its connection may come from the defaults (K8S_AUTH_*, ~/.kube/config).
    Any other host names its connection; two hosts that reach the same cluster, or clusters of several
    environments in one run, are refused.
    """
    if not hosts:
        raise ClusterError(["the run has no cluster: the inventory has no host in ai_serving_clusters or --limit "
                            "(name the environment's cluster group, e.g. --limit prod_clusters)"])
    problems: List[str] = []
    several = len(hosts) > 1
    seen: Dict[str, str] = {}
    clusters: List[Cluster] = []
    for position, host in enumerate(hosts):
        name = str(host["name"])
        key = _connection_key(host)
        if key is None and (several or name != "localhost"):
            problems.append(
                "cluster {0} has no connection: set ai_serving_kubeconfig (and ai_serving_context), or "
                "ai_serving_host (and ai_serving_api_key), in its host variables (host_vars/{0}.yml or the "
                "inventory's hosts file)".format(name))
        elif key is not None and key in seen:
            problems.append(
                "clusters {0} and {1} reach the same cluster ({2}): give each cluster host its own "
                "ai_serving_context or ai_serving_kubeconfig (a connection in group_vars/all is shared by every "
                "host)".format(seen[key], name, _describe_connection(host)))
        elif key is not None:
            seen[key] = name
        preference = host.get("ai_serving_cluster_preference")
        if preference is None:
            preference = DEFAULT_PREFERENCE
        elif not _is_int(preference):
            problems.append("ai_serving_cluster_preference of cluster {0} is {1!r}: expected a whole number (lower "
                            "is preferred)".format(name, preference))
            preference = DEFAULT_PREFERENCE
        label = host.get("ai_serving_cluster_label")
        if label is not None and not isinstance(label, str):
            problems.append("ai_serving_cluster_label of cluster {0} is {1!r}: expected a string"
                            .format(name, label))
            label = None
        environment = host.get("ai_serving_environment")
        clusters.append(Cluster(name=name, label=label or name, preference=preference, position=position,
                                environment=environment if isinstance(environment, str) else None))
    environments: Dict[str, List[str]] = {}
    for cluster in clusters:
        environments.setdefault(cluster.environment or "(none)", []).append(cluster.name)
    if len(environments) > 1:
        problems.append("the clusters of one run belong to several environments ({0}): run one environment at "
                        "a time (--limit its cluster group, or -e ai_serving_clusters=GROUP)".format(
                            "; ".join("{0}: {1}".format(env, ", ".join(names))
                                      for env, names in sorted(environments.items()))))
    if problems:
        raise ClusterError(problems, summary="the inventory's clusters are not usable; nothing was applied")
    return sorted(clusters, key=lambda c: (c.preference, c.position))


# --------------------------------------------------------------------------
# Placement
# --------------------------------------------------------------------------

def parse_placement(value: Any, model: str = "the model") -> Placement:
    """The catalog entry's ``placement`` (after the environment's overrides); raises ClusterError."""
    if value is None or value == ALL:
        return Placement()
    if isinstance(value, Mapping) and set(value) == {"clusters"}:
        names = value["clusters"]
        if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) and n for n in names):
            if len(set(names)) == len(names):
                return Placement(kind="clusters", clusters=tuple(names))
    if isinstance(value, Mapping) and set(value) == {"fit"} and _is_int(value["fit"]) and value["fit"] >= 1:
        return Placement(kind="fit", fit=value["fit"])
    raise ClusterError(["models.{0}.placement is {1!r}: expected all, {{clusters: [cluster names]}} (each once) "
                        "or {{fit: N}} (N >= 1)".format(model, value)])


def placement_problems(placement: Placement, clusters: Sequence[Cluster], model: str = "the model") -> List[str]:
    """What in ``placement`` the run's clusters cannot satisfy: unknown names, more clusters than there are."""
    names = [c.name for c in clusters]
    problems: List[str] = []
    if placement.kind == "clusters":
        for name in placement.clusters:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                problems.append("models.{0}.placement.clusters names {1!r}, which is not a cluster of this run{2}; "
                                "the clusters are: {3}".format(model, name, " (did you mean {0!r}?)".format(close[0])
                                                               if close else "", ", ".join(sorted(names))))
    elif placement.kind == "fit" and placement.fit > len(names):
        problems.append("models.{0}.placement.fit is {1}, more than the {2} cluster{3} of this run ({4}): lower it, "
                        "or add clusters to the inventory".format(model, placement.fit, len(names),
                                                                  "" if len(names) == 1 else "s", ", ".join(names)))
    return problems


def _not_fit_reason(preflight: Optional[Preflight]) -> str:
    if preflight is None:
        return "not checked"
    reason = preflight.reason or "the preflight failed"
    if preflight.runs:
        reason += " (the model runs here and is left as it is)"
    return reason


def select(placement: Placement, clusters: Sequence[Cluster], preflights: Optional[Mapping[str, Preflight]] = None,
           model: str = "the model") -> Selection:
    """The clusters ``model`` goes to, in order of preference (``clusters`` is), and why the others are skipped.

    ``all``: every cluster. ``clusters``: the named ones. ``fit: N``: from each cluster's preflight, first the
    clusters where the model runs already and still fits (it stays where it is: no flapping), then the other
    clusters where it fits, in order of preference, up to N. No cluster fits: ClusterError with each reason.
    """
    names = [c.name for c in clusters]
    problems = placement_problems(placement, clusters, model)
    if problems:
        raise ClusterError(problems, summary="the placement of {0} does not fit this run's clusters; nothing was "
                                             "applied".format(model))
    if placement.kind == ALL:
        return Selection(targets=names)
    if placement.kind == "clusters":
        wanted = set(placement.clusters)
        return Selection(targets=[n for n in names if n in wanted],
                         skipped={n: "not in placement.clusters ({0})".format(", ".join(placement.clusters))
                                  for n in names if n not in wanted})
    found = dict(preflights or {})
    fits = [n for n in names if found.get(n) is not None and found[n].fits]
    staying = [n for n in fits if found[n].runs][:placement.fit]
    chosen = set(staying + [n for n in fits if n not in staying][:placement.fit - len(staying)])
    targets = [n for n in names if n in chosen]
    if not targets:
        raise ClusterError(["{0}: {1}".format(n, _not_fit_reason(found.get(n))) for n in names],
                           summary="{0} fits no cluster of this run ({1}); nothing was applied".format(
                               model, placement.describe()))
    skipped: Dict[str, str] = {}
    for name in names:
        if name in chosen:
            continue
        if name not in fits:
            skipped[name] = "does not fit: " + _not_fit_reason(found.get(name))
        elif found[name].runs:
            skipped[name] = ("runs here too, but {0} is met by {1}: it is left as it is (undeploy_model.yml --limit "
                             "{2} removes it)".format(placement.describe(), ", ".join(targets), name))
        else:
            skipped[name] = "fits, but {0} is met by {1}".format(placement.describe(), ", ".join(targets))
    notes = []
    if len(targets) < placement.fit:
        notes.append("{0}: only {1} of the {2} clusters fit{3}".format(
            placement.describe(), len(targets), len(names), " ({0})".format(", ".join(targets))))
    return Selection(targets=targets, skipped=skipped, notes=notes)


def select_where_runs(clusters: Sequence[Cluster], preflights: Mapping[str, Preflight],
                      model: str = "the model") -> Selection:
    """The clusters where ``model`` runs (its Deployment exists), for a rollback of a model placed by GPU fit; the
    others are skipped. None: ClusterError (nothing to roll back)."""
    targets = [c.name for c in clusters if (preflights.get(c.name) or Preflight(False)).runs]
    if not targets:
        raise ClusterError(["{0} is not deployed on any cluster of this run ({1}): nothing to roll back".format(
            model, ", ".join(c.name for c in clusters))])
    return Selection(targets=targets, skipped={c.name: "the model is not deployed here" for c in clusters
                                               if c.name not in targets})


def require_all_problems(clusters: Sequence[Cluster], preflights: Mapping[str, Preflight],
                         placement: Placement) -> List[str]:
    """With ``ai_serving_require_all_clusters``: the clusters whose preflight failed, where that must stop the run.

    For ``fit`` a cluster where the model does not fit is expected; one that cannot be reached is not. For
    ``clusters``, only the named clusters count.
    """
    problems = []
    for cluster in clusters:
        if placement.kind == "clusters" and cluster.name not in placement.clusters:
            continue
        found = preflights.get(cluster.name)
        if found is None or found.fits:
            continue
        if placement.kind == "fit" and not is_unreachable(found.reason):
            continue
        problems.append("{0}: {1}".format(cluster.name, found.reason or "the preflight failed"))
    return problems


_UNREACHABLE = re.compile(r"cannot reach the kubernetes api server|not answering|connection refused|timed out",
                          re.IGNORECASE)


def is_unreachable(reason: str) -> bool:
    """Whether a preflight's failure says the API server did not answer (rather than a refusal or a misfit)."""
    return bool(_UNREACHABLE.search(reason or ""))


def short_reason(message: str, limit: int = 700) -> str:
    """A failure message for a summary row: the deploy's advice after the reason dropped, cut at ``limit``."""
    text = " ".join(str(message or "").split())
    for tail in (" Nothing was applied.", " Nothing was changed."):
        cut = text.find(tail)
        if cut > 0:
            text = text[:cut + len(tail)]
            break
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------
# A cluster's overrides of a catalog entry
# --------------------------------------------------------------------------

#: What a cluster's overrides may not change: the runtime (the role), placement (decided across clusters),
#: the environments (the inventory's) and the name.
NOT_PER_CLUSTER = ("runtime", "placement", "environments", "name")


def with_cluster_overrides(catalog: Mapping[str, Any], name: str, environment: Optional[str],
                           overrides: Any, cluster: str = "this cluster") -> Dict[str, Any]:
    """Model ``name`` resolved for ``environment`` with the cluster's ``overrides`` (its host variable
    ``ai_serving_model_overrides[name]``) deep-merged over it by the catalog's rules (dicts key by key, lists and
    scalars replace, null removes), validated and defaulted like any entry; raises ClusterError naming the cluster.
    """
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import (
        CatalogError,
        deep_merge,
        merge_environment,
        resolve_model,
    )

    where = "ai_serving_model_overrides.{0} of cluster {1}".format(name, cluster)
    if not isinstance(overrides, Mapping):
        raise ClusterError(["{0} is {1!r}: expected a dict of catalog fields".format(where, overrides)])
    fixed = [key for key in NOT_PER_CLUSTER if key in overrides]
    if fixed:
        raise ClusterError(["{0} sets {1}, which a cluster cannot override (the catalog entry decides)".format(
            where, ", ".join(fixed))])
    merged = deep_merge(merge_environment(catalog[name], environment), overrides)
    try:
        return resolve_model({name: merged}, name)
    except CatalogError as err:
        raise ClusterError(err.problems, summary="the catalog entry {0} with {1} is not valid".format(name, where))


# --------------------------------------------------------------------------
# Waves
# --------------------------------------------------------------------------

def parse_waves(value: Any) -> List[Wave]:
    """``-e ai_serving_waves=1,rest`` as Ansible's ``serial`` list: ``[1, "100%"]``; raises ClusterError.

    Each item is a number of clusters, a percentage of the run's clusters (``30%``), or ``rest`` (every cluster
    left; last only). The last item repeats until every cluster has had its wave, as with ``serial``. Empty or
    unset: one wave, every cluster at once.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if _is_int(value):
        items: List[Any] = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    else:
        raise ClusterError(["ai_serving_waves is {0!r}: expected waves such as 1,rest or 1,50%,rest".format(value)])
    waves: List[Wave] = []
    problems: List[str] = []
    for index, item in enumerate(items):
        text = str(item).strip()
        where = "ai_serving_waves item {0} ({1!r})".format(index + 1, item)
        if text == REST:
            if index != len(items) - 1:
                problems.append("{0}: rest takes every cluster left, so it comes last".format(where))
            waves.append("100%")
        elif re.fullmatch(r"[0-9]+%", text):
            percent = int(text[:-1])
            if not 1 <= percent <= 100:
                problems.append("{0}: a percentage of the clusters from 1% to 100%".format(where))
            waves.append(text)
        elif re.fullmatch(r"[0-9]+", text) and not isinstance(item, bool):
            if int(text) < 1:
                problems.append("{0}: a wave has at least 1 cluster".format(where))
            waves.append(int(text))
        else:
            problems.append("{0}: expected a number of clusters, a percentage such as 30%, or rest".format(where))
    if problems:
        raise ClusterError(problems, summary="-e ai_serving_waves={0} is not a list of waves (such as 1,rest); "
                                             "nothing was applied".format(value))
    return waves


def batches(waves: Sequence[Wave], names: Sequence[str]) -> List[List[str]]:
    """The clusters of each wave, as Ansible's ``serial`` cuts ``names``: the last size repeats, at least 1 each."""
    sizes = list(waves) or ["100%"]
    total = len(names)
    result: List[List[str]] = []
    start, index = 0, 0
    while start < total:
        size = sizes[min(index, len(sizes) - 1)]
        count = int(total * int(size[:-1]) / 100.0) if isinstance(size, str) else int(size)
        count = max(1, min(count, total - start))
        result.append(list(names[start:start + count]))
        start += count
        index += 1
    return result


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------

SUMMARY_COLUMNS = ("cluster", "label", "result", "version", "detail")


def summary_rows(clusters: Sequence[Cluster], selection: Selection, results: Mapping[str, Mapping[str, Any]],
                 version: str = "") -> List[Dict[str, str]]:
    """One row per cluster: what happened there (changed, ok, done, failed, skipped, not started), the version, why.

    ``results`` maps a cluster that ran to ``{"failed": bool, "changed": bool, "msg": str, "version": str}``
    (``changed`` None: the run does not know, e.g. a bootstrap's roles; the row says done);
    a target without a result did not start, because an earlier wave failed (or the run stopped before it).
    ``version`` is what a cluster that succeeded runs now, unless its result says otherwise.
    """
    failed = [name for name in selection.targets if (results.get(name) or {}).get("failed")]
    rows: List[Dict[str, str]] = []
    for cluster in clusters:
        row = {"cluster": cluster.name, "label": cluster.label if cluster.label != cluster.name else "",
               "result": "", "version": "", "detail": ""}
        result = results.get(cluster.name)
        if cluster.name in selection.skipped:
            row.update(result="skipped", detail=selection.skipped[cluster.name])
        elif result is None:
            row.update(result="not started", detail="an earlier wave failed ({0}): this cluster is left as it "
                                                    "was".format(", ".join(failed)) if failed else
                       "the run stopped before this cluster's wave")
        elif result.get("failed"):
            row.update(result="failed", version=str(result.get("version") or ""),
                       detail=short_reason(result.get("msg") or "failed"))
        else:
            changed = result.get("changed")
            row.update(result="done" if changed is None else "changed" if changed else "ok",
                       version=str(result.get("version") or version), detail=str(result.get("msg") or ""))
        rows.append(row)
    return rows


def format_summary(rows: Sequence[Mapping[str, str]], title: str = "") -> List[str]:
    """The rows as an aligned text table (header first); the detail column is last and not padded."""
    header = {column: column.upper() for column in SUMMARY_COLUMNS}
    shown = [header] + [dict(row) for row in rows]
    widths = {column: max(len(str(row.get(column, "") or "-")) for row in shown) for column in SUMMARY_COLUMNS[:-1]}
    lines = [title] if title else []
    for row in shown:
        cells = [str(row.get(column, "") or "-").ljust(widths[column]) for column in SUMMARY_COLUMNS[:-1]]
        lines.append("  ".join(cells + [str(row.get("detail", "") or "")]).rstrip())
    return lines


def failure_message(rows: Sequence[Mapping[str, str]], what: str) -> Optional[str]:
    """The run's failure, naming each cluster that failed and what was not started; None when none failed."""
    failed = [row for row in rows if row.get("result") == "failed"]
    if not failed:
        return None
    untouched = [row["cluster"] for row in rows if row.get("result") == "not started"]
    return "{0} failed on {1}. {2}.{3}".format(
        what, ", ".join(row["cluster"] for row in failed),
        "; ".join("{0}: {1}".format(row["cluster"], (row.get("detail") or "failed").rstrip(".")) for row in failed),
        " Not started (left as they were): {0}.".format(", ".join(untouched)) if untouched else "")
