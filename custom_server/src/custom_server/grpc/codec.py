"""ModelInfer messages <-> the data plane's request and arrays; no event loop, so any process.

``ModelInfer`` is registered without a request deserializer: the servicer gets the message's bytes
and decodes them here, on the event loop when small, in the decoding helper process when over
``INLINE_DECODE_BYTES`` (as REST does with big JSON). Parsing a big message and turning typed
``contents`` into arrays holds the GIL throughout (a 15 MiB message of INT32 or BYTES elements
takes a quarter to one second), which would stall every other request and the liveness probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from custom_server.errors import InvalidInput
from custom_server.grpc import grpc_predict_v2_pb2 as pb
from custom_server.protocol import InferenceRequest
from custom_server.tensors import DATATYPES, datatype_of, encode_binary_data

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


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a microsecond per field
class DecodedMessage:
    """A ModelInfer request decoded: the model asked for, the request without tensor data, typed
    contents as arrays (input index -> array), or ``raw_input_contents`` (one entry per input)."""

    model_name: str
    model_version: str | None
    request: InferenceRequest
    arrays: dict[int, np.ndarray]
    raw: list[bytes] | None


def _parameter(value: pb.InferParameter) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def _parameters(mapping: Any) -> dict[str, Any] | None:
    return {key: _parameter(value) for key, value in mapping.items()} or None


def contents_array(field: str, datatype: str, shape: list[int], tensor: Any) -> np.ndarray:
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


def decode_infer_message(message: bytes) -> DecodedMessage:
    """Parse a ModelInferRequest's bytes and decode its typed contents (bad input: InvalidInput)."""
    try:
        request = pb.ModelInferRequest.FromString(message)
    except DecodeError:
        raise InvalidInput("request: not a ModelInferRequest message (protobuf decoding failed)") from None
    raw = list(request.raw_input_contents) or None
    if raw is not None and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs; give one per input"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        if raw is not None and tensor.HasField("contents"):
            raise InvalidInput(f"inputs[{index}].contents: not allowed with raw_input_contents")
        inputs.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": [int(dim) for dim in tensor.shape],
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

        raise InvalidInput(validation_message(exc)) from None  # type: ignore[arg-type]
    arrays: dict[int, np.ndarray] = {}
    if raw is None:
        for index, tensor in enumerate(request.inputs):
            item = parsed.inputs[index]
            arrays[index] = contents_array(f"inputs[{index}]", item.datatype, list(item.shape), tensor)
    return DecodedMessage(request.model_name, request.model_version or None, parsed, arrays, raw)


def _to_contents(array: np.ndarray, datatype: str, contents: pb.InferTensorContents) -> None:
    name = CONTENTS_FIELD[datatype]
    flat = array.reshape(-1)
    if datatype == "BYTES":
        getattr(contents, name).extend(
            item if isinstance(item, bytes) else str(item).encode() for item in flat.tolist()
        )
    else:
        getattr(contents, name).extend(flat.tolist())


def infer_response(
    model_name: str, model_version: str, request_id: str | None, outputs: list[tuple[str, Any]], *, raw_out: bool
) -> pb.ModelInferResponse:
    """The ModelInferResponse of a result: typed contents, or raw (``raw_out``, or an FP16 output)."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version)
    if request_id is not None:
        response.id = request_id
    for name, value in outputs:
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
        for (_, value), out in zip(outputs, response.outputs, strict=True):
            out.ClearField("contents")
            response.raw_output_contents.append(encode_binary_data(np.asarray(value)))
    return response
