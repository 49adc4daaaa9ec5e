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
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custom_server.batching import Admission
from custom_server.dataplane import DataPlane, InferenceResult
from custom_server.decoding import INLINE_DECODE_BYTES
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
from custom_server.grpc.codec import DecodedMessage, decode_infer_message, infer_response
from custom_server.logs import REQUEST_ID
from custom_server.settings import Settings

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

Reply = TypeVar("Reply")


def status_of(exc: ServerError) -> grpc.StatusCode:
    """The gRPC status of a typed error (its nearest typed base decides)."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return grpc.StatusCode.INTERNAL


class InferenceServicer:
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
        trailing: tuple[tuple[str, str], ...] = ()
        if isinstance(given, str) and 0 < len(given) <= 128 and given.isascii():
            request_id = given
        else:
            request_id = f"{self._id_prefix}{next(self._ids):x}"
            # A generated id goes back in the trailing metadata, sent with the status: initial
            # metadata sent on its own is one more operation per call for gRPC's core.
            trailing = (("x-request-id", request_id),)
            context.set_trailing_metadata(trailing)
        token = REQUEST_ID.set(request_id)
        code = 200
        try:
            if not trailing:  # the client's own id is echoed at once, in the initial metadata
                await context.send_initial_metadata((("x-request-id", request_id),))
            if protected:
                self._check_key(metadata)
            return await handler()
        except ServerError as exc:
            code = exc.status_code
            if code >= 500:
                logger.warning("request failed: %s", exc.message, extra={"status": code, "rpc": method})
            await context.abort(status_of(exc), exc.message, trailing)
            raise  # not reached: abort raises
        except grpc.aio.AbortError:
            raise
        except Exception:
            code = 500
            logger.exception("unhandled error serving %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error; see the server log", trailing)
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

    async def ModelInfer(self, request: bytes, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        """Inference: typed contents or ``raw_input_contents`` in; outputs raw when the inputs were.
        ``request`` is the message's bytes (see ``add_inference_service``)."""

        async def handle() -> pb.ModelInferResponse:
            plane = self.plane
            if len(request) <= INLINE_DECODE_BYTES:
                decoded = decode_infer_message(request)
                plane.get_model(decoded.model_name, decoded.model_version)
                with plane.admit() as admission:
                    result = await self._infer(decoded, admission)
            else:
                # 503/429 before a big message is parsed; then it is parsed off the event loop
                with plane.admit() as admission:
                    decoded = await plane.decoder.decode(len(request), decode_infer_message, request)
                    result = await self._infer(decoded, admission)
            return infer_response(
                result.model_name, result.model_version, result.id, result.outputs, raw_out=decoded.raw is not None
            )

        return await self._serve("ModelInfer", context, handle, protected=True)

    async def _infer(self, decoded: DecodedMessage, admission: Admission) -> InferenceResult:
        name, version = decoded.model_name, decoded.model_version
        prepared = self.plane.prepare_infer(name, version, decoded.request, decoded.raw, decoded.arrays)
        return await self.plane.run_infer(prepared, admission)


def add_inference_service(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Register the protocol's service as the generated code would, except that ModelInfer gets its
    request as bytes: the servicer decides where to parse it (a big one off the event loop)."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        parse = None if method.name == "ModelInfer" else getattr(pb, method.input_type.name).FromString
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=parse,
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


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
        add_inference_service(InferenceServicer(self.settings, self.data_plane), server)
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
