"""cluster/topology.py's pure parts: the real node's spec and the simulated nodes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

SPEC = importlib.util.spec_from_file_location(
    "topology", Path(__file__).resolve().parents[2] / "cluster" / "topology.py")
topology = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(topology)

POOL = {"name": "cpu", "count": 2, "capacity": {"cpu": "4"}}


def write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_real_node_gives_name_labels_and_taints_as_kubelet_flags(tmp_path):
    path = write(tmp_path, {"pools": [POOL], "real_node": {
        "name": "real-0", "labels": {"a.example/x": "1", "b": "two"},
        "taints": [{"key": "a.example/real", "value": "true", "effect": "NoSchedule"},
                   {"key": "dedicated", "effect": "NoExecute"}]}})
    assert topology.real_node(path) == ["real-0", "a.example/x=1,b=two",
                                        "a.example/real=true:NoSchedule,dedicated=:NoExecute"]


def test_no_real_node_section_means_none(tmp_path):
    assert topology.real_node(write(tmp_path, {"pools": [POOL]})) == []


@pytest.mark.parametrize("spec, message", [
    ({"labels": {}}, "needs a 'name'"),
    ({"name": "r", "taints": [{"key": "k"}]}, "needs 'key' and 'effect'"),
])
def test_bad_real_node_is_named(tmp_path, spec, message):
    with pytest.raises(SystemExit, match=message):
        topology.real_node(write(tmp_path, {"pools": [POOL], "real_node": spec}))


def test_project_topology_names_a_tainted_real_node_that_is_not_kwoks():
    path = str(Path(__file__).resolve().parents[2] / "cluster" / "topology.yaml")
    name, labels, taints = topology.real_node(path)
    assert name == "real-0" and "creativeflow.ai/real-node=true" in labels.split(",")
    assert taints == "creativeflow.ai/real-node=true:NoSchedule"
    # The simulated nodes carry the annotation kwok selects on; the real node is not among them.
    nodes = topology.load(path)
    assert all(n["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"} for n in nodes)
    assert name not in {n["metadata"]["name"] for n in nodes}


def test_simulated_nodes_have_distinct_internal_ips_outside_the_cluster_ranges():
    import ipaddress
    nodes = topology.load(str(Path(__file__).resolve().parents[2] / "cluster" / "topology.yaml"))
    ips = [next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP") for n in nodes]
    assert len(set(ips)) == len(ips)
    for ip in map(ipaddress.ip_address, ips):
        assert ip in ipaddress.ip_network("198.18.0.0/15")
        # the service range, kwok's fake pod range and the real node's pod range (cluster/node.sh)
        assert not any(ip in ipaddress.ip_network(r) for r in ("10.96.0.0/16", "10.240.0.0/16", "10.244.0.0/24"))


def test_every_pod_start_stage_sets_the_field_it_selects_absent():
    # A stage still matching after it applied is applied again at once, forever:
    # each patch gives the pod a new podIP and rewrites its Endpoints.
    stages = list(yaml.safe_load_all((Path(__file__).resolve().parents[2] / "cluster" / "stages.yaml").read_text()))
    start = 0
    for stage in stages:
        template = stage["spec"]["next"].get("statusTemplate", "")
        top_level = dict(line.split(":", 1) for line in template.splitlines() if line[:1].isalpha())
        for expr in stage["spec"]["selector"].get("matchExpressions", []):
            if expr["operator"] == "DoesNotExist" and expr["key"].startswith(".status."):
                start += 1
                # ... and with a value that cannot be empty (hostIP from NodeIPWith was, for nodes kwok knows no IP of)
                assert top_level.get(expr["key"][len(".status."):], "").strip() == "{{ $now | Quote }}", \
                    stage["metadata"]["name"]
    assert start == 4  # ready, not-ready, crash-loop, image-pull
