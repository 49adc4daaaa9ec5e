"""A runtime is data: a throwaway runtime added to a copy of the collection deploys for real.

The copy gets exactly what the docs say a new runtime needs: its record appended to
plugins/module_utils/runtimes.py, and its role (entry point, defaults, argument specs,
Dockerfile template, here derived from custom_python's by renaming). No other file of the copy
changes: not the catalog code, not _common, not the playbooks. deploy_model.yml then deploys
a catalog entry of that runtime to the test cluster, and a second run changes nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from playbooks import REPO_ROOT, run_playbook

RECORD = '''

# ---- a throwaway runtime, added by tests/integration/test_runtime_registry.py ----
ECHO_SERVER = Runtime(
    name="echo_server",
    title="echo server",
    container_name="echo",
    command=lambda knobs: ["echo-server", "--listen=:%s" % knobs["port"]],
    args=lambda model, knobs: ["--greeting=%s" % _section(model, "echo_server").get("greeting", "hello")],
    ports=(Port("http", "port"),),
    probes=lambda model, knobs: {kind: HttpPath("/healthz", "http") for kind in PROBE_KINDS},
    metrics=HttpPath("/metrics", "http"),
    smoke=lambda model, knobs: [HttpPath("/healthz", "http")],
    knobs={"port": 8080, "server_module": "unused", "model_dir": "/models", "run_as_user": 10001,
           "base_image": "python:3.11-slim", "probes": _probe_timing((5, 5, 60), (10, 5, 3), (20, 5, 3))},
    section_schema=schema_object({"greeting": schema_string()}, required=["greeting"]),
)
REGISTRY[ECHO_SERVER.name] = ECHO_SERVER
'''


def copy_collection(root: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored) under root/ansible_collections/creativeflow/ai_serving."""
    dest = root / "ansible_collections" / "creativeflow" / "ai_serving"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def add_runtime(collection: Path) -> None:
    with (collection / "plugins" / "module_utils" / "runtimes.py").open("a") as handle:
        handle.write(RECORD)
    role = collection / "roles" / "echo_server"
    shutil.copytree(collection / "roles" / "custom_python", role)
    for path in role.rglob("*"):
        if path.is_file():
            path.write_text(path.read_text().replace("custom_python", "echo_server"))
    (role / "templates" / "Dockerfile.j2").write_text(
        "{{ ansible_managed | comment }}\nARG BASE_IMAGE={{ echo_server_base_image }}\nFROM ${BASE_IMAGE}\n"
        "USER 10001\n")


@pytest.fixture(scope="module")
def pss_namespace(core_v1) -> Iterator[str]:
    from kubernetes import client

    name = f"t-registry-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    core_v1.create_namespaced_service_account(name, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="model-server-sa")))
    yield name
    core_v1.delete_namespace(name, grace_period_seconds=0)


def test_a_new_runtime_is_a_record_and_a_role(tmp_path: Path, kubeconfig: str, pss_namespace: str, apps_v1) -> None:
    collection = copy_collection(tmp_path)
    before = {p.relative_to(collection) for p in collection.rglob("*") if p.is_file()}
    add_runtime(collection)
    added = {p.relative_to(collection) for p in collection.rglob("*") if p.is_file()} - before
    assert all(p.parts[:2] == ("roles", "echo_server") for p in added), added
    changed = subprocess.run(["diff", "-rq", str(REPO_ROOT / "plugins"), str(collection / "plugins")],
                             capture_output=True, text=True, check=False).stdout.splitlines()
    assert changed == [f"Files {REPO_ROOT}/plugins/module_utils/runtimes.py and "
                       f"{collection}/plugins/module_utils/runtimes.py differ"], changed
    config = collection / "ansible.cfg"
    config.write_text(config.read_text().replace("collections_path = ./.collections:", f"collections_path = {tmp_path}:"))
    catalog = yaml.safe_load((collection / "inventories" / "shared" / "group_vars" / "all" / "models.yml").read_text())
    catalog["ai_serving_models"]["echo"] = {
        "runtime": "echo_server",
        "image": {"repository": "registry.example.com/echo", "tag": "1.0"},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        "echo_server": {"greeting": "hi"},
    }
    extra = {"model": "echo", "ai_namespace_name": pss_namespace, **catalog}
    env = {"ANSIBLE_CONFIG": str(config)}
    inventory = collection / "inventories" / "local"
    first = run_playbook(collection / "playbooks" / "deploy_model.yml", kubeconfig, extra, env=env, inventory=inventory)
    assert first.returncode == 0, first.explain()
    dep = apps_v1.read_namespaced_deployment("echo", pss_namespace)
    container = dep.spec.template.spec.containers[0]
    assert container.name == "echo"
    assert container.command == ["echo-server", "--listen=:8080"] and container.args == ["--greeting=hi"]
    assert container.readiness_probe.http_get.path == "/healthz"
    assert dep.metadata.labels["creativeflow.ai/runtime"] == "echo_server"
    assert dep.status.available_replicas == 1
    again = run_playbook(collection / "playbooks" / "deploy_model.yml", kubeconfig, extra, env=env, inventory=inventory)
    assert again.returncode == 0 and again.recap["changed"] == 0, again.explain()
