"""Run the real server (``python -m custom_server``) as a subprocess on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

#: Settings variables stripped from the inherited environment so tests see only what they set.
_SETTINGS_VARS = (
    "MODEL_PATH",
    "MODEL_NAME",
    "MODEL_VERSION",
    "MODEL_FORMAT",
    "MODEL_CLASS",
    "DEVICE",
    "INTRA_OP_THREADS",
    "HOST",
    "PORT",
    "WORKERS",
    "MAX_REQUEST_BYTES",
    "CORS_ALLOW_ORIGINS",
    "API_KEY",
    "DOCS_ENABLED",
    "TIMEOUT_KEEP_ALIVE_S",
    "TIMEOUT_HEADERS_S",
    "MAX_HEADER_BYTES",
    "MAX_HEADERS",
    "MAX_PARSING_BYTES",
    "GRPC_PORT",
    "MAX_BATCH_SIZE",
    "BATCH_POLICY",
    "MAX_LATENCY_MS",
    "MAX_BATCH_DELAY_MS",
    "MAX_QUEUE_SIZE",
    "INFERENCE_THREADS",
    "SHUTDOWN_DELAY_S",
    "GRACEFUL_TIMEOUT_S",
    "LOG_LEVEL",
    "ACCESS_LOG",
    "PROMETHEUS_MULTIPROC_DIR",
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server process; ``logs()`` parses its JSON log lines."""

    def __init__(self, env: Mapping[str, str], log_path: Path, args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {key: value for key, value in os.environ.items() if key not in _SETTINGS_VARS}
        self.grpc_port = free_port()
        self._env.update({"HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", "GRPC_PORT": str(self.grpc_port)})
        self._env.update(env)
        self.grpc_port = int(self._env["GRPC_PORT"])
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self._args = [sys.executable, "-m", "custom_server", "--port", str(self.port), *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready: bool = True, timeout: float = 60) -> ServerProcess:
        """Start and wait until live (and ready, unless ``ready`` is False)."""
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(self._args, env=self._env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        path = "/health/ready" if ready else "/health/live"
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(path).status_code == 200:
                        return self
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server not {'ready' if ready else 'live'} in {timeout} s:\n{self.log_text()}")

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for this server."""
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send a signal to the server."""
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the process to end; its exit status."""
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log_text(self) -> str:
        """The raw output so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (non-JSON lines fail the test: every line must be JSON)."""
        lines = [line for line in self.log_text().splitlines() if line.strip()]
        return [json.loads(line) for line in lines]

    def wait_for_log(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        """The first log entry matching ``predicate`` (waiting for it to be written)."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.logs():
                if predicate(entry):
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no such log line in:\n{self.log_text()}")
            time.sleep(0.05)


@contextlib.contextmanager
def running(
    env: Mapping[str, str], log_path: Path, *, ready: bool = True, args: Sequence[str] = ()
) -> Iterator[ServerProcess]:
    """A started server, stopped afterwards."""
    server = ServerProcess(env, log_path, args).start(ready=ready)
    try:
        yield server
    finally:
        server.stop()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric_name, _, label_text = series.partition("{")
        if metric_name != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        found = {key: raw.strip('"') for key, raw in found.items()}
        if all(found.get(key) == want for key, want in labels.items()):
            return float(value)
    return 0.0
