"""The REST handlers: thin wrappers that parse, call the data plane and encode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from custom_server.dataplane import DataPlane
from custom_server.decoding import decode_infer_json, decode_predict_json
from custom_server.rest.codec import (
    HEADER_LENGTH,
    JSONResponse,
    binary_chunks,
    dump_json,
    encode_infer_response,
    split_infer_body,
)

#: Reads the request's body; called once the request holds its place in the queue.
BodyReader = Callable[[], Awaitable[bytes]]

_JSON = b"application/json"
_BINARY = b"application/octet-stream"


def _json(content: Any, status_code: int = 200) -> Response:
    return JSONResponse(content, status_code=status_code)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a microsecond per field
class Reply:
    """A successful inference response, as the middleware's fast path sends it (no Response object)."""

    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def response(self) -> Response:
        """The same as a Starlette response (for the app's own routes)."""
        headers = {name.decode(): value.decode() for name, value in self.headers}
        return Response(self.body, media_type=self.content_type.decode(), headers=headers or None)


class Endpoints:
    """Handlers bound to one data plane."""

    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane
        model = data_plane.model
        self._live = Response(orjson.dumps({"status": "live"}), media_type="application/json")
        self._v2_live = Response(orjson.dumps({"live": True}), media_type="application/json")
        self._ready_body = {"status": "ready", "model": model.name, "model_version": model.version}

    # --- seed endpoints ----------------------------------------------------------------------------

    async def health_live(self) -> Response:
        """Liveness: 200 while the process serves HTTP (also while the model loads or after it failed)."""
        return self._live

    async def health_ready(self) -> Response:
        """Readiness: 200 once the model is loaded; 503 while loading, after a failed load, or draining."""
        ready, status, error = self.data_plane.readiness()
        if ready:
            return _json(self._ready_body)
        body = {**self._ready_body, "status": status, "error": error}
        return _json(body, 503)

    async def predict(self, request: Request) -> Response:
        """Predict: ``{"instances": [...]}`` -> ``{"predictions": [...]}``, one per instance."""
        return (await self.predict_body(request.body)).response()

    async def predict_body(self, read_body: BodyReader) -> Reply:
        """``/predict`` on a body not read yet (see ``Reply``)."""
        plane = self.data_plane
        with plane.admit() as admission:  # 503/429 before the body is read
            body = await read_body()
            array = await plane.decoder.decode(len(body), decode_predict_json, body)
            del body
            model, outputs = await plane.run_predict(plane.prepare_predict(array), admission)
        predictions: Any = next(iter(outputs.values())) if len(outputs) == 1 else outputs
        return Reply(dump_json({"predictions": predictions, "model_name": model.name, "model_version": model.version}))

    # --- Open Inference Protocol v2 ----------------------------------------------------------------

    async def server_metadata(self) -> Response:
        """Server metadata: name, version, extensions."""
        return _json(self.data_plane.server_metadata())

    async def server_live(self) -> Response:
        """Server live: 200 ``{"live": true}``."""
        return self._v2_live

    async def server_ready(self) -> Response:
        """Server ready: 200 ``{"ready": true}``; 503 ``{"ready": false, "error": ...}`` otherwise."""
        ready, _, error = self.data_plane.readiness()
        if ready:
            return _json({"ready": True})
        return _json({"ready": False, "error": error}, 503)

    async def model_metadata(self, model_name: str) -> Response:
        """Model metadata: name, versions, platform, inputs, outputs."""
        return _json(self.data_plane.model_metadata(model_name))

    async def model_version_metadata(self, model_name: str, model_version: str) -> Response:
        """Model metadata of one version."""
        return _json(self.data_plane.model_metadata(model_name, model_version))

    async def model_ready(self, model_name: str) -> Response:
        """Model ready: 200 ``{"name", "ready": true}``; 503 with ``ready: false`` and the reason."""
        return self._model_ready(model_name, None)

    async def model_version_ready(self, model_name: str, model_version: str) -> Response:
        """Model ready, for one version."""
        return self._model_ready(model_name, model_version)

    def _model_ready(self, model_name: str, model_version: str | None) -> Response:
        ready, error = self.data_plane.model_ready(model_name, model_version)
        if ready:
            return _json({"name": model_name, "ready": True})
        return _json({"name": model_name, "ready": False, "error": error}, 503)

    async def infer(self, request: Request, model_name: str) -> Response:
        """Inference (JSON tensors, or the binary tensor extension)."""
        header = request.headers.get(HEADER_LENGTH)
        return (await self.infer_body(request.body, header, model_name, None)).response()

    async def infer_version(self, request: Request, model_name: str, model_version: str) -> Response:
        """Inference on one version."""
        header = request.headers.get(HEADER_LENGTH)
        return (await self.infer_body(request.body, header, model_name, model_version)).response()

    async def infer_body(
        self, read_body: BodyReader, header_length: str | None, model_name: str, model_version: str | None
    ) -> Reply:
        """Inference on a body not read yet; ``header_length``: the binary extension's header, if sent."""
        plane = self.data_plane
        plane.get_model(model_name, model_version)
        with plane.admit() as admission:  # 503/429 before the body is read
            body = await read_body()
            json_part, binary_part = split_infer_body(body, header_length)
            del body
            decoded = await plane.decoder.decode(len(json_part), decode_infer_json, json_part)
            del json_part
            chunks = binary_chunks(decoded.request, binary_part)
            prepared = plane.prepare_infer(model_name, model_version, decoded.request, chunks, decoded.arrays)
            del decoded, chunks, binary_part  # the parsed JSON is not kept while the request waits
            result = await plane.run_infer(prepared, admission)
        body, header = encode_infer_response(result, prepared)
        if header is None:
            return Reply(body)
        return Reply(body, _BINARY, ((b"inference-header-content-length", str(header).encode()),))

    # --- operations --------------------------------------------------------------------------------

    async def metrics(self) -> Response:
        """Prometheus metrics in the text exposition format."""
        content, media_type = self.data_plane.metrics.render()
        return Response(content, media_type=media_type)
