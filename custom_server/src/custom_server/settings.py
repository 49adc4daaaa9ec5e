"""Server settings, read from environment variables (and, through ``cli``, from flags).

Every field is one environment variable of the same name in upper case (``model_path`` is
``MODEL_PATH``). The names are the ones the ``custom_python`` role sets in the Deployment; the
README's settings table is generated from the field descriptions below and kept in sync by a test.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ModelFormat(StrEnum):
    """What loads the model file."""

    SKLEARN = "sklearn"
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    PYTHON = "python"


#: Other names accepted for ``MODEL_FORMAT`` (lower case), e.g. the catalog's ``pytorch``.
FORMAT_ALIASES: dict[str, ModelFormat] = {
    "scikit-learn": ModelFormat.SKLEARN,
    "scikit_learn": ModelFormat.SKLEARN,
    "joblib": ModelFormat.SKLEARN,
    "pickle": ModelFormat.SKLEARN,
    "onnxruntime": ModelFormat.ONNX,
    "torch": ModelFormat.TORCHSCRIPT,
    "pytorch": ModelFormat.TORCHSCRIPT,
    "custom": ModelFormat.PYTHON,
}

#: File suffixes that name a format when ``MODEL_FORMAT`` is not set.
SUFFIX_FORMATS: dict[str, ModelFormat] = {
    ".joblib": ModelFormat.SKLEARN,
    ".pkl": ModelFormat.SKLEARN,
    ".pickle": ModelFormat.SKLEARN,
    ".onnx": ModelFormat.ONNX,
    ".pt": ModelFormat.TORCHSCRIPT,
    ".pth": ModelFormat.TORCHSCRIPT,
    ".torchscript": ModelFormat.TORCHSCRIPT,
}

#: Setting names whose values are never logged.
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH)", re.IGNORECASE)

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Settings(BaseSettings):
    """The model server's settings. Environment variables have no prefix: ``MODEL_PATH``, ``PORT``…"""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        validate_default=True,
        protected_namespaces=(),
    )

    # --- the model -------------------------------------------------------------------------------
    model_path: Path | None = Field(
        default=None,
        description="The model file (or directory, for a `python` model that reads one). Required "
        "except for a `python` model whose loader needs no file.",
    )
    model_name: str = Field(
        default="model",
        description="The name the model is served under: `/v2/models/<name>/…`, metrics and logs.",
    )
    model_version: str = Field(
        default="1",
        description="The version reported in responses, `/v2/models/<name>/versions/<version>` and logs.",
    )
    model_format: ModelFormat | None = Field(
        default=None,
        description="`sklearn` (joblib/pickle), `onnx`, `torchscript` or `python`. When unset it is "
        "guessed: `python` if `MODEL_CLASS` is set, else from the file suffix (`.joblib` `.pkl` "
        "`.pickle` → sklearn, `.onnx` → onnx, `.pt` `.pth` `.torchscript` → torchscript). Aliases: "
        "`scikit-learn`, `joblib`, `pickle`, `pytorch`, `torch`, `custom`.",
    )
    model_class: str | None = Field(
        default=None,
        description="For `python` models: `module:attr` (or `/path/file.py:attr`) naming a class, an "
        "object with `predict`, or a factory function `f(model_path)` returning one.",
    )
    device: str = Field(
        default="auto",
        description="TorchScript device: `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="Threads one inference may use inside ONNX Runtime/torch; 0 keeps the library default.",
    )

    # --- HTTP ------------------------------------------------------------------------------------
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port (the container port).")
    grpc_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="Port of the Open Inference Protocol over gRPC (and of `grpc.health.v1` for gRPC "
        "probes); 0 turns gRPC off. Messages are limited to `MAX_REQUEST_BYTES`.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes sharing the port; each loads its own copy of the model.",
    )
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted; larger ones get 413.",
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed by CORS; empty (the default) adds no CORS headers. "
        "`*` is refused.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, inference and metadata endpoints require `Authorization: Bearer <key>` "
        "or `X-API-Key: <key>`; health, metrics and docs stay open. Never logged.",
    )
    docs_enabled: bool = Field(default=True, description="Serve `/docs` and `/openapi.json`.")
    timeout_keep_alive_s: int = Field(
        default=5,
        ge=1,
        description="Seconds an idle keep-alive connection stays open.",
    )
    timeout_headers_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds a client has to send a request line and headers, counted from the "
        "connection's opening or the request's first byte. Then the connection is closed (with 408 if a "
        "request was half sent).",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request line plus headers; past it the server answers 431 and closes the "
        "connection without reading the rest.",
    )
    max_headers: int = Field(
        default=100,
        ge=8,
        le=10_000,
        description="Most header fields in one request; more get 431.",
    )
    max_parsing_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Bytes of request JSON handed at once to the decoding helper process, per worker. JSON "
        "over 64 KiB is parsed there, off the event loop, and only its arrays come back; beyond this "
        "budget bodies wait their turn (a larger one goes alone), so memory for decoding stays bounded.",
    )

    # --- batching and load shedding --------------------------------------------------------------
    max_batch_size: int = Field(
        default=32,
        ge=1,
        description="Most rows (first-axis items) merged into one model call with `BATCH_POLICY=fixed`; "
        "the starting limit with `cost`. 1 turns batching off.",
    )
    batch_policy: Literal["cost", "fixed"] = Field(
        default="cost",
        description="`cost`: the rows per model call follow the model's measured cost (a fixed part per "
        "call plus a part per row): the largest batch whose call fits `MAX_LATENCY_MS`, at most 4096 rows; "
        "a free model waits for the requests it expects while they keep coming (each within its fixed cost "
        "of the one before, at most half of `MAX_LATENCY_MS` in all). "
        "`fixed`: at most `MAX_BATCH_SIZE` rows, no waiting.",
    )
    max_latency_ms: float = Field(
        default=50.0,
        gt=0,
        le=60_000,
        description="With `BATCH_POLICY=cost`, the longest one model call may take: batches grow while "
        "the model's measured cost says a call stays within it.",
    )
    max_batch_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="How long the first request of a batch waits for more. 0: no fixed wait; batch "
        "whatever queued up while the model was busy (with `BATCH_POLICY=cost`, plus the requests expected "
        "soon, while they keep coming).",
    )
    max_queue_size: int = Field(
        default=512,
        ge=1,
        description="Requests waiting for the model, per worker; beyond it requests get 429 at once.",
    )
    inference_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Batches run at the same time per worker (threads off the event loop).",
    )

    # --- lifecycle and logs ----------------------------------------------------------------------
    shutdown_delay_s: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="On SIGTERM, report not-ready and keep serving this long before draining, so "
        "Kubernetes removes the pod from Service endpoints first.",
    )
    graceful_timeout_s: float = Field(
        default=25.0,
        ge=0,
        description="After SIGTERM (and the delay), how long in-flight requests may take to finish "
        "(whole seconds, at least 1).",
    )
    log_level: str = Field(default="info", description="`debug`, `info`, `warning` or `error`.")
    access_log: bool = Field(
        default=False,
        description="Log one JSON line per request (method, path, status, duration, request id).",
    )

    @field_validator("model_format", mode="before")
    @classmethod
    def _format_alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower()
            if not key:
                return None
            return FORMAT_ALIASES.get(key, key)
        return value

    @field_validator("model_path", "model_class", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("model_name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _MODEL_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a model name: use letters, digits, '_', '.', '-' (at most 128), "
                "starting with a letter or digit"
            )
        return value

    @field_validator("model_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not _MODEL_NAME.match(value):
            raise ValueError(f"{value!r} is not a version: use letters, digits, '_', '.', '-'")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(f"{value!r} is not one of debug, info, warning, error, critical")
        return level

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("'*' is not allowed: list the origins that may call the server")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        device = value.strip().lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise ValueError(f"{value!r} is not one of auto, cpu, cuda, cuda:N")
        return device

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        if self.grpc_port == self.port:
            raise ValueError(f"GRPC_PORT and PORT are both {self.port}: give gRPC its own port (or 0 to turn it off)")
        return self

    @model_validator(mode="after")
    def _resolve_format(self) -> Settings:
        if self.model_format is None:
            object.__setattr__(self, "model_format", guess_format(self.model_path, self.model_class))
        if self.model_format is ModelFormat.PYTHON and not self.model_class:
            raise ValueError("MODEL_FORMAT=python needs MODEL_CLASS (module:attr)")
        if self.model_format is not ModelFormat.PYTHON and self.model_path is None:
            raise ValueError(f"MODEL_FORMAT={self.model_format} needs MODEL_PATH (the model file)")
        return self

    @property
    def format(self) -> ModelFormat:
        """The model format, resolved (never None after validation)."""
        assert self.model_format is not None
        return self.model_format

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict for the startup log, with secret-looking values masked."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump(mode="json").items():
            if SECRET_NAME.search(name):
                out[name] = None if value is None else "**********"
            else:
                out[name] = value
        return out

    def secret_values(self) -> list[str]:
        """Values that must never appear in a log line."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                values.append(value.get_secret_value())
            elif SECRET_NAME.search(name) and isinstance(value, str) and value:
                values.append(value)
        return [v for v in values if v]


def guess_format(model_path: Path | None, model_class: str | None) -> ModelFormat:
    """The format when ``MODEL_FORMAT`` is unset, from ``MODEL_CLASS`` or the file's suffix."""
    if model_class:
        return ModelFormat.PYTHON
    if model_path is None:
        raise ValueError("set MODEL_PATH (the model file), or MODEL_CLASS for a python model")
    suffix = model_path.suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    known = ", ".join(sorted(SUFFIX_FORMATS))
    raise ValueError(
        f"cannot tell the format of {str(model_path)!r} from its suffix (known: {known}); "
        "set MODEL_FORMAT to sklearn, onnx, torchscript or python"
    )


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return field.upper()
