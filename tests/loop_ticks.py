"""Whether the event loop went on while something waited: a task that counts its turns every 10 ms."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class Ticks:
    count: int = 0


@contextlib.asynccontextmanager
async def counting_ticks() -> AsyncIterator[Ticks]:
    """``ticks.count`` grows by about one every 10 ms for as long as the loop is free to run other tasks."""
    ticks = Ticks()

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks.count += 1

    ticking = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking
