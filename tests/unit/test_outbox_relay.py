"""The outbox relay keeps messages moving when one of them cannot be published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from services.referral.ledger import Ledger, LedgerTx, outbox
from services.referral.outbox import OutboxRelay
from shared.broker import Envelope
from shared.database import make_engine


class Broker:
    """Confirms every message except those whose routing key leads nowhere."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, envelope: Envelope) -> None:
        if envelope.routing_key == "case.nowhere.receipt":
            raise RuntimeError("unroutable")
        self.published.append(envelope.message_id)


def envelope(n: int, routing_key: str = "referral.dinsos-bengkayang.issued") -> Envelope:
    return Envelope("rujukan.events", routing_key, f"m-{n}", "referral.issued.v1", None, b"{}")


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    ledger = Ledger(make_engine(f"sqlite+aiosqlite:///{tmp_path}/ledger.db"))
    await ledger.migrate()
    yield ledger
    await ledger.engine.dispose()


async def test_one_unpublishable_message_waits_while_the_others_are_sent(ledger: Ledger) -> None:
    now = datetime.now(UTC)

    def enqueue_ten(tx: LedgerTx) -> None:
        tx.enqueue(envelope(0, routing_key="case.nowhere.receipt"), now)
        for n in range(1, 10):
            tx.enqueue(envelope(n), now)

    await ledger.run(enqueue_ten)
    broker = Broker()
    relay = OutboxRelay(ledger.engine, broker, poll_seconds=1)  # type: ignore[arg-type]

    first = await relay.relay_once()
    second = await relay.relay_once()

    assert first == 9
    assert second == 0
    assert broker.published == [f"m-{n}" for n in range(1, 10)]
    async with ledger.engine.connect() as connection:
        stuck = (await connection.execute(select(outbox).where(outbox.c.sent_at.is_(None)))).one()
    assert stuck.message_id == "m-0"
    assert stuck.attempts == 1
    assert stuck.last_error == "RuntimeError: unroutable"
    assert stuck.next_attempt_at > now
