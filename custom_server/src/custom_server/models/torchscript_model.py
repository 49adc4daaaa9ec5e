"""TorchScript modules through torch (CPU, or CUDA when present)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from custom_server.errors import InvalidInput
from custom_server.models.base import Model, Tensors


class TorchScriptModel(Model):
    """``torch.jit.load`` of a scripted or traced module; inputs are passed positionally in request order."""

    platform = "pytorch_torchscript"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._module: Any = None
        self._torch: Any = None
        self._device: Any = None

    def load(self) -> None:
        import torch

        device = self.settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.settings.intra_op_threads:
            torch.set_num_threads(self.settings.intra_op_threads)
        self._device = torch.device(device)
        module = torch.jit.load(str(self.settings.model_path), map_location=self._device)  # type: ignore[no-untyped-call]
        module.eval()
        self._module = module
        self.json_float_dtype = np.dtype(np.float32)  # torch's default: JSON numbers from /predict become float32
        self._torch = torch

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        torch = self._torch
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(array)).to(self._device) for array in inputs.values()]
            try:
                result = self._module(*tensors)
            except torch.cuda.OutOfMemoryError:
                raise
            except RuntimeError as exc:
                # A scripted graph is fixed: its runtime errors come from the input's shape or type.
                message = str(exc).strip().splitlines()
                raise InvalidInput(
                    f"inputs: the module rejected the input: {message[-1][:300] if message else exc}"
                ) from None
        return _named(result)


def _named(result: Any) -> Tensors:
    if isinstance(result, dict):
        return {str(name): _numpy(value) for name, value in result.items()}
    if isinstance(result, list | tuple):
        return {f"output-{index}": _numpy(value) for index, value in enumerate(result)}
    return {"output-0": _numpy(result)}


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)
