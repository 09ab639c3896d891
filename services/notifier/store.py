"""The notifier's own record: every notification (recipient, channel, status, attempts, history) and the
referrals that need no more reminders. SQLite by default, PostgreSQL alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import Executable

from services.notifier.messages import ACKNOWLEDGED, Notification
from shared.database import UtcDateTime, add_missing_columns, execute_in_transaction, in_transaction, upsert

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
    Column("round", Integer, nullable=False, server_default="0"),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("reported", Boolean, nullable=False, server_default="0"),
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
    SENDING = "sending"
    """Claimed by one consumer until ``claimed_until``; a copy that finds the lease live waits and comes back."""
    SENT = "sent"
    FAILED = "failed"
    DROPPED = "dropped"


ENDED = (Status.SENT, Status.FAILED, Status.DROPPED)


@dataclass(frozen=True)
class Record:
    status: Status
    attempts: int
    """Requests sent on this notification's channel so far, over every round."""
    history: tuple[str, ...]
    """Why each channel tried for this recipient failed, this one's last."""
    referral_status: str | None
    """How far the referral got when it was last settled (``acknowledged``, ``accepted``, ``cancelled``, …)."""
    round: int = 0
    """The retry round of the copy that last claimed it, or that waits for its next try."""
    reported: bool = False
    """Whether what followed an end (a report, the next channel, the parking) was confirmed by the broker."""


@dataclass(frozen=True)
class Claim:
    claimed: bool
    """True for exactly one copy: the one that may send now."""
    record: Record


# The hottest statements are built once, their values bound at each execution: building one (``.values()``,
# comparisons, its cache key) cost about as much CPU as running it.
_REFERRAL_STATUS = select(settled.c.status).where(settled.c.referral_id == bindparam("referral_id"))
_UPDATE_RECORD = update(notifications).where(notifications.c.notification_id == bindparam("b_notification_id"))
"""Sets the columns named by the parameters of the record named by ``b_notification_id``."""
_EXTEND_CLAIM = (
    update(notifications)
    .where(
        notifications.c.notification_id == bindparam("b_notification_id"),
        notifications.c.status == Status.SENDING.value,
        notifications.c.round == bindparam("b_round"),
    )
    .values(claimed_until=bindparam("until"))
)


class NotificationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Insert-or-nothing in the same transaction as the claim: no read-then-insert race between replicas.
        self._insert_new: Executable = upsert(notifications, engine.dialect.name).on_conflict_do_nothing()

    async def create_schema(self) -> None:
        async with self._engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            await connection.run_sync(add_missing_columns, notifications)

    async def claim(
        self, note: Notification, now: datetime, *, round_: int, lease: timedelta, replay: bool = False
    ) -> Claim:
        """Records the notification the first time it is seen, then claims it for ``lease`` in one atomic
        update: only a pending record, or one whose earlier claim lapsed (its holder crashed), and never for a
        copy of an older round than the record's. Two copies, two replicas: one of them sends. ``replay`` (an
        operator's) first puts a record that ended or waits back to pending at round 0."""
        return await in_transaction(self._engine, self._claim, note, now, round_, now + lease, replay)

    def _claim(
        self, connection: Connection, note: Notification, now: datetime, round_: int, until: datetime, replay: bool
    ) -> Claim:
        record_id = notifications.c.notification_id == note.notification_id
        # The usual case, a notification seen for the first time, is claimed by the insert itself: two
        # statements fewer on the notifier's hottest path than insert-pending-then-claim.
        if connection.execute(self._insert_new, _new_record(note, now, round_, until)).rowcount == 1:
            taken = connection.scalar(_REFERRAL_STATUS, {"referral_id": str(note.event.referral_id)})
            return Claim(True, Record(Status.SENDING, 0, note.history, taken, round_, reported=False))
        if replay:
            connection.execute(
                update(notifications)
                .where(record_id, notifications.c.status.in_([Status.PENDING.value, Status.FAILED.value,
                                                              Status.DROPPED.value]))
                .values(status=Status.PENDING.value, round=0, claimed_until=None, reported=False, updated_at=now)
            )  # fmt: skip
        claimed = connection.execute(
            update(notifications)
            .where(
                record_id,
                notifications.c.round <= round_,
                or_(
                    notifications.c.status == Status.PENDING.value,
                    and_(notifications.c.status == Status.SENDING.value, notifications.c.claimed_until < now),
                ),
            )
            .values(status=Status.SENDING.value, claimed_until=until, round=round_, updated_at=now)
        )
        return Claim(claimed.rowcount == 1, _record(connection, note))

    async def extend_claim(self, notification_id: str, *, round_: int, until: datetime) -> None:
        """The holder still sends: its claim lasts until ``until``. Nothing once the record ended or waits (the
        send finished meanwhile), nor for a copy of another round."""
        await execute_in_transaction(
            self._engine, _EXTEND_CLAIM, {"b_notification_id": notification_id, "b_round": round_, "until": until}
        )

    async def wait(self, notification_id: str, now: datetime, *, attempts: int, round_: int) -> None:
        """The notification waits in a wait queue for ``round_``: pending again, so its copy from there claims it,
        and a copy of an earlier round is known as stale."""
        await self._set(
            notification_id, status=Status.PENDING.value, attempts=attempts, round=round_, claimed_until=None,
            updated_at=now,
        )  # fmt: skip

    async def end(
        self,
        notification_id: str,
        now: datetime,
        *,
        status: Status,
        attempts: int,
        history: tuple[str, ...] = (),
        reported: bool = False,
    ) -> None:
        """How it ended; ``reported`` once what follows the end was confirmed by the broker (a dropped one has
        nothing to follow)."""
        values: dict[str, object] = {"status": status.value, "attempts": attempts, "claimed_until": None}
        if history:
            values["history"] = json.dumps(list(history))
        await self._set(notification_id, **values, reported=reported or status is Status.DROPPED, updated_at=now)

    async def reported(self, notification_id: str) -> None:
        """What followed its end was confirmed: a copy from now on is simply dropped."""
        await self._set(notification_id, reported=True)

    async def _set(self, notification_id: str, **values: object) -> None:
        await execute_in_transaction(self._engine, _UPDATE_RECORD, {"b_notification_id": notification_id, **values})

    async def settle(self, referral_id: UUID, status: str, at: datetime) -> None:
        """The referral was taken (or decided, or cancelled): reminders it made moot are dropped when they come
        up. A later word (accepted after acknowledged) replaces an acknowledgement; nothing replaces the rest."""
        first_word = settled.insert().values(referral_id=str(referral_id), status=status, settled_at=at)
        later_word = (
            update(settled)
            .where(settled.c.referral_id == str(referral_id), settled.c.status == ACKNOWLEDGED)
            .values(status=status, settled_at=at)
        )
        try:
            await execute_in_transaction(self._engine, first_word)
        except IntegrityError:
            await execute_in_transaction(self._engine, later_word)

    async def statuses(self, referral_id: UUID) -> dict[tuple[str, str], Status]:
        """(recipient, channel) -> status of every notification of a referral, for operators and tests."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(notifications.c.recipient, notifications.c.channel, notifications.c.status).where(
                    notifications.c.referral_id == str(referral_id)
                )
            )
            return {(row.recipient, row.channel): Status(row.status) for row in rows}


def _record(connection: Connection, note: Notification) -> Record:
    row = connection.execute(
        select(
            notifications.c.status,
            notifications.c.attempts,
            notifications.c.history,
            notifications.c.round,
            notifications.c.reported,
            _REFERRAL_STATUS.scalar_subquery().label("taken"),
        ).where(notifications.c.notification_id == note.notification_id),
        {"referral_id": str(note.event.referral_id)},
    ).one()
    return Record(
        Status(row.status), row.attempts, tuple(json.loads(row.history)), row.taken, row.round, bool(row.reported)
    )


def _new_record(note: Notification, now: datetime, round_: int, claimed_until: datetime) -> dict[str, object]:
    """A notification seen for the first time, claimed by the copy that inserts it."""
    return {
        "notification_id": note.notification_id,
        "event_id": note.event_id,
        "referral_id": str(note.event.referral_id),
        "agency_id": note.event.agency_id,
        "recipient": note.recipient.id,
        "channel": note.address.kind,
        "level": note.level,
        "status": Status.SENDING.value,
        "attempts": 0,
        "history": json.dumps(list(note.history)),
        "round": round_,
        "claimed_until": claimed_until,
        "reported": False,
        "created_at": now,
        "updated_at": now,
    }
