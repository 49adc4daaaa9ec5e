"""Benchmark of an expensive model: ours vs MLServer vs KServe, REST and gRPC, against the limit.

The workload of issue 17: a tree ensemble (scikit-learn RandomForestClassifier, 40 trees, trained
here) whose predict has a large fixed cost per call, requests of 8 rows x 16 features, 32 concurrent
clients, every server pinned to one core (``--server-cpu``) and the load generator to another
(``--client-cpu``). Reported side by side, per round and as medians:

- ours (custom_server, default settings: ``BATCH_POLICY=cost``), MLServer (``mlserver-sklearn``) and
  KServe's ModelServer (``kserve_iris.py``), each over REST (v2 JSON) and gRPC (``ModelInfer`` with
  ``raw_input_contents``, as tritonclient sends it), all with their default settings;
- the ceilings: a no-op FastAPI/uvicorn endpoint (REST) and a no-op grpc.aio ModelInfer (gRPC);
- for ours and the ceilings, the server's CPU per request and how busy its core was (``/proc``): where
  the time goes, comparable even on a loaded machine;
- the model's cost per call against batch size, measured here on the server core, and its best
  amortized cost per request;
- the limit of each protocol on one core: ``1 / (1 / ceiling + best amortized cost per request)``, the best
  among calls of at most one request per client (the most the clients can have waiting),
  our share of it, and our ratio to the best peer (goals: >= 80 % of the limit, >= 2x the best peer,
  p99 no worse).

One load generator for every target: h2load (HTTP/1.1 for REST, h2c for gRPC), ``-c32 -m1``, its
per-request log giving p50/p99. h2load sees gRPC errors as HTTP 200 with an error trailer: a target
whose responses carried less data than the checked answer's size counts the missing ones as errors.

    apt-get install -y nghttp2-client
    python3 -m venv ~/.cache/creativeflow-ai-serving/custom-server-bench-venv
    ~/.cache/creativeflow-ai-serving/custom-server-bench-venv/bin/pip install -r custom_server/bench/requirements.txt
    # run with the server's own venv (hack/test.sh server makes it); the peers come from the bench venv
    ~/.cache/creativeflow-ai-serving/custom-server-venv-<key>/bin/python custom_server/bench/bench_cost.py \\
        --peers-venv ~/.cache/creativeflow-ai-serving/custom-server-bench-venv --rounds 3 --duration 10

Absolute numbers drift on shared machines: compare within a round, and rerun on a quiet machine.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROWS, FEATURES, TREES = 8, 16, 40
MODEL = "trees"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One server process: its command, and where it answers REST and gRPC."""

    key: str
    command: list[str]
    http_port: int = 0
    grpc_port: int = 0
    ready_path: str = ""
    env: dict[str, str] = field(default_factory=dict)
    pid: int = 0  # once started


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far; 0.0 if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """One measured endpoint."""

    name: str
    server: str
    protocol: str  # rest or grpc
    kind: str  # ours, peer or ceiling
    results: list[dict[str, float]] = field(default_factory=list)
    answer_bytes: int = 0


def train(work: Path) -> np.ndarray:
    """The model (joblib) and one request's rows."""
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    features, labels = make_classification(
        n_samples=4000, n_features=FEATURES, n_informative=8, n_classes=3, random_state=0
    )
    model = RandomForestClassifier(n_estimators=TREES, max_depth=8, random_state=0).fit(features, labels)
    joblib.dump(model, work / f"{MODEL}.joblib")
    return features[:ROWS]


def cost_curve(work: Path, rows: np.ndarray, cpu: int) -> dict[int, float]:
    """Seconds per model call by requests per call (8 rows each), on the server core: the median of 7."""
    import joblib

    model = joblib.load(work / f"{MODEL}.joblib")
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        curve = {}
        for requests in (1, 2, 4, 8, 16, 32, 64, 128):
            batch = np.tile(rows, (requests, 1))
            model.predict(batch)
            times = []
            for _ in range(7):
                started = time.perf_counter()
                model.predict(batch)
                times.append(time.perf_counter() - started)
            curve[requests] = statistics.median(times)
    finally:
        os.sched_setaffinity(0, saved)
    return curve


def rest_body(rows: np.ndarray) -> bytes:
    tensor = {"name": "input-0", "datatype": "FP64", "shape": list(rows.shape), "data": rows.reshape(-1).tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def grpc_message(rows: np.ndarray) -> bytes:
    from custom_server.grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input-0", datatype="FP64", shape=list(rows.shape))
    request.raw_input_contents.append(rows.astype("<f8").tobytes())
    return request.SerializeToString()


def servers(work: Path, ours_python: str, peers_bin: Path, cpu: int) -> dict[str, Server]:
    pin = ["taskset", "-c", str(cpu)]
    model_path = str(work / f"{MODEL}.joblib")
    found: dict[str, Server] = {}
    http, grpc_port = free_port(), free_port()
    found["ours"] = Server(
        "ours",
        [
            *pin,
            ours_python,
            "-m",
            "custom_server",
            "--model-path",
            model_path,
            "--model-name",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(http),
            "--grpc-port",
            str(grpc_port),
        ],
        http,
        grpc_port,
        f"/v2/models/{MODEL}/ready",
    )
    directory = work / "mlserver"
    (directory / MODEL).mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, directory / MODEL / "model.joblib")
    (directory / MODEL / "model-settings.json").write_text(
        json.dumps(
            {"name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}
        )
    )
    http, grpc_port = free_port(), free_port()
    (directory / "settings.json").write_text(
        json.dumps({"http_port": http, "grpc_port": grpc_port, "metrics_port": free_port(), "host": "127.0.0.1"})
    )
    found["mlserver"] = Server(
        "mlserver",
        [*pin, str(peers_bin / "mlserver"), "start", str(directory)],
        http,
        grpc_port,
        f"/v2/models/{MODEL}/ready",
    )
    http, grpc_port = free_port(), free_port()
    found["kserve"] = Server(
        "kserve",
        [
            *pin,
            str(peers_bin / "python"),
            str(HERE / "kserve_iris.py"),
            "--model_name",
            MODEL,
            "--model_path",
            model_path,
            "--http_port",
            str(http),
            "--grpc_port",
            str(grpc_port),
        ],
        http,
        grpc_port,
        f"/v2/models/{MODEL}/ready",
    )
    http = free_port()
    found["ceiling-rest"] = Server(
        "ceiling-rest",
        [
            *pin,
            str(peers_bin / "python"),
            "-m",
            "uvicorn",
            "--factory",
            "noop_app:create",
            "--port",
            str(http),
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
            "--no-access-log",
            "--app-dir",
            str(HERE),
        ],
        http,
        0,
        "/docs",
    )
    grpc_port = free_port()
    found["ceiling-grpc"] = Server(
        "ceiling-grpc", [*pin, ours_python, str(HERE / "noop_grpc.py"), "--port", str(grpc_port)], 0, grpc_port
    )
    return found


def grpc_call(port: int, message: bytes, timeout: float = 10) -> bytes:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        return call(message, timeout=timeout)  # type: ignore[no-any-return]


@contextlib.contextmanager
def serving(server: Server, work: Path, message: bytes) -> Iterator[None]:
    log = (work / f"{server.key}.log").open("ab")
    process = subprocess.Popen(
        server.command,
        env={**os.environ, **server.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
        start_new_session=True,
    )
    server.pid = process.pid  # taskset execs the server: the same process
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{server.key} exited with {process.returncode}; see {log.name}")
            with contextlib.suppress(Exception):
                if server.http_port:
                    url = f"http://127.0.0.1:{server.http_port}{server.ready_path}"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            break
                else:
                    grpc_call(server.grpc_port, message, timeout=2)
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server.key} not ready in 180 s; see {log.name}")
            time.sleep(0.3)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def check(target: Target, server: Server, body: bytes, message: bytes, expected: list[int]) -> None:
    """One request: the right classes (ceilings: any answer); remembers the answer's size."""
    if target.protocol == "rest":
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.http_port}/v2/models/{MODEL}/infer",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        predicted = answer["outputs"][0]["data"]
    else:
        from custom_server.grpc import grpc_predict_v2_pb2 as pb

        raw = grpc_call(server.grpc_port, message, timeout=30)
        target.answer_bytes = len(raw) + 5  # the gRPC frame
        response = pb.ModelInferResponse.FromString(raw)
        output = response.outputs[0]
        if response.raw_output_contents:
            dtype = {"INT64": "<i8", "INT32": "<i4", "FP64": "<f8", "FP32": "<f4"}[output.datatype]
            predicted = np.frombuffer(response.raw_output_contents[0], dtype=dtype).tolist()
        else:
            predicted = list(output.contents.int64_contents) or list(output.contents.int_contents)
    if target.kind != "ceiling" and [int(value) for value in predicted] != expected:
        raise AssertionError(f"{target.name} answered {predicted}, expected {expected}")


_BATCH_SERIES = {
    "requests": "custom_server_batch_requests",
    "rows": "custom_server_batch_size",
    "seconds": "custom_server_inference_duration_seconds",
}


def batch_totals(server: Server) -> dict[str, float]:
    """Our server's model calls so far (its /metrics): calls, and the sums of requests, rows and seconds."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=30) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for key, series in _BATCH_SERIES.items():
        for suffix in ("sum", "count"):
            found = re.search(rf"^{series}_{suffix}{{[^}}]*}} (\S+)$", text, re.MULTILINE)
            totals[f"{key}_{suffix}"] = float(found.group(1)) if found else 0.0
    return totals


def batches_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Requests and rows per model call, and ms per call, between two ``batch_totals``."""
    calls = after["requests_count"] - before["requests_count"]
    if calls <= 0:
        return {}
    return {
        "requests_per_call": (after["requests_sum"] - before["requests_sum"]) / calls,
        "rows_per_call": (after["rows_sum"] - before["rows_sum"]) / calls,
        "ms_per_call": 1000 * (after["seconds_sum"] - before["seconds_sum"]) / calls,
    }


def h2load(
    target: Target, server: Server, body_file: Path, duration: int, clients: int, cpu: int, work: Path
) -> dict[str, float]:
    before = batch_totals(server) if target.kind == "ours" else None
    cpu_before = cpu_seconds(server.pid) if target.kind != "peer" else 0.0
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    command = [
        "taskset",
        "-c",
        str(cpu),
        "h2load",
        f"-c{clients}",
        "-m1",
        f"-D{duration}",
        "--warm-up-time=1",
        "-d",
        str(body_file),
        "--log-file",
        str(log),
    ]
    if target.protocol == "rest":
        command += [
            "--h1",
            "-H",
            "content-type: application/json",
            f"http://127.0.0.1:{server.http_port}/v2/models/{MODEL}/infer",
        ]
    else:
        command += [
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer",
        ]
    wall = time.monotonic()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - wall
    cpu_used = cpu_seconds(server.pid) - cpu_before if target.kind != "peer" else 0.0
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) done", output).group(1))  # type: ignore[union-attr]
    succeeded = int(re.search(r"(\d+) succeeded", output).group(1))  # type: ignore[union-attr]
    errors = float(done - succeeded)
    if target.protocol == "grpc" and target.answer_bytes and done:
        data = int(re.search(r"\((\d+)\) data", output).group(1))  # type: ignore[union-attr]
        errors += max(0.0, done - data / target.answer_bytes)
    latencies = sorted(
        int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line.count("\t") == 2
    )
    if not latencies:
        latencies = [float("nan")]
    result = {
        "rps": rps,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": round(errors),
        "load": os.getloadavg()[0],
    }
    if cpu_used > 0 and rps > 0:
        # How busy the server's core was over the run (h2load's warm-up included), and so its CPU per
        # request: where the time goes, ours against the ceilings, however loaded the machine is.
        result["busy"] = cpu_used / wall
        result["cpu_us"] = 1e6 * result["busy"] / rps
    if before is not None:  # (includes the warm-up second h2load does not count)
        result.update(batches_between(before, batch_totals(server)))
    return result


def median_of(target: Target, key: str) -> float:
    return statistics.median(result[key] for result in target.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--peers-venv", type=Path, default=Path.home() / ".cache/creativeflow-ai-serving/custom-server-bench-venv"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument(
        "--only", default="", help="comma-separated: ours, mlserver, kserve, ceiling-rest, ceiling-grpc"
    )
    args = parser.parse_args(argv)
    for tool in ("h2load", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is not on PATH (h2load: apt-get install -y nghttp2-client)", file=sys.stderr)
            return 2
    peers_bin = args.peers_venv / "bin"
    if not (peers_bin / "mlserver").exists():
        print(f"no MLServer in {args.peers_venv}: install bench/requirements.txt there", file=sys.stderr)
        return 2

    targets = [
        Target("ours REST (custom_server)", "ours", "rest", "ours"),
        Target("ours gRPC (custom_server)", "ours", "grpc", "ours"),
        Target("MLServer REST", "mlserver", "rest", "peer"),
        Target("MLServer gRPC", "mlserver", "grpc", "peer"),
        Target("KServe REST", "kserve", "rest", "peer"),
        Target("KServe gRPC", "kserve", "grpc", "peer"),
        Target("ceiling REST (no-op FastAPI)", "ceiling-rest", "rest", "ceiling"),
        Target("ceiling gRPC (no-op grpc.aio)", "ceiling-grpc", "grpc", "ceiling"),
    ]
    with tempfile.TemporaryDirectory(prefix="custom-server-bench-cost-") as directory, contextlib.ExitStack() as stack:
        work = Path(directory)
        rows = train(work)
        import joblib

        expected = [int(value) for value in joblib.load(work / f"{MODEL}.joblib").predict(rows)]
        curve = cost_curve(work, rows, args.server_cpu)
        body, message = rest_body(rows), grpc_message(rows)
        (work / "rest.body").write_bytes(body)
        (work / "grpc.body").write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
        started = servers(work, sys.executable, peers_bin, args.server_cpu)
        if args.only:
            wanted = {name.strip() for name in args.only.split(",")}
            started = {key: server for key, server in started.items() if key in wanted}
        for key, server in list(started.items()):
            try:
                stack.enter_context(serving(server, work, message))
            except Exception as exc:  # one peer failing must not hide the others
                print(f"  {key}: FAILED TO START: {exc}", flush=True)
                del started[key]
        targets = [target for target in targets if target.server in started]
        for target in list(targets):
            try:
                check(target, started[target.server], body, message, expected)
            except Exception as exc:
                print(f"  {target.name}: FAILED THE CHECK: {exc!r}", flush=True)
                targets.remove(target)
        for target in targets:  # warm-up
            h2load(
                target, started[target.server], work / f"{target.protocol}.body", 2, args.clients, args.client_cpu, work
            )
        for round_index in range(args.rounds):
            for target in targets:
                result = h2load(
                    target,
                    started[target.server],
                    work / f"{target.protocol}.body",
                    args.duration,
                    args.clients,
                    args.client_cpu,
                    work,
                )
                target.results.append(result)
                batches = (
                    f", {result['requests_per_call']:.1f} requests ({result['rows_per_call']:.0f} rows) per model"
                    f" call, {result['ms_per_call']:.1f} ms per call"
                    if "requests_per_call" in result
                    else ""
                )
                if "cpu_us" in result:
                    batches += f", server CPU {result['cpu_us']:.0f} us/request ({100 * result['busy']:.0f}% busy)"
                print(
                    f"  round {round_index + 1}: {target.name}: {result['rps']:.0f} req/s, p50 {result['p50']:.2f}"
                    f" ms, p99 {result['p99']:.2f} ms, errors {result['errors']:.0f}{batches}; load average"
                    f" {result['load']:.1f}",
                    flush=True,
                )
    report(targets, curve, args)
    return 0


def report(targets: list[Target], curve: dict[int, float], args: argparse.Namespace) -> None:
    print()
    print(f"model: RandomForestClassifier({TREES} trees, depth 8), requests of {ROWS} rows x {FEATURES} features")
    print("model cost per call on the server core (requests per call: ms per call, ms per request):")
    print("  " + ", ".join(f"{n}: {1000 * s:.2f}, {1000 * s / n:.3f}" for n, s in curve.items()))
    # A call merges at most one request per client (h2load -m1): bigger calls are out of this workload's reach.
    reachable = {requests: seconds for requests, seconds in curve.items() if requests <= args.clients}
    amortized = min(seconds / requests for requests, seconds in reachable.items())
    unbounded = min(seconds / requests for requests, seconds in curve.items())
    print(
        f"best amortized model cost per request: {1000 * amortized:.3f} ms (calls of at most {args.clients} requests,"
        f" one per client); {1000 * unbounded:.3f} ms with any call size"
    )
    print()
    print(
        f"h2load -c{args.clients} -m1 -D{args.duration}, {args.rounds} round(s), medians; server on CPU "
        f"{args.server_cpu}, h2load on CPU {args.client_cpu}, {os.cpu_count()} CPUs"
    )
    print(f"{'target':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'load':>5}  batches")
    for target in targets:
        if target.results:
            batches = ""
            if all("requests_per_call" in result for result in target.results):
                batches = (
                    f"  {median_of(target, 'requests_per_call'):.1f} requests/call,"
                    f" {median_of(target, 'ms_per_call'):.1f} ms/call"
                )
            if all("cpu_us" in result for result in target.results):
                busy = 100 * median_of(target, "busy")
                batches += f"  CPU {median_of(target, 'cpu_us'):.0f} us/request, {busy:.0f}% busy"
            print(
                f"{target.name:34} {median_of(target, 'rps'):8.0f} {median_of(target, 'p50'):8.2f} "
                f"{median_of(target, 'p99'):8.2f} {sum(r['errors'] for r in target.results):7.0f}"
                f" {median_of(target, 'load'):5.1f}{batches}"
            )
    print()
    for protocol in ("rest", "grpc"):
        mine = [t for t in targets if t.protocol == protocol and t.kind == "ours" and t.results]
        peers = [t for t in targets if t.protocol == protocol and t.kind == "peer" and t.results]
        ceilings = [t for t in targets if t.protocol == protocol and t.kind == "ceiling" and t.results]
        if not mine:
            continue
        ours = mine[0]
        line = f"{protocol.upper()}: ours {median_of(ours, 'rps'):.0f} req/s"
        if ceilings:
            ceiling = median_of(ceilings[0], "rps")
            limit = 1 / (1 / ceiling + amortized)
            share = median_of(ours, "rps") / limit
            line += (
                f"; limit {limit:.0f} req/s (ceiling {ceiling:.0f} req/s, model {1000 * amortized:.3f} ms/request)"
                f"; ours = {100 * share:.0f}% of the limit (goal >= 80%)"
            )
        if peers:
            best = max(peers, key=lambda t: median_of(t, "rps"))
            ratio = median_of(ours, "rps") / median_of(best, "rps")
            p99 = "no worse" if median_of(ours, "p99") <= median_of(best, "p99") else "WORSE"
            line += (
                f"; best peer {best.name} {median_of(best, 'rps'):.0f} req/s: ours/best = {ratio:.2f}x "
                f"(goal >= 2x), p99 {median_of(ours, 'p99'):.1f} vs {median_of(best, 'p99'):.1f} ms ({p99})"
            )
        print(line)


if __name__ == "__main__":
    sys.exit(main())
