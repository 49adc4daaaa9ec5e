"""scikit-learn (and anything with a scikit-learn API) saved with joblib or pickle."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from custom_server.errors import InvalidInput
from custom_server.models.base import Model, Tensors, TensorSpec, single_input
from custom_server.tensors import datatype_of

#: Methods a request may ask for by output name, in the order tried for the default.
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")


class SKLearnModel(Model):
    """``joblib.load`` of an estimator or pipeline; outputs are named after its methods."""

    platform = "sklearn"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._estimator: Any = None
        self._default: tuple[str, ...] = ("predict",)

    def load(self) -> None:
        import joblib

        path = self.settings.model_path
        assert path is not None
        estimator = joblib.load(path)
        methods = [name for name in METHODS if callable(getattr(estimator, name, None))]
        if not methods:
            raise TypeError(f"{type(estimator).__name__} loaded from {path} has none of {', '.join(METHODS)}")
        # Estimators fit on DataFrames warn on every array call; the server always passes arrays. Only
        # for those: scikit-learn re-applies every warning filter for each task of a call (each tree of
        # a forest), so a filter costs every call something.
        if getattr(estimator, "feature_names_in_", None) is not None:
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
        self._estimator = estimator
        self._default = (methods[0],)
        n_features = getattr(estimator, "n_features_in_", None)
        if isinstance(n_features, int | np.integer):
            self.inputs = [TensorSpec("input-0", "FP64", (-1, int(n_features)))]
        classes = getattr(estimator, "classes_", None)
        self.outputs = []
        for name in methods:
            if name == "predict" and classes is not None:
                self.outputs.append(TensorSpec(name, datatype_of(np.asarray(classes).dtype), (-1,)))
            elif name == "predict" or classes is None:
                self.outputs.append(TensorSpec(name, "FP64", (-1,) if name == "predict" else (-1, -1)))
            else:
                width = len(classes) if name != "decision_function" or len(classes) > 2 else 1
                shape = (-1, width) if width > 1 else (-1,)
                self.outputs.append(TensorSpec(name, "FP64", shape))

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        features = single_input(inputs, "scikit-learn")
        result: Tensors = {}
        for name in outputs or self._default:
            method = getattr(self._estimator, name, None) if name in METHODS else None
            if method is None:
                raise InvalidInput(f"outputs: the model has no output {name!r}")
            result[name] = np.asarray(method(features))
        return result
