"""Decoding big JSON bodies in a helper process, so the event loop never waits on them.

pydantic-core (like every JSON parser for Python) holds the GIL for the whole parse: a 16 MiB body
parsed in a thread still stops the event loop for seconds, liveness probes and SIGTERM handling
included. Bodies whose JSON is over ``INLINE_DECODE_BYTES`` are therefore parsed, and their tensors
turned into numpy arrays, in one helper process; only the arrays come back. ``MAX_PARSING_BYTES``
bounds the bytes handed to it at once (a bigger body goes alone), and the Python objects of a parse
live and die in the helper, so the server's own memory does not grow with the JSON's expansion.
Small bodies, the common case, are decoded on the loop: a process hop costs more than they do.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import signal
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from custom_server.budget import ByteBudget
from custom_server.errors import InvalidInput, ModelNotReady, ServerError, ValidationFailed
from custom_server.protocol import InferenceRequest
from custom_server.tensors import decode_json_data, instances_array

logger = logging.getLogger("custom_server.decoding")

#: JSON up to this size is decoded on the event loop; larger, in the helper process.
INLINE_DECODE_BYTES = 64 * 1024


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a microsecond per field
class DecodedInfer:
    """A v2 request's JSON decoded: the request without tensor data, and input index -> array."""

    request: InferenceRequest
    arrays: dict[int, np.ndarray]


def decode_infer_json(json_part: bytes) -> DecodedInfer:
    """Parse a v2 request's JSON and decode its ``data`` tensors (no model needed: any process).

    A body decoded in the helper (over ``INLINE_DECODE_BYTES``) comes back without its ``data`` lists,
    so that only the arrays cross the process boundary; one decoded here keeps them (copying the
    request to drop them cost more than the rest of the decoding), and the caller drops the request
    once the arrays are taken (``DataPlane.prepare_infer``)."""
    from custom_server.rest.codec import parse_infer_json

    request = parse_infer_json(json_part)
    arrays: dict[int, np.ndarray] = {}
    strip = len(json_part) > INLINE_DECODE_BYTES
    stripped = []
    for index, item in enumerate(request.inputs):
        if item.data is not None:
            if item.parameters and item.parameters.get("binary_data_size") is not None:
                raise InvalidInput(f"inputs[{index}]: has both data and parameters.binary_data_size")
            arrays[index] = decode_json_data(f"inputs[{index}]", item.datatype, item.shape, item.data)
            if strip:
                item = item.model_copy(update={"data": None})
        stripped.append(item)
    if strip:
        request = request.model_copy(update={"inputs": stripped})
    return DecodedInfer(request, arrays)


def decode_predict_json(body: bytes) -> np.ndarray:
    """Parse a ``/predict`` body into its rows as one array."""
    from custom_server.rest.codec import parse_predict

    return instances_array(parse_predict(body).instances)


def _in_helper(function: Any, *args: Any) -> tuple[str, Any]:
    """Run in the helper; typed errors come back as data (their constructors differ from Exception's)."""
    try:
        return "ok", function(*args)
    except ValidationFailed as exc:
        return "validation", (exc.message, exc.details)
    except InvalidInput as exc:
        return "invalid", exc.message


def _ignore_signals() -> None:
    # The server decides when the helper ends (a terminal's Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _warm() -> None:
    """Imports done, ready for the first body."""


class Decoder:
    """Decodes request JSON: small bodies at once, big ones in the helper process within the budget."""

    def __init__(self, max_parsing_bytes: int) -> None:
        self.budget = ByteBudget(max_parsing_bytes)
        self._executor: Executor | None = None

    def start(self) -> None:
        """Start the helper process (in the background: its imports take a moment)."""
        if self._executor is None:
            self._executor = self._new_executor()

    @staticmethod
    def _new_executor() -> Executor:
        executor = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_signals
        )
        executor.submit(_warm)
        return executor

    def close(self) -> None:
        """Stop the helper process and wait for it (a moment: it is idle once requests are done).
        Worker processes end by a re-raised signal, without finalizers: what the pool holds must be
        released here, or multiprocessing's resource tracker reports it as leaked."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=True, cancel_futures=True)
            del executor
            gc.collect()

    async def decode(self, size: int, function: Any, *args: Any) -> Any:
        """``function(*args)``: here when ``size`` is small, else in the helper holding ``size`` bytes."""
        if size <= INLINE_DECODE_BYTES:
            return function(*args)
        async with self.budget.hold(size):
            if self._executor is None:
                raise ModelNotReady("the server is shutting down")
            executor = self._executor
            try:
                kind, value = await asyncio.get_running_loop().run_in_executor(executor, _in_helper, function, *args)
            except BrokenProcessPool:
                # The helper died (killed for memory, say): replace it for the next request.
                logger.error("the decoding helper process died; starting a new one")
                if self._executor is executor:
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._new_executor()
                raise ServerError("decoding the request failed: the helper process died; retry") from None
        if kind == "validation":
            raise ValidationFailed(*value)
        if kind == "invalid":
            raise InvalidInput(value)
        return value
