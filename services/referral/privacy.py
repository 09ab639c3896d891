"""Use cases of victim privacy over time: erase a case's identity on request, erase closed cases' identity once
the directory's retention period has passed, and, where the directory says so, that of cases left open with
nothing happening on them. Each erasure is on the audit trail and the case's timeline. An erased identity is then
taken out of the dead-letter queues too, where a refused report or a case event still holds it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

import structlog

from services.referral.audit import AuditAction, AuditEntry
from services.referral.ledger import Ledger, LedgerTx
from services.referral.lifecycle import FINISHED_LEGS, Status
from services.referral.referrals import SYSTEM, UnknownCaseError
from shared.clock import utcnow
from shared.directory import Directory, Retention

log = structlog.get_logger(__name__)


class DeadLetterClearing(Protocol):
    async def clear_erased_identity(self, actor: str) -> Sequence[object]:
        """Takes erased cases' identity out of the dead-letter queues; the letters it settled."""


@dataclass(frozen=True)
class HeldCase:
    """A case keeping its victims' identity past the retention period only because a referral is still open."""

    case_id: UUID
    case_code: str
    quiet_since: datetime
    """The last entry on its timeline."""
    open_referrals: tuple[tuple[str, Status], ...]
    """(agency, status) of each referral not yet closed: whom to ask."""


class Privacy:
    def __init__(
        self,
        ledger: Ledger,
        directory: Callable[[], Directory],
        *,
        dead_letters: DeadLetterClearing | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ledger = ledger
        self._directory = directory
        self._dead_letters = dead_letters
        self._clock = clock

    async def erase(self, case_id: UUID, *, operator: str, reason: str) -> bool:
        """Erase the case's identity now, whatever its state; False if it already was."""
        if not await self._ledger.run(_erase_on_request, case_id, self._clock(), operator=operator, reason=reason):
            return False
        log.info("case_identity_erased", case_id=str(case_id))
        return True

    async def clear_dead_letters(self, *, actor: str = SYSTEM) -> int:
        """Takes out of the dead-letter queues the identity of every case erased by now, however and whenever it
        was erased (a letter may die after its case's erasure); how many letters it settled."""
        if self._dead_letters is None:
            return 0
        return len(await self._dead_letters.clear_erased_identity(actor))

    async def run(self, *, interval_seconds: float) -> None:
        """The retention sweep and the dead letters' clearing, now and then every ``interval_seconds``, as long as
        the service runs."""
        while True:
            for step, work in (("retention_sweep", self.sweep), ("dead_letter_clearing", self.clear_dead_letters)):
                try:
                    await work()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database or the broker is away: the next round does it
                    if (task := asyncio.current_task()) is not None and task.cancelling():
                        # Cancelled mid-call: aio-pika may raise an error of its own in the cancellation's place.
                        raise asyncio.CancelledError from exc
                    log.warning(f"{step}_failed", error=type(exc).__name__)
            await asyncio.sleep(interval_seconds)

    async def held_open(self) -> list[HeldCase]:
        """Cases keeping identity with a referral open and nothing on their timeline for longer than the
        directory's ``identity_held_open``, the longest quiet first: what ``rujukan_cases_held_open_past_retention``
        counts."""
        idle_before = self._clock() - self._directory().retention.identity_held_open
        return await self._ledger.run(_held_open, idle_before)

    async def sweep(self, *, batch: int = 100) -> int:
        """Erase the identity of every case closed longer than the retention period, and, where the directory
        sets ``identity_after_idle``, of every case left open with nothing on its timeline for that long; how many
        were erased. Safe to run on several replicas at once: a case is re-read under its lock before it is
        erased."""
        erased = 0
        for erase in (_erase_closed, _erase_idle):
            while True:
                now = self._clock()
                due, erased_now = await self._ledger.run(erase, self._directory().retention, now, batch)
                erased += erased_now
                if due < batch:
                    break
        if erased:
            log.info("retention_sweep_erased", cases=erased)
        return erased


def _erase_on_request(tx: LedgerTx, case_id: UUID, now: datetime, *, operator: str, reason: str) -> bool:
    """False if the case's identity was erased already."""
    case = tx.case(case_id, for_update=True)
    if case is None:
        raise UnknownCaseError(case_id)
    if case.identity is None:
        return False
    _erase(tx, case_id, now, AuditAction.CASE_ERASED, actor="operator", officer=operator, reason=reason)
    return True


def _erase_closed(tx: LedgerTx, retention: Retention, now: datetime, batch: int) -> tuple[int, int]:
    """Up to ``batch`` cases closed longer than the retention period: how many were due, and how many were erased
    (a case another replica erased meanwhile is not)."""
    closed_before = now - retention.identity_after_closed
    due = tx.cases_to_erase(FINISHED_LEGS, closed_before, batch)
    erased = 0
    for case_id in due:
        case = tx.case(case_id, for_update=True)
        # Asked again under the case's lock: on PostgreSQL an amendment may have opened a leg since the list.
        if case is None or not tx.cases_to_erase(FINISHED_LEGS, closed_before, 1, only=case_id):
            continue
        reason = "retention period after the case closed"
        _erase(tx, case_id, now, AuditAction.IDENTITY_ERASED, actor=SYSTEM, officer=None, reason=reason)
        erased += 1
    return len(due), erased


def _erase_idle(tx: LedgerTx, retention: Retention, now: datetime, batch: int) -> tuple[int, int]:
    """Up to ``batch`` cases left open with nothing on their timeline for ``identity_after_idle``: how many were
    due, and how many were erased."""
    if retention.identity_after_idle is None:
        return 0, 0
    idle_before = now - retention.identity_after_idle
    due = tx.idle_open_cases(FINISHED_LEGS, idle_before, batch)
    erased = 0
    for case_id in due:
        # Asked again under the case's lock: on PostgreSQL an agency may have acted on it since the list.
        if tx.case(case_id, for_update=True) is None or not tx.idle_open_cases(
            FINISHED_LEGS, idle_before, 1, only=case_id
        ):
            continue
        reason = "retention period without activity, a referral still open"
        _erase(tx, case_id, now, AuditAction.IDENTITY_ERASED, actor=SYSTEM, officer=None, reason=reason)
        erased += 1
    return len(due), erased


def _held_open(tx: LedgerTx, idle_before: datetime) -> list[HeldCase]:
    held = []
    for case_id in tx.idle_open_cases(FINISHED_LEGS, idle_before, None):
        case = tx.case(case_id)
        if case is None:
            continue
        quiet_since = max((entry.at for entry in tx.timeline_of(case_id)), default=case.reported_at)
        open_referrals = tuple(
            sorted((leg.agency_id, leg.status) for leg in tx.referrals_of(case_id) if leg.status not in FINISHED_LEGS)
        )
        held.append(HeldCase(case_id, case.case_code, quiet_since, open_referrals))
    return sorted(held, key=lambda case: case.quiet_since)


def _erase(
    tx: LedgerTx, case_id: UUID, now: datetime, action: AuditAction, *, actor: str, officer: str | None, reason: str
) -> None:
    tx.erase_identity(case_id, now)
    tx.append_audit([AuditEntry(at=now, actor=actor, officer=officer, action=action, case_id=case_id)])
    tx.record(case_id, "identity_erased", at=now, actor=actor, detail={"reason": reason, "by": officer})
