"""render_model.yml with an inventory of several clusters: an overlay per cluster where clusters differ.

A render needs no cluster (the kubeconfig named here does not exist, so a render that reached for one would fail):
a prod inventory of three cluster hosts, one as its environment, one with its own registry mirror (a catalog override)
and one with its own namespace, rendered once, checked with ``kubectl kustomize``, rendered again, and rendered with a --limit that
leaves out the first play.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from playbooks import REPO_ROOT, Run, run_playbook

MODEL = "image-classifier"


def kustomize(path: Path) -> Dict[str, Dict[str, Any]]:
    """The objects ``kubectl kustomize path`` builds, by kind."""
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True)
    return {doc["kind"]: doc for doc in yaml.safe_load_all(proc.stdout) if doc}


def without(obj: Dict[str, Any], labels: List[str]) -> Dict[str, Any]:
    """``obj`` without the given labels and its containers' images (what the cluster overlay here changes)."""
    copy = yaml.safe_load(yaml.safe_dump(obj))
    for item in copy.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        item.pop("image", None)
    for meta in (copy["metadata"], copy.get("spec", {}).get("template", {}).get("metadata", {})):
        for label in labels:
            meta.get("labels", {}).pop(label, None)
    return copy


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> Dict[str, Any]:
    root = tmp_path_factory.mktemp("render-clusters")
    inventory = root / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "host_vars").mkdir()
    prod = REPO_ROOT / "inventories" / "prod" / "group_vars" / "all"
    for name in ("models.yml", "namespace.yml", "gpu_operator.yml"):
        (inventory / "group_vars" / "all" / name).symlink_to((prod / name).resolve())
    (inventory / "group_vars" / "all" / "connection.yml").write_text("ai_serving_environment: prod\n")
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"prod_clusters": {
        "hosts": {"eu": {"ai_serving_kubeconfig": str(root / "no-such-kubeconfig-eu")},
                  "us": {"ai_serving_kubeconfig": str(root / "no-such-kubeconfig-us")},
                  "asia": {"ai_serving_kubeconfig": str(root / "no-such-kubeconfig-asia")}},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}}))
    (inventory / "host_vars" / "us.yml").write_text(yaml.safe_dump(
        {"ai_serving_model_overrides": {MODEL: {"image": {"repository": "mirror.us.example.com/models/image-classifier"}}}}))
    (inventory / "host_vars" / "asia.yml").write_text(yaml.safe_dump({"ai_namespace_name": "serving-asia"}))
    dest = root / "gitops"
    no_cluster = str(root / "no-such-kubeconfig")

    def render(*args: str, into: Path = dest) -> Run:
        return run_playbook("render_model.yml", no_cluster, {"model": MODEL, "dest": str(into)}, *args,
                            inventory=inventory)

    return {"dest": dest, "first": render(), "again": render(),
            "limited": render("--limit", "prod_clusters", into=root / "limited"), "limited_dest": root / "limited"}


def test_only_the_clusters_that_differ_get_an_overlay(renders) -> None:
    run, dest = renders["first"], renders["dest"]
    assert run.returncode == 0, run.explain()
    assert sorted(p.name for p in (dest / "clusters").iterdir()) == ["asia", "us"]
    assert sorted(p.name for p in (dest / "overlays").iterdir()) == ["dev", "prod"]
    assert "clusters/asia/, clusters/us/ written" in run.output, run.explain()
    assert "Clusters that use the overlay of their environment (overlays/<env>): eu." in run.output, run.explain()


def test_a_cluster_overlay_is_its_environment_s_plus_its_own_overrides(renders) -> None:
    dest = renders["dest"]
    prod = kustomize(dest / "overlays" / "prod")
    us = kustomize(dest / "clusters" / "us")
    image = us["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    tag = prod["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
    assert image == f"mirror.us.example.com/models/image-classifier:{tag}"
    assert us["Deployment"]["metadata"]["labels"]["creativeflow.ai/cluster"] == "us"
    assert us["Deployment"]["metadata"]["labels"]["creativeflow.ai/environment"] == "prod"
    assert us["Deployment"]["spec"]["template"]["metadata"]["labels"]["creativeflow.ai/cluster"] == "us"
    # Everything else is prod's: GPU requests, tolerations, probes, the HPA and PDB prod adds, the namespace.
    assert sorted(us) == sorted(prod)
    for kind in prod:
        assert without(us[kind], ["creativeflow.ai/cluster"]) == without(prod[kind], []), kind
    asia = kustomize(dest / "clusters" / "asia")
    assert {obj["metadata"]["namespace"] for obj in asia.values()} == {"serving-asia"}
    assert {obj["metadata"]["namespace"] for obj in prod.values()} == {"ai-serving"}


def test_a_second_render_changes_nothing(renders) -> None:
    run = renders["again"]
    assert run.returncode == 0, run.explain()
    for host in ("localhost", "eu", "us", "asia"):
        assert re.search(rf"^{host}\s*:\s*ok=\d+\s+changed=0\s", run.stdout, re.MULTILINE), run.explain()


def test_a_limit_without_localhost_is_refused_and_writes_nothing(renders) -> None:
    run = renders["limited"]
    assert run.returncode != 0, run.explain()
    assert "this run's --limit left localhost out: nothing was written" in run.output, run.explain()
    assert "-e ai_serving_clusters=prod_clusters" in run.output
    assert not renders["limited_dest"].exists()
