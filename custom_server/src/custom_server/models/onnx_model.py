"""ONNX models through ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from custom_server.errors import InvalidInput
from custom_server.models.base import Model, Tensors, TensorSpec

#: ONNX element types -> v2 datatypes.
ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def _shape(dims: Sequence[Any]) -> tuple[int, ...]:
    return tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in dims)


class ONNXModel(Model):
    """An ``onnxruntime.InferenceSession`` (CUDA provider first when it is available)."""

    platform = "onnxruntime_onnx"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: Any = None
        self._input_types: dict[str, Any] = {}
        self._invalid_argument: tuple[type[BaseException], ...] = ()

    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.settings.intra_op_threads:
            options.intra_op_num_threads = self.settings.intra_op_threads
        available = ort.get_available_providers()
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if self.settings.device == "cpu":
            wanted = ["CPUExecutionProvider"]
        providers = [name for name in wanted if name in available]
        self._session = ort.InferenceSession(str(self.settings.model_path), options, providers=providers)
        self.inputs = [
            TensorSpec(node.name, ONNX_TYPES.get(node.type, "BYTES"), _shape(node.shape))
            for node in self._session.get_inputs()
        ]
        self.outputs = [
            TensorSpec(node.name, ONNX_TYPES.get(node.type, "FP32"), _shape(node.shape) if node.shape else (-1, -1))
            for node in self._session.get_outputs()
        ]
        self._input_types = {spec.name: _NUMPY.get(spec.datatype, object) for spec in self.inputs}
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        self._invalid_argument = tuple(
            getattr(state, name) for name in ("InvalidArgument", "InvalidGraph") if hasattr(state, name)
        )

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        feed: dict[str, np.ndarray] = {}
        for spec, array in self.match_inputs(inputs):
            wanted = self._input_types[spec.name]
            feed[spec.name] = array if array.dtype == wanted else array.astype(wanted)
        names = list(outputs) if outputs else [spec.name for spec in self.outputs]
        try:
            values = self._session.run(names, feed)
        except self._invalid_argument as exc:
            raise InvalidInput(f"inputs: ONNX Runtime rejected the input: {str(exc).splitlines()[0][:300]}") from None
        return {name: _tensor(value) for name, value in zip(names, values, strict=True)}


def _tensor(value: Any) -> np.ndarray:
    """ONNX outputs as arrays; a sequence of maps (scikit-learn's ZipMap) becomes rows of values."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = sorted(value[0])
        return np.asarray([[row[key] for key in keys] for row in value])
    return np.asarray(value)
