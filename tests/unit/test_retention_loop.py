"""The referral service's retention loop, without a ledger or a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from services.referral.ledger import Ledger
from services.referral.privacy import Privacy
from shared.directory import load_directory

CONFIG = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"


class NothingDue:
    async def run(self, *_: Any, **__: Any) -> tuple[int, int]:
        return 0, 0


class ChannelClosedWhenCancelled:
    """As aio-pika may do: cancelled in the middle of a call, it closes its channel and raises that instead."""

    def __init__(self) -> None:
        self.called = asyncio.Event()

    async def clear_erased_identity(self, actor: str) -> Sequence[object]:
        self.called.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("channel closed") from None
        return []


async def test_the_retention_loop_ends_when_cancelled_even_if_its_broker_call_raises_another_error() -> None:
    directory = load_directory(CONFIG)
    broker = ChannelClosedWhenCancelled()
    privacy = Privacy(cast("Ledger", NothingDue()), lambda: directory, dead_letters=broker)
    task = asyncio.create_task(privacy.run(interval_seconds=3600))
    await asyncio.wait_for(broker.called.wait(), timeout=60)

    task.cancel()

    await asyncio.wait([task], timeout=60)
    assert task.cancelled()
