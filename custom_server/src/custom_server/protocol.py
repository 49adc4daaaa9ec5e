"""Request and response types of the two REST protocols (validation and the OpenAPI document).

Open Inference Protocol v2 (KServe/Triton ``/v2``) and the seed's ``/predict``. Bodies are validated
straight from bytes (pydantic-core's JSON parser); tensor data is checked against the declared
datatype and shape when it is turned into an array, so a 10k-element tensor is not validated twice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
Parameters = dict[str, str | int | float | bool]
Dimension = Annotated[int, Field(ge=0, le=2**63 - 1)]

_TENSOR_DATA: dict[str, Any] = {
    "type": "array",
    "description": "The tensor's elements in row-major order, flat or nested. Numbers for numeric "
    "datatypes, true/false for BOOL, strings for BYTES. Omitted when the input is sent in binary "
    "(binary tensor extension).",
    "items": {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}, {"type": "array"}]},
}


class _Request(BaseModel):
    # Strict types (``true`` is not a dimension); unknown fields are ignored, as KServe and Triton
    # clients may add their own.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class RequestInput(_Request):
    """``$request_input``: one input tensor."""

    name: str = Field(min_length=1, max_length=256, description="The input's name.")
    shape: list[Dimension] = Field(max_length=32, description="The tensor's shape, first axis = batch.")
    datatype: Datatype = Field(description="The element type.")
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_size`: bytes of this input in the binary part of the body."
    )
    data: list[Any] | None = Field(default=None, json_schema_extra=_TENSOR_DATA)


class RequestOutput(_Request):
    """``$request_output``: an output to return."""

    name: str = Field(min_length=1, max_length=256, description="The output's name.")
    parameters: Parameters | None = Field(default=None, description="`binary_data`: return this output in binary.")


class InferenceRequest(_Request):
    """``$inference_request``."""

    id: str | None = Field(default=None, max_length=256, description="Echoed in the response.")
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_output`: return every output in binary."
    )
    inputs: list[RequestInput] = Field(min_length=1, max_length=64)
    outputs: list[RequestOutput] | None = Field(default=None, max_length=64)


class ResponseOutput(BaseModel):
    """``$response_output``."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = Field(default=None, json_schema_extra=_TENSOR_DATA)


class InferenceResponse(BaseModel):
    """``$inference_response``."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    """``$metadata_tensor``."""

    name: str
    datatype: str
    shape: list[int]


class MetadataModelResponse(BaseModel):
    """``$metadata_model_response``."""

    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor] = Field(default_factory=list)
    outputs: list[MetadataTensor] = Field(default_factory=list)


class MetadataServerResponse(BaseModel):
    """``$metadata_server_response``."""

    name: str
    version: str
    extensions: list[str]


class ServerLiveResponse(BaseModel):
    """``$live_server_response``."""

    live: bool


class ServerReadyResponse(BaseModel):
    """``$ready_server_response`` (plus ``error`` while not ready)."""

    ready: bool
    error: str | None = None


class ModelReadyResponse(BaseModel):
    """``$ready_model_response``."""

    name: str
    ready: bool
    error: str | None = None


class ErrorResponse(BaseModel):
    """Every error: ``{"error": "..."}`` (``/predict`` validation errors add ``detail``)."""

    error: str
    detail: list[dict[str, Any]] | None = None


class PredictRequest(_Request):
    """The seed's ``POST /predict`` body: one instance per row."""

    instances: list[Any] = Field(
        min_length=1,
        max_length=1_000_000,
        description="The rows to predict: lists of features for scikit-learn/ONNX/TorchScript models, "
        "any JSON values for python models.",
        json_schema_extra={"items": {}},
    )


class PredictResponse(BaseModel):
    """``POST /predict`` response: one prediction per instance."""

    model_config = ConfigDict(protected_namespaces=())

    predictions: Any = Field(description="A list (one item per instance), or a dict of them for several outputs.")
    model_name: str
    model_version: str


class HealthResponse(BaseModel):
    """``/health/live`` and ``/health/ready``."""

    status: Literal["live", "ready", "loading", "failed", "draining"]
    model: str | None = None
    model_version: str | None = None
    error: str | None = None

    model_config = ConfigDict(protected_namespaces=())


SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    ServerLiveResponse,
    ServerReadyResponse,
    ModelReadyResponse,
    ErrorResponse,
    PredictRequest,
    PredictResponse,
    HealthResponse,
)
