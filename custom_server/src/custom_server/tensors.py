"""Open Inference Protocol tensors <-> numpy: datatypes, JSON data and the binary tensor extension."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from custom_server.errors import InvalidInput

#: v2 datatype -> numpy dtype (BYTES is an object array of ``bytes`` or ``str``).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

_INT_NAMES = {1: "INT8", 2: "INT16", 4: "INT32", 8: "INT64"}
_UINT_NAMES = {1: "UINT8", 2: "UINT16", 4: "UINT32", 8: "UINT64"}
_FLOAT_NAMES = {2: "FP16", 4: "FP32", 8: "FP64"}
_U32 = struct.Struct("<I")


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 datatype name of a numpy dtype (strings and objects are BYTES)."""
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind == "i":
        return _INT_NAMES.get(dtype.itemsize, "INT64")
    if kind == "u":
        return _UINT_NAMES.get(dtype.itemsize, "UINT64")
    if kind == "f":
        return _FLOAT_NAMES.get(dtype.itemsize, "FP64")
    return "BYTES"


def element_count(shape: Sequence[int]) -> int:
    """Number of elements of a tensor of this shape."""
    return math.prod(shape)


def decode_json_data(field: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """The tensor described by a v2 JSON input; ``field`` names it in errors (``inputs[0]``)."""
    dtype = _dtype(field, datatype)
    count = element_count(shape)
    if not isinstance(data, list):
        raise InvalidInput(f"{field}.data: expected an array of {datatype} values")
    if datatype == "BYTES":
        flat: list[Any] = []
        _flatten(field, data, flat)
        for index, item in enumerate(flat):
            if not isinstance(item, str):
                raise InvalidInput(f"{field}.data[{index}]: BYTES elements must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        array = _numeric(field, datatype, dtype, data)
    if array.size != count:
        raise InvalidInput(f"{field}.data: {array.size} element(s) do not fill shape {list(shape)} ({count} elements)")
    return _reshape(field, array, shape)


def decode_binary_data(field: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> np.ndarray:
    """The tensor of a binary tensor extension input (little-endian, row-major)."""
    dtype = _dtype(field, datatype)
    count = element_count(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        view = memoryview(raw)
        offset = 0
        while offset < len(view):
            if offset + 4 > len(view):
                raise InvalidInput(f"{field}: truncated BYTES element length at byte {offset}")
            (length,) = _U32.unpack_from(view, offset)
            offset += 4
            if offset + length > len(view):
                raise InvalidInput(f"{field}: BYTES element of {length} bytes runs past the tensor's data")
            items.append(bytes(view[offset : offset + length]))
            offset += length
        if len(items) != count:
            raise InvalidInput(f"{field}: {len(items)} BYTES element(s) do not fill shape {list(shape)}")
        array = np.empty(count, dtype=object)
        array[:] = items
        return _reshape(field, array, shape)
    wire = dtype.newbyteorder("<")
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"{field}.parameters.binary_data_size: {len(raw)} bytes, but shape {list(shape)} of "
            f"{datatype} takes {expected}"
        )
    return _reshape(field, np.frombuffer(raw, dtype=wire).astype(dtype, copy=False), shape)


def _reshape(field: str, array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    try:
        return array.reshape(tuple(shape))
    except ValueError as exc:  # e.g. a zero-sized shape whose other dimensions overflow numpy's index type
        raise InvalidInput(f"{field}.shape: {list(shape)} is not a usable shape ({_first_line(exc)})") from None


def encode_json_data(array: np.ndarray) -> Any:
    """Row-major flattened data of a tensor, ready for orjson (numpy arrays pass through)."""
    if array.dtype.kind in "biuf":
        flat = np.ascontiguousarray(array).reshape(-1)
        if flat.dtype.byteorder == ">":
            flat = flat.astype(flat.dtype.newbyteorder("="))
        return flat
    return [_bytes_element_json(item) for item in array.reshape(-1).tolist()]


def encode_binary_data(array: np.ndarray) -> bytes:
    """The binary tensor extension encoding of a tensor."""
    if array.dtype.kind in "biuf":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts: list[bytes] = []
    for item in array.reshape(-1).tolist():
        raw = _bytes_element_raw(item)
        parts.append(_U32.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def to_array(value: Any) -> np.ndarray:
    """A model's output as an array: lists of rows stay rows, ragged or mixed values become objects."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "to_numpy"):  # pandas objects
        return np.asarray(value.to_numpy())
    if hasattr(value, "numpy") and hasattr(value, "detach"):  # torch tensors
        return np.asarray(value.detach().cpu().numpy())
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        array = None
    if array is None or (array.dtype == object and isinstance(value, list | tuple) and array.ndim != 1):
        array = np.empty(len(value), dtype=object)
        for index, item in enumerate(value):
            array[index] = item
    return array


def instances_array(instances: list[Any]) -> np.ndarray:
    """The ``/predict`` instances as an array whose first axis is the instance."""
    try:
        array = np.asarray(instances)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is None or array.ndim == 0 or array.shape[0] != len(instances):
        array = np.empty(len(instances), dtype=object)
        for index, item in enumerate(instances):
            array[index] = item
    return array


def _numeric(field: str, datatype: str, dtype: np.dtype[Any], data: list[Any]) -> np.ndarray:
    """JSON numbers (or booleans) as an array of ``dtype``, refusing what does not fit it exactly."""
    try:
        parsed = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"{field}.data: not a {datatype} tensor ({_first_line(exc)})") from None
    kind = parsed.dtype.kind
    if datatype == "BOOL":
        if kind != "b" and parsed.size:
            raise InvalidInput(f"{field}.data: BOOL elements must be true or false")
        return parsed.astype(dtype, copy=False)
    if kind not in "biuf" and parsed.size:
        raise InvalidInput(f"{field}.data: {datatype} elements must be numbers (nested arrays of the same depth)")
    if dtype.kind in "iu" and parsed.size:
        if kind == "f" and not (np.all(np.isfinite(parsed)) and not np.any(np.mod(parsed, 1))):
            raise InvalidInput(f"{field}.data: {datatype} elements must be whole numbers")
        limits = np.iinfo(dtype)
        if parsed.min() < limits.min or parsed.max() > limits.max:
            raise InvalidInput(f"{field}.data: an element is outside the {datatype} range [{limits.min}, {limits.max}]")
    if parsed.dtype == dtype:
        return parsed
    with np.errstate(over="ignore"):  # large FP64 values become inf in FP16/FP32, as on the wire
        return parsed.astype(dtype)


def _dtype(field: str, datatype: str) -> np.dtype[Any]:
    try:
        return DATATYPES[datatype]
    except KeyError:
        known = ", ".join(DATATYPES)
        raise InvalidInput(f"{field}.datatype: {datatype!r} is not one of {known}") from None


def _flatten(field: str, data: list[Any], out: list[Any], depth: int = 0) -> None:
    if depth > 32:
        raise InvalidInput(f"{field}.data: nested more than 32 levels")
    for item in data:
        if isinstance(item, list):
            _flatten(field, item, out, depth + 1)
        else:
            out.append(item)


def _bytes_element_json(item: Any) -> Any:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes | bytearray):
        return bytes(item).decode("utf-8", errors="replace")
    if isinstance(item, np.generic):
        return item.item()
    if isinstance(item, dict | list | tuple):
        return orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY, default=json_default).decode()
    return str(item)


def _bytes_element_raw(item: Any) -> bytes:
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, dict | list | tuple):
        return orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY, default=json_default)
    return str(item).encode()


def json_default(value: Any) -> Any:
    """orjson fallback for what it does not serialize natively (object arrays, bytes, numpy scalars)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
