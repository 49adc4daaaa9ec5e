"""Wire formats: JSON bodies (orjson out, pydantic-core in) and the v2 binary tensor extension."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError
from starlette.responses import Response

from custom_server.dataplane import InferenceResult, PreparedInfer
from custom_server.errors import InvalidInput, ServerError, ValidationFailed
from custom_server.protocol import InferenceRequest, Parameters, PredictRequest, RequestOutput
from custom_server.tensors import datatype_of, encode_binary_data, encode_json_data, json_default

#: Header of the binary tensor extension: bytes of the JSON part at the start of the body.
HEADER_LENGTH = "inference-header-content-length"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_MAX_REPORTED_ERRORS = 5


class JSONResponse(Response):
    """A JSON response rendered by orjson (numpy arrays serialized natively)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dump_json(content)


def dump_json(content: Any) -> bytes:
    """orjson, falling back to the standard library for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(content, option=_JSON_OPTIONS, default=json_default)
    except orjson.JSONEncodeError:
        return json.dumps(content, default=json_default, ensure_ascii=False).encode()


def error_response(exc: ServerError) -> Response:
    """The one mapping of a typed error to its response: its status, its headers, ``{"error": ...}``."""
    body: dict[str, Any] = {"error": exc.message}
    if isinstance(exc, ValidationFailed):
        body["detail"] = exc.details
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers or None)


def location(loc: Sequence[str | int]) -> str:
    """``("inputs", 0, "shape")`` -> ``inputs[0].shape``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def _messages(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str, str]]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        kind = str(error.get("type", "value_error"))
        if kind == "json_invalid":
            message = f"the body is not valid JSON ({error.get('ctx', {}).get('error', message)})"
        elif kind == "model_type":
            message = "expected a JSON object"
        out.append((loc, message, kind))
    return out


def validation_message(exc: ValidationError) -> str:
    """One line naming each bad field of a pydantic validation error (``inputs[0].shape: ...``)."""
    return _summary(_messages(exc))


def _summary(errors: list[tuple[tuple[str | int, ...], str, str]]) -> str:
    parts = [f"{location(loc)}: {message}" for loc, message, _ in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def parse_predict(body: bytes) -> PredictRequest:
    """The ``/predict`` body; 422 naming each bad field."""
    try:
        return PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = _messages(exc)
        detail: list[dict[str, object]] = [
            {"loc": ["body", *loc], "msg": message, "type": kind} for loc, message, kind in errors
        ]
        raise ValidationFailed(_summary(errors), detail) from None


def split_infer_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    """A v2 body's JSON part and binary part (binary tensor extension, when the header is given)."""
    if header_length is None:
        return body, None
    try:
        size = int(header_length)
    except ValueError:
        raise InvalidInput(f"header Inference-Header-Content-Length: {header_length!r} is not a number") from None
    if size < 0 or size > len(body):
        raise InvalidInput(f"header Inference-Header-Content-Length: {size} is outside the body's {len(body)} bytes")
    view = memoryview(body)
    return bytes(view[:size]), view[size:]


def parse_infer_json(json_part: bytes) -> InferenceRequest:
    """A v2 request's JSON; 400 naming each bad field."""
    try:
        return InferenceRequest.model_validate_json(json_part)
    except ValidationError as exc:
        raise InvalidInput(_summary(_messages(exc))) from None


def binary_chunks(request: InferenceRequest, binary_part: memoryview | None) -> list[memoryview | None] | None:
    """Each input's raw bytes out of the binary part (None for inputs given as JSON data)."""
    if binary_part is None:
        return None
    chunks: list[memoryview | None] = []
    offset = 0
    for index, item in enumerate(request.inputs):
        size_value = (item.parameters or {}).get("binary_data_size")
        if size_value is None:
            chunks.append(None)
            continue
        if isinstance(size_value, bool) or not isinstance(size_value, int) or size_value < 0:
            raise InvalidInput(f"inputs[{index}].parameters.binary_data_size: expected a non-negative integer")
        if offset + size_value > len(binary_part):
            raise InvalidInput(
                f"inputs[{index}].parameters.binary_data_size: {size_value} bytes run past the body "
                f"({len(binary_part) - offset} left)"
            )
        chunks.append(binary_part[offset : offset + size_value])
        offset += size_value
    if offset != len(binary_part):
        raise InvalidInput(f"body: {len(binary_part) - offset} binary byte(s) belong to no input")
    return chunks


def parse_infer(body: bytes, header_length: str | None) -> tuple[InferenceRequest, list[memoryview | None] | None]:
    """A v2 inference body (JSON, or JSON + binary tensors); 400 naming each bad field."""
    json_part, binary_part = split_infer_body(body, header_length)
    request = parse_infer_json(json_part)
    return request, binary_chunks(request, binary_part)


def _wants_binary(parameters: Parameters | None, outputs: list[RequestOutput] | None) -> tuple[bool, set[str]]:
    every = bool(parameters.get("binary_data_output", False)) if parameters else False
    named = {out.name for out in outputs or () if out.parameters and out.parameters.get("binary_data") is True}
    return every, named


def encode_infer_response(result: InferenceResult, prepared: PreparedInfer) -> tuple[bytes, int | None]:
    """The v2 ``$inference_response``: the body, and the JSON part's length when binary outputs follow it
    (the request asked for them: ``Inference-Header-Content-Length``), else None."""
    every, named = (
        _wants_binary(prepared.parameters, prepared.outputs) if prepared.parameters or prepared.outputs else (False, ())
    )
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, value in result.outputs:
        array = np.asarray(value)
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype), "shape": list(array.shape)}
        if every or name in named:
            blob = encode_binary_data(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = encode_json_data(array)
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": result.model_name, "model_version": result.model_version}
    if result.id is not None:
        body["id"] = result.id
    body["outputs"] = outputs
    header = dump_json(body)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def infer_response(result: InferenceResult, prepared: PreparedInfer) -> Response:
    """The v2 ``$inference_response`` as JSON, or JSON + binary when the request asked for it."""
    body, header_length = encode_infer_response(result, prepared)
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_length)}
    )
