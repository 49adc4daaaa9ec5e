"""Benchmark: our server vs Seldon MLServer vs KServe's Python ModelServer, and a no-op ceiling.

Same scikit-learn model (iris LogisticRegression, trained here), same request (Open Inference
Protocol v2 JSON, one row), same load generator (wrk) and concurrency. All servers are started
first (idle while not measured); each round measures every target once, back to back, so the
ratio ours/peer within a round sees the same machine load. Reported: medians over rounds.
Absolute numbers drift on shared machines: read the ratios.

    ~/.cache/creativeflow-ai-serving/custom-server-bench-venv/bin/python custom_server/bench/bench.py

Needs ``wrk`` on PATH and the bench venv (``bench/requirements.txt``). Options: ``--duration``,
``--connections``, ``--rounds``, ``--only name,name``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROW = [5.1, 3.5, 1.4, 0.2]
V2_BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]})
V1_BODY = json.dumps({"instances": [ROW]})
BASELINE = "ours (custom_server, 1 worker)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One server process to start."""

    name: str
    start: Callable[[Path, int], tuple[list[str], dict[str, str]]]
    ready_path: str
    check_path: str
    url: str = ""


@dataclass
class Target:
    """One measured endpoint of a server."""

    name: str
    server: str
    path: str
    body: str = V2_BODY
    results: list[dict[str, float]] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


#: The Python our server runs with (``--ours-python``): its own venv, as the peers pin older
#: grpcio/protobuf than it needs.
OURS_PYTHON = sys.executable


def _python() -> str:
    return sys.executable


def ours(workers: int) -> Callable[[Path, int], tuple[list[str], dict[str, str]]]:
    def start(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
        command = [
            OURS_PYTHON,
            "-m",
            "custom_server",
            "--model-path",
            str(work / "iris.joblib"),
            "--model-name",
            "iris",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--workers",
            str(workers),
            # a port of its own: MLServer's gRPC default is 8081 too
            "--grpc-port",
            str(free_port()),
        ]
        return command, {}

    return start


def mlserver(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    directory = work / "mlserver"
    model_dir = directory / "iris"
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "iris.joblib", model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
            }
        )
    )
    (directory / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "host": "127.0.0.1",
            }
        )
    )
    return [str(Path(_python()).parent / "mlserver"), "start", str(directory)], {}


def kserve(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    command = [
        _python(),
        str(HERE / "kserve_iris.py"),
        "--model_name",
        "iris",
        "--model_path",
        str(work / "iris.joblib"),
        "--http_port",
        str(port),
        "--grpc_port",
        str(free_port()),
    ]
    return command, {}


def ceiling(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    command = [
        _python(),
        "-m",
        "uvicorn",
        "--factory",
        "noop_app:create",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
        "--no-access-log",
        "--app-dir",
        str(HERE),
    ]
    return command, {}


@contextlib.contextmanager
def serving(target: Server, work: Path) -> Iterator[str]:
    port = free_port()
    command, extra_env = target.start(work, port)
    env = {**os.environ, **extra_env}
    log = (work / f"{target.name.split(',')[0]}.log").open("ab")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target.name} exited with {process.returncode}; see {log.name}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
                with urllib.request.urlopen(url + target.ready_path, timeout=2) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target.name} not ready in 120 s")
            time.sleep(0.2)
        check = urllib.request.Request(
            url + target.check_path,
            data=V2_BODY.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(check, timeout=10) as response:
            answer = json.loads(response.read())
        assert "0" in json.dumps(answer), answer  # setosa: class 0
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, body: str, duration: int, connections: int, work: Path) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"\s50%\s+(\S+)", output).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\s99%\s+(\S+)", output).group(1)),  # type: ignore[union-attr]
        "errors": 0.0,
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if non_2xx:
        result["errors"] += float(non_2xx.group(1))
    if socket_errors:
        result["errors"] += sum(float(value) for value in socket_errors.groups())
    return result


def train(work: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(features, target), work / "iris.joblib")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated servers: ours-2, mlserver, kserve, ceiling")
    parser.add_argument("--ours-python", default=sys.executable, help="the Python with custom_server installed")
    args = parser.parse_args(argv)
    global OURS_PYTHON
    OURS_PYTHON = args.ours_python
    if shutil.which("wrk") is None:
        print("wrk is not on PATH: apt-get install -y wrk", file=sys.stderr)
        return 2

    servers = {
        "ours-1": Server("ours, 1 worker", ours(1), "/v2/health/ready", "/v2/models/iris/infer"),
        "ours-2": Server("ours, 2 workers", ours(2), "/v2/health/ready", "/v2/models/iris/infer"),
        "mlserver": Server("MLServer", mlserver, "/v2/models/iris/ready", "/v2/models/iris/infer"),
        "kserve": Server("KServe", kserve, "/v2/models/iris/ready", "/v2/models/iris/infer"),
        "ceiling": Server("ceiling", ceiling, "/docs", "/v2/models/iris/infer"),
    }
    targets = [
        Target(BASELINE, "ours-1", "/v2/models/iris/infer"),
        Target("ours (custom_server, 2 workers)", "ours-2", "/v2/models/iris/infer"),
        Target("MLServer 1.7.1 (mlserver-sklearn)", "mlserver", "/v2/models/iris/infer"),
        Target("KServe 0.16.0 ModelServer", "kserve", "/v2/models/iris/infer"),
        Target("ceiling (no-op FastAPI/uvicorn)", "ceiling", "/v2/models/iris/infer"),
        Target("ours /predict (v1-style body)", "ours-1", "/predict", V1_BODY),
        Target("KServe /v1/models/iris:predict", "kserve", "/v1/models/iris:predict", V1_BODY),
    ]
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        servers = {key: server for key, server in servers.items() if key in wanted or key == "ours-1"}
        targets = [t for t in targets if t.server in servers]
    with tempfile.TemporaryDirectory(prefix="custom-server-bench-") as directory, contextlib.ExitStack() as stack:
        work = Path(directory)
        train(work)
        for key, server in list(servers.items()):
            try:
                server.url = stack.enter_context(serving(server, work))
            except Exception as exc:  # report and go on: one peer failing must not hide the others
                print(f"  {server.name}: FAILED TO START: {exc}", flush=True)
                del servers[key]
        targets = [t for t in targets if t.server in servers]
        for target in targets:  # warm-up
            wrk(servers[target.server].url + target.path, target.body, 3, args.connections, work)
        for round_index in range(args.rounds):
            baseline: float | None = None
            for target in targets:
                result = wrk(
                    servers[target.server].url + target.path, target.body, args.duration, args.connections, work
                )
                target.results.append(result)
                if target.name == BASELINE:
                    baseline = result["rps"]
                if baseline:
                    target.ratios.append(baseline / result["rps"])
                print(
                    f"  round {round_index + 1}: {target.name}: {result['rps']:.0f} req/s, "
                    f"p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms, errors {result['errors']:.0f}",
                    flush=True,
                )
    report(targets, args)
    return 0


def report(targets: list[Target], args: argparse.Namespace) -> None:
    print()
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s per run, {args.rounds} rounds (every target once per "
        f"round, back to back), median per target; {os.cpu_count()} CPUs shared with the load generator"
    )
    print(f"{'server':40} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ours/it req/s':>14}")
    for target in targets:
        if not target.results:
            continue
        values = {key: statistics.median(result[key] for result in target.results) for key in target.results[0]}
        ratio = f"{statistics.median(target.ratios):.2f}x" if target.ratios else "-"
        figures = f"{values['rps']:8.0f} {values['p50']:8.2f} {values['p99']:8.2f} {values['errors']:7.0f}"
        print(f"{target.name:40} {figures} {ratio:>14}")
    print("ours/it: median over rounds of (ours, 1 worker, v2 req/s) / (its req/s) in the same round")


if __name__ == "__main__":
    sys.exit(main())
