"""The outbox relay: publishes what the ledger committed, confirmed, then marks it sent.

A crash between publish and mark re-publishes the same message id; consumers de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.referral.ledger import outbox
from shared.broker import Envelope, MessagePublisher

log = structlog.get_logger(__name__)


class OutboxRelay:
    def __init__(
        self, engine: AsyncEngine, publisher: MessagePublisher, *, poll_seconds: float, batch: int = 100
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Called after a commit that enqueued messages, so they leave now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            self._wake.clear()
            try:
                while await self.relay_once():
                    pass
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: keep the rows, try again shortly
                failures += 1
                log.warning("outbox_relay_failed", error=type(exc).__name__, attempt=failures)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))

    async def relay_once(self) -> int:
        """Publishes one batch of unsent messages in order of enqueueing; returns how many were sent."""
        async with self._engine.begin() as connection:
            # SKIP LOCKED: with several replicas on PostgreSQL each relay takes other rows.
            query = (
                select(outbox)
                .where(outbox.c.sent_at.is_(None))
                .order_by(outbox.c.id)
                .limit(self._batch)
                .with_for_update(skip_locked=True)
            )
            rows = (await connection.execute(query)).all()
            if not rows:
                return 0
            results = await asyncio.gather(
                *(
                    self._publisher.publish(
                        Envelope(
                            exchange=row.exchange,
                            routing_key=row.routing_key,
                            message_id=row.message_id,
                            message_type=row.message_type,
                            correlation_id=row.correlation_id,
                            body=row.body,
                            causation_id=row.causation_id,
                        )
                    )
                    for row in rows
                ),
                return_exceptions=True,
            )
            sent = [row.id for row, result in zip(rows, results, strict=True) if not isinstance(result, BaseException)]
            if sent:
                await connection.execute(update(outbox).where(outbox.c.id.in_(sent)).values(sent_at=datetime.now(UTC)))
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            raise failed[0]
        return len(sent)

    async def pending(self) -> int:
        async with self._engine.connect() as connection:
            rows = await connection.execute(select(outbox.c.id).where(outbox.c.sent_at.is_(None)))
            return len(rows.all())
