"""The deadline sweeper: fires each escalation level of an overdue referral once, in the transaction that
records it (DESIGN.md, "Delivery guarantees" 5).

Deadlines are rows, so a restart loses nothing; replicas on PostgreSQL split the due rows (SKIP LOCKED), and the
outbox's unique message id ``escalated:<deadline>:<level>`` makes a second firing of one level impossible.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from pydantic import ValidationError

from services.referral.ack_codes import answerable_ack_code
from services.referral.ledger import Deadline, Ledger, LedgerTx, Referral
from services.referral.lifecycle import AWAITING_ACK, deadline_met
from services.referral.working_time import WorkingCalendar
from shared.broker import Envelope
from shared.clock import utcnow
from shared.contracts.referrals import DeadlineKind, ReferralEscalated
from shared.directory import Deadlines, Directory
from shared.errors import field_path
from shared.ids import derived_id
from shared.topology import EVENTS

log = structlog.get_logger(__name__)

SYSTEM = "rujukan"
TOP_LEVEL = 3
_RETRY_BROKEN = timedelta(minutes=5)

_MISSED = {DeadlineKind.ACKNOWLEDGE: "not acknowledged in time", DeadlineKind.ACCEPT: "not accepted in time"}


class DeadlineSweeper:
    def __init__(
        self,
        ledger: Ledger,
        directory: Callable[[], Directory],
        *,
        interval_seconds: float,
        on_commit: Callable[[], None] = lambda: None,
        on_escalated: Callable[[str, int], None] = lambda _agency, _level: None,
        clock: Callable[[], datetime] = utcnow,
        batch: int = 20,
    ) -> None:
        """``on_escalated(agency_id, level)`` hears of each level fired once it is committed (the metrics)."""
        self._ledger = ledger
        self._directory = directory
        self._interval = interval_seconds
        self._on_commit = on_commit
        self._on_escalated = on_escalated
        self._clock = clock
        self._batch = batch
        self._wake = asyncio.Event()
        self.last_pass = time.monotonic()

    def healthy(self) -> bool:
        """A sweep completed recently (a stuck sweeper would let overdue referrals sit unnoticed)."""
        return time.monotonic() - self.last_pass < max(30.0, 5 * self._interval)

    def wake(self) -> None:
        """A deadline was brought forward to now (nobody on duty, delivery failed): sweep without waiting."""
        self._wake.set()

    async def run(self) -> None:
        # The first sweep waits one interval after start, so acknowledgements that queued up on the broker while
        # the service was down are taken first; deadlines that passed meanwhile fire then.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                await self.sweep(self._clock())
                self.last_pass = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: the rows wait, the next sweep tries again
                log.warning("deadline_sweep_failed", error=type(exc).__name__)

    async def sweep(self, now: datetime) -> int:
        """Handles every deadline due by ``now``, a small batch per transaction; returns the levels fired.
        A deadline overdue by several intervals fires each level it missed, in order."""
        fired = 0
        while True:
            handled, fired_now = await self._sweep_batch(now)
            fired += fired_now
            if not handled:
                return fired

    async def _sweep_batch(self, now: datetime) -> tuple[int, int]:
        handled, fired = await self._ledger.run(self._fire_due, now)
        if fired:
            self._on_commit()
            for agency_id, level in fired:
                self._on_escalated(agency_id, level)
        return handled, len(fired)

    def _fire_due(self, tx: LedgerTx, now: datetime) -> tuple[int, list[tuple[str, int]]]:
        """How many deadlines were due, and the (agency, level) of each escalation fired."""
        directory = self._directory()
        fired: list[tuple[str, int]] = []
        due = tx.due_deadlines(now, self._batch)
        for deadline, referral in due:
            if deadline_met(deadline.kind, referral.status):
                # Normally closed by the move that met it; this catches a row from before that was so.
                tx.advance_deadline(deadline, now, due_at=None)
                continue
            try:
                _escalate(tx, directory, deadline, referral, now)
            except ValueError as exc:
                # Nothing is written before the message validates: put this one row off and log it rather
                # than let it roll back, at the head of every batch, the escalation of every other referral.
                log.error(
                    "escalation_failed",
                    referral_id=str(referral.referral_id),
                    error=type(exc).__name__,
                    fields=_field_paths(exc),
                )
                tx.postpone_deadline(deadline, now, due_at=now + _RETRY_BROKEN)
                continue
            fired.append((referral.agency_id, deadline.next_level))
        return len(due), fired


def _field_paths(error: ValueError) -> list[str]:
    """The fields a validation error names, for the log; never the error's text, which may quote what it refused
    (a ValueError its value, a validator's message a victim_ref)."""
    if not isinstance(error, ValidationError):
        return []
    return [field_path(item["loc"], item["type"]) for item in error.errors(include_input=False, include_url=False)]


def _escalate(tx: LedgerTx, directory: Directory, deadline: Deadline, referral: Referral, now: datetime) -> None:
    """Fire the deadline's next level: the referral's level, its timeline, the message; then schedule the next."""
    level = deadline.next_level
    agency = directory.agency(referral.agency_id)
    # An agency dropped from a reloaded directory still has its referral escalated, to the coordinator at the top.
    unit_above = directory.unit_above(agency) if agency is not None else None
    escalated_to = unit_above.id if level == TOP_LEVEL and unit_above is not None else None
    reason = deadline.reason or _MISSED[deadline.kind]
    due_at = referral.ack_due_at if deadline.kind is DeadlineKind.ACKNOWLEDGE else referral.accept_due_at
    case = tx.case(referral.case_id)
    assert case is not None  # referrals reference their case (foreign key)
    refs = set(referral.victim_refs)
    message = ReferralEscalated(
        referral_id=referral.referral_id,
        case_id=referral.case_id,
        case_code=case.case_code,
        agency_id=referral.agency_id,
        regency_code=case.regency_code,
        priority=referral.priority,
        victims=tuple(v for v in case.victims if v.victim_ref in refs),
        level=level,
        deadline=deadline.kind,
        due_at=due_at or deadline.due_at,
        reason=reason,
        escalated_to=escalated_to,
        ack_code=answerable_ack_code(referral, now)
        if deadline.kind is DeadlineKind.ACKNOWLEDGE and referral.status in AWAITING_ACK
        else None,
        escalated_at=now,
    )
    tx.set_escalation_level(referral.referral_id, level, now)
    tx.record(
        referral.case_id,
        "escalated",
        at=now,
        actor=SYSTEM,
        referral_id=referral.referral_id,
        detail={"level": level, "deadline": deadline.kind.value, "escalated_to": escalated_to, "reason": reason},
    )
    tx.enqueue(
        Envelope.of(
            message,
            exchange=EVENTS,
            routing_key=f"referral.{referral.agency_id}.escalated",
            message_id=derived_id(referral.referral_id, f"escalated:{deadline.kind.value}:{level}"),
            correlation_id=str(referral.case_id),
        ),
        now,
    )
    if level < TOP_LEVEL:
        deadlines = agency.deadlines if agency is not None else Deadlines()
        zone = directory.zone_of(agency) if agency is not None else directory.timezone
        span = deadlines.escalate_every.for_priority(referral.priority)
        # Counted from now when the sweep is late (the service was down): the levels it missed do not all
        # fire in one sweep; each next one still gets its interval to be answered.
        next_due = WorkingCalendar.of(directory.calendar).due(max(deadline.due_at, now), span, zone)
        tx.advance_deadline(deadline, now, due_at=next_due)
    else:
        tx.advance_deadline(deadline, now, due_at=None)
    log.info("referral_escalated", referral_id=str(referral.referral_id), level=level, deadline=deadline.kind.value)
