# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the multi-cluster logic: the run's clusters, placement, waves and the summary rows."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import validate_catalog
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.clusters import (
    Cluster,
    ClusterError,
    Placement,
    Preflight,
    Selection,
    batches,
    clusters_from_hosts,
    failure_message,
    format_summary,
    is_unreachable,
    parse_placement,
    parse_waves,
    placement_problems,
    require_all_problems,
    select,
    select_where_runs,
    short_reason,
    summary_rows,
    with_cluster_overrides,
)


def host(name: str, **variables: Any) -> Dict[str, Any]:
    return {"name": name, **variables}


def three(**preferences: int) -> List[Cluster]:
    """Clusters a, b, c (in that inventory order), each with its own context."""
    hosts = []
    for name in ("a", "b", "c"):
        extra = {"ai_serving_cluster_preference": preferences[name]} if name in preferences else {}
        hosts.append(host(name, ai_serving_context=name, **extra))
    return clusters_from_hosts(hosts)


# ---- the clusters of a run ----

def test_lone_localhost_needs_no_connection() -> None:
    """The single-cluster inventories: localhost with the defaults (K8S_AUTH_*, ~/.kube/config), as before."""
    clusters = clusters_from_hosts([host("localhost")])
    assert [(c.name, c.label, c.preference) for c in clusters] == [("localhost", "localhost", 100)]


def test_a_cluster_host_without_a_connection_is_named() -> None:
    with pytest.raises(ClusterError) as err:
        clusters_from_hosts([host("a", ai_serving_context="a"), host("b")])
    assert "cluster b has no connection: set ai_serving_kubeconfig" in str(err.value)
    assert "nothing was applied" in str(err.value)
    # A lone host other than localhost must name its connection too.
    with pytest.raises(ClusterError, match="cluster prod-eu has no connection"):
        clusters_from_hosts([host("prod-eu", ai_serving_kubeconfig="")])


def test_two_hosts_reaching_one_cluster_are_refused() -> None:
    """A kubeconfig in group_vars/all and no context per host would deploy to one cluster N times."""
    with pytest.raises(ClusterError) as err:
        clusters_from_hosts([host("a", ai_serving_kubeconfig="/k"), host("b", ai_serving_kubeconfig="/k"),
                             host("c", ai_serving_kubeconfig="/k", ai_serving_context="c")])
    assert "clusters a and b reach the same cluster (kubeconfig /k, context (its current context))" in str(err.value)
    assert " c " not in str(err.value).split("reach", maxsplit=1)[0]


def test_host_and_token_is_a_connection() -> None:
    clusters = clusters_from_hosts([host("a", ai_serving_host="https://a:6443"),
                                    host("b", ai_serving_host="https://b:6443")])
    assert [c.name for c in clusters] == ["a", "b"]


def test_preference_orders_then_inventory_order() -> None:
    assert [c.name for c in three()] == ["a", "b", "c"]
    assert [c.name for c in three(c=1, b=5)] == ["c", "b", "a"]  # a states none: after those that do


def test_bad_preference_label_and_mixed_environments() -> None:
    with pytest.raises(ClusterError) as err:
        clusters_from_hosts([host("a", ai_serving_context="a", ai_serving_cluster_preference="first",
                                  ai_serving_environment="prod"),
                             host("b", ai_serving_context="b", ai_serving_cluster_label=3, ai_serving_environment="dev")])
    text = str(err.value)
    assert "ai_serving_cluster_preference of cluster a is 'first': expected a whole number" in text
    assert "ai_serving_cluster_label of cluster b is 3: expected a string" in text
    assert "several environments (dev: b; prod: a)" in text


def test_no_cluster_at_all() -> None:
    with pytest.raises(ClusterError, match="the run has no cluster"):
        clusters_from_hosts([])


# ---- placement ----

@pytest.mark.parametrize("value, expected", [
    (None, Placement()),
    ("all", Placement()),
    ({"clusters": ["b", "a"]}, Placement(kind="clusters", clusters=("b", "a"))),
    ({"fit": 2}, Placement(kind="fit", fit=2)),
])
def test_parse_placement(value: Any, expected: Placement) -> None:
    assert parse_placement(value) == expected


@pytest.mark.parametrize("value", ["some", {"fit": 0}, {"fit": True}, {"clusters": []}, {"clusters": ["a", "a"]},
                                   {"clusters": ["a"], "fit": 1}, {"fit": "1"}])
def test_parse_placement_refuses(value: Any) -> None:
    with pytest.raises(ClusterError, match=r"models.m.placement is .*: expected all, \{clusters"):
        parse_placement(value, "m")


@pytest.mark.parametrize("placement", ["all", {"clusters": ["eu-1"]}, {"fit": 1}])
def test_catalog_accepts_placement(placement: Any) -> None:
    entry = {"runtime": "tf_serving", "image": {"repository": "r/x", "tag": "1"},
             "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
             "tf_serving": {"model_name": "m", "model_base_path": "/models/m"}, "placement": placement}
    assert validate_catalog({"m": entry}) == []
    problems = validate_catalog({"m": {**entry, "placement": {"fit": 0}}})
    assert problems == ["models.m.placement: {'fit': 0} is not all, {clusters: [cluster names]} (each once) or "
                        "{fit: N} (N >= 1)"]


def test_unknown_cluster_in_placement_is_named_with_the_clusters() -> None:
    problems = placement_problems(Placement(kind="clusters", clusters=("a", "bb")), three(), "m")
    assert problems == ["models.m.placement.clusters names 'bb', which is not a cluster of this run (did you mean "
                        "'b'?); the clusters are: a, b, c"]


def test_fit_larger_than_the_clusters() -> None:
    assert placement_problems(Placement(kind="fit", fit=4), three(), "m") == [
        "models.m.placement.fit is 4, more than the 3 clusters of this run (a, b, c): lower it, or add clusters to "
        "the inventory"]
    with pytest.raises(ClusterError, match="the placement of m does not fit this run's clusters; nothing was applied"):
        select(Placement(kind="fit", fit=4), three(), {}, "m")


def test_select_all_and_named() -> None:
    assert select(Placement(), three(c=1)).targets == ["c", "a", "b"]
    chosen = select(Placement(kind="clusters", clusters=("c", "a")), three())
    assert chosen.targets == ["a", "c"]  # in order of preference, not as listed
    assert chosen.skipped == {"b": "not in placement.clusters (c, a)"}


GPU_FULL = "GPU preflight for m in namespace ai-serving: 1 replica needs 1 nvidia.com/gpu; quota has 0 left"


def test_fit_goes_to_the_first_cluster_where_it_fits() -> None:
    found = {"a": Preflight(False, False, GPU_FULL), "b": Preflight(True, False), "c": Preflight(True, False)}
    chosen = select(Placement(kind="fit", fit=1), three(), found, "m")
    assert chosen.targets == ["b"]
    assert chosen.skipped == {"a": "does not fit: " + GPU_FULL, "c": "fits, but placement fit 1 is met by b"}
    assert chosen.notes == []


def test_fit_keeps_the_model_where_it_runs_while_it_fits() -> None:
    """No flapping: a freed-up, preferred cluster does not take the model from where it runs."""
    found = {"a": Preflight(True, False), "b": Preflight(True, True), "c": Preflight(True, False)}
    chosen = select(Placement(kind="fit", fit=1), three(), found, "m")
    assert chosen.targets == ["b"]
    assert chosen.skipped["a"] == "fits, but placement fit 1 is met by b"
    # With room for two, the one where it runs stays and the first other one joins it.
    assert select(Placement(kind="fit", fit=2), three(), found, "m").targets == ["a", "b"]


def test_fit_moves_away_from_where_it_no_longer_fits() -> None:
    found = {"a": Preflight(True, False), "b": Preflight(False, True, GPU_FULL), "c": Preflight(True, False)}
    chosen = select(Placement(kind="fit", fit=1), three(), found, "m")
    assert chosen.targets == ["a"]
    assert chosen.skipped["b"] == "does not fit: " + GPU_FULL + " (the model runs here and is left as it is)"


def test_fit_with_more_runs_than_n_leaves_the_extra_one_named() -> None:
    found = {n: Preflight(True, True) for n in "abc"}
    chosen = select(Placement(kind="fit", fit=2), three(), found, "m")
    assert chosen.targets == ["a", "b"]
    assert chosen.skipped["c"].startswith("runs here too, but placement fit 2 is met by a, b")
    assert "undeploy_model.yml --limit c" in chosen.skipped["c"]


def test_fit_short_of_n_deploys_where_it_fits_and_says_so() -> None:
    found = {"a": Preflight(False, None, "x"), "b": Preflight(True, False), "c": Preflight(False, None, "y")}
    chosen = select(Placement(kind="fit", fit=2), three(), found, "m")
    assert chosen.targets == ["b"]
    assert chosen.notes == ["placement fit 2: only 1 of the 3 clusters fit (b)"]


def test_fit_nowhere_fails_with_every_reason() -> None:
    found = {"a": Preflight(False, None, "quota"), "b": Preflight(False, True, "nodes")}
    with pytest.raises(ClusterError) as err:
        select(Placement(kind="fit", fit=1), three(), found, "m")
    assert err.value.problems == ["a: quota", "b: nodes (the model runs here and is left as it is)", "c: not checked"]
    assert str(err.value).startswith("m fits no cluster of this run (placement fit 1); nothing was applied")


UNREACHABLE = ("Cannot reach the Kubernetes API server, or it refused the request, with kubeconfig '/k' and context "
               "'(the current context)': connection refused. Start the cluster ... Nothing was applied.")


def test_require_all() -> None:
    found = {"a": Preflight(False, None, GPU_FULL), "b": Preflight(False, None, UNREACHABLE), "c": Preflight(True)}
    # fit: a misfit is what placement is for; an unreachable cluster is not.
    assert require_all_problems(three(), found, Placement(kind="fit", fit=1)) == ["b: " + UNREACHABLE]
    # all: every target must pass.
    assert require_all_problems(three(), found, Placement()) == ["a: " + GPU_FULL, "b: " + UNREACHABLE]
    # clusters: only the named ones must pass.
    assert require_all_problems(three(), found, Placement(kind="clusters", clusters=("b", "c"))) == ["b: " + UNREACHABLE]
    assert is_unreachable(UNREACHABLE) and not is_unreachable(GPU_FULL)


def test_short_reason_drops_the_advice_after_the_state() -> None:
    assert short_reason(UNREACHABLE + " (To deploy anyway ...)").endswith("Nothing was applied.")
    assert short_reason("x" * 500, limit=10) == "xxxxxxx..."


# ---- waves ----

@pytest.mark.parametrize("value, expected", [
    (None, []),
    ("", []),
    ("1,rest", [1, "100%"]),
    (" 1 , 50% , rest ", [1, "50%", "100%"]),
    ("2", [2]),
    (2, [2]),
    ([1, "rest"], [1, "100%"]),
])
def test_parse_waves(value: Any, expected: List[Any]) -> None:
    assert parse_waves(value) == expected


@pytest.mark.parametrize("value, message", [
    ("rest,1", "item 1 ('rest'): rest takes every cluster left, so it comes last"),
    ("0,rest", "item 1 ('0'): a wave has at least 1 cluster"),
    ("1,,rest", "item 2 (''): expected a number of clusters, a percentage such as 30%, or rest"),
    ("first,rest", "item 1 ('first'): expected a number"),
    ("150%", "item 1 ('150%'): a percentage of the clusters from 1% to 100%"),
    ("-1", "item 1 ('-1'): expected a number"),
    ({"a": 1}, "ai_serving_waves is {'a': 1}: expected waves such as 1,rest"),
])
def test_parse_waves_refuses(value: Any, message: str) -> None:
    with pytest.raises(ClusterError) as err:
        parse_waves(value)
    assert message in str(err.value)


@pytest.mark.parametrize("waves, expected", [
    ([], [["a", "b", "c"]]),
    ([1, "100%"], [["a"], ["b", "c"]]),
    ([1], [["a"], ["b"], ["c"]]),  # the last size repeats, as serial does
    (["50%"], [["a"], ["b"], ["c"]]),  # 50% of 3 is 1 (rounded down, at least 1)
    ([5], [["a", "b", "c"]]),
])
def test_batches_cut_like_serial(waves: List[Any], expected: List[List[str]]) -> None:
    assert batches(waves, ["a", "b", "c"]) == expected


# ---- summary ----

def test_summary_rows_say_what_happened_where() -> None:
    clusters = three()
    selection = Selection(targets=["a", "b"], skipped={"c": "does not fit: quota"})
    failed = {"a": {"failed": True, "msg": "rollout failed. Nothing was applied. More advice"}}
    rows = summary_rows(clusters, selection, failed, version="1.4.0")
    assert rows == [
        {"cluster": "a", "label": "", "result": "failed", "version": "", "detail": "rollout failed. Nothing was applied."},
        {"cluster": "b", "label": "", "result": "not started", "version": "",
         "detail": "an earlier wave failed (a): this cluster is left as it was"},
        {"cluster": "c", "label": "", "result": "skipped", "version": "", "detail": "does not fit: quota"},
    ]
    assert failure_message(rows, "deploy of m") == (
        "deploy of m failed on a. a: rollout failed. Nothing was applied. Not started (left as they were): b.")


def test_summary_rows_success_and_unknown_change() -> None:
    clusters = [Cluster("a", "eu-west", 1, 0), Cluster("b", "b", 2, 1)]
    rows = summary_rows(clusters, Selection(targets=["a", "b"]),
                        {"a": {"failed": False, "changed": True}, "b": {"failed": False, "changed": None}}, "2.0")
    assert [(r["cluster"], r["label"], r["result"], r["version"]) for r in rows] == [
        ("a", "eu-west", "changed", "2.0"), ("b", "", "done", "2.0")]
    assert failure_message(rows, "x") is None


def test_format_summary_aligns_columns() -> None:
    rows = [{"cluster": "a", "label": "", "result": "ok", "version": "1.4.0", "detail": ""},
            {"cluster": "long-name", "label": "eu", "result": "skipped", "version": "", "detail": "fits, but ..."}]
    assert format_summary(rows, title="Summary: deploy of m") == [
        "Summary: deploy of m",
        "CLUSTER    LABEL  RESULT   VERSION  DETAIL",
        "a          -      ok       1.4.0",
        "long-name  eu     skipped  -        fits, but ...",
    ]


# ---- a cluster's overrides of an entry ----

CATALOG = {"m": {"runtime": "tf_serving", "image": {"repository": "registry.example/m", "tag": "1"},
                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                 "tf_serving": {"model_name": "m", "model_base_path": "/models/m"},
                 "node_selector": {"pool": "gpu"}, "environments": {"prod": {"replicas": 3}}}}


def test_cluster_overrides_merge_after_the_environment() -> None:
    resolved = with_cluster_overrides(CATALOG, "m", "prod", {"image": {"repository": "mirror.eu/m"},
                                                             "node_selector": {"pool": None, "zone": "eu-1"}}, "eu")
    assert resolved["image"] == {"repository": "mirror.eu/m", "tag": "1", "pull_policy": "IfNotPresent"}
    assert resolved["node_selector"] == {"zone": "eu-1"}  # null removes, as in the catalog
    assert resolved["replicas"] == 3 and resolved["name"] == "m"


def test_cluster_overrides_are_validated_and_named() -> None:
    with pytest.raises(ClusterError) as err:
        with_cluster_overrides(CATALOG, "m", None, {"replicas": -1}, "eu")
    assert str(err.value).startswith("the catalog entry m with ai_serving_model_overrides.m of cluster eu is not valid")
    assert "models.m.replicas: -1" in str(err.value)
    with pytest.raises(ClusterError, match="of cluster eu sets runtime, placement, which a cluster cannot override"):
        with_cluster_overrides(CATALOG, "m", None, {"runtime": "triton", "placement": "all"}, "eu")
    with pytest.raises(ClusterError, match=r"ai_serving_model_overrides.m of cluster eu is \['x'\]: expected a dict"):
        with_cluster_overrides(CATALOG, "m", None, ["x"], "eu")


def test_select_where_runs_for_a_rollback() -> None:
    found = {"a": Preflight(False, False), "b": Preflight(True, True), "c": Preflight(True, True)}
    chosen = select_where_runs(three(), found, "m")
    assert chosen.targets == ["b", "c"] and chosen.skipped == {"a": "the model is not deployed here"}
    with pytest.raises(ClusterError, match=r"m is not deployed on any cluster of this run \(a, b, c\): nothing to roll"):
        select_where_runs(three(), {}, "m")
