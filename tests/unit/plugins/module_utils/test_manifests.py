# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the Kubernetes objects built in Python (manifests.py) from the runtime records.

The fixtures under fixtures/objects/ are the objects the Jinja templates of roles/_common
rendered for the four example models (base, dev, prod) before the builders replaced them,
with the resolved catalog entry they were rendered from: the builders, fed the same entry and
each runtime's default knobs, must produce exactly those objects.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import manifests, runtimes

FIXTURES = Path(__file__).parent / "fixtures" / "objects"
GOLDEN = sorted(FIXTURES.glob("*.json"))


def load(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text())


def build(inputs: Dict[str, Any], **settings: Any) -> list:
    model = inputs["model"]
    spec = runtimes.server_spec(model["runtime"], model)
    return manifests.objects(spec, model, manifests.Settings(namespace=inputs["namespace"], **settings),
                             inputs["config_files"], inputs["replicas"], inputs["configmap_name"])


def test_every_runtime_of_the_templates_has_golden_objects() -> None:
    # The four runtimes the templates rendered; ollama and vllm came later and have tests of their own
    # (test_llm_objects.py).
    covered = {load(path)["inputs"]["model"]["runtime"] for path in GOLDEN}
    assert covered == set(runtimes.names()) - {"ollama", "vllm"}
    assert len(GOLDEN) == 12


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_objects_match_what_the_templates_rendered(path: Path) -> None:
    golden = load(path)
    built = build(golden["inputs"], model_fetch_images={
        "s3": "amazon/aws-cli:2.17.50", "gs": "gcr.io/google.com/cloudsdktool/google-cloud-cli:494.0.0-slim",
        "https": "curlimages/curl:8.10.1", "http": "curlimages/curl:8.10.1"})
    assert [o["kind"] for o in built] == [o["kind"] for o in golden["objects"]]
    for mine, theirs in zip(built, golden["objects"]):
        assert mine == theirs, mine["kind"]


def test_configmap_name_hashes_the_content_and_the_generator_leaves_it_to_kustomize() -> None:
    model = {"name": "m"}
    files = {"b": "2", "a": "1"}
    digest = hashlib.sha256(b'{"a": "1", "b": "2"}').hexdigest()[:10]
    assert manifests.configmap_name(model, files) == "m-config-" + digest
    assert manifests.configmap_name(model, dict(files, a="changed")) != "m-config-" + digest
    assert manifests.configmap_name(model, files, generator=True) == "m-config"
    assert manifests.configmap_name(model, {}) == ""


def test_replicas_follow_the_hpa_bounds() -> None:
    model = {"replicas": 2, "autoscaling": {"enabled": True, "min_replicas": 3, "max_replicas": 6}}
    assert manifests.replica_count(model) == 3
    assert manifests.replica_count(model, current=5) == 5
    assert manifests.replica_count(model, current=9) == 6
    assert manifests.replica_count(model, current=1) == 3
    assert manifests.replica_count({"replicas": 2, "autoscaling": {"enabled": False}}, current=5) == 2


def test_service_monitor_only_when_the_crd_is_served_and_enabled() -> None:
    golden = load(FIXTURES / "vision-models-prod.json")["inputs"]
    model = golden["model"]
    spec = runtimes.server_spec("triton", model)
    settings = manifests.Settings(namespace="ns", service_monitor_labels={"release": "prom", "tier": 2})
    (monitor,) = manifests.service_monitor(spec, model, settings, api_served=True)
    assert monitor["metadata"]["labels"]["release"] == "prom" and monitor["metadata"]["labels"]["tier"] == "2"
    assert monitor["spec"] == {"selector": {"matchLabels": manifests.selector(model)},
                               "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}]}
    assert manifests.service_monitor(spec, model, settings, api_served=False) == []
    off = manifests.Settings(namespace="ns", service_monitor=False)
    assert manifests.service_monitor(spec, model, off, api_served=True) == []


def test_scheduling_is_one_source_for_the_pod_and_the_gpu_check() -> None:
    model = {"name": "m", "gpu": {"count": 2, "resource": "nvidia.com/gpu", "product": "A100"},
             "node_selector": {"zone": "a"}, "tolerations": [{"key": "spot", "operator": "Exists"}],
             "image": {"repository": "r", "tag": "1"}, "resources": {"requests": {"cpu": 1}},
             "model": {"source": "image"}, "strategy": {"type": "Recreate"}}
    node_selector, tolerations = manifests.scheduling(model)
    assert node_selector == {"nvidia.com/gpu.product": "A100", "zone": "a"}
    assert tolerations[0] == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    (dep,) = manifests.deployment(runtimes.server_spec("custom_python", model, {}), model,
                                  manifests.Settings(namespace="ns"), 1)
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == node_selector and pod["tolerations"] == tolerations
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "1", "nvidia.com/gpu": "2"},
                                                 "limits": {"nvidia.com/gpu": "2"}}
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    cpu_only = dict(model, gpu={"count": 0, "resource": "nvidia.com/gpu"}, node_selector={}, tolerations=[])
    assert manifests.scheduling(cpu_only) == ({}, [])


def test_version_label_from_a_digest_and_a_long_tag() -> None:
    digest = {"image": {"repository": "r", "digest": "sha256:" + "ab" * 32}}
    assert manifests.version_label(digest) == "ab" * 6
    assert manifests.image_reference(digest) == "r@sha256:" + "ab" * 32
    long_tag = {"image": {"repository": "r", "tag": "v" + "1" * 61 + ".-x"}}
    assert len(manifests.version_label(long_tag)) <= 63
    assert manifests.version_label(long_tag).endswith("1")


def test_catalog_env_wins_over_the_runtime_and_becomes_strings() -> None:
    golden = load(FIXTURES / "text-generation-gpt-prod.json")["inputs"]
    model = copy.deepcopy(golden["model"])
    model["env"] = {"WORKERS": 4, "DEBUG": True}
    spec = runtimes.server_spec("custom_python", model)
    variables = manifests.env(spec, model)
    assert variables["WORKERS"] == "4" and variables["DEBUG"] == "True" and variables["PORT"] == "8080"


@pytest.mark.parametrize("grpc_probes", [True, "True"])  # a knob passed through a template may be a string
def test_custom_python_serves_grpc_and_can_probe_it(grpc_probes: Any) -> None:
    model = load(FIXTURES / "text-generation-gpt-base.json")["inputs"]["model"]
    spec = runtimes.server_spec("custom_python", model, {"grpc_port": 9001, "grpc_probes": grpc_probes})
    (dep,) = manifests.deployment(spec, model, manifests.Settings(namespace="ns"), 1)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "GRPC_PORT", "value": "9001"} in container["env"]
    assert {"containerPort": 9001, "name": "grpc", "protocol": "TCP"} in container["ports"]
    # Kubernetes' gRPC probe takes a port number, not a name
    assert container["startupProbe"]["grpc"] == {"port": 9001, "service": "ready"}
    assert container["readinessProbe"]["grpc"] == {"port": 9001, "service": "ready"}
    assert container["livenessProbe"]["grpc"] == {"port": 9001, "service": "live"}
    assert "httpGet" not in container["livenessProbe"]
    assert container["startupProbe"]["failureThreshold"] == 60  # the timing is the same
    (svc,) = manifests.service(spec, model, manifests.Settings(namespace="ns"))
    assert {"name": "grpc", "port": 9001, "targetPort": "grpc", "protocol": "TCP"} in svc["spec"]["ports"]
    http = runtimes.server_spec("custom_python", model, {"grpc_probes": "False"})
    (dep,) = manifests.deployment(http, model, manifests.Settings(namespace="ns"), 1)
    assert dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"] == {
        "path": "/health/live", "port": "http"}
