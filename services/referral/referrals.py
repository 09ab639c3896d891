"""Use cases of the referral service: open a case's referrals, record deliveries, acknowledge, and read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import structlog

from services.referral.ack_codes import ack_code_for, answerable_ack_code
from services.referral.audit import AuditAction, AuditEntry
from services.referral.ledger import CaseRecord, Ledger, LedgerTx, Referral, TimelineEntry
from services.referral.lifecycle import (
    CLOSED_LEGS,
    REPEATABLE_REPLIES,
    Reply,
    Status,
    after_delivery_report,
    apply_reply,
    deadline_met,
    deadlines_met_by,
    move,
)
from services.referral.routing import route
from services.referral.working_time import WorkingCalendar
from shared.broker import Envelope
from shared.clock import utcnow
from shared.contracts.base import Priority
from shared.contracts.cases import CaseAmended, CaseReported, CaseWithdrawn, CaseWithdrawnV1, SealedBox
from shared.contracts.referrals import (
    CaseReceipt,
    DeadlineKind,
    ReceiptLeg,
    ReferralCancelled,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralIssued,
    ReferralReason,
    ReferralTaken,
)
from shared.directory import Agency, Directory
from shared.errors import (
    NotPermittedError,
    PermanentError,
    ReportConflictError,
    TransientError,
    UnknownReferralError,
)
from shared.ids import derived_id, referral_id_for
from shared.sealing import IdentitySealer
from shared.topology import EVENTS

log = structlog.get_logger(__name__)

SYSTEM = "rujukan"


class UnknownCaseError(LookupError):
    """No case with that id is in the ledger."""


class InvalidReplyError(PermanentError):
    """A reply the lifecycle allows but the directory or the case does not (e.g. an unknown onward agency)."""


@dataclass(frozen=True)
class ReplyCommand:
    """A receiving agency moves its referral (over HTTP or AMQP)."""

    referral_id: UUID
    agency_id: str
    reply: Reply
    via: str
    officer: str | None = None
    note: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """What the reply adds: a decline reason, a hold reason, an outcome, the onward agency."""
    message_id: str | None = None
    claimed_at: datetime | None = None


@dataclass(frozen=True)
class CaseView:
    case: CaseRecord
    referrals: list[Referral]
    timeline: list[TimelineEntry]


@dataclass(frozen=True)
class ReferralView:
    case: CaseRecord
    referral: Referral
    identity: dict[str, dict[str, Any]]


class Referrals:
    def __init__(
        self,
        ledger: Ledger,
        directory: Callable[[], Directory],
        sealer: IdentitySealer,
        *,
        on_commit: Callable[[], None] = lambda: None,
        on_deadline_due: Callable[[], None] = lambda: None,
        on_acknowledged: Callable[[Referral], None] = lambda _: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``on_acknowledged`` hears of each referral's first reply once it is committed (the metrics)."""
        self._ledger = ledger
        self._directory = directory
        self._sealer = sealer
        self._on_commit = on_commit
        self._on_deadline_due = on_deadline_due
        self._on_acknowledged = on_acknowledged
        self._clock = clock

    def now(self) -> datetime:
        """The service's clock (injectable, so tests move time instead of waiting)."""
        return self._clock()

    async def open_case(self, event: CaseReported, *, message_id: str) -> None:
        """Route the case and issue one referral per agency, with its outgoing messages, in one transaction."""
        if await self._ledger.run(self._open_case, event, message_id=message_id, now=self._clock()):
            self._on_commit()

    def _open_case(self, tx: LedgerTx, event: CaseReported, *, message_id: str, now: datetime) -> bool:
        directory = self._directory()
        if not tx.first_time("referral.cases", message_id, now):
            log.info("case_reported_repeat_ignored", case_id=str(event.case_id))
            return False
        existing = tx.case(event.case_id)
        if existing is not None:
            if existing.fingerprint == event.fingerprint:
                return False
            self._refuse_conflict(tx, event, now=now, message_id=message_id)
            return True
        tx.add_case(event, now)
        tx.record(
            event.case_id,
            "case_reported",
            at=now,
            actor=event.reporting_agency,
            detail={"case_code": event.case_code, "regency_code": event.regency_code,
                    "victim_count": len(event.victims)},
        )  # fmt: skip
        issued = []
        for decision in route(event.victims, event.regency_code, directory.rules, directory):
            agency = directory.agency(decision.agency_id)
            assert agency is not None  # route() resolves only agencies of this directory
            referral = _new_referral(
                tx, directory, event.case_id, agency, decision.priority, decision.victim_refs, decision.reasons, now
            )
            _record_leg(tx, referral, "referral_issued", actor=SYSTEM, reasons=referral.reasons, now=now)
            tx.enqueue(_issued_envelope(referral, event, causation_id=message_id), now)
            issued.append(referral)
        tx.add_referrals(issued, now)
        tx.enqueue(
            _receipt(
                "referred",
                event,
                legs=issued,
                now=now,
                causation_id=message_id,
            ),
            now,
        )
        log.info("case_referred", case_id=str(event.case_id), referrals=len(issued))
        return True

    async def amend_case(self, event: CaseAmended, *, message_id: str) -> None:
        """Route the amended case again; refer only newly needed agencies, or new victims on an open leg."""
        if await self._ledger.run(self._amend_case, event, message_id=message_id, now=self._clock()):
            self._on_commit()

    def _amend_case(self, tx: LedgerTx, event: CaseAmended, *, message_id: str, now: datetime) -> bool:
        """Whether the amendment enqueued anything to send: not for a repeat, nor for content the case already
        has, nor for a change that refers no one anew. An amendment of a withdrawn case is refused, and the reporter
        told."""
        directory = self._directory()
        case = _followed_case(tx, event.case_id, message_id=message_id, now=now)
        if case is None or case.fingerprint == event.fingerprint:
            return False
        if case.withdrawn_at is not None:
            self._refuse_after_withdrawal(tx, case, event, now=now, message_id=message_id)
            return True
        tx.amend_case(event, erased=case.identity_erased_at is not None)
        tx.record(case.case_id, "case_amended", at=now, actor=event.reporting_agency,
                  detail={"victim_count": len(event.victims), "regency_code": event.regency_code})  # fmt: skip
        legs = {leg.agency_id: leg for leg in tx.referrals_of(case.case_id)}
        changed: list[Referral] = []
        for decision in route(event.victims, event.regency_code, directory.rules, directory):
            agency = directory.agency(decision.agency_id)
            assert agency is not None  # route() resolves only agencies of this directory
            leg = legs.get(agency.id)
            if leg is None:
                referral = _new_referral(
                    tx,
                    directory,
                    case.case_id,
                    agency,
                    decision.priority,
                    decision.victim_refs,
                    decision.reasons,
                    now,
                )
                tx.add_referrals([referral], now)
                event_name = "referral_issued"
            else:
                added = [ref for ref in decision.victim_refs if ref not in leg.victim_refs]
                if not added or leg.status in CLOSED_LEGS or leg.status is Status.COMPLETED:
                    continue
                urgent = Priority.URGENT in (leg.priority, decision.priority)
                priority = Priority.URGENT if urgent else Priority.NORMAL
                # A leg now urgent must be taken (and decided) sooner; a deadline already met stays as it was.
                ack_due_at, accept_due_at = leg.ack_due_at, leg.accept_due_at
                if not deadline_met(DeadlineKind.ACKNOWLEDGE, leg.status):
                    ack_due_at = min(ack_due_at, ack_due(directory, agency, priority, now))
                if accept_due_at is not None and not deadline_met(DeadlineKind.ACCEPT, leg.status):
                    accept_due_at = min(accept_due_at, accept_due(directory, agency, priority, now))
                referral = replace(
                    leg,
                    victim_refs=(*leg.victim_refs, *added),
                    reasons=(*leg.reasons, *decision.reasons),
                    priority=priority,
                    ack_due_at=ack_due_at,
                    accept_due_at=accept_due_at,
                )
                tx.widen_referral(referral, now)
                event_name = "victims_added"
            _record_leg(tx, referral, event_name, actor=SYSTEM, reasons=decision.reasons, now=now)
            widened = event_name == "victims_added"
            issued = _issued_envelope(
                referral,
                event.model_copy(update={"case_code": case.case_code}),
                causation_id=message_id,
                amended_at=now if widened else None,
            )
            if widened:
                # The agency hears of its widened referral as a new notification of its own.
                issued = replace(issued, message_id=derived_id(referral.referral_id, f"issued:{event.fingerprint}"))
            tx.enqueue(issued, now)
            changed.append(referral)
        if changed:
            tx.enqueue(
                _receipt(
                    "progress",
                    case,
                    legs=changed,
                    now=now,
                    causation_id=message_id,
                    step=f"amended:{event.fingerprint}",
                ),
                now,
            )
        log.info("case_amended", case_id=str(event.case_id), referrals=len(changed))
        return bool(changed)

    async def withdraw_case(self, event: CaseWithdrawn | CaseWithdrawnV1, *, message_id: str) -> None:
        """Cancel every leg still open, tell each agency, and put the withdrawal (its note opened) on the timeline."""
        note = event.note
        if isinstance(note, SealedBox):
            note = self._sealer.open(note, context=event.case_id.bytes)["note"]
        cancelled = await self._ledger.run(
            self._withdraw_case, event, note=note, message_id=message_id, now=self._clock()
        )
        if cancelled is None:
            return
        self._on_commit()
        log.info("case_withdrawn", case_id=str(event.case_id), referrals=len(cancelled))

    def _withdraw_case(
        self, tx: LedgerTx, event: CaseWithdrawn | CaseWithdrawnV1, *, note: str | None, message_id: str, now: datetime
    ) -> list[Referral] | None:
        """The legs cancelled; None for a repeat."""
        case = _followed_case(tx, event.case_id, message_id=message_id, now=now)
        if case is None:
            return None
        tx.record(case.case_id, "case_withdrawn", at=now, actor=event.reporting_agency,
                  detail={"reason": event.reason.value, "note": note})  # fmt: skip
        tx.mark_withdrawn(case.case_id, now)
        cancelled = []
        for referral in tx.referrals_of(case.case_id, for_update=True):
            if referral.status in CLOSED_LEGS or referral.status is Status.COMPLETED:
                continue
            tx.set_status(referral.referral_id, Status.CANCELLED, now)
            tx.close_deadlines(referral.referral_id, DeadlineKind, now)
            tx.record(case.case_id, "cancelled", at=now, actor=event.reporting_agency,
                      referral_id=referral.referral_id, detail={"reason": event.reason.value})  # fmt: skip
            tx.enqueue(_cancellation(referral, case, event.reason.value, now=now, causation_id=message_id), now)
            cancelled.append(replace(referral, status=Status.CANCELLED))
        if cancelled:
            tx.enqueue(
                _receipt(
                    "progress",
                    case,
                    legs=cancelled,
                    now=now,
                    causation_id=message_id,
                    step="withdrawn",
                ),
                now,
            )
        return cancelled

    def _refuse_after_withdrawal(
        self, tx: LedgerTx, case: CaseRecord, event: CaseAmended, *, now: datetime, message_id: str
    ) -> None:
        """A withdrawn case stays withdrawn: its amendment refers no one; the reporter is told."""
        reason = f"case {case.case_id} was withdrawn; report it again to reopen it"
        _refuse(tx, case, "amendment_refused", reason, actor=event.reporting_agency, now=now, message_id=message_id)
        log.warning("amendment_after_withdrawal_refused", case_id=str(case.case_id))

    def _refuse_conflict(self, tx: LedgerTx, event: CaseReported, *, now: datetime, message_id: str) -> None:
        """Other content under a case already open: kept off the case, on its timeline, and the reporter told."""
        reason = str(ReportConflictError(event.case_id))
        _refuse(tx, event, "conflicting_report_refused", reason, actor=event.reporting_agency, now=now,
                message_id=message_id)  # fmt: skip
        log.warning("conflicting_report_refused", case_id=str(event.case_id), message_id=message_id)

    async def record_delivery(self, report: ReferralDelivered | ReferralDeliveryFailed, *, message_id: str) -> None:
        if await self._ledger.run(self._record_delivery, report, message_id=message_id, now=self._clock()):
            self._on_deadline_due()

    def _record_delivery(
        self, tx: LedgerTx, report: ReferralDelivered | ReferralDeliveryFailed, *, message_id: str, now: datetime
    ) -> bool:
        """Whether the report made the first escalation due at once."""
        delivered = isinstance(report, ReferralDelivered)
        if not tx.first_time("referral.deliveries", message_id, now):
            return False
        referral = self._referral_of(tx, report.referral_id, report.agency_id)
        target = after_delivery_report(referral.status, delivered=delivered, level=report.level)
        if target is not None:
            tx.set_status(referral.referral_id, target, now)
        detail: dict[str, Any] = {
            "channel": report.channel,
            "notification_id": report.notification_id,
            "attempts": report.attempts,
            "status_changed": target is not None,
            "recipient": report.recipient,
            "level": report.level,
        }
        if isinstance(report, ReferralDeliveryFailed):
            detail["reason"] = report.reason
            if report.history:
                detail["history"] = list(report.history)
        elif report.nobody_on_duty:
            detail["nobody_on_duty"] = True
        # Nobody to notify, or no way to: waiting for the deadline would only waste the time left.
        reason = _escalation_reason(report, moved_to=target)
        escalate = reason is not None and tx.escalate_now(
            referral.referral_id, DeadlineKind.ACKNOWLEDGE, now, reason=reason
        )
        tx.record(
            referral.case_id,
            "delivered" if delivered else "delivery_failed",
            at=report.delivered_at if isinstance(report, ReferralDelivered) else report.failed_at,
            actor=f"notifier:{report.channel}",
            referral_id=referral.referral_id,
            detail=detail,
        )
        return escalate

    async def reply(self, command: ReplyCommand) -> Referral:
        """Move a referral as its agency says; the reporting agency gets a receipt, the timeline an entry."""
        referral, moved = await self._ledger.run(self._reply, command, now=self._clock())
        if moved is None:
            return referral
        self._on_commit()
        if referral.acknowledged_at is None:
            self._on_acknowledged(moved)
        log.info("referral_moved", referral_id=str(referral.referral_id), status=moved.status.value)
        return moved

    def _reply(self, tx: LedgerTx, command: ReplyCommand, *, now: datetime) -> tuple[Referral, Referral | None]:
        """The referral as it was, and as the reply moved it; None for a repeated message."""
        # Known by agency and message id: each agency's system picks its own ids, and one agency's reply must never
        # pass for a repeat of another's.
        inbox_key = derived_id(command.agency_id, command.message_id) if command.message_id else None
        if inbox_key and not tx.first_time("referral.replies", inbox_key, now):
            return self._referral_of(tx, command.referral_id, command.agency_id), None
        # The case's lock first, as an amendment or a withdrawal takes it: a referral sent onward while the
        # case is withdrawn is then either cancelled with the others or refused, never left open.
        peek = tx.referral(command.referral_id, lock=False)
        case = tx.case(peek.case_id, for_update=True) if peek else None
        referral = self._referral_of(tx, command.referral_id, command.agency_id)
        assert case is not None  # referrals reference their case (foreign key)
        status = apply_reply(referral.referral_id, referral.status, command.reply)
        # Whoever decides has taken it: the acknowledgement clock stops at the first reply of any kind.
        acknowledged_at = referral.acknowledged_at or now
        tx.set_status(referral.referral_id, status, now, acknowledged_at=acknowledged_at)
        detail: dict[str, Any] = {
            "officer": command.officer,
            "note": command.note,
            "via": command.via,
            **command.detail,
        }
        if referral.acknowledged_at is None:
            # The deadline is judged by our clock, not by a time the agency's system claims.
            detail["on_time"] = now <= referral.ack_due_at
        if command.claimed_at is not None:
            detail["claimed_at"] = command.claimed_at.isoformat()
        tx.record(
            case.case_id, command.reply.value, at=now, actor=command.agency_id,
            referral_id=referral.referral_id, detail=detail,
        )  # fmt: skip
        moved = replace(referral, status=status, acknowledged_at=acknowledged_at)
        # Met deadlines stop here, in the same transaction: no later sweep fires another level of them.
        tx.close_deadlines(referral.referral_id, deadlines_met_by(status), now)
        if referral.acknowledged_at is None:
            tx.enqueue(_taken(moved, now, step="taken", causation_id=command.message_id), now)
        elif deadline_met(DeadlineKind.ACCEPT, status) and not deadline_met(DeadlineKind.ACCEPT, referral.status):
            # Decided after taking it: reminders of the acceptance deadline still pending are moot too.
            tx.enqueue(_taken(moved, now, step="taken:decided", causation_id=command.message_id), now)
        legs = [moved]
        if command.reply is Reply.REFERRED_ONWARD:
            legs.append(self._refer_onward(tx, case, moved, command, now=now))
        step = command.reply.value
        if command.reply in REPEATABLE_REPLIES:
            # Each hold and each resumption is a receipt of its own, under an id no earlier one of its kind has.
            step = f"{step}:{now.isoformat()}"
        tx.enqueue(
            _receipt(
                "acknowledged" if command.reply is Reply.ACKNOWLEDGED else "progress",
                case,
                legs=legs,
                now=now,
                causation_id=command.message_id,
                step=step,
            ),
            now,
        )
        return referral, moved

    def _refer_onward(
        self, tx: LedgerTx, case: CaseRecord, referral: Referral, command: ReplyCommand, *, now: datetime
    ) -> Referral:
        """The named agency gets a referral of its own, for the same victims, saying who sent it on."""
        directory = self._directory()
        target = directory.agency(str(command.detail.get("to_agency_id")))
        if target is None or not target.receives_referrals or target.id == referral.agency_id:
            raise InvalidReplyError(f"{command.detail.get('to_agency_id')} is not another receiving agency")
        if any(leg.agency_id == target.id for leg in tx.referrals_of(case.case_id)):
            raise InvalidReplyError(f"case {case.case_id} already has a referral to {target.id}")
        reason = ReferralReason(
            rule_id="referred-onward",
            description=f"referred onward by {referral.agency_id}",
            victim_refs=referral.victim_refs,
        )
        onward = _new_referral(
            tx, directory, case.case_id, target, referral.priority, referral.victim_refs, (reason,), now
        )
        tx.add_referrals([onward], now)
        _record_leg(tx, onward, "referral_issued", actor=referral.agency_id, reasons=onward.reasons, now=now)
        tx.enqueue(_issued_envelope(onward, case, causation_id=command.message_id or str(referral.referral_id)), now)
        return onward

    async def enter_in_error(self, referral_id: UUID, *, agency_id: str, note: str) -> Referral:
        """The reporting agency says a referral was sent by mistake: it is kept for audit, left out of statistics,
        its deadlines stop, and its agency is told to stand down."""
        moved = await self._ledger.run(self._enter_in_error, referral_id, agency_id=agency_id, note=note,
                                       now=self._clock())  # fmt: skip
        self._on_commit()
        log.info("referral_entered_in_error", referral_id=str(referral_id))
        return moved

    def _enter_in_error(self, tx: LedgerTx, referral_id: UUID, *, agency_id: str, note: str, now: datetime) -> Referral:
        peek = tx.referral(referral_id, lock=False)
        if peek is None:
            raise UnknownReferralError(referral_id)
        case = tx.case(peek.case_id, for_update=True)
        referral = tx.referral(referral_id)
        assert case is not None  # referrals reference their case (foreign key)
        assert referral is not None  # it was there a moment ago, and referrals are never deleted
        if case.reporting_agency != agency_id:
            raise NotPermittedError(f"only the reporting agency may mark referral {referral_id} entered in error")
        status = move(referral_id, referral.status, Status.ENTERED_IN_ERROR)
        tx.set_status(referral_id, status, now)
        tx.close_deadlines(referral_id, DeadlineKind, now)
        tx.record(case.case_id, "entered_in_error", at=now, actor=agency_id, referral_id=referral_id,
                  detail={"note": note, "was": referral.status.value})  # fmt: skip
        if referral.status not in CLOSED_LEGS and referral.status is not Status.COMPLETED:
            notice = _cancellation(referral, case, "entered_in_error", now=now, causation_id=str(referral_id))
            tx.enqueue(replace(notice, message_id=derived_id(referral_id, "entered_in_error")), now)
        moved = replace(referral, status=status)
        tx.enqueue(_receipt("progress", case, legs=[moved], now=now, causation_id=None, step="entered_in_error"), now)
        return moved

    async def reported_by(self, case_id: UUID, agency_id: str) -> bool:
        case = await self._ledger.run(LedgerTx.case, case_id)
        if case is None:
            raise UnknownCaseError(case_id)
        return case.reporting_agency == agency_id

    async def overview(self, case_id: UUID, *, overseer: Agency) -> tuple[CaseRecord, list[Referral]]:
        """A case's legs and their statuses for an overseeing agency whose jurisdiction covers its regency: no
        timeline (it names officers and carries notes), no identity. A case outside that jurisdiction is unknown."""
        return await self._ledger.run(_overview, case_id, overseer=overseer)

    async def case_view(self, case_id: UUID, *, agency_id: str) -> CaseView:
        return await self._ledger.run(_case_view, case_id, agency_id=agency_id)

    async def referral_view(
        self, referral_id: UUID, *, agency_id: str, reader: str | None = None, via: str = "api"
    ) -> ReferralView:
        """The referral with the identity of its own victims only, in the fields the agency's sharing profile
        allows; the read (who, how) lands on the timeline, and what was shown of whom on the audit trail."""
        agency = self._directory().agency(agency_id)
        allowed = agency.identity_fields() if agency else frozenset()
        return await self._ledger.run(self._referral_view, referral_id, agency_id=agency_id, allowed=allowed,
                                      reader=reader, via=via, now=self._clock())  # fmt: skip

    def _referral_view(
        self,
        tx: LedgerTx,
        referral_id: UUID,
        *,
        agency_id: str,
        allowed: frozenset[str],
        reader: str | None,
        via: str,
        now: datetime,
    ) -> ReferralView:
        referral = self._referral_of(tx, referral_id, agency_id)
        case = tx.case(referral.case_id)
        assert case is not None  # referrals reference their case (foreign key)
        shown = case.identity is not None and referral.status not in CLOSED_LEGS
        if case.identity is None:
            assert case.identity_erased_at is not None  # only erasure takes identity away
            erased = {"erased_at": case.identity_erased_at.isoformat()}
            identity = {ref: dict(erased) for ref in referral.victim_refs}
        elif not shown:
            # Declined, sent onward, cancelled or sent by mistake: the agency has no more need to know who.
            identity = {ref: {} for ref in referral.victim_refs}
        else:
            sealed = self._sealer.open(case.identity, context=case.case_id.bytes)
            identity = {
                ref: {name: value for name, value in sealed["victims"].get(ref, {}).items() if name in allowed}
                for ref in referral.victim_refs
            }
            tx.append_audit(
                [
                    AuditEntry(
                        at=now,
                        actor=agency_id,
                        officer=reader,
                        action=AuditAction.IDENTITY_READ,
                        case_id=case.case_id,
                        referral_id=referral_id,
                        victim_ref=ref,
                        fields=tuple(sorted(identity[ref])),
                    )
                    for ref in referral.victim_refs
                ]
            )
        tx.record(
            case.case_id,
            "identity_read",
            at=now,
            actor=agency_id,
            referral_id=referral_id,
            detail={
                "victim_refs": list(referral.victim_refs),
                "officer": reader,
                "via": via,
                "erased": case.identity is None,
                "shown": shown,
            },
        )
        return ReferralView(case=case, referral=referral, identity=identity)

    def _referral_of(self, tx: LedgerTx, referral_id: UUID, agency_id: str) -> Referral:
        referral = tx.referral(referral_id)
        if referral is None:
            raise UnknownReferralError(referral_id)
        if referral.agency_id != agency_id:
            raise NotPermittedError(f"referral {referral_id} is not addressed to {agency_id}")
        return referral


def _overview(tx: LedgerTx, case_id: UUID, *, overseer: Agency) -> tuple[CaseRecord, list[Referral]]:
    case = tx.case(case_id)
    # A case outside the overseer's area answers as if there were none: case ids are derived from report numbers,
    # and a refusal would confirm that some unit filed a given report.
    if case is None or not overseer.jurisdiction.covers(case.regency_code):
        raise UnknownCaseError(case_id)
    return case, tx.referrals_of(case_id)


def _case_view(tx: LedgerTx, case_id: UUID, *, agency_id: str) -> CaseView:
    case = tx.case(case_id)
    if case is None:
        raise UnknownCaseError(case_id)
    if case.reporting_agency != agency_id:
        raise NotPermittedError(f"only the reporting agency may read case {case_id}")
    return CaseView(case, tx.referrals_of(case_id), tx.timeline_of(case_id))


def _followed_case(tx: LedgerTx, case_id: UUID, *, message_id: str, now: datetime) -> CaseRecord | None:
    """The case an amendment or withdrawal is about; None when this message was handled before."""
    if not tx.first_time("referral.cases", message_id, now):
        return None
    case = tx.case(case_id, for_update=True)
    if case is None:
        # Intake follows up only on a report the broker confirmed: the report is still on its way (or being
        # processed), so try again rather than lose what follows it.
        raise TransientError(f"case {case_id} is not in the ledger yet")
    return case


def ack_due(directory: Directory, agency: Agency, priority: Priority, now: datetime) -> datetime:
    span = agency.deadlines.acknowledge.for_priority(priority)
    return WorkingCalendar.of(directory.calendar).due(now, span, directory.zone_of(agency))


def accept_due(directory: Directory, agency: Agency, priority: Priority, now: datetime) -> datetime:
    span = agency.deadlines.accept.for_priority(priority)
    return WorkingCalendar.of(directory.calendar).due(now, span, directory.zone_of(agency))


def _new_referral(
    tx: LedgerTx,
    directory: Directory,
    case_id: UUID,
    agency: Agency,
    priority: Priority,
    victim_refs: tuple[str, ...],
    reasons: tuple[ReferralReason, ...],
    now: datetime,
) -> Referral:
    return Referral(
        referral_id=referral_id_for(case_id, agency.id),
        case_id=case_id,
        agency_id=agency.id,
        status=Status.REQUESTED,
        priority=priority,
        victim_refs=victim_refs,
        reasons=reasons,
        issued_at=now,
        ack_due_at=ack_due(directory, agency, priority, now),
        accept_due_at=accept_due(directory, agency, priority, now),
        ack_code=ack_code_for(tx, agency.id, now),
    )


def _escalation_reason(report: ReferralDelivered | ReferralDeliveryFailed, *, moved_to: Status | None) -> str | None:
    """Why a report of the referral's own notification (level 0) calls for level 1 at once, if it does."""
    if report.level != 0:
        return None
    if isinstance(report, ReferralDelivered):
        return "nobody on duty" if report.nobody_on_duty else None
    return f"delivery failed: {report.reason}" if moved_to is Status.FAILED else None


def _taken(referral: Referral, now: datetime, *, step: str, causation_id: str | None) -> Envelope:
    """``referral.<agency>.taken``: the notifier drops the reminders still pending for this referral."""
    return Envelope.of(
        ReferralTaken(
            referral_id=referral.referral_id,
            case_id=referral.case_id,
            agency_id=referral.agency_id,
            status=referral.status.value,
            taken_at=now,
        ),
        exchange=EVENTS,
        routing_key=f"referral.{referral.agency_id}.taken",
        message_id=derived_id(referral.referral_id, step),
        correlation_id=str(referral.case_id),
        causation_id=causation_id,
    )


def _record_leg(
    tx: LedgerTx,
    referral: Referral,
    event: str,
    *,
    actor: str,
    reasons: tuple[ReferralReason, ...],
    now: datetime,
) -> None:
    tx.record(
        referral.case_id,
        event,
        at=now,
        actor=actor,
        referral_id=referral.referral_id,
        detail={
            "agency_id": referral.agency_id,
            "priority": referral.priority.value,
            "victim_refs": list(referral.victim_refs),
            "rules": [reason.rule_id for reason in reasons],
            "ack_due_at": referral.ack_due_at.isoformat(),
            "accept_due_at": referral.accept_due_at.isoformat() if referral.accept_due_at else None,
        },
    )


def _issued_envelope(
    referral: Referral,
    case: CaseReported | CaseRecord,
    *,
    causation_id: str,
    amended_at: datetime | None = None,
) -> Envelope:
    """``referral.<agency>.issued``: the facts of the referral's own victims, never their identity; with
    ``amended_at`` when an amendment widened it."""
    refs = set(referral.victim_refs)
    message = ReferralIssued(
        referral_id=referral.referral_id,
        case_id=referral.case_id,
        case_code=case.case_code,
        agency_id=referral.agency_id,
        reporting_agency=case.reporting_agency,
        regency_code=case.regency_code,
        priority=referral.priority,
        exploitation_types=case.exploitation_types,
        victims=tuple(v for v in case.victims if v.victim_ref in refs),
        reasons=referral.reasons,
        issued_at=referral.issued_at,
        ack_due_at=referral.ack_due_at,
        ack_code=answerable_ack_code(referral, amended_at or referral.issued_at),
        amended_at=amended_at,
    )
    return Envelope.of(
        message,
        exchange=EVENTS,
        routing_key=f"referral.{referral.agency_id}.issued",
        message_id=derived_id(referral.referral_id, "issued"),
        correlation_id=str(referral.case_id),
        causation_id=causation_id,
    )


def _refuse(
    tx: LedgerTx,
    case: CaseReported | CaseRecord,
    event: str,
    reason: str,
    *,
    actor: str,
    now: datetime,
    message_id: str,
) -> None:
    """A message about the case that changes nothing: on the timeline, and a ``rejected`` receipt to the reporter."""
    tx.record(case.case_id, event, at=now, actor=actor, detail={"reason": reason, "message_id": message_id})
    receipt = CaseReceipt(
        event="rejected",
        reporting_agency=case.reporting_agency,
        case_id=case.case_id,
        case_code=case.case_code,
        police_report_number=case.police_report_number,
        reason=reason,
        source_message_id=message_id,
        at=now,
    )
    tx.enqueue(
        Envelope.of(
            receipt,
            exchange=EVENTS,
            routing_key=f"case.{case.reporting_agency}.receipt",
            message_id=derived_id(message_id, "receipt-rejected"),
            correlation_id=str(case.case_id),
            causation_id=message_id,
        ),
        now,
    )


def _cancellation(referral: Referral, case: CaseRecord, reason: str, *, now: datetime, causation_id: str) -> Envelope:
    """``referral.<agency>.cancelled``: the agency stands down (its inbox, its system and its officers are told)."""
    notice = ReferralCancelled(
        referral_id=referral.referral_id,
        case_id=case.case_id,
        case_code=case.case_code,
        agency_id=referral.agency_id,
        regency_code=case.regency_code,
        reason=reason,
        cancelled_at=now,
    )
    return Envelope.of(
        notice,
        exchange=EVENTS,
        routing_key=f"referral.{referral.agency_id}.cancelled",
        message_id=derived_id(referral.referral_id, "cancelled"),
        correlation_id=str(case.case_id),
        causation_id=causation_id,
    )


def _receipt(
    event: Literal["referred", "acknowledged", "progress"],
    case: CaseReported | CaseRecord,
    *,
    legs: list[Referral],
    now: datetime,
    causation_id: str | None,
    step: str | None = None,
) -> Envelope:
    """What the reporting agency hears: its case was referred, or one leg was acknowledged or moved on."""
    reporting_agency, case_id = case.reporting_agency, case.case_id
    receipt = CaseReceipt(
        event=event,
        reporting_agency=reporting_agency,
        case_id=case_id,
        case_code=case.case_code,
        police_report_number=case.police_report_number,
        legs=tuple(ReceiptLeg(referral_id=r.referral_id, agency_id=r.agency_id, status=r.status.value) for r in legs),
        at=now,
        source_message_id=causation_id,
    )
    leg_key = legs[0].referral_id if event != "referred" else ""
    return Envelope.of(
        receipt,
        exchange=EVENTS,
        routing_key=f"case.{reporting_agency}.receipt",
        message_id=derived_id(f"{case_id}:{leg_key}", f"receipt-{step or event}"),
        correlation_id=str(case_id),
        causation_id=causation_id,
    )
