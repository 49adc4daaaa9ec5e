# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of what the LLM runtimes added to the deploy: the cluster's NodePort range, a replica's
GPUs on one node, the after-rollout pulls (what is missing, how an answer is judged), the record's
objects in the plan (removed when switched off, put back by a rollback)."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import ensure
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy import checks, plan


def apiserver_pod(*args: str) -> Dict[str, Any]:
    return {"metadata": {"name": "kube-apiserver-cp"},
            "spec": {"containers": [{"name": "kube-apiserver", "command": ["kube-apiserver", *args]}]}}


@pytest.mark.parametrize(("pods", "expected"), [
    ([], (30000, 32767)),
    ([apiserver_pod("--secure-port=6443")], (30000, 32767)),
    ([apiserver_pod("--service-node-port-range=20000-22767")], (20000, 22767)),
    ([apiserver_pod("--service-node-port-range=31000+100")], (31000, 31099)),
])
def test_the_node_port_range_comes_from_the_api_servers_flag(pods: list, expected: tuple) -> None:
    assert checks.node_port_range(pods)[:2] == expected


def test_a_node_port_outside_the_clusters_range_is_refused_with_the_range() -> None:
    model = {"name": "chat", "service": {"type": "NodePort", "node_ports": {"http": 30501}}}
    assert checks.node_ports_outside(model, (30000, 32767, "default")) == ""
    message = checks.node_ports_outside(model, checks.node_port_range([apiserver_pod(
        "--service-node-port-range=20000-22767")]))
    assert message.startswith("service.node_ports of chat (http 30501) is outside the cluster's NodePort range "
                              "20000-22767 (the API server's --service-node-port-range (pod kube-apiserver-cp))")
    assert message.endswith("Nothing was applied.")


def fit(*allocatable: int) -> Dict[str, Any]:
    return {"nodes": [{"name": "gpu-%d" % i, "allocatable": n, "eligible": True} for i, n in enumerate(allocatable)]
            + [{"name": "big-but-tainted", "allocatable": 16, "eligible": False}]}


def test_more_gpus_per_replica_than_any_node_has_says_so_and_the_fix() -> None:
    message = checks.one_node_message(fit(4, 4), 8, "nvidia.com/gpu", "tensor parallel runs them as one group")
    assert message == ("gpu.count 8 nvidia.com/gpu per replica: all of a replica's GPUs must be on one node (tensor "
                       "parallel runs them as one group), and the largest eligible node (gpu-0, gpu-1) has 4. Lower "
                       "gpu.count to at most 4, or pin the model to bigger nodes (gpu.product, node_selector)")
    assert checks.one_node_message(fit(4, 8), 8, "nvidia.com/gpu") == ""
    assert "no eligible node advertises nvidia.com/gpu" in checks.one_node_message({"nodes": []}, 1, "nvidia.com/gpu")


def test_what_is_missing_is_tagged_and_in_the_catalogs_order() -> None:
    have = ensure.listed('{"models":[{"name":"tiny:latest","details":{"family":"llama"}},{"name":"a:1"}]}',
                         "models", "name")
    assert have == ["tiny:latest", "a:1"]
    assert ensure.missing(["tiny", "b", "a:1", "host:5000/lib/c", "b:latest"], have, "latest") == [
        "b:latest", "host:5000/lib/c:latest"]
    with pytest.raises(ensure.EnsureError, match="not JSON"):
        ensure.listed("<html>", "models", "name")
    with pytest.raises(ensure.EnsureError, match="no list 'models'"):
        ensure.listed('{"error": "x"}', "models", "name")


def test_a_fetch_is_judged_by_its_status_and_answer() -> None:
    assert ensure.fetched(200, '{"status":"success"}')
    assert not ensure.fetched(200, '{"error":"pull model manifest: file does not exist"}')
    assert not ensure.fetched(500, '{"error":"x"}')
    assert not ensure.fetched(None, "")
    spec = {"fetch_name_key": "model", "fetch_body": {"stream": False, "insecure": True}}
    assert ensure.fetch_body(spec, "tiny:latest") == {"stream": False, "insecure": True, "model": "tiny:latest"}
    assert ensure.pod_proxy_path("llm", "chat-1", 11434, "/api/pull") == \
        "/api/v1/namespaces/llm/pods/chat-1:11434/proxy/api/pull"


def test_the_summary_says_what_was_pulled_where() -> None:
    changed, line = ensure.summary({"fetched": {"p1": ["tiny:latest"], "p2": []},
                                    "present": {"p1": ["tiny:latest"], "p2": ["tiny:latest"]}}, "model")
    assert changed and line == "2 pod(s) hold the models tiny:latest; pulled tiny:latest on p1"
    assert ensure.summary({"fetched": {"p1": []}, "present": {"p1": ["a:1"]}}, "model") == (
        False, "1 pod(s) hold the models a:1; nothing to pull")


def test_a_record_object_switched_off_is_absent_but_configurations_stay_with_their_revisions() -> None:
    snapshot = {"extras": {"CronJob/chat-model-check": {"apiVersion": "batch/v1"}},
                "configmaps": ["chat-config-0123456789", "chat-model-check-script", "chat-usage-stats"]}
    rendered = [{"kind": "ConfigMap", "metadata": {"name": "chat-usage-stats"}}]
    assert plan.absent_objects(snapshot, rendered, "chat") == [
        {"api_version": "batch/v1", "kind": "CronJob", "name": "chat-model-check"},
        {"api_version": "v1", "kind": "ConfigMap", "name": "chat-model-check-script"}]


def test_a_rollback_puts_back_the_record_objects_the_run_changed_but_never_a_claim() -> None:
    live = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "n", "uid": "u",
                                                                      "labels": {"a": "b"}},
            "spec": {"schedule": "*/5 * * * *"}, "status": {"lastScheduleTime": "t"}}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p"}, "spec": {}}
    snapshot = {"extras": {"CronJob/c": live, "PersistentVolumeClaim/p": claim}}
    assert plan.restore_extras(snapshot, ["CronJob/c", "PersistentVolumeClaim/p", "Deployment/x"]) == [
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "n", "labels": {"a": "b"}},
         "spec": {"schedule": "*/5 * * * *"}}]


def test_a_claim_the_deploy_creates_is_not_a_reference_that_must_exist() -> None:
    model = {"model": {"source": "pvc", "pvc": {"claim_name": "m", "create": {"size": "1Gi"}}}}
    assert plan.references(model) == []
    del model["model"]["pvc"]["create"]
    assert plan.references(model)[0]["kind"] == "PersistentVolumeClaim"
