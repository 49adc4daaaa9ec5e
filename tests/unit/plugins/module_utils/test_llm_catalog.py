# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Catalog validation of the LLM runtimes' sections and of what they brought to every runtime
(a claim the deploy creates, NodePort and LoadBalancer Services): each bad value gets one message
naming the field, the value and the fix."""

from __future__ import annotations

import copy
from typing import Any, Dict

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import (
    CatalogError,
    resolve_model,
    validate_catalog,
)


def catalog() -> Dict[str, Any]:
    return {
        "chat": {
            "runtime": "ollama",
            "image": {"repository": "registry.example.com/ollama", "tag": "0.5.7"},
            "resources": {"requests": {"cpu": "1", "memory": "4Gi"}},
            "gpu": {"count": 1},
            "model": {"source": "pvc", "pvc": {"claim_name": "chat-models", "create": {"size": "100Gi"}}},
            "service": {"type": "NodePort", "node_ports": {"http": 30501}},
            "ollama": {"models": ["llama3:8b", "nomic-embed-text", "127.0.0.1:5000/library/tiny:latest"],
                       "model_check": {"schedule": "*/5 * * * *", "test_inference": True},
                       "usage_stats": {"enabled": True, "service_account": "model-manager"}},
        },
        "llama": {
            "runtime": "vllm",
            "image": {"repository": "registry.example.com/vllm", "tag": "0.6.6"},
            "resources": {"requests": {"cpu": "4", "memory": "32Gi"}},
            "gpu": {"count": 2},
            "service": {"type": "LoadBalancer", "load_balancer_source_ranges": ["10.0.0.0/8"]},
            "vllm": {"model": "llama-3-8b", "max_model_len": 8192, "gpu_memory_utilization": 0.9, "dtype": "bfloat16"},
        },
    }


def test_the_llm_entries_are_valid() -> None:
    assert validate_catalog(catalog()) == []
    model = resolve_model(catalog(), "chat")
    assert model["ollama"]["models"][0] == "llama3:8b"


def with_value(path: str, value: Any) -> Dict[str, Any]:
    data = copy.deepcopy(catalog())
    keys = path.split(".")
    target = data
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return data


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("chat.ollama.models", "llama3:8b",
     "models.chat.ollama.models: 'llama3:8b' is not a list of Ollama model names such as [llama3:8b]"),
    ("chat.ollama.models", [{"name": "llama3"}],
     "models.chat.ollama.models[0]: {'name': 'llama3'} is not of type 'string'"),
    ("chat.ollama.models", ["llama 3"],
     "models.chat.ollama.models[0]: 'llama 3' is not an Ollama model name such as llama3:8b or "
     "host:5000/library/tiny:latest"),
    ("chat.ollama.models", ["llama3", "llama3:latest"],
     "models.chat.ollama.models[1]: 'llama3:latest' is listed twice (as item 0 too)"),
    ("chat.ollama.models", [], "models.chat.ollama.models: [] should be non-empty"),
    ("chat.model.pvc.create", {"size": "lots"},
     "models.chat.model.pvc.create.size: 'lots' is not a storage size (a Kubernetes quantity) such as 100Gi"),
    ("chat.model.pvc.create", {"size": "0Gi"},
     "models.chat.model.pvc.create.size: '0Gi' is not a storage size above 0: write one such as 100Gi"),
    ("chat.model.pvc.create", {"size": 100},
     "models.chat.model.pvc.create.size: 100 is not of type 'string'"),
    ("chat.service.node_ports", {"http": 80},
     "models.chat.service.node_ports.http: 80 is outside the NodePort range 30000-32767 (the API server's "
     "--service-node-port-range): pick a port in it, or leave it out and the cluster picks one"),
    ("chat.service.node_ports", {"web": 30501},
     "models.chat.service.node_ports.web: 'web' is not a port of ollama's Service: name one of http"),
    ("chat.service.node_ports", {"http": "30501"},
     "models.chat.service.node_ports.http: '30501' is not a port number in the cluster's NodePort range (30000-32767)"),
    ("chat.service", {"type": "ClusterIP", "node_ports": {"http": 30501}},
     "models.chat.service.node_ports: apply only to service.type NodePort or LoadBalancer, not ClusterIP: set the "
     "type or remove them"),
    ("chat.ollama.model_check", {"schedule": "every 5 minutes"},
     "models.chat.ollama.model_check.schedule: 'every 5 minutes' is not a cron schedule such as */5 * * * *"),
    ("chat.ollama.model_check", {"enabled": False, "test_inference": True},
     "models.chat.ollama.model_check.test_inference: is true but model_check.enabled is false: no check runs; "
     "enable the check or remove it"),
    ("chat.ollama.model_check", {"node_selector": {"pool": "system pool"}},
     "models.chat.ollama.model_check.node_selector.pool: 'system pool' is not a label value (at most 63 letters, "
     "digits, - _ .)"),
    ("chat.ollama.model_check", {"tolerations": [{"key": "system", "operator": "Maybe"}]},
     "models.chat.ollama.model_check.tolerations[0].operator: 'Maybe' is not one of ['Exists', 'Equal']"),
    ("llama.vllm.gpu_memory_utilization", 1.5,
     "models.llama.vllm.gpu_memory_utilization: 1.5 is not a fraction of each GPU's memory, above 0 and at most 1"),
    ("llama.vllm.dtype", "int4", "models.llama.vllm.dtype: 'int4' is not one of ['auto', 'half', 'float16', "
                                 "'bfloat16', 'float', 'float32']"),
    ("llama.service", {"type": "NodePort", "load_balancer_source_ranges": ["10.0.0.0/8"]},
     "models.llama.service.load_balancer_source_ranges: apply only to service.type LoadBalancer, not NodePort"),
])
def test_a_bad_value_is_named_with_the_fix(path: str, value: Any, expected: str) -> None:
    problems = validate_catalog(with_value(path, value))
    assert expected in problems, problems
    with pytest.raises(CatalogError):
        resolve_model(with_value(path, value), path.split(".")[0])


def cpu_vllm(**vllm: Any) -> Dict[str, Any]:
    data = catalog()
    data["llama"]["gpu"] = {"count": 0}
    data["llama"]["resources"] = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    data["llama"]["vllm"] = {"model": "tiny", **vllm}
    return data


def test_vllm_on_cpu_needs_a_kv_cache_that_fits_the_pod() -> None:
    # vLLM's CPU worker would take 90% of the node's memory for its KV cache: the pod's limit does not bound it.
    assert ("models.llama.vllm.kv_cache_memory: is not set and gpu.count is 0: vLLM on CPU would size its KV cache "
            "as gpu_memory_utilization (0.9 by default) of the node's memory, not of the pod's limit, and fail or be "
            "OOM-killed; set kv_cache_memory (such as 256Mi) below resources.limits.memory") in validate_catalog(cpu_vllm())
    assert validate_catalog(cpu_vllm(kv_cache_memory="256Mi")) == []
    assert validate_catalog(cpu_vllm(extra_args=["--kv-cache-memory-bytes=1G"])) == []
    assert ("models.llama.vllm.kv_cache_memory: 4Gi is not below resources.limits.memory (4Gi), and the server itself "
            "needs memory beside its KV cache (about 2 GiB for vLLM's three processes on CPU): raise the limit or "
            "shrink the cache") in validate_catalog(cpu_vllm(kv_cache_memory="4Gi"))
    assert ("models.llama.vllm.kv_cache_memory: 512Ki is less than 1Mi: vLLM needs room for at least one block of "
            "tokens; give it a size such as 64Mi") in validate_catalog(cpu_vllm(kv_cache_memory="512Ki"))
    assert ("models.llama.vllm.kv_cache_memory: 'lots' is not a memory size (a Kubernetes quantity) such as 256Mi or "
            "2Gi") in validate_catalog(cpu_vllm(kv_cache_memory="lots"))
    # On GPUs vLLM sizes the cache from gpu_memory_utilization of each GPU: nothing to ask.
    assert validate_catalog(catalog()) == []
    with pytest.raises(CatalogError):
        resolve_model(cpu_vllm(), "llama")


def test_the_ollama_section_needs_its_models() -> None:
    data = catalog()
    del data["chat"]["ollama"]["models"]
    assert "models.chat.ollama.models: required field is missing" in validate_catalog(data)
    data = catalog()
    del data["chat"]["ollama"]
    assert "models.chat.ollama: required field is missing (required because runtime is ollama)" in validate_catalog(data)


def test_a_runtime_section_of_another_runtime_is_refused() -> None:
    data = catalog()
    data["llama"]["ollama"] = {"models": ["x"]}
    assert ("models.llama.ollama: section does not apply to runtime vllm; remove it (or set runtime: ollama)"
            in validate_catalog(data))


def test_replicas_that_write_one_claim_need_read_write_many() -> None:
    data = catalog()
    data["chat"]["replicas"] = 3
    assert ("models.chat.model.pvc.create.access_modes: ['ReadWriteOnce'] lets one node write the claim, and 3 "
            "replicas of ollama write their models into it: use [ReadWriteMany] (a storage class that offers it), or "
            "one replica") in validate_catalog(data)
    data["chat"]["model"]["pvc"]["create"]["access_modes"] = ["ReadWriteMany"]
    assert validate_catalog(data) == []
