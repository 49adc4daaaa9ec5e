"""A byte budget for the event loop: bounds the memory of request bodies being decoded at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ByteBudget:
    """At most ``limit`` bytes held at once; a request larger than the whole budget holds all of it.

    Waiters are woken in turn whenever bytes are released, and re-check; no lock is needed because
    everything runs on one event loop.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit: {limit} is not a positive number of bytes")
        self.limit = limit
        self.used = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, size: int) -> int:
        """Wait until ``size`` bytes (at most the limit) fit; the bytes held, to pass to ``release``."""
        size = max(0, min(size, self.limit))
        while self.used + size > self.limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self.used += size
        return size

    def release(self, held: int) -> None:
        """Give back what ``acquire`` returned."""
        self.used -= held
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """``size`` bytes of the budget for the duration of the block."""
        held = await self.acquire(size)
        try:
            yield
        finally:
            self.release(held)
