# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The objects of the LLM runtimes (ollama, vllm) and the generic ones the engine builds from records:
the claim the deploy creates, the periodic check (CronJob, script, ServiceAccount, Role), the shared
ConfigMap with its Role, NodePort and LoadBalancer Services."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import manifests, runtimes

SETTINGS = manifests.Settings(namespace="llm")


def ollama_entry(**extra: Any) -> Dict[str, Any]:
    entry: Dict[str, Any] = {
        "name": "chat", "runtime": "ollama", "image": {"repository": "r/ollama", "tag": "0.5.7"},
        "resources": {"requests": {"cpu": "1", "memory": "4Gi"}}, "gpu": {"count": 1, "resource": "nvidia.com/gpu"},
        "model": {"source": "image"}, "ollama": {"models": ["llama3:8b", "nomic-embed-text"]},
    }
    entry.update(extra)
    return entry


def vllm_entry(**extra: Any) -> Dict[str, Any]:
    entry: Dict[str, Any] = {
        "name": "llama", "runtime": "vllm", "image": {"repository": "r/vllm", "tag": "0.6.6"},
        "resources": {"requests": {"cpu": "4", "memory": "32Gi"}}, "gpu": {"count": 4, "resource": "nvidia.com/gpu"},
        "model": {"source": "pvc", "pvc": {"claim_name": "weights"}},
        "vllm": {"model": "llama-3-8b", "max_model_len": 8192, "gpu_memory_utilization": 0.9,
                 "extra_args": ["--enable-prefix-caching"]},
    }
    entry.update(extra)
    return entry


def build(entry: Dict[str, Any], knobs: Dict[str, Any] = None) -> List[Dict[str, Any]]:
    spec = runtimes.server_spec(entry["runtime"], entry, knobs or {})
    return manifests.objects(spec, entry, SETTINGS, {}, 1, "")


def by_kind(objects: List[Dict[str, Any]], kind: str) -> List[Dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def container(objects: List[Dict[str, Any]]) -> Dict[str, Any]:
    return by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]


# ---- ollama ----

def test_ollama_container_serves_on_its_port_with_its_own_probes_and_writable_models() -> None:
    objects = build(ollama_entry())
    server = container(objects)
    assert server["command"] == ["ollama"] and server["args"] == ["serve"]
    assert server["ports"] == [{"name": "http", "containerPort": 11434, "protocol": "TCP"}]
    env = {item["name"]: item["value"] for item in server["env"]}
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434" and env["OLLAMA_MODELS"] == "/models" and env["HOME"] == "/tmp"
    assert server["startupProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/api/tags", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/api/version", "port": "http"}
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    # No claim: the models directory is an emptyDir, writable.
    pod = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]
    assert {"name": "model", "mountPath": "/models"} in server["volumeMounts"]
    # No metrics endpoint: never a ServiceMonitor.
    spec = runtimes.server_spec("ollama", ollama_entry())
    assert manifests.service_monitor(spec, ollama_entry(), SETTINGS, True) == []


def test_ollama_claim_is_writable_unless_the_catalog_says_read_only() -> None:
    entry = ollama_entry(model={"source": "pvc", "pvc": {"claim_name": "ollama-models"}})
    server = container(build(entry))
    assert {"name": "model", "mountPath": "/models", "readOnly": False} in server["volumeMounts"]
    entry["model"]["pvc"]["read_only"] = True
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in container(build(entry))["volumeMounts"]
    # Other runtimes keep their read-only default.
    triton = {"name": "t", "runtime": "triton", "image": {"repository": "r/t", "tag": "1"},
              "model": {"source": "pvc", "pvc": {"claim_name": "c"}}, "triton": {"models": [{"name": "a"}]}}
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in container(build(triton))["volumeMounts"]


def test_the_claim_is_created_from_the_catalog_before_the_deployment() -> None:
    entry = ollama_entry(model={"source": "pvc", "pvc": {"claim_name": "ollama-models", "create": {
        "size": "100Gi", "storage_class": "fast", "access_modes": ["ReadWriteMany"]}}})
    objects = build(entry)
    claim = by_kind(objects, "PersistentVolumeClaim")[0]
    assert claim["metadata"]["name"] == "ollama-models" and claim["metadata"]["namespace"] == "llm"
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "100Gi"}},
                             "storageClassName": "fast"}
    assert claim["metadata"]["labels"]["creativeflow.ai/model-name"] == "chat"
    kinds = [obj["kind"] for obj in objects]
    assert kinds.index("PersistentVolumeClaim") < kinds.index("Deployment")
    del entry["model"]["pvc"]["create"]
    assert by_kind(build(entry), "PersistentVolumeClaim") == []


def test_the_model_check_is_a_cronjob_with_its_script_and_least_privilege() -> None:
    objects = build(ollama_entry())
    cron = by_kind(objects, "CronJob")[0]
    assert cron["metadata"]["name"] == "chat-model-check"
    assert cron["spec"]["schedule"] == "*/5 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    check = pod["containers"][0]
    env = {item["name"]: item.get("value") for item in check["env"]}
    assert env["SERVER_URL"] == "http://chat.$(NAMESPACE).svc:11434"
    assert [item["name"] for item in check["env"]][:2] == ["NAMESPACE", "SERVER_URL"]  # $(NAMESPACE) is set first
    # Without cluster DNS: the Service's variables Kubernetes gives the pod (the kubelet expands them).
    assert env["SERVER_ADDRESS_URL"] == "http://$(CHAT_SERVICE_HOST):$(CHAT_SERVICE_PORT_HTTP)"
    assert check["image"] == "curlimages/curl:8.10.1"
    assert env["EXPECTED_MODELS"] == "llama3:8b nomic-embed-text"
    assert env["AUTO_PULL"] == "true" and env["TEST_INFERENCE"] == "false" and env["REPORT_STATUS"] == "true"
    assert env["REPORT_CONFIGMAP"] == "chat-model-check-report"
    assert check["command"] == ["/bin/sh", "/scripts/check-models.sh"]
    assert check["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is True
    script = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "chat-model-check-script"][0]
    assert script["data"]["check-models.sh"] == runtimes.OLLAMA_CHECK_SCRIPT
    role = [o for o in by_kind(objects, "Role") if o["metadata"]["name"] == "chat-model-check"][0]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["chat-model-check-report"], "verbs": ["get", "patch"]}]
    binding = [o for o in by_kind(objects, "RoleBinding") if o["metadata"]["name"] == "chat-model-check"][0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chat-model-check", "namespace": "llm"}]
    # The check's pods are not the Service's: another component label.
    labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "model-check"
    assert not set(manifests.selector(ollama_entry()).items()) <= set(labels.items())
    # The report ConfigMap carries no data: the job writes it, a deploy never takes it back.
    report = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "chat-model-check-report"][0]
    assert "data" not in report


def check_pod(entry: Dict[str, Any]) -> Dict[str, Any]:
    return by_kind(build(entry), "CronJob")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]


REAL_NODE = {"node_selector": {"creativeflow.ai/real-node": "true"},
             "tolerations": [{"key": "creativeflow.ai/real-node", "operator": "Exists", "effect": "NoSchedule"}]}


def test_the_checks_pod_runs_where_the_server_may_run_without_its_gpu_label() -> None:
    # A CPU model pinned to a node pool: the check goes there too (on the local cluster, the real node,
    # not a simulated one that "runs" nothing).
    entry = ollama_entry(gpu={"count": 0}, **REAL_NODE)
    pod = check_pod(entry)
    server = by_kind(build(entry), "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == server["nodeSelector"] == REAL_NODE["node_selector"]
    assert pod["tolerations"] == server["tolerations"] == REAL_NODE["tolerations"]
    # A GPU model: no GPU product label (the check takes no GPU), but the server's tolerations, the
    # GPU taint's included, so that a selector naming the GPU pool cannot leave the check Pending.
    entry = ollama_entry(gpu={"count": 1, "resource": "nvidia.com/gpu", "product": "NVIDIA-L4"},
                         node_selector={"pool": "gpu"}, tolerations=REAL_NODE["tolerations"])
    pod, server = check_pod(entry), by_kind(build(entry), "Deployment")[0]["spec"]["template"]["spec"]
    assert server["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4", "pool": "gpu"}
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == server["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}] + REAL_NODE["tolerations"]
    assert pod["containers"][0]["resources"] == manifests.CHECK_RESOURCES
    # Nothing in the catalog: the pod may run on any untainted node.
    pod = check_pod(ollama_entry(gpu={"count": 0}))
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_the_catalog_can_place_the_check_elsewhere() -> None:
    system = {"node_selector": {"pool": "system"}, "tolerations": [{"key": "system", "operator": "Exists"}]}
    entry = ollama_entry(ollama={"models": ["a"], "model_check": dict(system)}, **REAL_NODE)
    pod = check_pod(entry)
    assert pod["nodeSelector"] == {"pool": "system"} and pod["tolerations"] == system["tolerations"]
    # Empty replaces too: any node, no toleration.
    entry["ollama"]["model_check"] = {"node_selector": {}, "tolerations": []}
    pod = check_pod(entry)
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert manifests.check_scheduling(entry, {"node_selector": {}, "tolerations": []}) == ({}, [])


def test_a_check_that_does_not_report_gets_no_role_and_no_token() -> None:
    entry = ollama_entry(ollama={"models": ["a"], "model_check": {"report_status": False, "auto_pull": False,
                                                                  "test_inference": True, "schedule": "0 * * * *"}})
    objects = build(entry)
    assert by_kind(objects, "Role") == [] and by_kind(objects, "RoleBinding") == []
    pod = by_kind(objects, "CronJob")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
    assert env["AUTO_PULL"] == "false" and env["TEST_INFERENCE"] == "true" and "REPORT_CONFIGMAP" not in env
    entry["ollama"]["model_check"] = {"enabled": False}
    assert by_kind(build(entry), "CronJob") == []


def test_usage_stats_configmap_is_create_only_with_a_role_for_the_model_manager() -> None:
    entry = ollama_entry(ollama={"models": ["a"], "usage_stats": {"enabled": True}})
    objects = build(entry)
    stats = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "chat-usage-stats"][0]
    assert stats["data"] == {"usage_data": "{}"} and manifests.is_create_only(stats)
    role = [o for o in by_kind(objects, "Role") if o["metadata"]["name"] == "chat-usage-stats"][0]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["chat-usage-stats"],
                              "verbs": ["get", "update", "patch"]}]
    binding = [o for o in by_kind(objects, "RoleBinding") if o["metadata"]["name"] == "chat-usage-stats"][0]
    assert binding["subjects"][0]["name"] == "model-manager"
    assert not any(manifests.is_create_only(o) for o in objects if o is not stats)


def test_the_ensure_step_lists_and_pulls_the_catalogs_models() -> None:
    spec = runtimes.server_spec("ollama", ollama_entry(ollama={"models": ["tiny"], "insecure_registry": True,
                                                               "pull_timeout": 60}))
    assert spec.ensure["wanted"] == ["tiny"] and spec.ensure["timeout_seconds"] == 60
    assert spec.ensure["fetch_path"] == "/api/pull" and spec.ensure["fetch_body"] == {"stream": False, "insecure": True}
    assert runtimes.server_spec("vllm", vllm_entry()).ensure == {}


def test_the_check_script_is_valid_posix_shell() -> None:
    result = subprocess.run(["sh", "-n"], input=runtimes.OLLAMA_CHECK_SCRIPT, text=True, capture_output=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_the_catalog_can_name_the_checks_image_and_the_service_address_follows_the_model_name() -> None:
    entry = ollama_entry(name="tiny-ollama-cpu", ollama={"models": ["a"], "check_image": "127.0.0.1:5000/x/y:1"})
    pod = by_kind(build(entry), "CronJob")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "127.0.0.1:5000/x/y:1"
    env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
    assert env["SERVER_ADDRESS_URL"] == "http://$(TINY_OLLAMA_CPU_SERVICE_HOST):$(TINY_OLLAMA_CPU_SERVICE_PORT_HTTP)"


class FakeOllama(BaseHTTPRequestHandler):
    """/api/version, /api/tags and /api/pull of an Ollama server, in compact JSON like Ollama's (the script greps it)."""

    models: List[str] = []
    pulls: List[Dict[str, Any]] = []
    generated: List[Dict[str, Any]] = []

    def answer(self, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/api/version":
            self.answer({"version": "0.17.4"})
        else:
            self.answer({"models": [{"name": name, "model": name} for name in self.models]})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/pull":
            self.pulls.append(body)
            self.models.append(body["model"])
            self.answer({"status": "success"})
        else:
            self.generated.append(body)
            self.answer({"model": body["model"], "response": "x", "done": True})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_ollama() -> Iterator[str]:
    FakeOllama.models, FakeOllama.pulls, FakeOllama.generated = ["kept:latest"], [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_check(server_url: str, address_url: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "NAMESPACE": "llm", "SERVER_URL": server_url, "SERVER_ADDRESS_URL": address_url,
           "EXPECTED_MODELS": "kept 10.244.0.1:5000/ai-serving/tiny-llama", "AUTO_PULL": "true",
           "TEST_INFERENCE": "true", "REPORT_STATUS": "false", "PULL_TIMEOUT": "10", "INSECURE_REGISTRY": "true"}
    return subprocess.run(["sh", "-c", runtimes.OLLAMA_CHECK_SCRIPT], env=env, text=True, capture_output=True,
                          check=False, timeout=60)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the check script runs curl")
def test_the_check_pulls_the_missing_model_through_the_services_address_when_its_name_does_not_answer(
        fake_ollama: str) -> None:
    # Connection refused on the name (as an unresolvable one would fail), the address answers.
    result = run_check("http://127.0.0.1:1", fake_ollama)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "server answers at %s" % fake_ollama in result.stdout
    assert "missing models: 10.244.0.1:5000/ai-serving/tiny-llama:latest" in result.stdout
    assert FakeOllama.pulls == [{"model": "10.244.0.1:5000/ai-serving/tiny-llama:latest", "stream": False,
                                 "insecure": True}]
    assert FakeOllama.generated[0]["model"] == "kept:latest"
    assert '"state":"ok"' in result.stdout and '"inference":"passed"' in result.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="the check script runs curl")
def test_the_check_reports_the_server_down_when_the_services_variables_were_not_set(fake_ollama: str) -> None:
    # The Service did not exist when the pod started: the kubelet left the reference as written.
    result = run_check("http://127.0.0.1:1", "http://$(CHAT_SERVICE_HOST):$(CHAT_SERVICE_PORT_HTTP)")
    assert result.returncode == 1
    assert "server does not answer" in result.stdout and '"state":"down"' in result.stdout
    assert FakeOllama.pulls == []


# ---- vllm ----

def test_vllm_arguments_follow_the_catalog_and_the_gpus() -> None:
    server = container(build(vllm_entry()))
    assert server["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert server["args"] == ["--host=0.0.0.0", "--port=8000", "--model=/models/llama-3-8b", "--served-model-name=llama",
                              "--tensor-parallel-size=4", "--max-model-len=8192", "--gpu-memory-utilization=0.9",
                              "--enable-prefix-caching"]
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "4"}
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    cpu = vllm_entry(gpu={"count": 0}, vllm={"model": "/opt/tiny", "served_model_name": "tiny"})
    assert container(build(cpu))["args"] == [
        "--host=0.0.0.0", "--port=8000", "--model=/opt/tiny", "--served-model-name=tiny"]
    # The KV cache's size, a Kubernetes quantity in the catalog, is bytes for vLLM.
    sized = vllm_entry(gpu={"count": 0}, vllm={"model": "tiny", "kv_cache_memory": "64Mi", "extra_args": ["--enforce-eager"]})
    assert container(build(sized))["args"][-2:] == ["--kv-cache-memory-bytes=67108864", "--enforce-eager"]


def test_vllm_probes_shm_and_metrics() -> None:
    objects = build(vllm_entry(), {"shm_size": "8Gi"})
    server = container(objects)
    assert server["startupProbe"]["httpGet"]["path"] == "/health"
    # 30 minutes for loading the weights before liveness counts.
    assert server["startupProbe"]["periodSeconds"] * server["startupProbe"]["failureThreshold"] == 1800
    assert server["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"
    pod = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    shm = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    assert shm == [{"name": "writable-1", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
    assert {"name": "writable-1", "mountPath": "/dev/shm"} in server["volumeMounts"]
    spec = runtimes.server_spec("vllm", vllm_entry())
    monitor = manifests.service_monitor(spec, vllm_entry(), SETTINGS, True)[0]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert by_kind(objects, "CronJob") == [] and by_kind(objects, "Role") == []


def test_vllm_uri_model_is_fetched_by_the_init_container() -> None:
    entry = vllm_entry(model={"source": "uri", "uri": "s3://models/llama"}, vllm={})
    spec = runtimes.server_spec("vllm", entry)
    settings = manifests.Settings(namespace="llm", model_fetch_images={"s3": "amazon/aws-cli:2.17.50"})
    deployment = manifests.deployment(spec, entry, settings, 1)[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["name"] == "fetch-model"
    assert "--model=/models" in pod["containers"][0]["args"]


# ---- the Service, for every runtime ----

@pytest.mark.parametrize("runtime", runtimes.names())
def test_every_runtime_can_be_exposed_on_a_node_port_or_a_load_balancer(runtime: str) -> None:
    record = runtimes.get(runtime)
    first = [port for port in record.ports if port.service][0].name
    entry = {"name": "m", "runtime": runtime, "model": {"source": "image"},
             "service": {"type": "NodePort", "node_ports": {first: 30501}}}
    spec = runtimes.server_spec(runtime, entry)
    service = manifests.service(spec, entry, SETTINGS)[0]
    assert service["spec"]["type"] == "NodePort"
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert ports[first]["nodePort"] == 30501
    assert all("nodePort" not in port for name, port in ports.items() if name != first)
    entry["service"] = {"type": "LoadBalancer", "load_balancer_source_ranges": ["203.0.113.0/24"],
                        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}}
    service = manifests.service(spec, entry, SETTINGS)[0]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert service["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
    del entry["service"]
    assert manifests.service(spec, entry, SETTINGS)[0]["spec"]["type"] == "ClusterIP"
