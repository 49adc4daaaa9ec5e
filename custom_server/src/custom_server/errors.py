"""Typed errors. Each carries its HTTP status; ``rest.app`` maps them to responses in one place."""

from __future__ import annotations


class ServerError(Exception):
    """Base of the errors a client may see. ``status_code`` is the HTTP status of the response."""

    status_code: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers) if headers else {}


class InvalidInput(ServerError):
    """The request is malformed; the message names the field (``inputs[0].shape``)."""

    status_code = 400


class ValidationFailed(InvalidInput):
    """The body does not match the endpoint's schema (``/predict``: 422, FastAPI's convention)."""

    status_code = 422

    def __init__(self, message: str, details: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.details = details


class Unauthorized(ServerError):
    """The API key is missing or wrong."""

    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ModelNotFound(ServerError):
    """No model (or version) of that name is served here."""

    status_code = 404


class PayloadTooLarge(ServerError):
    """The body exceeds ``MAX_REQUEST_BYTES``."""

    status_code = 413


class Overloaded(ServerError):
    """The request queue is full: shed at once rather than let the client time out."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class InferenceError(ServerError):
    """The model failed on input the server accepted."""

    status_code = 500


class ModelNotReady(ServerError):
    """The model is loading, failed to load, or the server is draining."""

    status_code = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class ModelLoadError(Exception):
    """Loading the model failed; the server stays live and reports it on readiness."""
