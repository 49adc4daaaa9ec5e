"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``) and ``grpc.health.v1``.

A thin front end like ``rest/``: it turns messages into the data plane's calls (the same admission,
batcher, metrics and logs as REST) and typed errors into gRPC status codes, in one place
(``STATUS``). It runs on the server's event loop (grpc.aio), on its own port (``GRPC_PORT``).
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custom_server.dataplane import DataPlane, InferenceResult
from custom_server.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
)
from custom_server.grpc import grpc_predict_v2_pb2 as pb
from custom_server.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from custom_server.logs import REQUEST_ID
from custom_server.protocol import InferenceRequest
from custom_server.settings import Settings
from custom_server.tensors import DATATYPES, datatype_of, encode_binary_data

logger = logging.getLogger("custom_server.grpc")

SERVICE = "inference.GRPCInferenceService"
#: Health-check service names: liveness ("" and "live") and readiness (the rest).
LIVE_SERVICES = ("", "live")
READY_SERVICES = ("ready", SERVICE)

#: Typed error -> gRPC status code (the gRPC side of ``ServerError.status_code``).
STATUS: dict[type[ServerError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    InferenceError: grpc.StatusCode.INTERNAL,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
}

#: The typed contents field of each datatype (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

Reply = TypeVar("Reply")


def status_of(exc: ServerError) -> grpc.StatusCode:
    """The gRPC status of a typed error (its nearest typed base decides)."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return grpc.StatusCode.INTERNAL


def _parameter(value: pb.InferParameter) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def _parameters(mapping: Any) -> dict[str, Any] | None:
    return {key: _parameter(value) for key, value in mapping.items()} or None


def _contents_array(field: str, datatype: str, shape: list[int], tensor: Any) -> np.ndarray:
    """An input's typed contents as an array of its datatype and shape."""
    name = CONTENTS_FIELD.get(datatype)
    if name is None:
        if datatype == "FP16":
            raise InvalidInput(f"{field}.contents: FP16 has no typed contents; send it in raw_input_contents")
        raise InvalidInput(f"{field}.datatype: {datatype!r} is not a v2 datatype")
    for other in set(CONTENTS_FIELD.values()) - {name}:
        if len(getattr(tensor.contents, other)):
            raise InvalidInput(f"{field}.contents: {other} given for datatype {datatype}; use {name}")
    values = getattr(tensor.contents, name)
    count = int(np.prod(shape)) if shape else 1
    if len(values) != count:
        raise InvalidInput(f"{field}.contents.{name}: {len(values)} element(s), but shape {shape} holds {count}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
    else:
        dtype = DATATYPES[datatype]
        wide = np.asarray(values)  # int32/uint32/int64/... as protobuf sent them
        array = wide.astype(dtype)
        if dtype.kind in "iu" and not np.array_equal(array, wide):
            raise InvalidInput(f"{field}.contents.{name}: a value is out of range for {datatype}")
    return array.reshape(shape)


def _to_contents(array: np.ndarray, datatype: str, contents: pb.InferTensorContents) -> None:
    name = CONTENTS_FIELD[datatype]
    flat = array.reshape(-1)
    if datatype == "BYTES":
        getattr(contents, name).extend(
            item if isinstance(item, bytes) else str(item).encode() for item in flat.tolist()
        )
    else:
        getattr(contents, name).extend(flat.tolist())


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of the protocol, on one data plane."""

    def __init__(self, settings: Settings, data_plane: DataPlane) -> None:
        self.plane = data_plane
        self.metrics = data_plane.metrics
        self.api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self._id_prefix = "g" + os.urandom(5).hex() + "-"
        self._ids = itertools.count(1)

    async def _serve(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        handler: Callable[[], Awaitable[Reply]],
        *,
        protected: bool = False,
    ) -> Reply:
        """Request id, API key, metrics, the error mapping: around every RPC."""
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        given = metadata.get("x-request-id")
        request_id = (
            given
            if isinstance(given, str) and 0 < len(given) <= 128 and given.isascii()
            else f"{self._id_prefix}{next(self._ids):x}"
        )
        token = REQUEST_ID.set(request_id)
        code = 200
        try:
            await context.send_initial_metadata((("x-request-id", request_id),))
            if protected:
                self._check_key(metadata)
            return await handler()
        except ServerError as exc:
            code = exc.status_code
            if code >= 500:
                logger.warning("request failed: %s", exc.message, extra={"status": code, "rpc": method})
            await context.abort(status_of(exc), exc.message)
            raise  # not reached: abort raises
        except grpc.aio.AbortError:
            raise
        except Exception:
            code = 500
            logger.exception("unhandled error serving %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error; see the server log")
            raise
        finally:
            self.metrics.observe_request(f"/{SERVICE}/{method}", code, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    def _check_key(self, metadata: dict[str, Any]) -> None:
        if self.api_key is None:
            return
        offered = metadata.get("x-api-key")
        authorization = metadata.get("authorization")
        if offered is None and isinstance(authorization, str) and authorization[:7].lower() == "bearer ":
            offered = authorization[7:].strip()
        if not isinstance(offered, str) or not hmac.compare_digest(offered.encode(), self.api_key):
            raise Unauthorized("missing or wrong API key: send metadata 'authorization: Bearer <key>' or 'x-api-key'")

    # --- health and metadata ----------------------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        """Live while the process serves."""

        async def handle() -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self._serve("ServerLive", context, handle)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        """Ready once the model is loaded (and not draining)."""

        async def handle() -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self.plane.readiness()[0])

        return await self._serve("ServerReady", context, handle)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        """Whether that model is ready; NOT_FOUND for another model."""

        async def handle() -> pb.ModelReadyResponse:
            ready, _ = self.plane.model_ready(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=ready)

        return await self._serve("ModelReady", context, handle, protected=True)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        """Name, version, extensions."""

        async def handle() -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(**self.plane.server_metadata())

        return await self._serve("ServerMetadata", context, handle)

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        """The model's name, versions, platform, inputs and outputs."""

        async def handle() -> pb.ModelMetadataResponse:
            meta = self.plane.model_metadata(request.name, request.version or None)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[tensor(**spec) for spec in meta["inputs"]],
                outputs=[tensor(**spec) for spec in meta["outputs"]],
            )

        return await self._serve("ModelMetadata", context, handle, protected=True)

    # --- inference --------------------------------------------------------------------------------

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        """Inference: typed contents or ``raw_input_contents`` in; outputs raw when the inputs were."""

        async def handle() -> pb.ModelInferResponse:
            plane = self.plane
            version = request.model_version or None
            plane.get_model(request.model_name, version)
            with plane.admit() as admission:
                parsed, arrays, raw = self._decode(request)
                prepared = plane.prepare_infer(request.model_name, version, parsed, raw, arrays)
                result = await plane.run_infer(prepared, admission)
            return _response(result, raw_out=raw is not None)

        return await self._serve("ModelInfer", context, handle, protected=True)

    @staticmethod
    def _decode(
        request: pb.ModelInferRequest,
    ) -> tuple[InferenceRequest, dict[int, np.ndarray], list[bytes] | None]:
        raw = list(request.raw_input_contents) or None
        if raw is not None and len(raw) != len(request.inputs):
            raise InvalidInput(
                f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs; give one per input"
            )
        inputs = []
        arrays: dict[int, np.ndarray] = {}
        for index, tensor in enumerate(request.inputs):
            field = f"inputs[{index}]"
            shape = [int(dim) for dim in tensor.shape]
            if raw is not None and tensor.HasField("contents"):
                raise InvalidInput(f"{field}.contents: not allowed with raw_input_contents")
            inputs.append(
                {
                    "name": tensor.name,
                    "datatype": tensor.datatype,
                    "shape": shape,
                    "parameters": _parameters(tensor.parameters),
                }
            )
        outputs = [{"name": out.name, "parameters": _parameters(out.parameters)} for out in request.outputs]
        try:
            parsed = InferenceRequest.model_validate(
                {
                    "id": request.id or None,
                    "parameters": _parameters(request.parameters),
                    "inputs": inputs,
                    "outputs": outputs or None,
                }
            )
        except ValueError as exc:
            from custom_server.rest.codec import validation_message

            raise InvalidInput(validation_message(exc)) from None
        if raw is None:
            for index, tensor in enumerate(request.inputs):
                item = parsed.inputs[index]
                arrays[index] = _contents_array(f"inputs[{index}]", item.datatype, list(item.shape), tensor)
        return parsed, arrays, raw


def _response(result: InferenceResult, *, raw_out: bool) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=result.model_name, model_version=result.model_version)
    if result.id is not None:
        response.id = result.id
    for name, value in result.outputs:
        array = np.asarray(value)
        datatype = datatype_of(array.dtype)
        out = response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw_out or datatype == "FP16":
            response.raw_output_contents.append(encode_binary_data(array))
        else:
            _to_contents(array, datatype, out.contents)
    if response.raw_output_contents and len(response.raw_output_contents) != len(response.outputs):
        # raw is all or nothing: an FP16 output in a typed response makes every output raw
        del response.raw_output_contents[:]
        for (_, value), out in zip(result.outputs, response.outputs, strict=True):
            out.ClearField("contents")
            response.raw_output_contents.append(encode_binary_data(np.asarray(value)))
    return response


class HealthServicer(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1`` for Kubernetes gRPC probes: "" and "live" are SERVING while the process
    serves; "ready" and the inference service are SERVING once the model is loaded (NOT_SERVING while
    it loads, after a failed load, or draining)."""

    def __init__(self, data_plane: DataPlane) -> None:
        self.plane = data_plane

    def _status(self, service: str) -> int:
        if service in LIVE_SERVICES:
            return health_pb2.HealthCheckResponse.SERVING
        if service in READY_SERVICES:
            ready = self.plane.readiness()[0]
            return health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        return -1

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
        """The status of one service name."""
        status = self._status(request.service)
        if status < 0:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        """The status now, then each change (checked every half second)."""
        import asyncio

        last = None
        while True:
            status = self._status(request.service)
            if status < 0:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            await asyncio.sleep(0.5)


class GrpcServer:
    """The gRPC server of one worker: started and stopped by the app's lifespan."""

    def __init__(self, settings: Settings, data_plane: DataPlane) -> None:
        self.settings = settings
        self.data_plane = data_plane
        self._server: grpc.aio.Server | None = None
        self._stopping: Any = None

    async def start(self) -> None:
        """Listen on ``GRPC_PORT`` (SO_REUSEPORT: several workers share it)."""
        limit = self.settings.max_request_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
                ("grpc.so_reuseport", 1),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.settings, self.data_plane), server)
        health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(self.data_plane), server)
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        if ":" in self.settings.host:
            address = f"[{self.settings.host}]:{self.settings.grpc_port}"
        server.add_insecure_port(address)
        await server.start()
        self._server = server
        logger.info("gRPC listening on %s", address, extra={"grpc_port": self.settings.grpc_port})

    def stop_accepting(self) -> None:
        """SIGTERM: refuse new RPCs now; in-flight ones get ``GRACEFUL_TIMEOUT_S`` to finish."""
        import asyncio

        if self._server is not None and self._stopping is None:
            self._stopping = asyncio.ensure_future(self._server.stop(self.settings.graceful_timeout_s))

    async def stop(self) -> None:
        """Stop (if SIGTERM did not already) and wait for in-flight RPCs."""
        self.stop_accepting()
        if self._stopping is not None:
            await self._stopping
