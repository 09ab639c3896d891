"""The referral ledger: tables, and the repository the use cases work through inside one transaction."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    func,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import Executable

from services.referral.audit import GENESIS, AuditEntry, AuditKeys, ChainedEntry, chain
from services.referral.lifecycle import AWAITING_ACK, Status
from shared.broker import Envelope
from shared.contracts.base import Priority
from shared.contracts.cases import CaseReported, ExploitationType, SealedBox, VictimFacts
from shared.contracts.referrals import DeadlineKind, ReferralReason
from shared.database import UtcDateTime, in_transaction, upsert

_P = ParamSpec("_P")
_T = TypeVar("_T")

metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_code", String(20), nullable=False),
    Column("police_report_number", String(100), nullable=False),
    Column("reporting_agency", String(60), nullable=False),
    Column("regency_code", String(5), nullable=False),
    Column("reported_at", UtcDateTime, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("exploitation_types", JSON, nullable=False),
    Column("victims", JSON, nullable=False),
    # Sealed exactly as intake sealed it: identity rests encrypted, opened only for an authorised read.
    Column("identity", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("withdrawn_at", UtcDateTime, nullable=True),
    # Set when the identity was erased (on request, or after the retention period); ``identity`` is then a marker.
    Column("identity_erased_at", UtcDateTime, nullable=True),
    Index("ix_cases_report_number", "reporting_agency", "police_report_number"),
)

referrals = Table(
    "referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), ForeignKey("cases.case_id"), nullable=False),
    Column("agency_id", String(60), nullable=False),
    Column("status", String(20), nullable=False),
    Column("priority", String(10), nullable=False),
    Column("victim_refs", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("ack_due_at", UtcDateTime, nullable=False),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("ack_code", String(6), nullable=True),
    Column("accept_due_at", UtcDateTime, nullable=True),
    Column("escalation_level", Integer, nullable=False, server_default="0"),
    UniqueConstraint("case_id", "agency_id", name="uq_referrals_case_agency"),
    Index("ix_referrals_status_due", "status", "ack_due_at"),
    Index("ix_referrals_agency_ack_code", "agency_id", "ack_code"),
)
# An SMS reply ``TERIMA 482193`` from an agency's officer names exactly one of its referrals awaiting acknowledgement.
# In the lifecycle's order, not a set's (which changes with each process's hash seed): a new ledger's index must
# read as the migration wrote it, or ledgers upgraded and ledgers created afresh would differ.
# The statuses are written into the SQL (they are the lifecycle's own names), not bound: a list bound to IN is
# rendered into the SQL again at every execution, which doubled the cost of the ack-code probe of every referral.
_awaiting_ack = referrals.c.status.in_(
    [literal_column(f"'{status.value}'") for status in Status if status in AWAITING_ACK]
)
Index(
    "uq_referrals_awaiting_ack_code",
    referrals.c.agency_id,
    referrals.c.ack_code,
    unique=True,
    postgresql_where=_awaiting_ack,
    sqlite_where=_awaiting_ack,
)

deadlines = Table(
    "deadlines",
    metadata,
    Column("referral_id", String(36), ForeignKey("referrals.referral_id"), primary_key=True),
    Column("kind", String(12), primary_key=True),
    Column("next_level", Integer, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("reason", String(200), nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)
_open_deadline = deadlines.c.closed_at.is_(None)
Index("ix_deadlines_open_due", deadlines.c.due_at, postgresql_where=_open_deadline, sqlite_where=_open_deadline)

timeline = Table(
    "timeline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(36), ForeignKey("cases.case_id"), nullable=False, index=True),
    Column("referral_id", String(36), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("event", String(40), nullable=False),
    Column("actor", String(120), nullable=False),
    Column("detail", JSON, nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(40), primary_key=True),
    Column("message_id", String(255), primary_key=True),
    Column("received_at", UtcDateTime, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("exchange", String(100), nullable=False),
    Column("routing_key", String(200), nullable=False),
    Column("message_type", String(60), nullable=False),
    Column("correlation_id", String(255), nullable=True),
    Column("causation_id", String(255), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(200), nullable=True),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Index("ix_outbox_unsent", "sent_at", "id"),
)


# The officer desk: a one-click link is spent by its first action; wrong PINs or SMS codes count to a lockout.
officer_links = Table(
    "officer_links",
    metadata,
    Column("token_id", String(255), primary_key=True),
    Column("referral_id", String(36), ForeignKey("referrals.referral_id"), nullable=False),
    Column("officer_id", String(60), nullable=False),
    Column("used_at", UtcDateTime, nullable=False),
)

officer_lockouts = Table(
    "officer_lockouts",
    metadata,
    Column("agency_id", String(60), primary_key=True),
    Column("officer_id", String(60), primary_key=True),
    Column("purpose", String(10), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
)

# Wrong tries counted in a sliding window (an agency's SMS codes): each is a row, so old ones age out one by one.
failed_tries = Table(
    "failed_tries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agency_id", String(60), nullable=False),
    Column("officer_id", String(60), nullable=False),
    Column("purpose", String(10), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_failed_tries_key_at", "agency_id", "officer_id", "purpose", "at"),
)

# An operator's last sign-out from the ops page: every session signed in before it ends with it.
ops_sign_outs = Table(
    "ops_sign_outs",
    metadata,
    Column("operator_id", String(60), primary_key=True),
    Column("signed_out_at", UtcDateTime, nullable=False),
)

# Tamper-evident: each row carries the keyed hash of the one before (services/referral/audit.py). Ids are assigned by
# the appender, one after another, so a deleted row leaves a gap; no foreign key, the trail outlives anything.
audit_trail = Table(
    "audit_trail",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(60), nullable=False),
    Column("officer", String(200), nullable=True),
    Column("action", String(20), nullable=False),
    Column("case_id", String(36), nullable=False, index=True),
    Column("referral_id", String(36), nullable=True),
    Column("victim_ref", String(20), nullable=True),
    Column("fields", JSON, nullable=False),
    Column("key_id", String(40), nullable=False, server_default=""),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

ERASED_IDENTITY = {"erased": True}
"""What ``cases.identity`` holds once erased."""

ERASED_TEXT = "(erased)"
"""What a timeline entry's free text holds once the case's identity was erased."""

# Timeline details that people type in their own words, and may name a victim in: the note of an agency's reply,
# of a withdrawal and of a referral entered in error (services/referral/referrals.py), and the reason an agency
# gives for a hold. Every other reason is a code (a decline, a withdrawal, a cancellation) or written by us.
_FREE_TEXT = frozenset({"note"})
_FREE_TEXT_REASONS = frozenset({"held"})


def _free_text_erased(event: str, detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` with its free text replaced by ``ERASED_TEXT``; a note never given (None, empty) stays as it was."""
    free = _FREE_TEXT | {"reason"} if event in _FREE_TEXT_REASONS else _FREE_TEXT
    return {key: ERASED_TEXT if key in free and value else value for key, value in detail.items()}


# The statements every message runs are built once, their values bound at each execution: building one
# (``.values()``, comparisons, its cache key) cost about as much CPU as running it.
_CASE = select(cases).where(cases.c.case_id == bindparam("case_id"))
_LOCKED_CASE = _CASE.with_for_update(key_share=True)
_REFERRAL = select(referrals).where(referrals.c.referral_id == bindparam("referral_id"))
_LOCKED_REFERRAL = _REFERRAL.with_for_update(key_share=True)
_UPDATE_REFERRAL = update(referrals).where(referrals.c.referral_id == bindparam("b_referral_id"))
"""Sets the columns named by the parameters of the referral named by ``b_referral_id``."""
_ESCALATE_NOW = (
    update(deadlines)
    .where(
        deadlines.c.referral_id == bindparam("b_referral_id"),
        deadlines.c.kind == bindparam("b_kind"),
        _open_deadline,
        deadlines.c.next_level == 1,
    )
    .values(due_at=bindparam("due_at"), reason=bindparam("reason"), updated_at=bindparam("updated_at"))
)


# A referral keeps its SMS code while it is awaited, and after that until ``since`` has passed both its issue and
# its acknowledgement: a late reply with the code must never land on another referral.
_HOLDS_ITS_CODE = (
    _awaiting_ack | (referrals.c.issued_at >= bindparam("since")) | (referrals.c.acknowledged_at >= bindparam("since"))
)


def idle_open_cases_query(
    finished: Iterable[Status], idle_before: datetime, limit: int | None, only: UUID | None
) -> Select[Any]:
    """The query of ``LedgerTx.idle_open_cases``; without a limit, also what the ledger's gauges count."""
    # Each case's last entry through the timeline's case index: a subquery grouping the whole timeline, which SQLite
    # did not narrow to the one case asked about, took 150 ms per case at 200,000 entries.
    last_activity = select(func.max(timeline.c.at)).where(timeline.c.case_id == cases.c.case_id).scalar_subquery()
    open_leg = (
        select(referrals.c.referral_id)
        .where(referrals.c.case_id == cases.c.case_id, referrals.c.status.not_in([status.value for status in finished]))
        .exists()
    )
    query = (
        select(cases.c.case_id)
        .where(
            cases.c.identity_erased_at.is_(None),
            open_leg,
            func.coalesce(last_activity, cases.c.created_at) < idle_before,
            *([cases.c.case_id == str(only)] if only else []),
        )
        .order_by(cases.c.case_id)
    )
    return query if limit is None else query.limit(limit)


_ACK_CODE_IN_USE = (
    select(referrals.c.referral_id)
    .where(
        referrals.c.agency_id == bindparam("agency_id"),
        referrals.c.ack_code == bindparam("code"),
        _HOLDS_ITS_CODE,
    )
    .limit(1)
)


@functools.cache
def _first_time(dialect_name: str) -> Executable:
    """The inbox check, built once for the dialect in use, like the statements above."""
    return upsert(inbox, dialect_name).on_conflict_do_nothing(index_elements=["consumer", "message_id"])


@dataclass(frozen=True)
class CaseRecord:
    case_id: UUID
    case_code: str
    police_report_number: str
    reporting_agency: str
    regency_code: str
    reported_at: datetime
    fingerprint: str
    exploitation_types: tuple[ExploitationType, ...]
    victims: tuple[VictimFacts, ...]
    identity: SealedBox | None
    """None once erased."""
    withdrawn_at: datetime | None = None
    identity_erased_at: datetime | None = None


@dataclass(frozen=True)
class Referral:
    referral_id: UUID
    case_id: UUID
    agency_id: str
    status: Status
    priority: Priority
    victim_refs: tuple[str, ...]
    reasons: tuple[ReferralReason, ...]
    issued_at: datetime
    ack_due_at: datetime
    acknowledged_at: datetime | None = None
    accept_due_at: datetime | None = None
    ack_code: str | None = None
    escalation_level: int = 0
    """The level of the latest escalation (of either deadline); 0 if none fired."""


@dataclass(frozen=True)
class Deadline:
    """One deadline of a referral as the sweeper sees it: the level that fires next, and when."""

    referral_id: UUID
    kind: DeadlineKind
    next_level: int
    due_at: datetime
    reason: str | None


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    event: str
    referral_id: UUID | None
    actor: str
    detail: dict[str, Any]


def _case(row: Any) -> CaseRecord:
    return CaseRecord(
        case_id=UUID(row.case_id),
        case_code=row.case_code,
        police_report_number=row.police_report_number,
        reporting_agency=row.reporting_agency,
        regency_code=row.regency_code,
        reported_at=row.reported_at,
        fingerprint=row.fingerprint,
        exploitation_types=tuple(ExploitationType(t) for t in row.exploitation_types),
        victims=tuple(VictimFacts.model_validate(v) for v in row.victims),
        identity=None if row.identity_erased_at else SealedBox.model_validate(row.identity),
        withdrawn_at=row.withdrawn_at,
        identity_erased_at=row.identity_erased_at,
    )


def _referral(row: Any) -> Referral:
    return Referral(
        referral_id=UUID(row.referral_id),
        case_id=UUID(row.case_id),
        agency_id=row.agency_id,
        status=Status(row.status),
        priority=Priority(row.priority),
        victim_refs=tuple(row.victim_refs),
        reasons=tuple(ReferralReason.model_validate(r) for r in row.reasons),
        issued_at=row.issued_at,
        ack_due_at=row.ack_due_at,
        acknowledged_at=row.acknowledged_at,
        accept_due_at=row.accept_due_at,
        ack_code=row.ack_code,
        escalation_level=row.escalation_level,
    )


class LedgerTx:
    """Reads and writes inside one database transaction; nothing is visible elsewhere until it commits (units of
    work that share the transaction on SQLite, ``shared.group_commit``, run after it and see it as committed)."""

    def __init__(self, connection: Connection, audit_keys: AuditKeys | None) -> None:
        self._c = connection
        self._audit_keys = audit_keys
        # Timeline and outbox rows are written in one executemany each when the transaction ends:
        # a case with three referrals is then a handful of statements, not fifteen round trips.
        self._timeline: list[dict[str, Any]] = []
        self._outbox: list[dict[str, Any]] = []

    def flush(self) -> None:
        if self._timeline:
            self._c.execute(timeline.insert(), self._timeline)
            self._timeline = []
        if self._outbox:
            self._c.execute(outbox.insert(), self._outbox)
            self._outbox = []

    def first_time(self, consumer: str, message_id: str, now: datetime) -> bool:
        """Records ``message_id`` as processed by ``consumer``; False if it already was (a redelivery)."""
        result = self._c.execute(
            _first_time(self._c.dialect.name), {"consumer": consumer, "message_id": message_id, "received_at": now}
        )
        return bool(result.rowcount)

    def case(self, case_id: UUID, *, for_update: bool = False) -> CaseRecord | None:
        """``for_update`` takes the case's lock, always before its referrals' (one order, no deadlock): whoever
        changes the set of a case's legs (an amendment, a withdrawal, a reply) holds it.

        Every row lock here is FOR NO KEY UPDATE: as exclusive among writers as FOR UPDATE, but a row inserted
        elsewhere that references the locked one (its foreign key check takes KEY SHARE) does not wait for it.
        With FOR UPDATE, a sweeper holding a referral and writing its timeline entry waited for the case a reply
        held, while the reply waited for that referral: PostgreSQL broke the deadlock by failing the reply."""
        row = self._c.execute(_LOCKED_CASE if for_update else _CASE, {"case_id": str(case_id)}).one_or_none()
        return _case(row) if row else None

    def mark_withdrawn(self, case_id: UUID, now: datetime) -> None:
        self._c.execute(update(cases).where(cases.c.case_id == str(case_id)).values(withdrawn_at=now))

    def add_case(self, event: CaseReported, now: datetime) -> None:
        self._c.execute(
            cases.insert(),
            {
                "case_id": str(event.case_id),
                "case_code": event.case_code,
                "police_report_number": event.police_report_number,
                "reporting_agency": event.reporting_agency,
                "regency_code": event.regency_code,
                "reported_at": event.reported_at,
                "fingerprint": event.fingerprint,
                "exploitation_types": [t.value for t in event.exploitation_types],
                "victims": [v.model_dump(mode="json") for v in event.victims],
                "identity": event.identity.model_dump(mode="json"),
                "created_at": now,
            },
        )

    def amend_case(self, event: CaseReported, *, erased: bool) -> None:
        """The case's facts and sealed identity become the amended ones; its code and reporter stay. An erased
        identity stays erased: an erasure (a victim's request, the retention period) is not undone by a police
        system that sends the whole case again."""
        facts: dict[str, Any] = {
            "fingerprint": event.fingerprint,
            "regency_code": event.regency_code,
            "exploitation_types": [t.value for t in event.exploitation_types],
            "victims": [v.model_dump(mode="json") for v in event.victims],
        }
        if not erased:
            facts["identity"] = event.identity.model_dump(mode="json")
        self._c.execute(update(cases).where(cases.c.case_id == str(event.case_id)).values(**facts))

    def erase_identity(self, case_id: UUID, now: datetime) -> None:
        """The sealed identity is gone for good, and so is the free text of the case's timeline so far (people may
        have typed a victim's name into a note); the structured facts of the case and its timeline stay."""
        self._c.execute(
            update(cases)
            .where(cases.c.case_id == str(case_id))
            .values(identity=ERASED_IDENTITY, identity_erased_at=now)
        )
        # Entries recorded earlier in this transaction are still in the buffer: they are written first, then erased.
        self.flush()
        rows = self._c.execute(
            select(timeline.c.id, timeline.c.event, timeline.c.detail).where(timeline.c.case_id == str(case_id))
        )
        blanked = [
            {"b_id": row.id, "detail": detail}
            for row in rows
            if (detail := _free_text_erased(row.event, row.detail)) != row.detail
        ]
        if blanked:
            self._c.execute(
                update(timeline).where(timeline.c.id == bindparam("b_id")).values(detail=bindparam("detail")), blanked
            )

    def cases_to_erase(
        self, finished: Iterable[Status], closed_before: datetime, limit: int, *, only: UUID | None = None
    ) -> list[UUID]:
        """Cases still holding identity whose every leg is ``finished``, the last of them before
        ``closed_before`` (a case with no legs counts from its creation); ``only`` asks of that one case."""
        finished_values = [status.value for status in finished]
        # The outer join gives a case with no legs one row of NULLs: no open leg.
        open_legs = func.sum(
            case((referrals.c.referral_id.is_(None), 0), (referrals.c.status.in_(finished_values), 0), else_=1)
        )
        closed_at = func.coalesce(func.max(referrals.c.updated_at), cases.c.created_at)
        query = (
            select(cases.c.case_id)
            .join_from(cases, referrals, referrals.c.case_id == cases.c.case_id, isouter=True)
            .where(cases.c.identity_erased_at.is_(None), *([cases.c.case_id == str(only)] if only else []))
            .group_by(cases.c.case_id, cases.c.created_at)
            .having(open_legs == 0, closed_at < closed_before)
            .order_by(cases.c.case_id)
            .limit(limit)
        )
        return [UUID(case_id) for case_id in self._c.execute(query).scalars()]

    def idle_open_cases(
        self, finished: Iterable[Status], idle_before: datetime, limit: int | None, *, only: UUID | None = None
    ) -> list[UUID]:
        """Cases still holding identity with a leg not ``finished`` and nothing on their timeline since
        ``idle_before`` (a case with no timeline counts from its creation); ``only`` asks of that one case."""
        return [
            UUID(case_id)
            for case_id in self._c.execute(idle_open_cases_query(finished, idle_before, limit, only)).scalars()
        ]

    def erased_cases(self, case_ids: Iterable[UUID]) -> set[UUID]:
        """Those of ``case_ids`` whose identity the ledger has erased."""
        wanted = sorted({str(case_id) for case_id in case_ids})
        if not wanted:
            return set()
        query = select(cases.c.case_id).where(cases.c.case_id.in_(wanted), cases.c.identity_erased_at.is_not(None))
        return {UUID(case_id) for case_id in self._c.execute(query).scalars()}

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Appends to the audit trail's chain. Appends take turns, so the chain never forks: SQLite runs one
        transaction at a time (BEGIN IMMEDIATE); on PostgreSQL an advisory lock is held until the commit."""
        if not entries:
            return
        if self._audit_keys is None:
            raise RuntimeError("this ledger was opened without the audit keys; it cannot append to the trail")
        if self._c.dialect.name == "postgresql":
            self._c.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK})
        query = select(audit_trail.c.id, audit_trail.c.hash).order_by(audit_trail.c.id.desc()).limit(1)
        last = self._c.execute(query).one_or_none()
        chained = chain(last.id if last else 0, last.hash if last else GENESIS, entries, self._audit_keys)
        self._c.execute(
            audit_trail.insert(),
            [
                {
                    "id": row.id,
                    "at": row.entry.at,
                    "actor": row.entry.actor,
                    "officer": row.entry.officer,
                    "action": str(row.entry.action),
                    "case_id": str(row.entry.case_id),
                    "referral_id": str(row.entry.referral_id) if row.entry.referral_id else None,
                    "victim_ref": row.entry.victim_ref,
                    "fields": list(row.entry.fields),
                    "key_id": row.key_id,
                    "prev_hash": row.prev_hash,
                    "hash": row.hash,
                }
                for row in chained
            ],
        )

    def widen_referral(self, referral: Referral, now: datetime) -> None:
        """More victims (and so reasons, perhaps a higher priority and an earlier deadline) on a leg."""
        self._c.execute(
            update(referrals)
            .where(referrals.c.referral_id == str(referral.referral_id))
            .values(
                victim_refs=list(referral.victim_refs),
                reasons=[r.model_dump(mode="json") for r in referral.reasons],
                priority=referral.priority.value,
                ack_due_at=referral.ack_due_at,
                accept_due_at=referral.accept_due_at,
                updated_at=now,
            )
        )
        # A deadline not yet passed moves with the referral; one already passed keeps its escalation schedule.
        for kind, due_at in (
            (DeadlineKind.ACKNOWLEDGE, referral.ack_due_at),
            (DeadlineKind.ACCEPT, referral.accept_due_at),
        ):
            if due_at is not None:
                self._c.execute(
                    update(deadlines)
                    .where(
                        _deadline_key(referral.referral_id, kind),
                        _open_deadline,
                        deadlines.c.next_level == 1,
                        # Only ever earlier: a level 1 already brought forward (nobody on duty) stays so.
                        deadlines.c.due_at > due_at,
                    )
                    .values(due_at=due_at, updated_at=now)
                )

    def add_referrals(self, new: list[Referral], now: datetime) -> None:
        if not new:
            return
        self._c.execute(
            referrals.insert(),
            [
                {
                    "referral_id": str(referral.referral_id),
                    "case_id": str(referral.case_id),
                    "agency_id": referral.agency_id,
                    "status": referral.status.value,
                    "priority": referral.priority.value,
                    "victim_refs": list(referral.victim_refs),
                    "reasons": [r.model_dump(mode="json") for r in referral.reasons],
                    "issued_at": referral.issued_at,
                    "ack_due_at": referral.ack_due_at,
                    "acknowledged_at": None,
                    "updated_at": now,
                    "ack_code": referral.ack_code,
                    "accept_due_at": referral.accept_due_at,
                    "escalation_level": 0,
                }
                for referral in new
            ],
        )
        self._c.execute(
            deadlines.insert(),
            [
                {
                    "referral_id": str(referral.referral_id),
                    "kind": kind.value,
                    "next_level": 1,
                    "due_at": due_at,
                    "updated_at": now,
                }
                for referral in new
                for kind, due_at in (
                    (DeadlineKind.ACKNOWLEDGE, referral.ack_due_at),
                    (DeadlineKind.ACCEPT, referral.accept_due_at),
                )
                if due_at is not None
            ],
        )

    def ack_code_in_use(self, agency_id: str, code: str, *, since: datetime) -> bool:
        """Whether one of the agency's referrals holds ``code`` (awaiting acknowledgement, or issued or acknowledged
        since ``since``); one row at most, however many referrals the agency has."""
        found = self._c.execute(_ACK_CODE_IN_USE, {"agency_id": agency_id, "code": code, "since": since})
        return found.first() is not None

    def ack_codes_in_use(self, agency_id: str, *, since: datetime) -> set[str]:
        """The codes the agency's referrals hold (awaiting acknowledgement, or issued or acknowledged since
        ``since``): a new code differs from each."""
        query = select(referrals.c.ack_code).where(
            referrals.c.agency_id == agency_id,
            _HOLDS_ITS_CODE,
            referrals.c.ack_code.is_not(None),
        )
        return set(self._c.execute(query, {"since": since}).scalars())

    def referral(self, referral_id: UUID, *, lock: bool = True) -> Referral | None:
        found = self._c.execute(_LOCKED_REFERRAL if lock else _REFERRAL, {"referral_id": str(referral_id)})
        row = found.one_or_none()
        return _referral(row) if row else None

    def referrals_of(self, case_id: UUID, *, for_update: bool = False) -> list[Referral]:
        query = select(referrals).where(referrals.c.case_id == str(case_id)).order_by(referrals.c.issued_at)
        locked = query.with_for_update(key_share=True) if for_update else query
        return [_referral(row) for row in self._c.execute(locked)]

    def due_deadlines(self, now: datetime, limit: int) -> list[tuple[Deadline, Referral]]:
        """Open deadlines due by ``now``, earliest first, each with its referral; both rows stay locked until the
        transaction ends. On PostgreSQL a row another replica holds (or a referral being moved) is skipped,
        never waited for: a move locks the referral and then closes its deadline, so a sweeper holding the
        deadline and waiting for the referral would deadlock with it. SQLite transactions run one at a time
        anyway (BEGIN IMMEDIATE)."""
        query = (
            select(referrals, deadlines.c.kind, deadlines.c.next_level, deadlines.c.due_at, deadlines.c.reason)
            .join_from(deadlines, referrals, referrals.c.referral_id == deadlines.c.referral_id)
            .where(_open_deadline, deadlines.c.due_at <= now)
            .order_by(deadlines.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
        return [
            (
                Deadline(
                    referral_id=UUID(row.referral_id),
                    kind=DeadlineKind(row.kind),
                    next_level=row.next_level,
                    due_at=row.due_at,
                    reason=row.reason,
                ),
                _referral(row),
            )
            for row in self._c.execute(query)
        ]

    def advance_deadline(self, deadline: Deadline, now: datetime, *, due_at: datetime | None) -> None:
        """The next level is due at ``due_at``; None closes the deadline (its last level fired)."""
        key = _deadline_key(deadline.referral_id, deadline.kind)
        if due_at is None:
            self._c.execute(update(deadlines).where(key).values(closed_at=now, updated_at=now))
            return
        self._c.execute(
            update(deadlines)
            .where(key)
            .values(next_level=deadline.next_level + 1, due_at=due_at, reason=None, updated_at=now)
        )

    def postpone_deadline(self, deadline: Deadline, now: datetime, *, due_at: datetime) -> None:
        """The same level, later: it could not fire now."""
        key = _deadline_key(deadline.referral_id, deadline.kind)
        self._c.execute(update(deadlines).where(key).values(due_at=due_at, updated_at=now))

    def close_deadlines(self, referral_id: UUID, kinds: Iterable[DeadlineKind], now: datetime) -> None:
        """The deadlines are met (or no longer matter): no level of them fires again."""
        self._c.execute(
            update(deadlines)
            .where(
                deadlines.c.referral_id == str(referral_id),
                deadlines.c.kind.in_([kind.value for kind in kinds]),
                _open_deadline,
            )
            .values(closed_at=now, updated_at=now)
        )

    def escalate_now(self, referral_id: UUID, kind: DeadlineKind, now: datetime, *, reason: str) -> bool:
        """Level 1 of the deadline becomes due now, for ``reason``; False if level 1 already fired (or the
        deadline is closed)."""
        result = self._c.execute(
            _ESCALATE_NOW,
            {"b_referral_id": str(referral_id), "b_kind": kind.value, "due_at": now, "reason": reason[:200],
             "updated_at": now},
        )  # fmt: skip
        return bool(result.rowcount)

    def set_escalation_level(self, referral_id: UUID, level: int, now: datetime) -> None:
        self._c.execute(
            update(referrals)
            .where(referrals.c.referral_id == str(referral_id))
            # The highest level reached shows, whichever deadline reached it.
            .values(
                escalation_level=case(
                    (referrals.c.escalation_level < level, level), else_=referrals.c.escalation_level
                ),
                updated_at=now,
            )
        )

    def set_status(self, referral_id: UUID, status: Status, now: datetime, **fields: Any) -> None:
        self._c.execute(
            _UPDATE_REFERRAL, {"b_referral_id": str(referral_id), "status": status.value, "updated_at": now, **fields}
        )

    def record(
        self,
        case_id: UUID,
        event: str,
        *,
        at: datetime,
        actor: str,
        referral_id: UUID | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._timeline.append(
            {
                "case_id": str(case_id),
                "referral_id": str(referral_id) if referral_id else None,
                "at": at,
                "event": event,
                "actor": actor,
                "detail": detail or {},
            }
        )

    def timeline_of(self, case_id: UUID) -> list[TimelineEntry]:
        self.flush()
        query = select(timeline).where(timeline.c.case_id == str(case_id)).order_by(timeline.c.id)
        return [
            TimelineEntry(
                at=row.at,
                event=row.event,
                referral_id=UUID(row.referral_id) if row.referral_id else None,
                actor=row.actor,
                detail=row.detail,
            )
            for row in self._c.execute(query)
        ]

    def enqueue(self, envelope: Envelope, now: datetime) -> None:
        """The message leaves with this transaction or not at all (the outbox relay publishes it)."""
        self._outbox.append(
            {
                "message_id": envelope.message_id,
                "exchange": envelope.exchange,
                "routing_key": envelope.routing_key,
                "message_type": envelope.message_type,
                "correlation_id": envelope.correlation_id,
                "causation_id": envelope.causation_id,
                "body": envelope.body,
                "created_at": now,
                "sent_at": None,
            }
        )

    def referrals_by_code(self, agency_id: str, code: str) -> list[Referral]:
        """The agency's referrals carrying an SMS code: at most one awaiting acknowledgement (a unique index)."""
        query = select(referrals).where(referrals.c.agency_id == agency_id, referrals.c.ack_code == code)
        return [_referral(row) for row in self._c.execute(query)]

    def link_used(self, token_id: str) -> bool:
        query = select(officer_links.c.token_id).where(officer_links.c.token_id == token_id)
        return self._c.execute(query).first() is not None

    def spend_link(self, token_id: str, referral_id: UUID, officer_id: str, now: datetime) -> bool:
        """Marks a one-click link used; False if it already was."""
        statement = (
            upsert(officer_links, self._c.dialect.name)
            .values(token_id=token_id, referral_id=str(referral_id), officer_id=officer_id, used_at=now)
            .on_conflict_do_nothing(index_elements=["token_id"])
        )
        return bool(self._c.execute(statement).rowcount)

    def sign_out(self, operator_id: str, at: datetime) -> None:
        """Ends every ops page session of the operator signed in up to ``at``, on every device."""
        statement = upsert(ops_sign_outs, self._c.dialect.name).values(operator_id=operator_id, signed_out_at=at)
        self._c.execute(statement.on_conflict_do_update(index_elements=["operator_id"], set_={"signed_out_at": at}))

    def signed_out_at(self, operator_id: str) -> datetime | None:
        query = select(ops_sign_outs.c.signed_out_at).where(ops_sign_outs.c.operator_id == operator_id)
        return self._c.execute(query).scalar_one_or_none()

    def locked_until(self, agency_id: str, officer_id: str, purpose: str) -> datetime | None:
        """Until when the officer is locked out of ``pin`` or ``sms``, if ever."""
        query = select(officer_lockouts.c.locked_until).where(
            officer_lockouts.c.agency_id == agency_id,
            officer_lockouts.c.officer_id == officer_id,
            officer_lockouts.c.purpose == purpose,
        )
        return self._c.execute(query).scalar_one_or_none()

    def count_failure(self, agency_id: str, officer_id: str, purpose: str) -> int:
        """Adds one wrong try in a single statement and returns the count so far."""
        first = upsert(officer_lockouts, self._c.dialect.name).values(
            agency_id=agency_id, officer_id=officer_id, purpose=purpose, failures=1, locked_until=None
        )
        statement = first.on_conflict_do_update(
            index_elements=["agency_id", "officer_id", "purpose"],
            set_={"failures": officer_lockouts.c.failures + 1},
        ).returning(officer_lockouts.c.failures)
        return int(self._c.execute(statement).scalar_one())

    def count_recent_failure(
        self, agency_id: str, officer_id: str, purpose: str, *, at: datetime, window: timedelta
    ) -> int:
        """Adds one wrong try at ``at`` and returns how many there were within ``window`` up to it; older ones are
        forgotten. The lockout row is written first: on PostgreSQL its row lock makes a concurrent try wait for this
        one's commit, so neither counts without the other."""
        key = (
            failed_tries.c.agency_id == agency_id,
            failed_tries.c.officer_id == officer_id,
            failed_tries.c.purpose == purpose,
        )
        lockout_row = upsert(officer_lockouts, self._c.dialect.name).values(
            agency_id=agency_id, officer_id=officer_id, purpose=purpose, failures=0, locked_until=None
        )
        self._c.execute(
            lockout_row.on_conflict_do_update(
                index_elements=["agency_id", "officer_id", "purpose"],
                set_={"failures": officer_lockouts.c.failures},
            )
        )
        self._c.execute(
            failed_tries.insert().values(agency_id=agency_id, officer_id=officer_id, purpose=purpose, at=at)
        )
        self._c.execute(delete(failed_tries).where(*key, failed_tries.c.at <= at - window))
        failures = int(self._c.execute(select(func.count()).select_from(failed_tries).where(*key)).scalar_one())
        self._c.execute(
            update(officer_lockouts)
            .where(
                officer_lockouts.c.agency_id == agency_id,
                officer_lockouts.c.officer_id == officer_id,
                officer_lockouts.c.purpose == purpose,
            )
            .values(failures=failures)
        )
        return failures

    def set_lockout(
        self, agency_id: str, officer_id: str, purpose: str, *, failures: int, until: datetime | None
    ) -> None:
        statement = upsert(officer_lockouts, self._c.dialect.name).values(
            agency_id=agency_id, officer_id=officer_id, purpose=purpose, failures=failures, locked_until=until
        )
        self._c.execute(
            statement.on_conflict_do_update(
                index_elements=["agency_id", "officer_id", "purpose"],
                set_={"failures": failures, "locked_until": until},
            )
        )


def _audit_row(row: Any) -> ChainedEntry:
    entry = AuditEntry(
        at=row.at,
        actor=row.actor,
        officer=row.officer,
        action=row.action,
        case_id=UUID(row.case_id),
        referral_id=UUID(row.referral_id) if row.referral_id else None,
        victim_ref=row.victim_ref,
        fields=tuple(row.fields),
    )
    return ChainedEntry(row.id, entry, row.key_id, row.prev_hash, row.hash)


def _deadline_key(referral_id: UUID, kind: DeadlineKind) -> Any:
    return (deadlines.c.referral_id == str(referral_id)) & (deadlines.c.kind == kind.value)


class Ledger:
    def __init__(self, engine: AsyncEngine, *, audit_keys: AuditKeys | None = None) -> None:
        """Without ``audit_keys`` the ledger reads everything but cannot append to the audit trail."""
        self.engine = engine
        self._audit_keys = audit_keys

    async def audit_rows(self, *, page: int = 1000) -> AsyncIterator[ChainedEntry]:
        """The whole audit trail in id order, a page per transaction."""
        after = 0
        while True:
            async with self.engine.connect() as connection:
                query = select(audit_trail).where(audit_trail.c.id > after).order_by(audit_trail.c.id).limit(page)
                rows = (await connection.execute(query)).all()
            for row in rows:
                yield _audit_row(row)
            if len(rows) < page:
                return
            after = rows[-1].id

    async def run(self, work: Callable[Concatenate[LedgerTx, _P], _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``work(tx, *args, **kwargs)`` in a transaction: committed if it returns, rolled back if it raises.
        ``work`` is synchronous, run in one greenlet (``in_transaction``), so its statements pay none of the
        async layer's cost per call; where the driver waits, the loop still goes on. On SQLite it may share the
        transaction with others queued with it, and run again alone after a rolled-back first run."""
        return await in_transaction(self.engine, self._run, work, *args, **kwargs)

    def _run(
        self,
        connection: Connection,
        work: Callable[Concatenate[LedgerTx, _P], _T],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        tx = LedgerTx(connection, self._audit_keys)
        done = work(tx, *args, **kwargs)
        tx.flush()
        return done

    async def migrate(self) -> None:
        """A new ledger gets the newest schema at once; an older one is upgraded to it by Alembic."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_create_or_upgrade)


SCHEMA_REVISION = "0011"
"""The newest Alembic revision (``migrations/versions``): the schema ``metadata`` describes. A new ledger is created
from ``metadata`` at this revision and runs no migration, so a migration that adds rows every ledger needs must add
them here too."""

# Alembic's bookkeeping as Alembic creates it, not part of the ledger's metadata: written only to stamp a new ledger.
_alembic_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)

# Any constant: replicas starting together on PostgreSQL take turns migrating instead of racing.
_MIGRATION_LOCK = 0x52756A756B616E
_AUDIT_LOCK = _MIGRATION_LOCK + 1


def _create_or_upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    existing = set(inspect(connection).get_table_names())
    if _alembic_version.name in existing:
        if connection.execute(select(_alembic_version.c.version_num)).scalar() != SCHEMA_REVISION:
            upgrade_with_alembic(connection)
    elif existing.isdisjoint(metadata.tables):
        # Replaying every revision on an empty database builds what ``metadata`` describes (a test checks both).
        metadata.create_all(connection)
        _alembic_version.create(connection)
        connection.execute(_alembic_version.insert().values(version_num=SCHEMA_REVISION))
    else:
        upgrade_with_alembic(connection)


def upgrade_with_alembic(connection: Connection, revision: str = "head") -> None:
    # Imported here, for an upgrade only: Alembic's modules would add 8 MB to the service for its whole life.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
