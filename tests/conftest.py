"""Shared pytest fixtures: a real Kubernetes API for integration tests.

Integration tests run against the cluster named by ``AI_SERVING_KUBECONFIG``
(kind, a real cluster...) or, when that is unset, against the project's local
cluster (``make cluster-up``), which the session fixture starts when needed.
Unit tests under ``tests/unit`` need none of this.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = REPO_ROOT / "cluster" / "cluster.sh"
KUBECONFIG_ENV = "AI_SERVING_KUBECONFIG"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "local_cluster: needs the project's kwok cluster (topology file, fault stages); "
        "skipped when AI_SERVING_KUBECONFIG names another cluster",
    )
    config.addinivalue_line(
        "markers",
        "cluster_teardown: takes the session's local cluster down; run after every other test",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every integration test shares the session cluster: the ones that stop it go last.
    items.sort(key=lambda item: item.get_closest_marker("cluster_teardown") is not None)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """Path of a kubeconfig for a running cluster (started if it is ours and down)."""
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        if not Path(external).is_file():
            pytest.fail(f"{KUBECONFIG_ENV}={external} is not a file: point it at a kubeconfig")
        return external
    # `up` is idempotent and fast when the cluster is already running; its last
    # line of output is the kubeconfig path.
    proc = subprocess.run(
        [str(CLUSTER_SH), "up"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"cluster/cluster.sh up failed:\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def is_local_cluster() -> bool:
    return not os.environ.get(KUBECONFIG_ENV)


@pytest.fixture(autouse=True)
def _skip_local_only(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("local_cluster") and os.environ.get(KUBECONFIG_ENV):
        pytest.skip("needs the project's local kwok cluster")


@pytest.fixture(scope="session")
def api_client(kubeconfig: str):
    """A kubernetes.client.ApiClient for the test cluster."""
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="session")
def core_v1(api_client):
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps_v1(api_client):
    from kubernetes import client

    return client.AppsV1Api(api_client)


@pytest.fixture
def kubectl(kubeconfig: str):
    """Run kubectl against the test cluster; returns CompletedProcess (text)."""

    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
        )

    return run


@pytest.fixture
def namespace(core_v1, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    from kubernetes import client

    base = request.node.name.lower().replace("_", "-")
    name = f"t-{base[:40].strip('-')}-{uuid.uuid4().hex[:6]}"
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core_v1.delete_namespace(name, grace_period_seconds=0)
