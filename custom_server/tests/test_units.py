"""In-process checks of the pure parts: settings, flags, tensors, logs, the README's settings table."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from custom_server.batching import batch_key
from custom_server.cli import format_validation_error, main, parse_settings
from custom_server.errors import InvalidInput
from custom_server.logs import REQUEST_ID, JsonFormatter
from custom_server.rest.codec import location, parse_infer
from custom_server.settings import ModelFormat, Settings
from custom_server.tensors import (
    DATATYPES,
    datatype_of,
    decode_binary_data,
    decode_json_data,
    encode_binary_data,
    encode_json_data,
)

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/m/model.joblib", ModelFormat.SKLEARN),
        ("/m/model.PKL", ModelFormat.SKLEARN),
        ("/m/model.onnx", ModelFormat.ONNX),
        ("/m/model.pt", ModelFormat.TORCHSCRIPT),
        ("/m/model.torchscript", ModelFormat.TORCHSCRIPT),
    ],
)
def test_format_guessed_from_suffix(path: str, expected: ModelFormat) -> None:
    assert Settings(model_path=path).format is expected


def test_format_aliases_and_python() -> None:
    assert Settings(model_path="/m/x.bin", model_format="pytorch").format is ModelFormat.TORCHSCRIPT
    assert Settings(model_path="/m/x.bin", model_format="Scikit-Learn").format is ModelFormat.SKLEARN
    assert Settings(model_class="pkg.mod:Model").format is ModelFormat.PYTHON
    with pytest.raises(ValidationError, match="MODEL_CLASS"):
        Settings(model_format="python")
    with pytest.raises(ValidationError, match="cannot tell the format"):
        Settings(model_path="/m/model.bin")
    with pytest.raises(ValidationError, match="MODEL_PATH"):
        Settings(model_format="onnx")
    with pytest.raises(ValidationError, match="model_format"):
        Settings(model_path="/m/x.bin", model_format="transformers")


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match=r"'\*' is not allowed"):
        Settings(model_class="a:b", cors_allow_origins="*")
    assert Settings(model_class="a:b", cors_allow_origins="https://a, https://b").cors_allow_origins == [
        "https://a",
        "https://b",
    ]
    with pytest.raises(ValidationError, match="not a model name"):
        Settings(model_class="a:b", model_name="bad name/with slash")
    with pytest.raises(ValidationError):
        Settings(model_class="a:b", port=0)
    with pytest.raises(ValidationError):
        Settings(model_class="a:b", device="tpu")


def test_redacted_settings_and_secret_values() -> None:
    settings = Settings(model_class="a:b", api_key="k3y-value-0001")
    assert settings.redacted()["api_key"] == "**********"
    assert "k3y-value-0001" not in json.dumps(settings.redacted())
    assert settings.secret_values() == ["k3y-value-0001"]
    assert Settings(model_class="a:b").redacted()["api_key"] is None


def test_flags_override_environment() -> None:
    environ = {"MODEL_PATH": "/env/model.onnx", "PORT": "9000", "MODEL_NAME": "from-env"}
    settings = parse_settings(
        ["--model-path", "/flag/model.joblib", "--model-name", "iris", "--model-format", "sklearn", "--port", "8082"],
        environ,
    )
    assert settings.model_path == Path("/flag/model.joblib") and settings.model_name == "iris"
    assert settings.format is ModelFormat.SKLEARN and settings.port == 8082
    assert environ["MODEL_PATH"] == "/flag/model.joblib" and environ["PORT"] == "8082"  # for worker processes


def test_invalid_settings_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("MODEL_PATH", "MODEL_CLASS", "MODEL_FORMAT", "PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODEL_PATH", "/m/model.joblib")
    assert main(["--port", "99999"]) == 2
    assert "PORT:" in capsys.readouterr().err
    monkeypatch.delenv("PORT")  # main() exported the flag for worker processes
    try:
        Settings(model_path="/m/model.bin")
    except ValidationError as exc:
        assert "MODEL_FORMAT" in format_validation_error(exc)


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_binary_round_trip(datatype: str) -> None:
    if datatype == "BYTES":
        array = np.asarray([b"a", b"", "h\u00e9llo".encode()], dtype=object).reshape(3, 1)
    elif datatype == "BOOL":
        array = np.asarray([[True, False], [False, True]])
    else:
        array = np.arange(6).reshape(2, 3).astype(DATATYPES[datatype])
    raw = encode_binary_data(array)
    decoded = decode_binary_data("inputs[0]", datatype, list(array.shape), raw)
    assert decoded.shape == array.shape and decoded.tolist() == array.tolist()
    assert datatype_of(decoded.dtype) == datatype


def test_json_decoding_checks_types_and_sizes() -> None:
    array = decode_json_data("inputs[0]", "FP32", [2, 2], [[1, 2], [3, 4]])
    assert array.dtype == np.float32 and array.shape == (2, 2)
    assert encode_json_data(array).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert decode_json_data("inputs[0]", "BYTES", [2], ["x", "y"]).tolist() == ["x", "y"]
    bad = [
        ("FP32", [3], [1, 2], "inputs[0].data: 2 element(s) do not fill shape [3]"),
        ("INT8", [1], [300], "outside the INT8 range"),
        ("INT32", [1], [1.5], "whole numbers"),
        ("BOOL", [1], [{}], "true or false"),
        ("FP32", [1], ["x"], "must be numbers"),
        ("BYTES", [1], [1], "inputs[0].data[0]: BYTES elements must be strings"),
        ("FP64", [0, 2**62, 2**62], [], "inputs[0].shape"),
        ("INT4", [1], [1], "inputs[0].datatype"),
    ]
    for datatype, shape, data, message in bad:
        with pytest.raises(InvalidInput, match=re.escape(message)):
            decode_json_data("inputs[0]", datatype, shape, data)


def test_binary_request_parsing() -> None:
    payload = np.asarray([1, 2, 3], dtype="<i4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {"name": "a", "shape": [3], "datatype": "INT32", "parameters": {"binary_data_size": len(payload)}},
                {"name": "b", "shape": [1], "datatype": "FP32", "data": [0.5]},
            ]
        }
    ).encode()
    request, chunks = parse_infer(header + payload, str(len(header)))
    assert chunks is not None and bytes(chunks[0]) == payload and chunks[1] is None
    assert request.inputs[1].data == [0.5]
    with pytest.raises(InvalidInput, match="not a number"):
        parse_infer(header, "abc")
    with pytest.raises(InvalidInput, match=r"inputs\[0\]\.shape\[0\]"):
        parse_infer(b'{"inputs": [{"name": "a", "shape": [true], "datatype": "BOOL", "data": []}]}', None)


def test_location_formatting() -> None:
    assert location(("inputs", 0, "shape", 1)) == "inputs[0].shape[1]"
    assert location(()) == "body"


def test_batch_key_groups_compatible_requests() -> None:
    one = {"x": np.zeros((1, 4), dtype=np.float32)}
    three = {"x": np.zeros((3, 4), dtype=np.float32)}
    other_width = {"x": np.zeros((1, 5), dtype=np.float32)}
    key_one, rows_one = batch_key(one, None) or (None, 0)
    key_three, rows_three = batch_key(three, None) or (None, 0)
    assert key_one == key_three and (rows_one, rows_three) == (1, 3)
    assert batch_key(other_width, None)[0] != key_one  # type: ignore[index]
    assert batch_key(one, ("predict_proba",))[0] != key_one  # type: ignore[index]
    assert batch_key({"x": np.float32(1.0).reshape(())}, None) is None  # a scalar has no batch axis
    assert batch_key({"x": np.zeros((2, 1)), "y": np.zeros((3, 1))}, None) is None  # rows disagree


def test_json_log_lines_carry_request_id_and_mask_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter({"model": "m", "model_version": "7"}, ["tok-secret-99", "abc"]))
    logger = logging.getLogger("test.logs")
    logger.handlers = [handler]
    logger.propagate = False
    token = REQUEST_ID.set("req-1")
    try:
        record = logger.makeRecord(
            "test.logs",
            logging.INFO,
            __file__,
            1,
            "using %s",
            ("tok-secret-99",),
            None,
            extra={"request_id": REQUEST_ID.get(), "status": 200},
        )
        logger.handle(record)
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "using **********" and entry["request_id"] == "req-1"
    assert entry["model"] == "m" and entry["model_version"] == "7" and entry["status"] == 200
    assert "abc" not in JsonFormatter({}, ["abc"])._secrets  # too short to mask safely


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]*) \|", text, flags=re.MULTILINE))
    for name, field in Settings.model_fields.items():
        assert name.upper() in rows, f"README settings table lacks {name.upper()}"
        default = field.get_default(call_default_factory=True)
        if default not in (None, [], ""):
            shown = rows[name.upper()].strip().strip("`")
            assert shown == str(default).lower() or shown == str(default) or shown.startswith(str(default)), (
                name,
                shown,
                default,
            )
    assert set(rows) <= {name.upper() for name in Settings.model_fields}, set(rows)


def test_byte_budget_bounds_bytes_held_at_once() -> None:
    import asyncio

    from custom_server.budget import ByteBudget

    async def scenario() -> tuple[int, list[str]]:
        budget = ByteBudget(100)
        peak = 0
        order: list[str] = []

        async def job(name: str, size: int) -> None:
            nonlocal peak
            async with budget.hold(size):
                peak = max(peak, budget.used)
                order.append(name)
                await asyncio.sleep(0.01)

        # 60 + 60 do not fit together; 500 is larger than the whole budget and runs alone
        await asyncio.gather(job("a", 60), job("b", 60), job("big", 500), job("c", 30))
        assert budget.used == 0
        return peak, order

    peak, order = asyncio.run(scenario())
    assert peak <= 100
    assert sorted(order) == ["a", "b", "big", "c"]
    with pytest.raises(ValueError, match="limit"):
        ByteBudget(0)


def _tree_ensemble_seconds(rows: int) -> float:
    """A fake cost curve: 7 ms per call whatever its size, plus 20 µs a row (a tree ensemble)."""
    return 0.007 + 0.00002 * rows


def test_cost_fit_and_batch_size_choice() -> None:
    from custom_server.batchsize import CostFit, choose_batch_size, fit_cost

    fit = fit_cost([(rows, _tree_ensemble_seconds(rows)) for rows in (8, 32, 64, 256)])
    assert fit is not None
    assert fit.fixed_s == pytest.approx(0.007) and fit.per_row_s == pytest.approx(0.00002)
    # the largest batch whose call fits 20 ms: (20 - 7) / 0.02 = 650 rows
    assert choose_batch_size(fit, 0.020) == 650
    assert choose_batch_size(fit, 1.0) == 4096  # capped
    assert choose_batch_size(fit, 0.005) == 1  # the bound cannot be met: one row at a time
    assert choose_batch_size(CostFit(0.0, 0.0), 0.02, ceiling=128) == 128  # free calls: as big as allowed
    assert fit_cost([(8, 0.01), (8, 0.012)]) is None  # one size: no slope yet
    noisy = fit_cost([(8, 0.010), (16, 0.009)])  # noise tilting the line down: no negative cost
    assert noisy is not None and noisy.per_row_s == 0.0 and noisy.fixed_s > 0


def test_cost_policy_probes_and_converges_on_the_fake_curve() -> None:
    from custom_server.batchsize import CostPolicy

    policy = CostPolicy(initial=32, max_latency_s=0.020)
    assert policy.limit == 32
    # Under load every call is full: the policy doubles while it knows one size, then fits.
    for _ in range(40):
        rows = policy.limit
        policy.observe(rows, _tree_ensemble_seconds(rows))
    assert policy.fit is not None
    assert policy.limit == 650, policy.limit
    # A model without a fixed cost grows only to what its bound allows: 2 ms / 20 µs = 100 rows.
    cheap = CostPolicy(initial=32, max_latency_s=0.002)
    for _ in range(40):
        rows = cheap.limit
        cheap.observe(rows, 0.00002 * rows)
    assert cheap.limit == 100, cheap.limit
    # Light load (calls far from full) does not grow the limit.
    idle = CostPolicy(initial=32, max_latency_s=0.020)
    for _ in range(40):
        idle.observe(1, _tree_ensemble_seconds(1))
    assert idle.limit == 32


def test_gather_wait_and_recent_peak() -> None:
    from custom_server.batchsize import CostFit, RecentPeak, gather_wait

    assert gather_wait(None, 0.050) == 0.0  # cost unknown: never wait
    fit = CostFit(0.007, 0.00002)
    assert gather_wait(fit, 1.0) == pytest.approx(0.007)  # at most the fixed cost one merged call saves
    assert gather_wait(fit, 0.020) == pytest.approx(0.005)  # and a quarter of the latency bound
    assert gather_wait(CostFit(0.0, 0.00002), 0.050) == 0.0  # a cheap model has nothing to save
    peak = RecentPeak(window=4)
    for requests in (3, 32, 17):
        peak.observe(requests)
    assert peak.value == 32
    for _ in range(4):  # a window of calls at light load: the previous window still counts
        peak.call()
        peak.observe(1)
    assert peak.value == 32
    for _ in range(4):  # two: the burst is forgotten
        peak.call()
        peak.observe(1)
    assert peak.value == 1


class _SleepyModel:
    """A fake model whose call sleeps like the fake cost curve (fixed part plus a part per row)."""

    def __init__(self, fixed_s: float, per_row_s: float) -> None:
        from types import SimpleNamespace

        from custom_server.models.base import Model

        class Fake(Model):
            def load(self) -> None:
                return None

            def predict(self, inputs: dict[str, np.ndarray], outputs: object) -> dict[str, np.ndarray]:
                x = inputs["x"]
                time.sleep(fixed_s + per_row_s * len(x))
                return {"y": x.sum(axis=1)}

        self.model = Fake(SimpleNamespace(model_name="fake", model_version="1"))  # type: ignore[arg-type]


def _closed_loop(
    policy: object, clients: int, requests_each: int, fixed_s: float, spread_s: float = 0.0002
) -> tuple[list[int], float]:
    """``clients`` that each send a request as soon as the last one is answered (client i ``spread_s``
    times i+1 later); the requests of each model call, and the seconds the whole run took."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from custom_server.batching import Batcher
    from custom_server.metrics import Metrics

    model = _SleepyModel(fixed_s, 0.00002).model
    calls: list[int] = []
    original = model.predict

    def counting(inputs: dict[str, np.ndarray], outputs: object) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]) // 8)
        return original(inputs, outputs)

    model.predict = counting  # type: ignore[method-assign]

    async def run() -> float:
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(
                model,
                executor=executor,
                metrics=Metrics("fake"),
                max_batch_size=32,
                max_batch_delay_s=0.0,
                max_queue_size=512,
                concurrency=1,
                policy=policy,  # type: ignore[arg-type]
            )
            batcher.start()
            rows = np.ones((8, 4))

            async def client(index: int) -> None:
                for _ in range(requests_each):
                    result = await batcher.infer({"x": rows}, None)
                    assert result["y"].tolist() == [4.0] * 8
                    # The answers go out one after another and the next requests come back as spread
                    # (on one core the event loop parses them in turn): 0.2 ms apart by default.
                    await asyncio.sleep(spread_s * (index + 1))

            started = time.perf_counter()
            await asyncio.gather(*(client(index) for index in range(clients)))
            elapsed = time.perf_counter() - started
            await batcher.close(5)
            return elapsed

    return calls, asyncio.run(run())


def _known_cost_policy(fixed_s: float, max_latency_s: float) -> object:
    from custom_server.batchsize import CostPolicy

    policy = CostPolicy(initial=32, max_latency_s=max_latency_s)
    for rows in (8, 64, 256):  # the cost is known before the clients start
        policy.observe(rows, fixed_s + 0.00002 * rows)
    assert policy.fit is not None
    return policy


def test_cost_policy_fills_calls_with_every_closed_loop_client() -> None:
    # 32 clients, 8 rows each, a 10 ms fixed cost: taking what waits the moment the model is free makes
    # two groups of ~16 that alternate; waiting (at most the fixed cost) for the expected requests
    # merges nearly all 32 into each call.
    calls, _ = _closed_loop(_known_cost_policy(0.010, 0.200), clients=32, requests_each=12, fixed_s=0.010)
    assert sum(calls) == 32 * 12
    steady = calls[2:-2]
    assert sum(steady) / len(steady) >= 26, calls


def test_cost_policy_keeps_gathering_while_requests_keep_coming() -> None:
    # The 32 requests come back 0.6 ms apart (a gRPC request's cost to the event loop on one core):
    # the last one 19 ms after the first, past the 10 ms fixed cost, but each within it of the one
    # before. The wait is renewed by each arrival, so the calls still merge nearly all 32.
    calls, _ = _closed_loop(
        _known_cost_policy(0.010, 0.200), clients=32, requests_each=10, fixed_s=0.010, spread_s=0.0006
    )
    assert sum(calls) == 32 * 10
    steady = calls[2:-2]
    assert sum(steady) / len(steady) >= 26, calls


def test_gather_cap_bounds_the_whole_wait() -> None:
    from custom_server.batchsize import gather_cap

    # Arrivals 3 ms apart and more would renew a 10 ms wait until all 32 clients are in (93 ms after
    # the first): the cap, half the 40 ms latency bound, ends each wait well before.
    calls, _ = _closed_loop(
        _known_cost_policy(0.010, 0.040), clients=32, requests_each=4, fixed_s=0.010, spread_s=0.003
    )
    assert gather_cap(0.040) == pytest.approx(0.020)
    assert sum(calls) == 32 * 4
    assert max(calls[1:]) <= 24, calls


def test_cost_policy_does_not_wait_under_light_load() -> None:
    # One client: the peak is one request, so no call waits for a second one (which would add the 50 ms
    # fixed cost to each of the 10 requests).
    calls, elapsed = _closed_loop(_known_cost_policy(0.050, 1.0), clients=1, requests_each=10, fixed_s=0.050)
    assert calls == [1] * 10
    assert elapsed < 10 * 0.050 + 0.3, f"{elapsed:.2f} s for 10 calls of 50 ms"


class _RecordingTransport:
    """What ``ServerHttpProtocol`` writes, send by send (a transport's interface, no socket)."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sends.append(bytes(data))

    def writelines(self, parts: object) -> None:
        self.sends.append(b"".join(parts))  # type: ignore[arg-type]

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.sends.append(b"<FIN>")

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


def test_a_response_head_goes_out_with_its_body_in_one_send() -> None:
    import asyncio

    import uvicorn
    from uvicorn.server import ServerState

    from custom_server.rest.protocol import ServerHttpProtocol

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    async def run() -> list[list[bytes]]:
        config = uvicorn.Config(app, log_config=None)
        config.load()
        protocol = ServerHttpProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        transport = _RecordingTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        seen = []
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
        protocol.write_response(head)
        seen.append(list(transport.sends))  # held
        protocol.write_response(b"{}")
        seen.append(list(transport.sends))  # head and body in one send
        protocol.write_response(b"HTTP/1.1 100 Continue\r\n\r\n")
        seen.append(list(transport.sends[1:]))  # an interim response is not held
        protocol.write_response(head)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(list(transport.sends[2:]))  # a head without its body yet: out on the loop's next turn
        protocol.write_response(head)
        protocol.close_cleanly()
        seen.append(list(transport.sends[3:]))  # written before the connection is closed
        protocol.connection_lost(None)
        return seen

    held, joined, interim, alone, closing = asyncio.run(run())
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    assert held == []
    assert joined == [head + b"{}"]
    assert interim == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert alone == [head]
    assert closing == [head, b"<FIN>"]
