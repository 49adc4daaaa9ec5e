"""The model interface the data plane serves, and what every loader shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from custom_server.errors import InvalidInput
from custom_server.settings import Settings

#: Inputs and outputs of one model call: tensor name -> array whose first axis is the batch.
Tensors = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output as the v2 metadata endpoint reports it; ``-1`` is a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """The v2 ``$metadata_tensor`` object."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Model(ABC):
    """One servable model: ``load`` once (in a worker thread), then ``predict`` from inference threads.

    ``predict`` gets the request's tensors (several requests' rows concatenated along the first axis
    when batching) and returns named outputs with the same number of rows.
    """

    #: The v2 ``platform`` reported by the metadata endpoint.
    platform: ClassVar[str] = "custom"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.model_name
        self.version = settings.model_version
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        #: False for models that cannot take several requests' rows in one call.
        self.supports_batching = True
        #: The float type ``/predict`` instances (JSON numbers, float64) are given to the model as.
        self.json_float_dtype: np.dtype[Any] = np.dtype(np.float64)

    @abstractmethod
    def load(self) -> None:
        """Load the model; raise on failure. Runs once, off the event loop."""

    @abstractmethod
    def predict(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        """Run the model. ``outputs`` lists the requested output names (``None``: the defaults)."""

    def check_inputs(self, inputs: Mapping[str, np.ndarray], field: str = "inputs") -> None:
        """Reject inputs that cannot fit the model's declared inputs, naming the offending field."""
        if not self.inputs:
            return
        if len(inputs) != len(self.inputs) and not (len(self.inputs) == 1 and len(inputs) == 1):
            names = ", ".join(spec.name for spec in self.inputs)
            raise InvalidInput(f"{field}: the model takes {len(self.inputs)} input(s) ({names}), got {len(inputs)}")
        pairs = self.match_inputs(inputs, field)
        for position, (spec, array) in enumerate(pairs):
            where = f"{field}[{position}].shape"
            if len(spec.shape) != array.ndim:
                raise InvalidInput(
                    f"{where}: {list(array.shape)} has {array.ndim} dimension(s); input {spec.name!r} "
                    f"takes {len(spec.shape)} ({list(spec.shape)})"
                )
            for want, got in zip(spec.shape, array.shape, strict=True):
                if want >= 0 and want != got:
                    raise InvalidInput(
                        f"{where}: {list(array.shape)} does not fit input {spec.name!r} of shape {list(spec.shape)}"
                    )

    def match_inputs(
        self, inputs: Mapping[str, np.ndarray], field: str = "inputs"
    ) -> list[tuple[TensorSpec, np.ndarray]]:
        """Pair declared inputs with the given arrays: by name, or positionally for one input."""
        if len(self.inputs) == 1 and len(inputs) == 1:
            return [(self.inputs[0], next(iter(inputs.values())))]
        given = list(inputs)
        pairs = []
        for spec in self.inputs:
            if spec.name not in inputs:
                raise InvalidInput(f"{field}: missing input {spec.name!r} (given: {', '.join(given)})")
            pairs.append((spec, inputs[spec.name]))
        for position, name in enumerate(given):
            if not any(spec.name == name for spec in self.inputs):
                raise InvalidInput(f"{field}[{position}].name: the model has no input {name!r}")
        return pairs

    def check_outputs(self, outputs: Sequence[str] | None, field: str = "outputs") -> None:
        """Reject requested outputs the model does not have (when it declares them)."""
        if not outputs or not self.outputs:
            return
        known = {spec.name for spec in self.outputs}
        for position, name in enumerate(outputs):
            if name not in known:
                raise InvalidInput(
                    f"{field}[{position}].name: the model has no output {name!r} (it has: {', '.join(sorted(known))})"
                )

    def metadata(self) -> dict[str, Any]:
        """The v2 ``$metadata_model_response``."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [spec.as_dict() for spec in self.inputs],
            "outputs": [spec.as_dict() for spec in self.outputs],
        }


def single_input(inputs: Mapping[str, np.ndarray], kind: str) -> np.ndarray:
    """The one input of a single-input model."""
    if len(inputs) != 1:
        raise InvalidInput(f"inputs: a {kind} model takes exactly one input, got {len(inputs)}")
    return next(iter(inputs.values()))
