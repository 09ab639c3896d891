"""The notifier's own record: every notification (recipient, channel, status, attempts, history) and the
referrals that need no more reminders. SQLite by default, PostgreSQL alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.messages import ACKNOWLEDGED, Notification
from shared.database import UtcDateTime

metadata = MetaData()

notifications = Table(
    "notifier_notifications",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("referral_id", String(36), nullable=False, index=True),
    Column("agency_id", String(60), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("level", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("history", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

settled = Table(
    "notifier_settled_referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("status", String(30), nullable=False),
    Column("settled_at", UtcDateTime, nullable=False),
)


class Status(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Record:
    status: Status
    attempts: int
    history: tuple[str, ...]
    """Why each channel tried for this recipient failed, this one's last."""
    referral_status: str | None
    """How far the referral got when it was last settled (``acknowledged``, ``accepted``, ``cancelled``, …)."""


class NotificationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_schema(self) -> None:
        async with self._engine.begin() as connection:
            await connection.run_sync(metadata.create_all)

    async def open(self, note: Notification, now: datetime) -> Record:
        """The notification's record, made pending the first time it is seen; and whether its referral is
        settled (taken or cancelled) already. One transaction: this runs for every notification."""
        try:
            return await self._open(note, now)
        except IntegrityError:
            # Another replica recorded it between our read and our insert: read theirs.
            return await self._open(note, now)

    async def _open(self, note: Notification, now: datetime) -> Record:
        referral_id = str(note.event.referral_id)
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(
                    select(notifications.c.status, notifications.c.attempts, notifications.c.history).where(
                        notifications.c.notification_id == note.notification_id
                    )
                )
            ).one_or_none()
            taken = await connection.scalar(select(settled.c.status).where(settled.c.referral_id == referral_id))
            if row is None:
                await connection.execute(
                    notifications.insert().values(
                        notification_id=note.notification_id,
                        event_id=note.event_id,
                        referral_id=referral_id,
                        agency_id=note.event.agency_id,
                        recipient=note.recipient.id,
                        channel=note.address.kind,
                        level=note.level,
                        status=Status.PENDING.value,
                        attempts=0,
                        history=json.dumps(list(note.history)),
                        created_at=now,
                        updated_at=now,
                    )
                )
                return Record(Status.PENDING, 0, note.history, referral_status=taken)
        return Record(Status(row.status), row.attempts, tuple(json.loads(row.history)), taken)

    async def update(
        self,
        notification_id: str,
        now: datetime,
        *,
        attempts: int,
        status: Status | None = None,
        history: tuple[str, ...] | None = None,
    ) -> None:
        """Records the requests sent so far and, when it ended, how and why."""
        values: dict[str, object] = {"attempts": attempts, "updated_at": now}
        if status is not None:
            values["status"] = status.value
        if history is not None:
            values["history"] = json.dumps(list(history))
        async with self._engine.begin() as connection:
            await connection.execute(
                update(notifications).where(notifications.c.notification_id == notification_id).values(**values)
            )

    async def settle(self, referral_id: UUID, status: str, at: datetime) -> None:
        """The referral was taken (or decided, or cancelled): reminders it made moot are dropped when they come
        up. A later word (accepted after acknowledged) replaces an acknowledgement; nothing replaces the rest."""
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    settled.insert().values(referral_id=str(referral_id), status=status, settled_at=at)
                )
        except IntegrityError:
            async with self._engine.begin() as connection:
                await connection.execute(
                    update(settled)
                    .where(settled.c.referral_id == str(referral_id), settled.c.status == ACKNOWLEDGED)
                    .values(status=status, settled_at=at)
                )

    async def statuses(self, referral_id: UUID) -> dict[tuple[str, str], Status]:
        """(recipient, channel) -> status of every notification of a referral, for operators and tests."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(notifications.c.recipient, notifications.c.channel, notifications.c.status).where(
                    notifications.c.referral_id == str(referral_id)
                )
            )
            return {(row.recipient, row.channel): Status(row.status) for row in rows}
