"""Inputs a careless operator gives the playbooks, refused before anything reaches the cluster.

Each case names the variable and the value in its error (issue 18's "same family" list): the kubeconfig
path and the context of the inventory, -e model as a dict or a list, a catalog naming a model twice, an
undeploy into a namespace that does not exist. The cluster is only read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from playbooks import INVENTORY, run_playbook

MODEL = "image-classifier"


def live_namespaces(core_v1) -> list:
    """The namespaces not being deleted (another test module's teardown may finish meanwhile)."""
    return sorted(ns.metadata.name for ns in core_v1.list_namespace().items if ns.status.phase != "Terminating")


def test_a_kubeconfig_path_that_is_not_a_file_is_named_in_full(tmp_path: Path) -> None:
    missing = tmp_path / "kube" / "config-that-is-not-there"
    for playbook in ("deploy_model.yml", "undeploy_model.yml", "rollback_model.yml", "bootstrap_cluster.yml"):
        run = run_playbook(playbook, str(missing), {"model": MODEL})
        assert run.returncode != 0, run.explain()
        assert f"The kubeconfig file '{missing}' (ai_serving_kubeconfig) does not exist." in run.output, run.explain()
        assert "Nothing was changed" in run.output


def test_a_context_the_kubeconfig_does_not_have_is_named_with_those_it_has(kubeconfig: str, core_v1) -> None:
    contexts = [c["name"] for c in yaml.safe_load(Path(kubeconfig).read_text())["contexts"]]
    before = live_namespaces(core_v1)
    run = run_playbook("deploy_model.yml", kubeconfig, {"model": MODEL, "ai_serving_context": "no-such-context"})
    assert run.returncode != 0, run.explain()
    assert "ai_serving_context is 'no-such-context', which kubeconfig" in run.output, run.explain()
    assert f"it has: {', '.join(contexts)}" in run.output, run.explain()
    assert live_namespaces(core_v1) == before


@pytest.mark.parametrize("value,kind", [({"name": MODEL}, "dict"), ([MODEL], "list")])
def test_a_model_that_is_not_a_string_is_told_so(kubeconfig: str, value, kind: str) -> None:
    for playbook in ("deploy_model.yml", "undeploy_model.yml", "rollback_model.yml"):
        run = run_playbook(playbook, kubeconfig, {"model": value})
        assert run.returncode != 0, run.explain()
        assert f"model must be a string, the key of a catalog entry; got a {kind}." in run.output, run.explain()
    run = run_playbook("render_model.yml", kubeconfig, {"model": value, "dest": "/tmp/never-written"})
    assert run.returncode != 0, run.explain()
    assert f"model must be a string, the key of a catalog entry; got a {kind}." in run.output, run.explain()
    assert not Path("/tmp/never-written").exists()


def test_a_catalog_naming_a_model_twice_stops_the_run(kubeconfig: str, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inventory, symlinks=False)
    catalog = inventory / "group_vars" / "all" / "models.yml"
    text = catalog.read_text()
    # The first entry again at the end of the mapping, as a copy-and-paste leaves it.
    models = yaml.safe_load(text)["ai_serving_models"]
    entry = yaml.safe_dump({"ai_serving_models": {MODEL: models[MODEL]}}, sort_keys=False).split("\n", 1)[1]
    catalog.write_text(text.rstrip("\n") + "\n" + entry)
    run = run_playbook("deploy_model.yml", kubeconfig, {"model": MODEL}, inventory=inventory)
    assert run.returncode != 0, run.explain()
    assert "Duplicate" in run.output or "duplicate" in run.output, run.explain()
    assert MODEL in run.output, run.explain()
    assert "TASK [" not in run.stdout, run.explain()  # stopped while reading the inventory


def test_undeploy_into_a_namespace_that_does_not_exist_says_so(kubeconfig: str) -> None:
    run = run_playbook("undeploy_model.yml", kubeconfig, {"model": MODEL, "ai_namespace_name": "no-such-namespace"})
    assert run.returncode != 0, run.explain()
    assert "Namespace no-such-namespace does not exist in this cluster" in run.output, run.explain()
    assert "nothing was undeployed" in run.output


# ---- the LLM runtimes' inputs: refused with the value and the fix, nothing applied ----

def llm_catalog(name: str, path: str, value, keep_local: bool = False) -> dict:
    """The shared catalog with one field of ``name`` set (a dotted path under the entry); without ``keep_local``,
    the local environment's overrides (which could hide the field) are dropped."""
    models = yaml.safe_load((INVENTORY / "group_vars" / "all" / "models.yml").read_text())["ai_serving_models"]
    if not keep_local:
        models[name]["environments"]["local"] = {}
    target = models[name]
    keys = path.split(".")
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value
    return {"ai_serving_models": models}


@pytest.mark.parametrize("model,path,value,expected", [
    ("chat-ollama", "ollama.models", "llama3:8b",
     "models.chat-ollama.ollama.models: 'llama3:8b' is not a list of Ollama model names such as [llama3:8b]"),
    ("chat-ollama", "ollama.models", [{"name": "llama3"}],
     "models.chat-ollama.ollama.models[0]: {'name': 'llama3'} is not of type 'string'"),
    ("chat-ollama", "model.pvc.create.size", "a lot",
     "models.chat-ollama.model.pvc.create.size: 'a lot' is not a storage size (a Kubernetes quantity) such as 100Gi"),
    ("chat-ollama", "service.node_ports.http", 80,
     "models.chat-ollama.service.node_ports.http: 80 is outside the NodePort range 30000-32767"),
])
def test_a_bad_llm_catalog_value_is_named_and_nothing_is_applied(kubeconfig: str, namespace: str, apps_v1, core_v1,
                                                                 model: str, path: str, value, expected: str) -> None:
    run = run_playbook("deploy_model.yml", kubeconfig, {"model": model, "ai_namespace_name": namespace,
                                                        **llm_catalog(model, path, value)})
    assert run.returncode != 0, run.explain()
    assert expected in run.output, run.explain()
    selector = f"creativeflow.ai/model-name={model}"
    assert apps_v1.list_namespaced_deployment(namespace, label_selector=selector).items == []
    assert core_v1.list_namespaced_service(namespace, label_selector=selector).items == []
    assert core_v1.list_namespaced_config_map(namespace, label_selector=selector).items == []


def test_tensor_parallel_larger_than_any_node_is_refused_by_the_gpu_preflight(kubeconfig: str, namespace: str,
                                                                              apps_v1) -> None:
    # The local cluster's A100 nodes have 4 GPUs each: 8 per replica fit on none.
    run = run_playbook("deploy_model.yml", kubeconfig, {
        "model": "llama-vllm", "ai_namespace_name": namespace,
        **llm_catalog("llama-vllm", "environments.local.gpu.count", 8, keep_local=True)})
    assert run.returncode != 0, run.explain()
    assert ("gpu.count 8 nvidia.com/gpu per replica: all of a replica's GPUs must be on one node (vLLM runs the GPUs "
            "of a replica as one tensor-parallel group (--tensor-parallel-size = gpu.count))") in run.output, run.explain()
    assert "has 4. Lower gpu.count to at most 4" in run.output, run.explain()
    assert "Nothing was applied" in run.output
    assert apps_v1.list_namespaced_deployment(namespace, label_selector="creativeflow.ai/model-name=llama-vllm").items == []
