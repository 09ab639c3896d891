"""Accepting a case report: check it against the directory, derive its case, seal identity, publish confirmed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar
from uuid import UUID

import structlog

from services.intake.registry import Claim, ReportRegistry
from shared.broker import Envelope, MessagePublisher, certainly_refused
from shared.contracts.cases import (
    IDENTITY_FIELDS,
    CaseAmended,
    CaseReport,
    CaseReported,
    CaseWithdrawn,
    VictimFacts,
    VictimReport,
    WithdrawalReason,
)
from shared.contracts.referrals import CaseReceipt
from shared.directory import AgencyKind, Directory
from shared.errors import PermanentError, ReportConflictError, TransientError
from shared.ids import case_code_for, case_id_for, derived_id
from shared.sealing import IdentitySealer
from shared.topology import EVENTS

log = structlog.get_logger(__name__)

T = TypeVar("T")


class InvalidReportError(PermanentError):
    """A well-formed report the directory cannot accept (unknown agency or regency)."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        self.fields = fields
        super().__init__(
            "invalid case.report.v1: " + "; ".join(f"{item['field']}: {item['message']}" for item in fields)
        )


class IntakeUnavailableError(TransientError):
    """The report was not confirmed (broker or intake database away); the same report may be sent again."""


class UnknownCaseError(PermanentError):
    """A withdrawal names a case intake never accepted."""


class UncertainReportError(PermanentError):
    """Other content for this report number timed out unconfirmed: which version the case is, is unknown."""

    def __init__(self, case_id: UUID) -> None:
        self.case_id = case_id
        super().__init__(
            f"case {case_id}: an earlier, different report under this number may already be accepted; "
            "send that earlier report again first, then the changes as an amendment"
        )


@dataclass(frozen=True)
class Accepted:
    case_id: UUID
    case_code: str
    new: bool


def fingerprint_of(report: CaseReport) -> str:
    return hashlib.sha256(report.model_dump_json().encode()).hexdigest()


def age_at(birth_date: date, day: date) -> int:
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def facts_of(victim: VictimReport, reported_on: date) -> VictimFacts:
    age = victim.age_years
    if age is None and victim.birth_date is not None:
        age = age_at(victim.birth_date, reported_on)
    return VictimFacts(
        victim_ref=victim.victim_ref,
        sex=victim.sex,
        age_years=age,
        nationality=victim.nationality,
        migrant_worker_status=victim.migrant_worker_status,
        needs=tuple(victim.needs),
        destination_country=victim.destination_country,
    )


def identity_of(report: CaseReport) -> dict[str, object]:
    """Everything that could identify a person, to be sealed: victims' identity, free text, the officer."""
    return {
        "victims": {
            victim.victim_ref: victim.model_dump(mode="json", include=set(IDENTITY_FIELDS), exclude_none=True)
            for victim in report.victims
        },
        "summary": report.summary,
        "contact_officer": report.contact_officer.model_dump(mode="json") if report.contact_officer else None,
    }


class ReportIntake:
    def __init__(
        self,
        directory: Callable[[], Directory],
        sealer: IdentitySealer,
        registry: ReportRegistry,
        publisher: MessagePublisher,
    ) -> None:
        self._directory = directory
        self._sealer = sealer
        self._registry = registry
        self._publisher = publisher

    def check(self, report: CaseReport) -> None:
        """Field errors the directory finds (the model itself checked shapes and ranges)."""
        directory = self._directory()
        problems = []
        agency = directory.agency(report.reporting_agency)
        if agency is None or agency.kind is not AgencyKind.POLICE:
            problems.append({"field": "reporting_agency", "message": "is not a police unit in the directory"})
        if directory.regency_name(report.regency_code) is None:
            problems.append(
                {"field": "regency_code", "message": f"is not a regency or city of {directory.province.name}"}
            )
        if problems:
            raise InvalidReportError(problems)

    async def accept(self, report: CaseReport) -> Accepted:
        """Answers only once the broker confirmed ``case.reported`` (or it was confirmed before)."""
        self.check(report)
        case_id = case_id_for(report.reporting_agency, report.police_report_number)
        fingerprint = fingerprint_of(report)
        agency = report.reporting_agency
        claim = await _from_database(self._registry.claim(case_id, fingerprint, reporting_agency=agency))
        if claim is Claim.CONFLICT:
            raise ReportConflictError(case_id)
        if claim is Claim.UNCERTAIN:
            raise UncertainReportError(case_id)
        event = self._case_reported(report, case_id, fingerprint)
        try:
            await self._publisher.publish(
                Envelope.of(
                    event,
                    exchange=EVENTS,
                    routing_key="case.reported",
                    message_id=derived_id(case_id, fingerprint),
                    correlation_id=str(case_id),
                )
            )
        except Exception as exc:
            # Unconfirmed is not unsent: unless the broker refused it, the claim stays, and only this same report
            # may follow it. A connection lost before the confirm arrived says nothing of whether the broker has it.
            if certainly_refused(exc):
                await _from_database(self._registry.release(case_id, fingerprint))
                raise IntakeUnavailableError("the broker did not take the report") from exc
            raise IntakeUnavailableError("the broker did not confirm the report") from exc
        await _from_database(self._registry.confirm(case_id, fingerprint, reporting_agency=agency))
        log.info("case_accepted", case_id=str(case_id), case_code=event.case_code)
        return Accepted(case_id=case_id, case_code=event.case_code, new=claim is Claim.NEW)

    async def amend(self, report: CaseReport, *, source_message_id: str | None = None) -> Accepted:
        """Publish the case as it now is; the referral service refers only newly needed agencies or victims."""
        self.check(report)
        case_id = case_id_for(report.reporting_agency, report.police_report_number)
        owner = await _from_database(self._registry.owner(case_id))
        if owner is None:
            raise UnknownCaseError(f"case {case_id} was never reported; report it first")
        if not owner.confirmed:
            raise UncertainReportError(case_id)
        fingerprint = fingerprint_of(report)
        # Numbered, so that amending back to earlier content is a new message, not a repeat the referral service
        # drops; the same amendment sent again keeps its number, and its message id.
        number = owner.amendments if fingerprint == owner.fingerprint else owner.amendments + 1
        amended = CaseAmended(**self._case_reported(report, case_id, fingerprint).model_dump())
        try:
            await self._publisher.publish(
                Envelope.of(
                    amended,
                    exchange=EVENTS,
                    routing_key="case.amended",
                    message_id=derived_id(case_id, f"amended:{number}:{fingerprint}"),
                    correlation_id=str(case_id),
                    causation_id=source_message_id,
                )
            )
        except Exception as exc:
            raise IntakeUnavailableError("the broker did not confirm the amendment") from exc
        await _from_database(self._registry.amend(case_id, fingerprint, number=number))
        log.info("case_amended", case_id=str(case_id))
        return Accepted(case_id=case_id, case_code=amended.case_code, new=False)

    async def withdraw(
        self,
        case_id: UUID,
        *,
        agency_id: str,
        reason: WithdrawalReason,
        note: str | None,
        source_message_id: str | None = None,
    ) -> None:
        """Withdraw a case this agency reported and the broker confirmed; a repeat changes nothing."""
        owner = await _from_database(self._registry.owner(case_id))
        # Another unit's case answers as if there were none: a different refusal would confirm its report.
        if owner is None or owner.reporting_agency != agency_id:
            raise UnknownCaseError(f"case {case_id} was never reported")
        if not owner.confirmed:
            raise UncertainReportError(case_id)
        sealed_note = self._sealer.seal({"note": note}, context=case_id.bytes) if note is not None else None
        withdrawn = CaseWithdrawn(
            case_id=case_id, reporting_agency=agency_id, reason=reason, note=sealed_note, withdrawn_at=datetime.now(UTC)
        )
        try:
            await self._publisher.publish(
                Envelope.of(
                    withdrawn,
                    exchange=EVENTS,
                    routing_key="case.withdrawn",
                    message_id=derived_id(case_id, "withdrawn"),
                    correlation_id=str(case_id),
                    causation_id=source_message_id,
                )
            )
        except Exception as exc:
            raise IntakeUnavailableError("the broker did not confirm the withdrawal") from exc
        log.info("case_withdrawn", case_id=str(case_id))

    async def reject(self, body: bytes, claimed: Claimed, *, reason: str, source_message_id: str | None) -> None:
        """Tell the reporting agency (if the body names one we know) that its AMQP report was refused."""
        agency = self._directory().agency(claimed.agency_id) if claimed.agency_id else None
        if agency is None or agency.kind is not AgencyKind.POLICE:
            log.warning("rejected_report_has_no_known_reporter", message_id=source_message_id)
            return
        number = claimed.report_number
        receipt = CaseReceipt(
            event="rejected",
            reporting_agency=agency.id,
            police_report_number=number,
            case_id=case_id_for(agency.id, number) if number else None,
            reason=reason,
            source_message_id=source_message_id,
            at=datetime.now(UTC),
        )
        await self._publisher.publish(
            Envelope.of(
                receipt,
                exchange=EVENTS,
                routing_key=f"case.{agency.id}.receipt",
                message_id=derived_id(source_message_id or hashlib.sha256(body).hexdigest(), "rejected"),
                correlation_id=str(receipt.case_id) if receipt.case_id else source_message_id,
                causation_id=source_message_id,
            )
        )

    def _case_reported(self, report: CaseReport, case_id: UUID, fingerprint: str) -> CaseReported:
        directory = self._directory()
        reported_local = report.reported_at.astimezone(directory.timezone)
        return CaseReported(
            case_id=case_id,
            case_code=case_code_for(case_id, prefix=directory.province.case_code_prefix, reported_at=reported_local),
            fingerprint=fingerprint,
            police_report_number=report.police_report_number,
            reporting_agency=report.reporting_agency,
            regency_code=report.regency_code,
            reported_at=report.reported_at,
            exploitation_types=tuple(report.exploitation_types),
            victims=tuple(facts_of(victim, reported_local.date()) for victim in report.victims),
            identity=self._sealer.seal(identity_of(report), context=case_id.bytes),
        )


async def _from_database(call: Awaitable[T]) -> T:
    """The intake database's answer; its failure is intake's, and the same request may be sent again."""
    try:
        return await call
    except Exception as exc:
        raise IntakeUnavailableError("the intake database did not answer") from exc


@dataclass(frozen=True)
class Claimed:
    """Who a refused body says sent it, and its report number: read only to answer the sender, trusted for
    nothing else."""

    agency_id: str | None
    report_number: str | None


_NOT_READ = Claimed(None, None)


def claimed_by(body: bytes, *, readable_bytes: int) -> Claimed:
    """What a refused body claims, parsed once. A body over ``readable_bytes`` is not read at all: parsing one of
    the many megabytes the broker lets through would hold the event loop for seconds. Neither is JSON nested
    deeper than the parser goes."""
    if len(body) > readable_bytes:
        return _NOT_READ
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_READ
    if not isinstance(data, dict):
        return _NOT_READ
    agency_id, number = data.get("reporting_agency"), data.get("police_report_number")
    return Claimed(
        agency_id if isinstance(agency_id, str) else None,
        number if isinstance(number, str) and 0 < len(number) <= 100 else None,
    )
