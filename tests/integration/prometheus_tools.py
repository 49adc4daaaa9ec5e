"""A real Prometheus for the integration tests: Debian's ``prometheus`` (hack/deps.sh) as a host process.

:func:`host_prometheus` starts it with a data directory of its own under a temporary directory, listening on
127.0.0.1 on a free port, scraping every ``scrape_interval`` the pods of one namespace that have a container port of
the given name, with the labels the canary analysis selects by (``namespace``, ``pod``). Debian builds Prometheus
without Kubernetes service discovery (removed since its 1.5.0 package: "the insane amount of dependencies in their
client library", NEWS.Debian), so the targets come from :class:`PodDiscovery`: Prometheus' HTTP service discovery
(``http_sd_configs``, refreshed every 2 s) asks this process, which lists the namespace's pods on the API server
and answers what ``kubernetes_sd_configs`` role pod with a keep on the port's name and those two labels would give.
The host reaches the real node's pods at their addresses on the node's bridge. At the end the process and the
discovery stop and the directory is removed: nothing is left behind.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def target_groups(pods: List[Any], port_name: str) -> List[Dict[str, Any]]:
    """Prometheus' HTTP service discovery answer for ``pods`` (kubernetes.client V1Pod): one target per pod with an
    address, at its container port named ``port_name``, labelled ``namespace`` and ``pod`` (kubernetes_sd_configs
    role pod keeps finished pods out the same way)."""
    groups = []
    for pod in pods:
        if not pod.status.pod_ip or pod.status.phase in ("Succeeded", "Failed"):
            continue
        ports = [port.container_port for container in pod.spec.containers for port in container.ports or []
                 if port.name == port_name]
        for number in ports:
            groups.append({"targets": [f"{pod.status.pod_ip}:{number}"],
                           "labels": {"namespace": pod.metadata.namespace, "pod": pod.metadata.name}})
    return groups


class PodDiscovery:
    """An HTTP service discovery endpoint on 127.0.0.1 (a thread of the test process): the namespace's pods, listed
    on the API server at each of Prometheus' refreshes."""

    def __init__(self, kubeconfig: str, namespace: str, port_name: str) -> None:
        from kubernetes import client, config

        core_v1 = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
        errors: List[str] = []
        late: List[float] = []
        self.errors, self.late = errors, late

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                try:
                    body = json.dumps(target_groups(core_v1.list_namespaced_pod(namespace).items, port_name)).encode()
                    self.send_response(200)
                except Exception as exc:  # the API server restarting: Prometheus keeps the last targets
                    errors.append(f"{type(exc).__name__}: {exc}")
                    body = str(exc).encode()
                    self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # Prometheus gave up (its refresh interval)
                    late.append(time.monotonic())

            def log_message(self, *args: Any) -> None:  # one request a second: not printed
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/targets"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "PodDiscovery":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def scrape_config(discovery_url: str, metrics_path: str, scrape_interval: str) -> Dict[str, Any]:
    """The Prometheus configuration: one job, the targets of the discovery at ``discovery_url``."""
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                   "evaluation_interval": "1m"},
        "scrape_configs": [{
            "job_name": "model-pods",
            "metrics_path": metrics_path,
            # Its refresh interval is also its request timeout: 2 s lets a busy API server answer the listing. (The
            # discovery manager passes new targets on every 5 s at most anyway.)
            "http_sd_configs": [{"url": discovery_url, "refresh_interval": "2s"}],
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
        with PodDiscovery(kubeconfig, namespace, port_name) as discovery:
            config = workdir / "prometheus.yml"
            config.write_text(yaml.safe_dump(scrape_config(discovery.url, metrics_path, scrape_interval)))
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
            try:
                yield server
            finally:
                _stop(process)
                if discovery.errors or discovery.late:
                    print(f"pod discovery: {len(discovery.errors)} failed listing(s) {discovery.errors[-1:]}, "
                          f"{len(discovery.late)} answer(s) after Prometheus' timeout")
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
