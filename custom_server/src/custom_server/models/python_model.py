"""A user's own model: ``MODEL_CLASS=module:attr`` (or ``/path/to/file.py:attr``).

``attr`` may be

* a class: instantiated without arguments;
* an object with ``predict``: used as it is;
* a function: a factory called as ``f(model_path)`` (or ``f()``) that returns an object with
  ``predict`` or a plain callable.

Then ``load(model_path)`` (or ``load()``) is called once if the object has it, and ``predict(x)``
serves requests: ``x`` is a numpy array (first axis = rows, several requests' rows when batching)
for a single input, or a dict of arrays by input name for several. It returns an array or list with
one item per row, or a dict of them (named outputs). Optional attributes: ``supports_batching``
(False: one request per call), ``inputs``/``outputs`` (lists of ``{name, datatype, shape}`` for the
metadata endpoint and input checks).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from custom_server.errors import InvalidInput
from custom_server.models.base import Model, Tensors, TensorSpec
from custom_server.tensors import to_array


def import_attr(spec: str) -> Any:
    """Resolve ``module:attr`` or ``/path/file.py:attr`` (attr may be dotted)."""
    module_part, sep, attr_part = spec.rpartition(":")
    if not sep or not module_part or not attr_part:
        raise ValueError(f"MODEL_CLASS {spec!r} is not 'module:attr' or '/path/file.py:attr'")
    if module_part.endswith(".py"):
        path = Path(module_part).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"MODEL_CLASS file {str(path)!r} does not exist")
        name = f"custom_server_user_model_{path.stem}"
        file_spec = importlib.util.spec_from_file_location(name, path)
        if file_spec is None or file_spec.loader is None:
            raise ImportError(f"cannot import {str(path)!r}")
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = module
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        file_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    target: Any = module
    for part in attr_part.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AttributeError(f"MODEL_CLASS {spec!r}: {module_part} has no attribute {attr_part!r}") from None
    return target


def _call_optional_path(function: Callable[..., Any], model_path: str | None) -> Any:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return function(model_path)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return function(model_path) if positional else function()


def _spec(item: Any) -> TensorSpec:
    if isinstance(item, TensorSpec):
        return item
    if isinstance(item, Mapping):
        return TensorSpec(
            str(item["name"]), str(item.get("datatype", "BYTES")), tuple(int(d) for d in item.get("shape", ()))
        )
    raise TypeError(f"cannot read a tensor description from {item!r}")


class PythonModel(Model):
    """Wraps the user's object; see the module docstring for the contract."""

    platform = "python"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._predict: Callable[[Any], Any] | None = None

    def load(self) -> None:
        assert self.settings.model_class is not None
        model_path = str(self.settings.model_path) if self.settings.model_path is not None else None
        target = import_attr(self.settings.model_class)
        if inspect.isclass(target):
            instance = target()
        elif hasattr(target, "predict"):
            instance = target
        elif callable(target):
            instance = _call_optional_path(target, model_path)
        else:
            raise TypeError(
                f"MODEL_CLASS {self.settings.model_class!r} is neither a class, a function nor has predict()"
            )
        load = getattr(instance, "load", None)
        if callable(load):
            _call_optional_path(load, model_path)
        predict = getattr(instance, "predict", None)
        if callable(predict):
            self._predict = predict
        elif callable(instance):
            self._predict = instance
        else:
            raise TypeError(
                f"MODEL_CLASS {self.settings.model_class!r} gave {type(instance).__name__}, which has no predict()"
            )
        self.supports_batching = bool(getattr(instance, "supports_batching", True))
        self.inputs = [_spec(item) for item in getattr(instance, "inputs", None) or []]
        self.outputs = [_spec(item) for item in getattr(instance, "outputs", None) or []]

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        assert self._predict is not None
        argument: Any = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
        result = self._predict(argument)
        if isinstance(result, Mapping):
            named = {str(name): to_array(value) for name, value in result.items()}
        else:
            named = {"output-0": to_array(result)}
        if outputs:
            missing = [name for name in outputs if name not in named]
            if missing:
                raise InvalidInput(f"outputs: the model has no output {missing[0]!r} (it has: {', '.join(named)})")
            return {name: named[name] for name in outputs}
        return named
