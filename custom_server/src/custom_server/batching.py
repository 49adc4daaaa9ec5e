"""Dynamic batching: a bounded queue in front of the model, drained by batches run off the event loop.

Requests queue on the event loop; one task takes what is waiting (rows of requests with the same
input signature, up to ``max_batch_size``; waiting at most ``max_batch_delay`` for more), runs the
model once in a thread and hands each request its rows of the outputs. While the model is busy,
new requests queue up and form the next batch, so batches grow with load and add no latency when
idle; with the cost policy a free model waits for the requests it expects while they keep coming,
see ``batchsize``. A full queue refuses at once (429). When a merged batch fails, each request is retried on
its own so one bad request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from custom_server.batchsize import CostPolicy, RecentPeak, gather_cap, gather_wait
from custom_server.errors import InferenceError, InvalidInput, ModelNotReady, Overloaded, ServerError
from custom_server.metrics import Metrics
from custom_server.models.base import Model, Tensors

logger = logging.getLogger("custom_server.batching")

#: Exceptions from a model's predict that mean "this input is wrong" (400) rather than a server fault.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, IndexError)


@dataclass(slots=True)
class _Item:
    inputs: Tensors
    outputs: tuple[str, ...] | None
    rows: int
    key: Hashable | None  # None: cannot be merged with other requests
    future: asyncio.Future[Tensors]
    enqueued: float = field(default_factory=time.perf_counter)


def batch_key(inputs: Tensors, outputs: tuple[str, ...] | None) -> tuple[Hashable, int] | None:
    """What requests must share to be merged (names, dtypes, shapes past the first axis) and the rows."""
    rows = -1
    parts = []
    for name, array in inputs.items():
        if array.ndim == 0:
            return None
        if rows == -1:
            rows = array.shape[0]
        elif array.shape[0] != rows:
            return None
        kind = array.dtype.kind
        # the dtype itself (hashable): its ``str`` is built anew on each access
        parts.append((name, kind if kind in "OUS" else array.dtype, array.shape[1:]))
    if rows <= 0:
        return None
    return (tuple(parts), outputs), rows


class Admission:
    """A place in the queue, taken before a request's body is read (so a full queue refuses at once,
    without reading or parsing it) and handed to ``Batcher.infer``. Released on exit if unused."""

    __slots__ = ("_batcher", "held")

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self.held = True

    def release(self) -> None:
        """Give the place back (idempotent)."""
        if self.held:
            self.held = False
            self._batcher._admitted -= 1

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Batcher:
    """The queue and batch loop of one model."""

    def __init__(
        self,
        model: Model,
        *,
        executor: Executor,
        metrics: Metrics,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue_size: int,
        concurrency: int,
        policy: CostPolicy | None = None,
    ) -> None:
        self._model = model
        self._policy = policy  # None: the limit stays max_batch_size
        self._policy_lock = threading.Lock()
        self._executor = executor
        self._metrics = metrics
        self._max_batch_size = max_batch_size if model.supports_batching else 1
        self._max_delay = max_batch_delay_s
        self._max_queue = max_queue_size
        self._queue: deque[_Item] = deque()
        metrics.watch_queue(self._queue)
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        self._admitted = 0  # requests admitted but not queued yet (their bodies are being read)
        self._running_requests = 0
        self._peak = RecentPeak()
        # While the cost policy gathers: the batch loop is woken by the arrival that may end the wait
        # (the expected count, the row limit, another kind of request), not by each one.
        self._gathering: Hashable | None = None  # the key gathered for
        self._wake_at = 0  # queue length that wakes it
        self._rows_room = 0  # rows that may still arrive before the limit

    @property
    def batch_limit(self) -> int:
        """Most rows one model call merges now: ``MAX_BATCH_SIZE``, or the cost policy's choice."""
        if self._policy is None or self._max_batch_size <= 1:
            return self._max_batch_size
        return self._policy.limit

    @property
    def queued(self) -> int:
        """Requests waiting (not yet running)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while requests are queued or running."""
        return bool(self._queue) or bool(self._running)

    def start(self) -> None:
        """Start the batch loop (on the running event loop)."""
        self._max_batch_size = self._max_batch_size if self._model.supports_batching else 1
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    def refresh(self) -> None:
        """Re-read the model's batching support (after it loaded)."""
        if not self._model.supports_batching:
            self._max_batch_size = 1

    def _check_capacity(self) -> None:
        if self._closed:
            self._metrics.shed_request("draining")
            raise ModelNotReady("the server is shutting down")
        waiting = len(self._queue) + self._admitted
        if waiting >= self._max_queue:
            self._metrics.shed_request("queue_full")
            raise Overloaded(
                f"model {self._model.name!r} is overloaded: {waiting} requests are waiting "
                f"(MAX_QUEUE_SIZE={self._max_queue}); retry later"
            )

    def admit(self) -> Admission:
        """A place in the queue for a request about to be read, or 429 (503 when closed) at once."""
        self._check_capacity()
        self._admitted += 1
        return Admission(self)

    async def infer(
        self, inputs: Tensors, outputs: Sequence[str] | None, admission: Admission | None = None
    ) -> Tensors:
        """Queue one request (in the place ``admission`` holds, if given) and wait for its outputs."""
        if admission is not None and admission.held and not self._closed:
            admission.release()  # the queue entry below takes its place
        else:
            self._check_capacity()
        wanted = tuple(outputs) if outputs else None
        merged = batch_key(inputs, wanted) if self._max_batch_size > 1 else None
        key, rows = merged if merged is not None else (None, 0)
        future: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(inputs, wanted, rows, key, future))
        self._peak.observe(len(self._queue) + self._running_requests + self._admitted)
        self._metrics.queue_changed(len(self._queue))
        if self._gathering is None:
            self._wakeup.set()
        else:
            self._rows_room -= rows
            if len(self._queue) >= self._wake_at or key != self._gathering or self._rows_room <= 0:
                self._wakeup.set()
        return await future

    async def close(self, timeout: float) -> None:
        """Refuse new requests, let queued and running ones finish (up to ``timeout``), stop the loop."""
        self._closed = True
        self._wakeup.set()  # a call being gathered starts now
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(ModelNotReady("the server shut down before this request ran"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()
            try:
                batch = await self._take()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            self._running_requests += len(batch)
            self._peak.call()
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _take(self) -> list[_Item]:
        queue = self._queue
        while queue and queue[0].future.done():  # the client went away
            queue.popleft()
        if not queue:
            return []
        first = queue[0]
        if first.key is not None and self._max_delay > 0:
            deadline = first.enqueued + self._max_delay
            while self._waiting(first.key)[1] < self.batch_limit:
                if not await self._wait_until(deadline):
                    break
        elif first.key is not None and self._policy is not None and not self._closed:
            await self._gather(first.key)
            while queue and queue[0].future.done():
                queue.popleft()
            if not queue:
                return []
            first = queue[0]
        batch = [queue.popleft()]
        if first.key is not None:
            limit = self.batch_limit
            rows = first.rows
            while queue:
                head = queue[0]
                if head.future.done():
                    queue.popleft()
                    continue
                if head.key != first.key or rows + head.rows > limit:
                    break
                rows += head.rows
                batch.append(queue.popleft())
        self._metrics.queue_changed(len(queue))
        return batch

    def _waiting(self, key: Hashable) -> tuple[int, int]:
        """Requests and rows at the head of the queue that can join a batch of ``key``."""
        requests = rows = 0
        for item in self._queue:
            if item.key != key:
                break
            requests += 1
            rows += item.rows
        return requests, rows

    async def _wait_until(self, deadline: float) -> bool:
        """Wait for the next request to queue, until ``deadline``; False once it has passed."""
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return False
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):  # no task per wait, unlike wait_for
                await self._wakeup.wait()
        return True

    async def _gather(self, key: Hashable) -> None:
        """Cost policy: let the requests expected soon join the batch (see ``batchsize``)."""
        assert self._policy is not None
        wait = gather_wait(self._policy.fit, self._policy.max_latency_s)
        if wait <= 0:
            return
        queue = self._queue
        now = time.perf_counter()
        cap = now + gather_cap(self._policy.max_latency_s)
        deadline = min(cap, now + wait)
        expected = self._peak.value
        seen = self._waiting(key)[0]
        try:
            while not self._closed:
                requests, rows = self._waiting(key)
                limit = self.batch_limit
                if requests >= expected or rows >= limit or len(queue) > requests:
                    return
                if requests > seen:
                    # Each arrival renews the wait: on a busy event loop the expected requests come one
                    # after another as it parses them, and a call started now would only share the CPU.
                    # (Arrivals do not wake this loop one by one: the wait is renewed from the last one's time.)
                    seen = requests
                    deadline = min(cap, max(deadline, queue[-1].enqueued + wait))
                self._gathering = key
                self._wake_at = len(queue) + expected - requests
                self._rows_room = limit - rows
                if not await self._wait_until(deadline):
                    return
        finally:
            self._gathering = None

    async def _execute(self, batch: list[_Item]) -> None:
        try:
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self._executor, self._run_batch, batch)
            for item, result in zip(batch, results, strict=True):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
        except BaseException as exc:  # the executor is gone (shutdown) or the task was cancelled
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ModelNotReady(f"inference was interrupted: {exc!r}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._running_requests -= len(batch)
            self._slots.release()
            if self._queue:
                self._wakeup.set()

    # --- in the inference thread ------------------------------------------------------------------

    def _run_batch(self, batch: list[_Item]) -> list[Tensors | BaseException]:
        if len(batch) == 1:
            return [self._call(batch[0].inputs, batch[0].outputs, batch[0].rows or 1, 1)]
        names = list(batch[0].inputs)
        merged = {name: np.concatenate([item.inputs[name] for item in batch]) for name in names}
        total = sum(item.rows for item in batch)
        result = self._call(merged, batch[0].outputs, total, len(batch))
        if not isinstance(result, BaseException) and all(
            value.ndim >= 1 and value.shape[0] == total for value in result.values()
        ):
            split: list[Tensors | BaseException] = []
            start = 0
            for item in batch:
                stop = start + item.rows
                split.append({name: value[start:stop] for name, value in result.items()})
                start = stop
            return split
        # One request may have spoiled the batch, or the outputs have no batch axis: run them alone.
        return [self._call(item.inputs, item.outputs, item.rows, 1) for item in batch]

    def _call(
        self, inputs: Tensors, outputs: tuple[str, ...] | None, rows: int, requests: int
    ) -> Tensors | BaseException:
        started = time.perf_counter()
        try:
            return self._model.predict(inputs, outputs)
        except ServerError as exc:
            return exc
        except INPUT_ERRORS as exc:
            text = str(exc).strip().splitlines()
            return InvalidInput(
                f"inputs: the model rejected the input: {text[0][:300] if text else type(exc).__name__}"
            )
        except Exception as exc:
            logger.exception("model %r failed on a batch of %d row(s)", self._model.name, rows)
            return InferenceError(f"model {self._model.name!r} failed: {type(exc).__name__}")
        finally:
            elapsed = time.perf_counter() - started
            if self._policy is not None:
                with self._policy_lock:  # inference threads may finish at once
                    self._policy.observe(rows, elapsed)
            self._metrics.model_inference_duration.observe(elapsed)
            self._metrics.model_batch_size.observe(rows)
            self._metrics.model_batch_requests.observe(requests)
