"""The Open Inference Protocol over gRPC, called by a peer's client (tritonclient[grpc]) and by raw stubs
with bad input; grpc.health.v1; shared batching and metrics; the committed generated code."""

from __future__ import annotations

import asyncio
import filecmp
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from conftest import IRIS_ROWS
from serverproc import ServerProcess, metric, running

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grpc_server(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "MODEL_PATH": str(artifacts / "iris.joblib"),
        "MODEL_NAME": "iris",
        "MODEL_VERSION": "3",
        "MAX_REQUEST_BYTES": str(1024 * 1024),
    }
    with running(env, tmp_path_factory.mktemp("grpc") / "server.log") as server:
        yield server


def _client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.grpc_target)


def _stub(server: ServerProcess) -> tuple[grpc.Channel, object]:
    # tritonclient's generated stubs (the server's own would clash with them in one descriptor pool):
    # requests that its high-level client would refuse to build.
    channel = grpc.insecure_channel(server.grpc_target, options=[("grpc.max_send_message_length", 64 << 20)])
    return channel, pb_grpc.GRPCInferenceServiceStub(channel)


def test_tritonclient_health_metadata_and_infer(grpc_server: ServerProcess, iris_classifier: object) -> None:
    client = _client(grpc_server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris") and client.is_model_ready("iris", "3")
    server_meta = client.get_server_metadata()
    assert server_meta.name == "custom_server" and "binary_tensor_data" in server_meta.extensions
    meta = client.get_model_metadata("iris")
    assert meta.name == "iris" and list(meta.versions) == ["3"] and meta.platform == "sklearn"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("input-0", "FP64", [-1, 4])]

    rows = np.asarray(IRIS_ROWS, dtype=np.float64)
    tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)  # sent as raw_input_contents
    outputs = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    result = client.infer("iris", [tensor], model_version="3", request_id="g-42", outputs=outputs)
    response = result.get_response()
    assert response.model_name == "iris" and response.model_version == "3" and response.id == "g-42"
    np.testing.assert_array_equal(result.as_numpy("predict"), iris_classifier.predict(rows))  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.as_numpy("predict_proba"), iris_classifier.predict_proba(rows))  # type: ignore[attr-defined]
    client.close()


def test_typed_contents_and_request_id(grpc_server: ServerProcess, iris_classifier: object) -> None:
    channel, stub = _stub(grpc_server)
    with channel:
        request = pb.ModelInferRequest(model_name="iris")
        tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[3, 4])
        tensor.contents.fp64_contents.extend(np.asarray(IRIS_ROWS).reshape(-1).tolist())
        response, call = stub.ModelInfer.with_call(request, metadata=[("x-request-id", "trace-7")])  # type: ignore[attr-defined]
        assert dict(call.initial_metadata())["x-request-id"] == "trace-7"
        [output] = response.outputs
        assert output.name == "predict" and output.datatype == "INT64" and list(output.shape) == [3]
        assert not response.raw_output_contents  # typed in, typed out
        predicted = iris_classifier.predict(np.asarray(IRIS_ROWS))  # type: ignore[attr-defined]
        assert list(output.contents.int64_contents) == predicted.tolist()
        # Without an id of its own the client gets the generated one in the trailing metadata, on
        # success and on error alike.
        _, call = stub.ModelInfer.with_call(request)  # type: ignore[attr-defined]
        generated = dict(call.trailing_metadata())["x-request-id"]
        assert generated and generated != "trace-7"
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(pb.ModelInferRequest(model_name="nope", inputs=request.inputs))  # type: ignore[attr-defined]
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        failed = dict(caught.value.trailing_metadata())["x-request-id"]  # type: ignore[attr-defined]
        assert failed and failed != generated


@pytest.mark.parametrize(
    ("build", "code", "words"),
    [
        ("wrong_datatype", grpc.StatusCode.INVALID_ARGUMENT, "datatype"),
        ("shape_mismatch", grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        ("raw_size_mismatch", grpc.StatusCode.INVALID_ARGUMENT, "inputs[0]"),
        ("raw_count_mismatch", grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents"),
        ("wrong_contents_field", grpc.StatusCode.INVALID_ARGUMENT, "int64_contents"),
        ("unknown_model", grpc.StatusCode.NOT_FOUND, "'nope'"),
        ("unknown_version", grpc.StatusCode.NOT_FOUND, "version"),
        ("unknown_output", grpc.StatusCode.INVALID_ARGUMENT, "outputs"),
        ("fp16_typed", grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents"),
        ("no_inputs", grpc.StatusCode.INVALID_ARGUMENT, "inputs"),
        ("oversized", grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ],
)
def test_bad_inputs_get_the_right_status(
    grpc_server: ServerProcess, build: str, code: grpc.StatusCode, words: str
) -> None:
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[3, 4])
    raw = np.asarray(IRIS_ROWS, dtype="<f8").tobytes()
    if build == "wrong_datatype":
        tensor.datatype = "FLOAT99"
        request.raw_input_contents.append(raw)
    elif build == "shape_mismatch":
        tensor.shape[:] = [3, 5]
        tensor.contents.fp64_contents.extend([1.0] * 12)
    elif build == "raw_size_mismatch":
        request.raw_input_contents.append(raw[:-8])
    elif build == "raw_count_mismatch":
        request.raw_input_contents.extend([raw, raw])
    elif build == "wrong_contents_field":
        tensor.contents.int64_contents.extend([1] * 12)
    elif build == "unknown_model":
        request.model_name = "nope"
        request.raw_input_contents.append(raw)
    elif build == "unknown_version":
        request.model_version = "9"
        request.raw_input_contents.append(raw)
    elif build == "unknown_output":
        request.outputs.add(name="embedding")
        request.raw_input_contents.append(raw)
    elif build == "fp16_typed":
        tensor.datatype = "FP16"
        tensor.contents.fp32_contents.extend([1.0] * 12)
    elif build == "no_inputs":
        del request.inputs[:]
    elif build == "oversized":
        tensor.shape[:] = [40_000, 4]
        request.raw_input_contents.append(np.zeros((40_000, 4), dtype="<f8").tobytes())  # 1.2 MiB > 1 MiB
    channel, stub = _stub(grpc_server)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)  # type: ignore[attr-defined]
    error = caught.value
    assert error.code() == code, (build, error.code(), error.details())  # type: ignore[attr-defined]
    assert words in (error.details() or ""), (build, error.details())  # type: ignore[attr-defined]
    # the server is fine afterwards
    assert _client(grpc_server).is_server_live()


def test_model_ready_unknown_model_and_triton_errors(grpc_server: ServerProcess) -> None:
    client = _client(grpc_server)
    with pytest.raises(InferenceServerException) as caught:
        client.is_model_ready("nope")
    assert "nope" in str(caught.value)
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("iris", "9")


def test_health_checking_for_kubernetes_probes(grpc_server: ServerProcess) -> None:
    with grpc.insecure_channel(grpc_server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", "live", "ready", "inference.GRPCInferenceService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == serving, service
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="other"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_grpc_and_rest_share_batcher_and_metrics(artifacts: Path, tmp_path: Path) -> None:
    env = {
        "MODEL_CLASS": f"{artifacts / 'test_user_model.py'}:RowSum",
        "MODEL_NAME": "rowsum",
        "TEST_MODEL_DELAY_S": "0.2",
        "MAX_BATCH_SIZE": "64",
    }
    with running(env, tmp_path / "server.log") as server:

        async def burst() -> list[list[float]]:
            async with grpc.aio.insecure_channel(server.grpc_target) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)

                async def one(index: int) -> list[float]:
                    request = pb.ModelInferRequest(model_name="rowsum")
                    request.inputs.add(name="x", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend(
                        [index, index]
                    )
                    response = await stub.ModelInfer(request)
                    return list(response.outputs[0].contents.fp64_contents)

                return await asyncio.gather(*(one(index) for index in range(16)))

        assert asyncio.run(burst()) == [[2.0 * index] for index in range(16)]
        with server.client() as client:
            text = client.get("/metrics").text
    assert metric(text, "custom_server_batch_requests_sum", model="rowsum") == 16
    assert metric(text, "custom_server_batch_requests_count", model="rowsum") < 16  # merged
    endpoint = "/inference.GRPCInferenceService/ModelInfer"
    assert metric(text, "custom_server_requests_total", endpoint=endpoint, code="200") == 16


def test_generated_code_is_what_the_script_generates(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_grpc.py"), "--out", str(tmp_path)], check=True)
    committed = ROOT / "src" / "custom_server" / "grpc"
    generated = sorted((tmp_path / "custom_server" / "grpc").glob("*_pb2*"))
    assert [path.name for path in generated] == sorted(path.name for path in committed.glob("*_pb2*"))
    for path in generated:
        assert filecmp.cmp(path, committed / path.name, shallow=False), f"{path.name} is stale: run scripts/gen_grpc.py"


def _rowsum_request(index: int) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="rowsum")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([index, index])
    return request


def test_grpc_sheds_with_resource_exhausted_and_checks_the_api_key(artifacts: Path, tmp_path: Path) -> None:
    env = {
        "MODEL_CLASS": f"{artifacts / 'test_user_model.py'}:RowSum",
        "MODEL_NAME": "rowsum",
        "TEST_MODEL_DELAY_S": "0.5",
        "MAX_BATCH_SIZE": "1",
        "MAX_QUEUE_SIZE": "1",
        "API_KEY": "sk-grpc-test",
    }
    with running(env, tmp_path / "server.log") as server:

        async def burst() -> list[grpc.StatusCode]:
            async with grpc.aio.insecure_channel(server.grpc_target) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)

                async def one(index: int) -> grpc.StatusCode:
                    try:
                        await stub.ModelInfer(_rowsum_request(index), metadata=[("x-api-key", "sk-grpc-test")])
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or "MAX_QUEUE_SIZE" in exc.details()
                        return exc.code()
                    return grpc.StatusCode.OK

                return await asyncio.gather(*(one(index) for index in range(8)))

        codes = asyncio.run(burst())
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 4, codes
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(_rowsum_request(1), metadata=[("authorization", "Bearer wrong")])
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            assert stub.ServerLive(pb.ServerLiveRequest()).live  # health stays open


def test_grpc_sigterm_finishes_in_flight_calls_and_refuses_new_ones(artifacts: Path, tmp_path: Path) -> None:
    env = {
        "MODEL_CLASS": f"{artifacts / 'test_user_model.py'}:RowSum",
        "MODEL_NAME": "rowsum",
        "TEST_MODEL_DELAY_S": "0.5",
        "MAX_BATCH_SIZE": "1",
        "INFERENCE_THREADS": "4",
    }
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:

        async def scenario() -> tuple[list[list[float]], grpc.StatusCode | None]:
            async with grpc.aio.insecure_channel(server.grpc_target) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                calls = [asyncio.ensure_future(stub.ModelInfer(_rowsum_request(index))) for index in range(8)]
                await asyncio.sleep(0.3)  # in flight
                server.signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                refused: grpc.StatusCode | None = None
                async with grpc.aio.insecure_channel(server.grpc_target) as fresh:
                    try:
                        await pb_grpc.GRPCInferenceServiceStub(fresh).ServerLive(pb.ServerLiveRequest(), timeout=3)
                    except grpc.aio.AioRpcError as exc:
                        refused = exc.code()
                responses = await asyncio.gather(*calls)
                return [list(r.outputs[0].contents.fp64_contents) for r in responses], refused

        outputs, refused = asyncio.run(scenario())
        assert outputs == [[2.0 * index] for index in range(8)]
        assert refused is not None, "a new gRPC call was served after SIGTERM"
        assert server.wait(timeout=30) == 0
    finally:
        server.stop()
