"""The FastAPI app factory. Nothing is created at import time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from custom_server import __version__
from custom_server.dataplane import DataPlane
from custom_server.errors import ServerError
from custom_server.protocol import SCHEMA_MODELS
from custom_server.rest.codec import JSONResponse, error_response, location
from custom_server.rest.endpoints import Endpoints
from custom_server.rest.middleware import ServerMiddleware
from custom_server.settings import Settings

logger = logging.getLogger("custom_server.rest")

#: A hook run around the app's life (e.g. the SIGTERM drain handler of ``server``).
LifespanHook = Callable[[FastAPI], AbstractAsyncContextManager[None]]

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _responses(ok: str | None, *errors: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        out[200] = {"description": "OK", "content": {"application/json": {"schema": _ref(ok)}}}
    descriptions = {
        400: "Bad request: the message names the field",
        401: "Missing or wrong API key (when API_KEY is set)",
        404: "No such model or version",
        413: "Body larger than MAX_REQUEST_BYTES",
        422: "Validation error: `error` summarizes, `detail` lists each field",
        429: "Queue full (MAX_QUEUE_SIZE): retry after `Retry-After` seconds",
        500: "The model failed",
        503: "Not ready: loading, failed to load, or shutting down",
    }
    for code in errors:
        out[code] = {
            "description": descriptions[code],
            "content": {"application/json": {"schema": _ref("ErrorResponse")}},
        }
    return out


def _body(name: str, description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": _ref(name)}},
        }
    }


class ServerApp(FastAPI):
    """FastAPI, except that the inference routes are served by ``ServerMiddleware`` before any of
    FastAPI's layers (see ``rest.middleware``); every other request goes through the whole app."""

    front: ServerMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is not None and scope["type"] == "http":
            fast = front.route(scope)
            if fast is not None:
                await front.handle(scope, receive, send, fast)
                return
        await super().__call__(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to ``{"error": ...}`` with its status: typed errors through ``error_response``
    (which the middleware uses too), Starlette's 404/405 and FastAPI's parameter validation alike."""

    async def server_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServerError)
        if exc.status_code >= 500:
            logger.warning("request failed: %s", exc.message, extra={"status": exc.status_code})
        return error_response(exc)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        message = "; ".join(f"{location(e.get('loc', ()))}: {e.get('msg')}" for e in errors[:5])
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))} for e in errors]
        return JSONResponse({"error": message, "detail": detail}, status_code=422)

    app.add_exception_handler(ServerError, server_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def create_app(
    settings: Settings,
    data_plane: DataPlane,
    *,
    lifespan_hooks: Sequence[LifespanHook] = (),
    serving_hooks: Sequence[LifespanHook] = (),
) -> FastAPI:
    """The REST app for one data plane. Its lifespan runs ``lifespan_hooks``, starts the data plane
    (model loading in the background), then ``serving_hooks`` (other front ends on the same data
    plane); at shutdown they end in reverse order, so the data plane drains after its front ends."""
    hooks = tuple(lifespan_hooks)
    front_ends = tuple(serving_hooks)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for hook in hooks:
                await stack.enter_async_context(hook(app))
            await data_plane.start()
            stack.push_async_callback(data_plane.stop, settings.graceful_timeout_s)
            for hook in front_ends:
                await stack.enter_async_context(hook(app))
            yield

    app = ServerApp(
        title="creativeflow.ai_serving model server",
        description="Serves one model over the seed's `/predict` and the Open Inference Protocol v2 "
        "(`/v2`, JSON tensors and the binary tensor extension).",
        version=__version__,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        lifespan=lifespan,
    )
    app.state.data_plane = data_plane
    app.state.settings = settings
    #: Called from the SIGTERM handler (through the event loop) to refuse new work at once.
    app.state.stop_accepting = []
    endpoints = Endpoints(data_plane)
    route = app.add_api_route

    route(
        "/health/live",
        endpoints.health_live,
        methods=["GET"],
        tags=["health"],
        summary="Liveness",
        responses=_responses("HealthResponse"),
    )
    route(
        "/health/ready",
        endpoints.health_ready,
        methods=["GET"],
        tags=["health"],
        summary="Readiness",
        responses=_responses("HealthResponse", 503),
    )
    route(
        "/predict",
        endpoints.predict,
        methods=["POST"],
        tags=["predict"],
        summary="Predict",
        responses=_responses("PredictResponse", 401, 404, 413, 422, 429, 500, 503),
        openapi_extra=_body("PredictRequest", "One instance per row."),
    )
    route(
        "/v2",
        endpoints.server_metadata,
        methods=["GET"],
        tags=["v2"],
        summary="Server metadata",
        responses=_responses("MetadataServerResponse"),
    )
    route("/v2/", endpoints.server_metadata, methods=["GET"], include_in_schema=False)
    route(
        "/v2/health/live",
        endpoints.server_live,
        methods=["GET"],
        tags=["v2"],
        summary="Server live",
        responses=_responses("ServerLiveResponse"),
    )
    route(
        "/v2/health/ready",
        endpoints.server_ready,
        methods=["GET"],
        tags=["v2"],
        summary="Server ready",
        responses=_responses("ServerReadyResponse", 503),
    )
    route(
        "/v2/models/{model_name}",
        endpoints.model_metadata,
        methods=["GET"],
        tags=["v2"],
        summary="Model metadata",
        responses=_responses("MetadataModelResponse", 401, 404),
    )
    route(
        "/v2/models/{model_name}/versions/{model_version}",
        endpoints.model_version_metadata,
        methods=["GET"],
        tags=["v2"],
        summary="Model metadata (version)",
        responses=_responses("MetadataModelResponse", 401, 404),
    )
    route(
        "/v2/models/{model_name}/ready",
        endpoints.model_ready,
        methods=["GET"],
        tags=["v2"],
        summary="Model ready",
        responses=_responses("ModelReadyResponse", 401, 404, 503),
    )
    route(
        "/v2/models/{model_name}/versions/{model_version}/ready",
        endpoints.model_version_ready,
        methods=["GET"],
        tags=["v2"],
        summary="Model ready (version)",
        responses=_responses("ModelReadyResponse", 401, 404, 503),
    )
    infer_body = _body(
        "InferenceRequest",
        "JSON tensors. Binary tensor extension: send `Inference-Header-Content-Length: <bytes of the "
        "JSON part>`, the JSON, then each input with `parameters.binary_data_size` in order.",
    )
    route(
        "/v2/models/{model_name}/infer",
        endpoints.infer,
        methods=["POST"],
        tags=["v2"],
        summary="Inference",
        responses=_responses("InferenceResponse", 400, 401, 404, 413, 429, 500, 503),
        openapi_extra=infer_body,
    )
    route(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        endpoints.infer_version,
        methods=["POST"],
        tags=["v2"],
        summary="Inference (version)",
        responses=_responses("InferenceResponse", 400, 401, 404, 413, 429, 500, 503),
        openapi_extra=infer_body,
    )
    route(
        "/metrics",
        endpoints.metrics,
        methods=["GET"],
        tags=["operations"],
        summary="Prometheus metrics",
        responses={
            200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
        },
    )

    install_error_handlers(app)
    if settings.cors_allow_origins:
        # CORS wraps everything the app serves: the inference routes are served inside it.
        app.add_middleware(ServerMiddleware, settings=settings, metrics=data_plane.metrics, endpoints=endpoints)
    else:
        app.add_middleware(ServerMiddleware, settings=settings, metrics=data_plane.metrics)
        app.front = ServerMiddleware(app, settings=settings, metrics=data_plane.metrics, endpoints=endpoints)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-API-Key",
                "X-Request-ID",
                "Inference-Header-Content-Length",
            ],
            expose_headers=["X-Request-ID", "Inference-Header-Content-Length"],
        )
    app.openapi = _openapi_builder(app, settings)  # type: ignore[method-assign]
    return app


def _openapi_builder(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document with the protocol schemas, and path parameters pinned to the served model."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, definitions = models_json_schema([(model, "validation") for model in SCHEMA_MODELS], ref_template=_REF)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(definitions.get("$defs", {}))
        pinned = {"model_name": settings.model_name, "model_version": settings.model_version}
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "path" and parameter.get("name") in pinned:
                        value = pinned[parameter["name"]]
                        parameter["schema"] = {"type": "string", "enum": [value], "examples": [value]}
                        parameter["description"] = (
                            f"This server serves {parameter['name'].replace('_', ' ')} {value!r}."
                        )
        app.openapi_schema = document
        return document

    return build
