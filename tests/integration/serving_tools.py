"""Traffic to a model through the API server's service proxy, for the integration tests on the real node.

:class:`Proxy` sends one request with the test's own client; :class:`Load` keeps a bounded
load (a few requests per second, for at most ``limit_s``) in a thread and counts what
failed. Shared by test_serving.py and test_deploy_safety.py. Traffic goes only to the
local API server.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from playbooks import REPO_ROOT

CATALOG_FILE = REPO_ROOT / "inventories" / "local" / "group_vars" / "all" / "models.yml"
#: The CPU example of each runtime that runs on the real node.
MODELS = {
    "triton": "double-triton-cpu",
    "torchserve": "doubler-torchserve-cpu",
    "custom_python": "doubler-python-cpu",
}
#: The CPU examples' doubler answers [1, 2, 3.5] with this.
EXPECTED = [2.0, 4.0, 7.0]


def catalog() -> Dict[str, Any]:
    return yaml.safe_load(CATALOG_FILE.read_text())["ai_serving_models"]


def failing_catalog(model: str) -> Dict[str, Any]:
    """The catalog with a new version of ``model`` whose model class does not load (same image)."""
    models = copy.deepcopy(catalog())
    models[model]["custom_python"]["model_class"] = "/models/doubler.py:NoSuchClass"
    return models


def numbers(runtime: str, answer: Any) -> List[float]:
    """The doubled numbers out of a runtime's answer."""
    if runtime == "torchserve":
        return answer
    return answer["outputs"][0]["data"]


class Proxy:
    """Requests to a Service through the API server's service proxy, with the test's client."""

    def __init__(self, api_client, namespace: str, service: str, port: str) -> None:
        self.api, self.namespace, self.service, self.port = api_client, namespace, service, port

    def path(self, path: str) -> str:
        return f"/api/v1/namespaces/{self.namespace}/services/{self.service}:{self.port}/proxy{path}"

    def send(self, path: str, body: Any = None, timeout: float = 10, method: Optional[str] = None) -> tuple[int, str]:
        """(status, body); status 0 when no HTTP answer came back. ``method``: POST with a body, else GET."""
        headers = {"Content-Type": "application/json", "Accept": "*/*"}
        method = method or ("POST" if body is not None else "GET")
        try:
            if hasattr(self.api, "param_serialize"):  # kubernetes >= 31
                parts = self.api.param_serialize(method, self.path(path),
                                                 header_params=headers, body=body, auth_settings=["BearerToken"])
                response = self.api.call_api(*parts, _request_timeout=timeout)
                return response.status, response.read().decode()
            response = self.api.call_api(self.path(path), method,
                                         header_params=headers, body=body, auth_settings=["BearerToken"],
                                         _preload_content=False, _request_timeout=timeout)
            return response.status, response.data.decode()
        except Exception as exc:  # ApiException: the proxied answer; else no answer at all
            status = getattr(exc, "status", 0) or 0
            text = getattr(exc, "body", None)
            return status, text.decode() if isinstance(text, bytes) else (text or f"{type(exc).__name__}: {exc}")


class Load:
    """A bounded load through the service proxy: ``rate`` inferences per second until stopped (at most ``limit_s``)."""

    def __init__(self, proxy: Proxy, runtime: str, smoke: Dict[str, Any], rate: float = 4, limit_s: float = 600):
        self.proxy, self.runtime, self.smoke = proxy, runtime, smoke
        self.interval, self.limit_s = 1 / rate, limit_s
        self.sent = 0
        self.failures: List[str] = []
        #: When each request was sent (time.monotonic()): the load's real rate, for figures per second.
        self.sent_at: List[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            self.sent_at.append(started)
            status, text = self.proxy.send(self.smoke["path"], self.smoke["body"])
            self.sent += 1
            try:
                ok = status == 200 and numbers(self.runtime, json.loads(text)) == EXPECTED
            except (ValueError, KeyError, IndexError, TypeError):
                ok = False
            if not ok:
                self.failures.append(f"{time.strftime('%H:%M:%S')} HTTP {status}: {text[:200]}")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def rate(self) -> float:
        """Requests per second it sent (0 before two)."""
        if len(self.sent_at) < 2 or self.sent_at[-1] <= self.sent_at[0]:
            return 0.0
        return (len(self.sent_at) - 1) / (self.sent_at[-1] - self.sent_at[0])

    def report(self, what: str) -> str:
        line = f"{what}: {self.sent} requests through the service proxy, {len(self.failures)} failed"
        print(f"\n{line}")
        return line


def proxy_for(api_client, namespace: str, runtime: str) -> Proxy:
    model = catalog()[MODELS[runtime]]
    port = model["smoke"].get("port") or {"triton": "http", "torchserve": "inference", "custom_python": "http"}[runtime]
    return Proxy(api_client, namespace, MODELS[runtime], port)


def node_containers(namespace: str) -> List[str]:
    """The containers of the namespace's pods on the real node's containerd (ctr, its k8s.io namespace)."""
    import pytest

    cache = Path(os.environ.get("AI_SERVING_CACHE_DIR", Path.home() / ".cache" / "creativeflow-ai-serving"))
    cluster = os.environ.get("AI_SERVING_CLUSTER_NAME", "ai-serving")
    sock = cache / "kwok" / "clusters" / cluster / "node" / "containerd" / "containerd.sock"
    if not sock.exists():
        pytest.fail(f"no containerd socket at {sock}: is the real node up (cluster/cluster.sh up)?")
    proc = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "containers", "ls", "--quiet"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True)
    out = []
    for cid in proc.stdout.split():
        info = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "containers", "info", cid],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if info.returncode == 0 and json.loads(info.stdout).get("Labels", {}).get(
                "io.kubernetes.pod.namespace") == namespace:
            out.append(cid)
    return out


def sh(*args: Any, env: Optional[Dict[str, str]] = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """A command in the repository's root that must succeed; its output captured."""
    proc = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})}, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


def pod_memory(uid: str) -> str:
    """The pod's memory cgroup (v1, cgroupfs driver here): usage now and the peak."""
    root = Path("/sys/fs/cgroup/memory")
    found = list(root.glob(f"kubepods*/**/pod{uid}")) or list(root.glob(f"kubepods*/pod{uid}"))
    if not found:
        return f"no memory cgroup for pod {uid} under {root}"
    usage = int((found[0] / "memory.usage_in_bytes").read_text())
    peak = int((found[0] / "memory.max_usage_in_bytes").read_text())
    cache = next((int(line.split()[1]) for line in (found[0] / "memory.stat").read_text().splitlines()
                  if line.startswith("total_cache ")), 0)
    return f"{usage / 2**20:.0f} MiB now ({(usage - cache) / 2**20:.0f} MiB without page cache), peak {peak / 2**20:.0f} MiB"


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)
