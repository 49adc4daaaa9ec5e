#!/usr/bin/env python3
"""Make the local cluster's simulated nodes match a topology file.

    topology.py sync FILE KUBECONFIG   create missing nodes (with their status),
                                       update changed ones, delete ours that FILE
                                       no longer lists, wait until all are Ready
    topology.py nodes FILE             print the Node objects as a JSON v1 List
    topology.py real-node FILE         print the real node's name, labels (k=v,...)
                                       and taints (k=v:Effect,...), one a line;
                                       nothing when FILE has no real_node

FILE lists pools; a pool is `count` identical nodes named <name>-0, <name>-1...
Its `real_node` names the one node a real kubelet runs (cluster/node.sh); the
sync never touches it (it lacks MANAGED_LABEL).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

# Marks the nodes this project manages, so a sync can delete the ones a
# topology no longer lists; kwok's controller takes over annotated nodes.
MANAGED_LABEL = "sim.creativeflow.ai/topology"
KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
FIELD_MANAGER = "creativeflow-cluster"


def load(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    pools = data.get("pools")
    if not isinstance(pools, list) or not pools:
        raise SystemExit(f"{path}: expected a non-empty 'pools' list")
    nodes = []
    for pool in pools:
        for key in ("name", "count", "capacity"):
            if key not in pool:
                raise SystemExit(f"{path}: pool {pool.get('name', '?')!r} lacks '{key}'")
        nodes.extend(node(f"{pool['name']}-{i}", pool) for i in range(int(pool["count"])))
    for index, obj in enumerate(nodes):
        obj["status"]["addresses"] = [{"type": "InternalIP", "address": node_address(index)},
                                      {"type": "Hostname", "address": obj["metadata"]["name"]}]
    return nodes


# The simulated nodes' InternalIPs: RFC 2544's benchmarking range, never routed
# here. kwok gives a pod its node's InternalIP as hostIP; without one (kwok's own
# --node-ip is empty here) the pod stages would find hostIP unset and apply
# again and again, each time with a new podIP.
NODE_ADDRESSES = ipaddress.ip_network("198.18.0.0/15")


def node_address(index: int) -> str:
    if index >= NODE_ADDRESSES.num_addresses - 2:
        raise SystemExit(f"more simulated nodes than {NODE_ADDRESSES} has addresses")
    return str(NODE_ADDRESSES.network_address + 1 + index)


def node(name: str, pool: dict[str, Any]) -> dict[str, Any]:
    capacity = {str(k): str(v) for k, v in pool["capacity"].items()}
    labels = {str(k): str(v) for k, v in (pool.get("labels") or {}).items()}
    labels.update({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        MANAGED_LABEL: str(pool["name"]),
    })
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": dict(KWOK_ANNOTATION)},
        "spec": {"taints": pool.get("taints") or []},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def real_node(path: str) -> list[str]:
    """Name, labels and taints of the real node, as the kubelet's flags take them."""
    with open(path, encoding="utf-8") as fh:
        spec = (yaml.safe_load(fh) or {}).get("real_node")
    if not spec:
        return []
    if not isinstance(spec, dict) or not spec.get("name"):
        raise SystemExit(f"{path}: real_node needs a 'name'")
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    taints = []
    for taint in spec.get("taints") or []:
        if not {"key", "effect"} <= set(taint):
            raise SystemExit(f"{path}: real_node taint {taint!r} needs 'key' and 'effect'")
        taints.append(f"{taint['key']}={taint.get('value', '')}:{taint['effect']}")
    return [str(spec["name"]), ",".join(f"{k}={v}" for k, v in labels.items()), ",".join(taints)]


def sync(path: str, kubeconfig: str, timeout: float = 300) -> None:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    wanted = {n["metadata"]["name"]: n for n in load(path)}
    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    existing = {n.metadata.name for n in api.list_node(label_selector=MANAGED_LABEL).items}

    def put(obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name not in existing:
            try:
                api.create_node(obj)  # status is kept on create
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
        body = {k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec")}
        api.patch_node(name, body, field_manager=FIELD_MANAGER, force=True,
                       _content_type="application/apply-patch+yaml")
        api.patch_node_status(name, {"status": obj["status"]})

    def drop(name: str) -> None:
        api.delete_node(name)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, wanted.values()))
        list(pool.map(drop, sorted(existing - set(wanted))))

    deadline = time.monotonic() + timeout
    while True:
        ready = {
            n.metadata.name
            for n in api.list_node(label_selector=MANAGED_LABEL).items
            if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        }
        if set(wanted) <= ready:
            return
        if time.monotonic() > deadline:
            missing = sorted(set(wanted) - ready)
            raise SystemExit(f"{len(missing)} node(s) not Ready after {timeout:.0f}s, e.g. {missing[:5]}")
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "sync":
        sync(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "real-node":
        print("\n".join(real_node(argv[2])))
    elif len(argv) == 3 and argv[1] == "nodes":
        json.dump({"apiVersion": "v1", "kind": "List", "items": load(argv[2])}, sys.stdout)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
