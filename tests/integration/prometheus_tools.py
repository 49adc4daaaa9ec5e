"""A real Prometheus for the integration tests: Debian's ``prometheus`` (hack/deps.sh) as a host process.

:func:`host_prometheus` starts it with a data directory of its own under a temporary directory, listening on
127.0.0.1 on a free port, scraping every ``scrape_interval`` the pods of one namespace that Kubernetes service
discovery (role pod, the test cluster's kubeconfig) finds with a container port of the given name, with the labels
the canary analysis selects by (``namespace``, ``pod``). The host reaches the real node's pods at their addresses on
the node's bridge. At the end the process is stopped and its directory removed: nothing is left behind.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_config(kubeconfig: str, namespace: str, port_name: str, metrics_path: str,
                  scrape_interval: str) -> Dict[str, Any]:
    """The Prometheus configuration: one job, the namespace's pods by their container port named ``port_name``."""
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                   "evaluation_interval": "1m"},
        "scrape_configs": [{
            "job_name": "model-pods",
            "metrics_path": metrics_path,
            "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": kubeconfig,
                                       "namespaces": {"names": [namespace]}}],
            "relabel_configs": [
                # One target per container port: the metrics port only (a second port would be a second series).
                {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port_name,
                 "action": "keep"},
                # The labels the analysis selects by, as the Prometheus operator's ServiceMonitor sets them.
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            ],
        }],
    }


class HostPrometheus:
    """A started Prometheus: its URL, its HTTP API (queries) and its version."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path, version: str) -> None:
        self.url, self.process, self.log, self.version = url, process, log, version

    def get(self, path: str, timeout: float = 10) -> Dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:  # noqa: S310 (our own 127.0.0.1)
            return json.loads(response.read().decode())

    def query(self, promql: str) -> List[Dict[str, Any]]:
        """An instant query's result (a vector)."""
        answer = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert answer.get("status") == "success", answer
        return answer["data"]["result"]

    def scraped_pods(self, namespace: str) -> List[str]:
        """The pods whose last scrape succeeded (``up`` is 1)."""
        return sorted(item["metric"]["pod"] for item in self.query(f'up{{namespace="{namespace}"}} == 1'))

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def host_prometheus(kubeconfig: str, namespace: str, port_name: str, metrics_path: str,
                    scrape_interval: str = "1s") -> Iterator[HostPrometheus]:
    """A Prometheus scraping ``namespace``'s pods (see the module's docstring); stopped and removed at the end."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: run hack/deps.sh (Debian's package prometheus)")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False,
                             stdin=subprocess.DEVNULL).stdout.splitlines()[:1]
    workdir = Path(tempfile.mkdtemp(prefix="ai-serving-prometheus-"))
    process: Optional[subprocess.Popen] = None
    try:
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(kubeconfig, namespace, port_name, metrics_path,
                                                       scrape_interval)))
        log = workdir / "prometheus.log"
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        server = HostPrometheus(f"http://127.0.0.1:{port}", process, log, version[0] if version else "?")
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.url + "/-/ready", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus at {server.url} not ready within 60 s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
