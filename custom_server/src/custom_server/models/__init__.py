"""Model loaders: scikit-learn, ONNX, TorchScript and the user's own Python class."""

from __future__ import annotations

from custom_server.models.base import Model, Tensors, TensorSpec
from custom_server.settings import ModelFormat, Settings

__all__ = ["Model", "TensorSpec", "Tensors", "create_model"]


def create_model(settings: Settings) -> Model:
    """The (not yet loaded) model for ``MODEL_FORMAT``; the library is imported by ``load``."""
    fmt = settings.format
    if fmt is ModelFormat.SKLEARN:
        from custom_server.models.sklearn_model import SKLearnModel

        return SKLearnModel(settings)
    if fmt is ModelFormat.ONNX:
        from custom_server.models.onnx_model import ONNXModel

        return ONNXModel(settings)
    if fmt is ModelFormat.TORCHSCRIPT:
        from custom_server.models.torchscript_model import TorchScriptModel

        return TorchScriptModel(settings)
    from custom_server.models.python_model import PythonModel

    return PythonModel(settings)
