"""The custom_python image really built with podman, pushed to a real registry and deployed.

podman and buildah set O_NONBLOCK on the stdin they inherit, which would make
every later ansible command of the session refuse to start: each gets its own
/dev/null.

- podman builds the role's Dockerfile template (chroot isolation, a vfs storage of
  the tests' own under the cache directory) on a Python base image made locally
  from Debian packages (hack/base_image.sh);
- Debian's docker-registry (distribution) serves on 127.0.0.1 over plain HTTP;
- deploy_model.yml builds, pushes and deploys; the test reads the image back from
  the registry (tags, manifest, config: USER, CMD, MODEL_CLASS) and runs the pulled
  image's server with buildah, asking it /health/ready and an OIP v2 inference;
- a second deploy finds the tag in the registry, builds nothing and changes nothing.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import yaml

import image_tools
from image_tools import free_port, http_json, wait_for
from playbooks import REPO_ROOT, Run, run_playbook

CATALOG_FILE = REPO_ROOT / "inventories" / "shared" / "group_vars" / "all" / "models.yml"
MODEL = "echo-build"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
])

# A user's python model, baked into the image through model_artifacts/.
ECHO_MODEL = '''
import numpy as np


class Doubler:
    """Doubles its input: enough to prove the image loads and serves a model."""

    def predict(self, x):
        return np.asarray(x, dtype=np.float64) * 2
'''


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def container_env() -> Dict[str, str]:
    return image_tools.container_env("docker-registry")


@pytest.fixture(scope="module")
def base_image(container_env: Dict[str, str]) -> str:
    return image_tools.base_image(container_env)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[str]:
    """Debian's docker-registry on a free loopback port; yields host:port."""
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    with open(root / "registry.log", "w") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/v2/", 30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def namespace(core_v1) -> Iterator[str]:
    from kubernetes import client

    name = f"t-build-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        core_v1.create_namespaced_service_account(name, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="model-server-sa")))
        yield name
    finally:
        core_v1.delete_namespace(name, grace_period_seconds=0)


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """The build context: the server package of this checkout plus the model's files."""
    root = tmp_path_factory.mktemp("context")
    server = REPO_ROOT / "custom_server"
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(server / name, root / name)
    shutil.copytree(server / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "model_artifacts").mkdir()
    (root / "model_artifacts" / "doubler.py").write_text(ECHO_MODEL)
    return root


@pytest.fixture(scope="module")
def deploys(kubeconfig: str, namespace: str, registry: str, base_image: str, context: Path,
            container_env: Dict[str, str]) -> Iterator[Dict[str, Any]]:
    models = copy.deepcopy(yaml.safe_load(CATALOG_FILE.read_text())["ai_serving_models"])
    models[MODEL] = {
        "runtime": "custom_python",
        "image": {"repository": f"{registry}/models/{MODEL}", "tag": "1.0",
                  "build": {"context": str(context), "base_image": base_image}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        "custom_python": {"model_format": "python", "model_class": "/models/doubler.py:Doubler"},
    }
    extra = {"model": MODEL, "ai_namespace_name": namespace, "ai_serving_models": models,
             "ai_serving_image_builder": "podman"}
    env = {**container_env}
    started = time.monotonic()
    first = run_playbook("deploy_model.yml", kubeconfig, extra, env=env, timeout=900)
    first_s = time.monotonic() - started
    started = time.monotonic()
    second = run_playbook("deploy_model.yml", kubeconfig, extra, env=env)
    second_s = time.monotonic() - started
    image = f"{registry}/models/{MODEL}:1.0"
    try:
        yield {"first": first, "second": second, "image": image, "seconds": (first_s, second_s)}
    finally:
        # The storage lives in the cache: keep the base image, drop what the test built or pulled.
        subprocess.run(["podman", "rmi", "--force", image], env={**os.environ, **container_env},
                       stdin=subprocess.DEVNULL, capture_output=True, check=False)
        subprocess.run(["podman", "image", "prune", "--force"], env={**os.environ, **container_env},
                       stdin=subprocess.DEVNULL, capture_output=True, check=False)


# --------------------------------------------------------------------------- tests


def test_deploy_builds_pushes_and_rolls_out(deploys: Dict[str, Any], apps_v1, namespace: str) -> None:
    first: Run = deploys["first"]
    assert first.returncode == 0, first.explain()
    assert "is not in the registry: building it" in first.output, first.explain()
    assert "Build | Build (and push) the image with podman" in first.stdout
    dep = apps_v1.read_namespaced_deployment(MODEL, namespace)
    assert dep.spec.template.spec.containers[0].image == deploys["image"]
    assert dep.status.available_replicas == 1
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
    assert env["MODEL_CLASS"] == "/models/doubler.py:Doubler" and "MODEL_PATH" not in env
    assert dep.spec.template.spec.security_context.run_as_user == 10001


def test_registry_holds_the_image_the_template_describes(deploys: Dict[str, Any], registry: str) -> None:
    base = f"http://{registry}/v2/models/{MODEL}"
    assert http_json(f"{base}/tags/list")["tags"] == ["1.0"]
    manifest = http_json(f"{base}/manifests/1.0", accept=MANIFEST_TYPES)
    assert len(manifest["layers"]) >= 2  # the base layer and the server's
    config = http_json(f"{base}/blobs/{manifest['config']['digest']}")["config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python", "-m", "custom_server"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MODEL_CLASS"] == "/models/doubler.py:Doubler" and env["MODEL_FORMAT"] == "python"
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_pushed_image_serves_the_model(deploys: Dict[str, Any], container_env: Dict[str, str], tmp_path: Path) -> None:
    """Pull the image back from the registry (the local copy removed first) and run its server."""
    env = {**os.environ, **container_env}
    subprocess.run(["podman", "rmi", "--force", deploys["image"]], env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    pulled = subprocess.run(["buildah", "from", "--tls-verify=false", "--pull-always", deploys["image"]], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    working = pulled.stdout.strip().splitlines()[-1]
    port = free_port()
    log = tmp_path / "server.log"
    try:
        with open(log, "w") as out:
            server = subprocess.Popen(
                ["buildah", "run", "--isolation", "chroot", "--env", f"PORT={port}", "--env", "HOST=127.0.0.1",
                 "--env", f"MODEL_NAME={MODEL}", working, "--", "python", "-m", "custom_server"],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(f"http://127.0.0.1:{port}/health/ready", 90)
            result = http_json(f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
                               data={"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3.5]}]})
            assert result["outputs"][0]["data"] == [2.0, 4.0, 7.0], log.read_text()
            assert http_json(f"http://127.0.0.1:{port}/v2/models/{MODEL}")["platform"] == "python"
        except Exception:
            print(log.read_text()[-4000:])
            raise
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    finally:
        subprocess.run(["buildah", "rm", working], env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)


def test_second_deploy_builds_nothing_and_changes_nothing(deploys: Dict[str, Any]) -> None:
    second: Run = deploys["second"]
    assert second.returncode == 0, second.explain()
    assert "is in the registry already: nothing to build" in second.output, second.explain()
    assert not re.search(r"with podman\] \*+\n(changed|ok):", second.stdout), second.explain()
    assert second.recap["changed"] == 0, second.explain()
    print(f"\nimage build deploy: first {deploys['seconds'][0]:.1f} s, second {deploys['seconds'][1]:.1f} s")
