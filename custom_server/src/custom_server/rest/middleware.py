"""One plain ASGI middleware for everything cross-cutting (cheaper than a stack of them).

Request id (``X-Request-ID`` in and out), body size limit (413), API key (401), catch-all 500,
Prometheus request metrics, the optional JSON access log.

It also serves the inference routes itself (``POST /v2/models/{name}[/versions/{version}]/infer``
and ``/predict``), with the same handlers and error mapping as the app, called by the app before
any of FastAPI's layers (``rest.app.ServerApp``): FastAPI's router, parameter injection, body-limit
and telemetry middlewares and Starlette's request and response objects cost more than the rest of
the request's handling on one core (issue 17's workload). The app keeps those routes for its OpenAPI
document and for other methods.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from custom_server.errors import InvalidInput, PayloadTooLarge, ServerError, Unauthorized
from custom_server.logs import REQUEST_ID
from custom_server.metrics import Metrics
from custom_server.rest.codec import error_response
from custom_server.rest.endpoints import BodyReader, Endpoints, Reply
from custom_server.settings import Settings

logger = logging.getLogger("custom_server.rest")
access_logger = logging.getLogger("custom_server.access")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
#: Paths that need the API key when one is set (health, metrics and docs stay open for probes).
_PROTECTED = ("/predict", "/v2/models")

#: An inference route's handler: the body reader and the binary extension's header -> the reply.
Handler = Callable[[BodyReader, str | None], Awaitable[Reply]]


def fast_route(path: str, endpoints: Endpoints) -> tuple[str, Handler] | None:
    """The route template and handler of a POST to an inference path, or None (the app routes it)."""
    if path == "/predict":
        return "/predict", lambda read_body, _: endpoints.predict_body(read_body)
    parts = path.split("/")
    if len(parts) < 5 or parts[1] != "v2" or parts[2] != "models" or not parts[3] or parts[-1] != "infer":
        return None
    name = parts[3]
    if len(parts) == 5:
        return (
            "/v2/models/{model_name}/infer",
            lambda read_body, header: endpoints.infer_body(read_body, header, name, None),
        )
    if len(parts) == 7 and parts[4] == "versions" and parts[5]:
        version = parts[5]
        return (
            "/v2/models/{model_name}/versions/{model_version}/infer",
            lambda read_body, header: endpoints.infer_body(read_body, header, name, version),
        )
    return None


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (what Starlette's ``Request.body`` does, without the request object)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ServerMiddleware:
    """See the module docstring."""

    def __init__(
        self, app: ASGIApp, *, settings: Settings, metrics: Metrics, endpoints: Endpoints | None = None
    ) -> None:
        self.app = app
        self.endpoints = endpoints
        self.metrics = metrics
        self.limit = settings.max_request_bytes
        self.access_log = settings.access_log
        self.api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        # Generated request ids: a random per-process prefix and a counter (unique, and cheaper than uuid4).
        self._id_prefix = os.urandom(6).hex() + "-"
        self._ids = itertools.count(1)

    def route(self, scope: Scope) -> tuple[str, Handler] | None:
        """The fast route of an HTTP request, or None: the app serves it."""
        if self.endpoints is None or scope["method"] != "POST":
            return None
        return fast_route(scope["path"], self.endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send, self.route(scope))

    async def handle(self, scope: Scope, receive: Receive, send: Send, fast: tuple[str, Handler] | None) -> None:
        """Serve an HTTP request: by the fast route's handler when given, else by the app."""
        started = time.perf_counter()
        given_id: bytes | None = None
        length: bytes | None = None
        authorization: bytes | None = None
        api_key: bytes | None = None
        binary_header: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == b"x-request-id":
                given_id = value
            elif key == b"authorization":
                authorization = value
            elif key == b"x-api-key":
                api_key = value
            elif key == b"inference-header-content-length":
                binary_header = value
        if given_id is not None and _REQUEST_ID.match(given_id):
            request_id = given_id.decode()
        else:
            request_id = f"{self._id_prefix}{next(self._ids):x}"
        token = REQUEST_ID.set(request_id)
        id_header = (b"x-request-id", request_id.encode())
        status = [500, False]  # status code, response started

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                status[1] = True
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        self.metrics.request_started()
        try:
            rejection = self._reject(scope["path"], length, authorization, api_key)
            body_receive = receive if length is not None else self._limited(receive)
            if rejection is not None:
                await error_response(rejection)(scope, receive, send_wrapper)
            elif fast is not None:
                try:
                    reply = await fast[1](
                        lambda: _read_body(body_receive),
                        binary_header.decode("latin-1") if binary_header is not None else None,
                    )
                except ServerError as exc:
                    if exc.status_code >= 500:
                        logger.warning("request failed: %s", exc.message, extra={"status": exc.status_code})
                    await error_response(exc)(scope, receive, send_wrapper)
                else:
                    status[0], status[1] = 200, True
                    headers = [
                        (b"content-type", reply.content_type),
                        (b"content-length", str(len(reply.body)).encode()),
                        *reply.headers,
                        id_header,
                    ]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": reply.body})
            else:
                await self.app(scope, body_receive, send_wrapper)
        except Exception:
            logger.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            if not status[1]:
                failure = ServerError("internal server error; see the server log for this request id")
                await error_response(failure)(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            endpoint = fast[0] if fast is not None else getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(endpoint, int(status[0]), elapsed)
            self.metrics.request_finished()
            if self.access_log:
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status[0],
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status[0],
                        "duration_ms": round(elapsed * 1000, 3),
                        "client": _client(scope),
                    },
                )
            REQUEST_ID.reset(token)

    def _reject(
        self, path: str, length: bytes | None, authorization: bytes | None, api_key: bytes | None
    ) -> ServerError | None:
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return InvalidInput("header Content-Length: not a number")
            if size > self.limit:
                return PayloadTooLarge(f"the body has {size} bytes; the limit is {self.limit} (MAX_REQUEST_BYTES)")
        if self.api_key is not None and path.startswith(_PROTECTED):
            offered = api_key
            if offered is None and authorization is not None and authorization[:7].lower() == b"bearer ":
                offered = authorization[7:].strip()
            if offered is None or not hmac.compare_digest(offered, self.api_key):
                return Unauthorized(
                    "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                )
        return None

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that fails with 413 once a body without Content-Length passes the limit."""
        received = 0
        limit = self.limit

        async def wrapped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"the body passed the limit of {limit} bytes (MAX_REQUEST_BYTES)")
            return message

        return wrapped


def _client(scope: Scope) -> Any:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
