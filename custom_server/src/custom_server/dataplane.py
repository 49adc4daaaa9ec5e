"""Protocol logic shared by every front end: health, metadata, inference (v2 and ``/predict``).

Works on numpy arrays and plain dicts; the REST layer owns the wire formats (JSON, binary tensors).
"""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from custom_server import __version__
from custom_server.batching import Admission, Batcher
from custom_server.batchsize import CostPolicy
from custom_server.decoding import Decoder
from custom_server.errors import InvalidInput, ModelNotFound, ModelNotReady, ValidationFailed
from custom_server.metrics import Metrics
from custom_server.models.base import Model, Tensors
from custom_server.protocol import InferenceRequest, Parameters, RequestOutput
from custom_server.settings import Settings
from custom_server.tensors import decode_binary_data, decode_json_data, instances_array

logger = logging.getLogger("custom_server.dataplane")

SERVER_NAME = "custom_server"
#: v2 extensions this server implements.
EXTENSIONS = ("binary_tensor_data",)
#: Container objects allocated (net) before the youngest generation is collected, once the model is loaded.
GC_YOUNG_THRESHOLD = 10_000


class ModelState(enum.StrEnum):
    """Where the model is in its life."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a microsecond per field
class PreparedInfer:
    """A v2 inference request decoded and checked, ready to queue: what the response needs of the
    request (not its tensor data, so the parsed JSON is freed), the input arrays and the outputs asked for."""

    model: Model
    id: str | None
    parameters: Parameters | None
    outputs: list[RequestOutput] | None
    inputs: Tensors
    requested: tuple[str, ...] | None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a microsecond per field
class InferenceResult:
    """A v2 inference result before encoding."""

    model_name: str
    model_version: str
    id: str | None
    outputs: list[tuple[str, np.ndarray]]


class DataPlane:
    """Owns the model, its batcher and its state."""

    def __init__(self, settings: Settings, model: Model, metrics: Metrics) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics
        self.state = ModelState.LOADING
        self.load_error: str | None = None
        self.draining = False
        self._executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="inference")
        self.batcher = Batcher(
            model,
            executor=self._executor,
            metrics=metrics,
            max_batch_size=settings.max_batch_size,
            max_batch_delay_s=settings.max_batch_delay_ms / 1000.0,
            max_queue_size=settings.max_queue_size,
            concurrency=settings.inference_threads,
            policy=CostPolicy(settings.max_batch_size, settings.max_latency_ms / 1000.0)
            if settings.batch_policy == "cost"
            else None,
        )
        self.decoder = Decoder(settings.max_parsing_bytes)
        self._load_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start batching and begin loading the model in the background (the server is live meanwhile)."""
        self.batcher.start()
        self.decoder.start()
        self._load_task = asyncio.get_running_loop().create_task(self._load(), name="load-model")

    async def wait_loaded(self) -> None:
        """Wait until the model loaded or failed (for callers that want to block on it)."""
        if self._load_task is not None:
            await asyncio.shield(self._load_task)

    async def _load(self) -> None:
        started = time.perf_counter()
        logger.info("loading model", extra={"format": str(self.settings.format), "path": str(self.settings.model_path)})
        try:
            await asyncio.to_thread(self.model.load)
        except Exception as exc:
            self.state = ModelState.FAILED
            source = self.settings.model_class or str(self.settings.model_path)
            self.load_error = f"loading {self.settings.format} model {source}: {type(exc).__name__}: {exc}"
            logger.error(
                "model failed to load; the server stays live but not ready",
                exc_info=True,
                extra={"error": self.load_error},
            )
            return
        elapsed = time.perf_counter() - started
        # Everything loaded so far (libraries, the model) lives as long as the process: take it out
        # of the garbage collector's view, so full collections stop pausing requests for ~50-80 ms.
        gc.collect()
        gc.freeze()
        # The youngest generation is collected after 700 more container objects than were freed: the
        # objects of a few dozen requests in flight pass that again and again (212 collections per
        # 7,500 requests on issue 17's workload, 13 us per request). Requests free what they allocate;
        # only reference cycles need the collector, and they can wait for 10,000.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        self.batcher.refresh()
        self.metrics.model_load_duration.set(elapsed)
        self.state = ModelState.READY
        self.metrics.model_ready_gauge.set(1)
        logger.info("model ready", extra={"load_seconds": round(elapsed, 3), "platform": self.model.platform})

    def set_draining(self) -> None:
        """Report not-ready from now on (SIGTERM received); requests are still served."""
        if not self.draining:
            self.draining = True
            self.metrics.model_ready_gauge.set(0)
            logger.info("draining: readiness now fails, requests are still served")

    async def stop(self, timeout: float) -> None:
        """Finish queued work (up to ``timeout``) and release the inference threads."""
        self.set_draining()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        await self.batcher.close(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.decoder.close()

    # --- health ------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Model loaded and not draining."""
        return self.state is ModelState.READY and not self.draining

    def readiness(self) -> tuple[bool, str, str | None]:
        """``(ready, status, error)``; status is ready, loading, failed or draining."""
        if self.draining:
            return False, "draining", "the server is shutting down"
        if self.state is ModelState.READY:
            return True, "ready", None
        if self.state is ModelState.FAILED:
            return False, "failed", f"model {self.model.name!r} failed to load: {self.load_error}"
        return False, "loading", f"model {self.model.name!r} is loading"

    # --- metadata ----------------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        """The v2 ``$metadata_server_response``."""
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def get_model(self, name: str, version: str | None = None) -> Model:
        """The model of that name (and version), or ModelNotFound."""
        model = self.model
        if name != model.name:
            raise ModelNotFound(f"model {name!r} is not served here; this server serves {model.name!r}")
        if version is not None and version != model.version:
            raise ModelNotFound(f"model {name!r} has no version {version!r}; it has {model.version!r}")
        return model

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The v2 ``$metadata_model_response``."""
        return self.get_model(name, version).metadata()

    def model_ready(self, name: str, version: str | None = None) -> tuple[bool, str | None]:
        """Whether that model serves (404 for an unknown model), and why not."""
        self.get_model(name, version)
        ready, _, error = self.readiness()
        return ready, error

    # --- inference ---------------------------------------------------------------------------------

    def _check_ready(self) -> None:
        # Draining only fails the readiness probes: requests that still arrive are served.
        if self.state is ModelState.READY:
            return
        self.metrics.shed_request("not_ready")
        if self.state is ModelState.FAILED:
            raise ModelNotReady(f"model {self.model.name!r} failed to load: {self.load_error}")
        raise ModelNotReady(f"model {self.model.name!r} is loading")

    def admit(self) -> Admission:
        """Before reading a request: 503 unless the model is loaded, 429 if the queue is full. The
        place returned is taken in the queue by ``run_infer``/``run_predict`` (released on exit)."""
        self._check_ready()
        return self.batcher.admit()

    def prepare_infer(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        binary: Sequence[bytes | memoryview | None] | None = None,
        decoded: Mapping[int, np.ndarray] | None = None,
    ) -> PreparedInfer:
        """Decode and check a v2 request. ``binary[i]`` is input i's raw bytes (binary tensor extension,
        or gRPC ``raw_input_contents``); ``decoded[i]`` input i's array, decoded already (a big body's
        JSON data, decoded in the helper process)."""
        model = self.get_model(name, version)
        inputs: Tensors = {}
        for index, item in enumerate(request.inputs):
            field = f"inputs[{index}]"
            if item.name in inputs:
                raise InvalidInput(f"{field}.name: input {item.name!r} is given twice")
            raw = binary[index] if binary is not None and index < len(binary) else None
            ready = decoded.get(index) if decoded is not None else None
            if raw is not None:
                if item.data is not None or ready is not None:
                    raise InvalidInput(f"{field}: has both data and parameters.binary_data_size")
                inputs[item.name] = decode_binary_data(field, item.datatype, item.shape, raw)
            elif ready is not None:
                inputs[item.name] = ready
            elif item.data is None:
                raise InvalidInput(f"{field}.data: missing (and no parameters.binary_data_size)")
            else:
                inputs[item.name] = decode_json_data(field, item.datatype, item.shape, item.data)
        model.check_inputs(inputs)
        requested = tuple(out.name for out in request.outputs) if request.outputs else None
        if requested is not None and len(set(requested)) != len(requested):
            raise InvalidInput("outputs: an output is requested twice")
        model.check_outputs(requested)
        # The request's fields, not a copy of it without its inputs: a pydantic copy cost more than the rest here.
        return PreparedInfer(model, request.id, request.parameters, request.outputs, inputs, requested)

    async def run_infer(self, prepared: PreparedInfer, admission: Admission | None = None) -> InferenceResult:
        """Queue a prepared request and wait for its outputs."""
        model = prepared.model
        self._check_ready()
        result = await self.batcher.infer(prepared.inputs, prepared.requested, admission)
        names = prepared.requested or tuple(result)
        return InferenceResult(model.name, model.version, prepared.id, [(n, result[n]) for n in names])

    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        binary: Sequence[bytes | memoryview | None] | None = None,
    ) -> InferenceResult:
        """Run a v2 inference request. ``binary[i]`` is input i's raw bytes (binary tensor extension)."""
        self.get_model(name, version)
        self._check_ready()
        return await self.run_infer(self.prepare_infer(name, version, request, binary))

    def prepare_predict(self, array: np.ndarray) -> Tensors:
        """Check the seed's ``/predict`` rows (``instances`` as one array) against the model's input."""
        model = self.model
        if array.dtype.kind == "f" and array.dtype != model.json_float_dtype:
            array = array.astype(model.json_float_dtype)
        if len(model.inputs) > 1:
            raise InvalidInput(
                f"instances: model {model.name!r} takes {len(model.inputs)} inputs; use /v2/models/{model.name}/infer"
            )
        if model.inputs:
            spec = model.inputs[0]
            fits = len(spec.shape) == array.ndim and all(
                want < 0 or want == got for want, got in zip(spec.shape, array.shape, strict=True)
            )
            if not fits:
                message = f"instances: shape {list(array.shape)} does not fit the model's input {list(spec.shape)}" + (
                    f" (each instance is a list of {spec.shape[1]} numbers)"
                    if len(spec.shape) == 2 and spec.shape[1] > 0
                    else ""
                )
                raise ValidationFailed(message, [{"loc": ["body", "instances"], "msg": message, "type": "value_error"}])
        return {model.inputs[0].name if model.inputs else "instances": array}

    async def run_predict(self, inputs: Tensors, admission: Admission | None = None) -> tuple[Model, Tensors]:
        """Queue prepared ``/predict`` rows; the model's outputs (same rows)."""
        model = self.model
        self._check_ready()
        try:
            return model, await self.batcher.infer(inputs, None, admission)
        except InvalidInput as exc:
            if isinstance(exc, ValidationFailed):
                raise
            message = (
                "instances" + exc.message.removeprefix("inputs") if exc.message.startswith("inputs") else exc.message
            )
            raise ValidationFailed(
                message, [{"loc": ["body", "instances"], "msg": message, "type": "value_error"}]
            ) from None

    async def predict(self, instances: list[Any]) -> tuple[Model, Tensors]:
        """Run the seed's ``/predict``: rows in, the model's outputs (same rows) back."""
        self._check_ready()
        return await self.run_predict(self.prepare_predict(instances_array(instances)))
