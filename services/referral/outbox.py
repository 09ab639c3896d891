"""The outbox relay: publishes what the ledger committed, confirmed, then marks it sent.

A crash between publish and mark re-publishes the same message id; consumers de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.referral.ledger import outbox
from shared.broker import Envelope, MessagePublisher
from shared.database import in_transaction

log = structlog.get_logger(__name__)

MAX_RETRY_DELAY_SECONDS = 15.0


class OutboxRelay:
    def __init__(
        self, engine: AsyncEngine, publisher: MessagePublisher, *, poll_seconds: float, batch: int = 100
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._wake = asyncio.Event()
        self.last_pass = time.monotonic()

    def healthy(self) -> bool:
        """A pass over the outbox completed recently (a stuck relay would leave referrals unsent)."""
        return time.monotonic() - self.last_pass < max(30.0, 5 * self._poll_seconds)

    def wake(self) -> None:
        """Called after a commit that enqueued messages, so they leave now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            self._wake.clear()
            try:
                while await self.relay_once():
                    pass
                self.last_pass = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: the rows wait, the next poll tries again
                log.warning("outbox_relay_failed", error=type(exc).__name__)

    async def relay_once(self) -> int:
        """Publishes one batch of due messages; returns how many were sent. A message that fails waits
        (exponentially longer each time) while the others go ahead."""
        if self._engine.dialect.name == "postgresql":
            # Several replicas: each relay locks its own rows (SKIP LOCKED) until they are marked.
            async with self._engine.begin() as connection:
                rows = await connection.run_sync(self._due, lock=True)
                results = await self._publish_all(rows)
                await connection.run_sync(_mark, rows, results)
        else:
            # SQLite has one replica and one connection: never hold it while waiting for the broker.
            rows = await in_transaction(self._engine, self._due, lock=False)
            results = await self._publish_all(rows)
            await in_transaction(self._engine, _mark, rows, results)
        return sum(1 for result in results if not isinstance(result, BaseException))

    def _due(self, connection: Connection, *, lock: bool) -> list[Any]:
        now = datetime.now(UTC)
        query = (
            select(outbox)
            .where(outbox.c.sent_at.is_(None))
            .where(or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now))
            .order_by(outbox.c.id)
            .limit(self._batch)
        )
        if lock:
            query = query.with_for_update(skip_locked=True)
        return list(connection.execute(query).all())

    async def _publish_all(self, rows: list[Any]) -> list[BaseException | None]:
        return await asyncio.gather(
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


def _mark(connection: Connection, rows: list[Any], results: list[BaseException | None]) -> None:
    sent = [row.id for row, result in zip(rows, results, strict=True) if not isinstance(result, BaseException)]
    if sent:
        connection.execute(update(outbox).where(outbox.c.id.in_(sent)).values(sent_at=datetime.now(UTC)))
    for row, result in zip(rows, results, strict=True):
        if isinstance(result, BaseException):
            error = f"{type(result).__name__}: {result}"[:200]
            delay = min(0.5 * 2**row.attempts, MAX_RETRY_DELAY_SECONDS)
            connection.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(
                    attempts=outbox.c.attempts + 1,
                    last_error=error,
                    next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
                )
            )
            if row.attempts + 1 in (1, 10, 100):
                log.error("outbox_message_not_published", message_id=row.message_id, attempt=row.attempts + 1,
                          routing_key=row.routing_key, error=type(result).__name__)  # fmt: skip
