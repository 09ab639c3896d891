"""HTTP entrypoints of the referral service: the case timeline, a referral, its acknowledgement."""

# No `from __future__ import annotations`: FastAPI must see the closure's dependency in the signatures.
from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.referral.ledger import Referral
from services.referral.lifecycle import ACCEPTED_STATES, ACKNOWLEDGED_STATES, CLOSED_LEGS, Reply, Status, overdue
from services.referral.referrals import InvalidReplyError, Referrals, ReplyCommand, UnknownCaseError
from shared.contracts.base import Priority
from shared.contracts.cases import VictimFacts
from shared.contracts.referrals import DeadlineKind, DeclineReason, Outcome, ReferralReason, check_decline
from shared.directory import Agency
from shared.errors import IllegalTransitionError, NotPermittedError, UnknownReferralError
from shared.http import Caller, ErrorAnswers, problem, scoped
from shared.tokens import Scope


class ReplyRequest(BaseModel):
    """Who replied, and a note for the case file; every move takes these."""

    model_config = ConfigDict(extra="forbid")
    officer: str | None = Field(default=None, min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=2000)

    def detail(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"officer", "note"})


class EnteredInErrorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000, description="why the referral was a mistake")


class DeclineRequest(ReplyRequest):
    reason: DeclineReason

    @model_validator(mode="after")
    def _note_for_other(self) -> Self:
        check_decline(self.reason, self.note)
        return self


class HoldRequest(ReplyRequest):
    reason: str = Field(min_length=1, max_length=500, description="e.g. held for the investigation")


class CompleteRequest(ReplyRequest):
    outcome: Outcome


class ReferOnwardRequest(ReplyRequest):
    agency_id: str = Field(min_length=1, max_length=60, description="the agency the referral goes on to")

    def detail(self) -> dict[str, Any]:
        return {"to_agency_id": self.agency_id}


class LegStatus(BaseModel):
    """How a referral leg stands: all an overseer sees of it."""

    referral_id: UUID
    agency_id: str
    status: Status
    priority: Priority
    ack_due_at: datetime
    acknowledged_at: datetime | None
    ack_overdue: bool
    accept_due_at: datetime | None
    accept_overdue: bool
    escalation_level: int = Field(ge=0, le=3)


class ReferralSummary(LegStatus):
    """A referral leg, with the victims it concerns and the rules that sent it."""

    victim_refs: list[str]
    reasons: list[ReferralReason]


class ReferralView(ReferralSummary):
    """A referral as its receiving agency reads it: its victims' facts, and their identity where shared."""

    case_id: UUID
    case_code: str
    regency_code: str
    victims: list[dict[str, Any]]


class CaseStatus(BaseModel):
    fully_acknowledged: bool
    fully_accepted: bool
    open_legs: int = Field(ge=0)


class TimelineEntry(BaseModel):
    at: datetime
    event: str
    referral_id: UUID | None
    actor: str
    detail: dict[str, Any]


class CaseOverview(BaseModel):
    """A case as an overseer reads it: its legs and how they stand."""

    case_id: UUID
    case_code: str
    regency_code: str
    status: CaseStatus
    referrals: list[LegStatus]


class CaseView(CaseOverview):
    """A case as its reporting police unit reads it: every leg, and the timeline."""

    police_report_number: str
    referrals: list[ReferralSummary]  # type: ignore[assignment]  # a leg in full is a LegStatus and more
    timeline: list[TimelineEntry]


def _referral_summary(referral: Referral, now: datetime) -> dict[str, Any]:
    return {
        "referral_id": str(referral.referral_id),
        "agency_id": referral.agency_id,
        "status": referral.status.value,
        "priority": referral.priority.value,
        "victim_refs": list(referral.victim_refs),
        "reasons": [reason.model_dump(mode="json") for reason in referral.reasons],
        "ack_due_at": referral.ack_due_at.isoformat(),
        "acknowledged_at": referral.acknowledged_at.isoformat() if referral.acknowledged_at else None,
        "ack_overdue": overdue(DeadlineKind.ACKNOWLEDGE, referral.status, referral.ack_due_at, now),
        "accept_due_at": referral.accept_due_at.isoformat() if referral.accept_due_at else None,
        "accept_overdue": overdue(DeadlineKind.ACCEPT, referral.status, referral.accept_due_at, now),
        "escalation_level": referral.escalation_level,
    }


def _bundle(referrals: list[Referral]) -> dict[str, Any]:
    """A case is fully acknowledged (or accepted) only when every leg still in play is."""
    live = [r for r in referrals if r.status not in CLOSED_LEGS]
    return {
        "fully_acknowledged": bool(live) and all(r.status in ACKNOWLEDGED_STATES for r in live),
        "fully_accepted": bool(live) and all(r.status in ACCEPTED_STATES for r in live),
        "open_legs": sum(r.status not in ACCEPTED_STATES for r in live),
    }


ERROR_ANSWERS: ErrorAnswers = {
    UnknownCaseError: lambda exc: problem(404, f"case {exc.args[0]} not found"),
    UnknownReferralError: lambda exc: problem(404, str(exc)),
    NotPermittedError: lambda exc: problem(403, str(exc)),
    IllegalTransitionError: lambda exc: problem(
        409, f"referral is {exc.current}; it cannot become {exc.requested}", status=exc.current
    ),
    InvalidReplyError: lambda exc: problem(422, str(exc)),
}
"""How the referral service's refusals reach an agency over HTTP (installed by the composition root)."""


def build_api(referrals: Referrals, authenticate: Any) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["referrals"])
    Reporter = Annotated[Agency, scoped(authenticate, Scope.REPORT)]
    Receiver = Annotated[Agency, scoped(authenticate, Scope.RECEIVE)]

    @router.get("/cases/{case_id}", response_model=CaseView | CaseOverview, responses={403: {}, 404: {}})
    async def get_case(case_id: UUID, caller: Annotated[Caller, authenticate]) -> JSONResponse:
        """The case, its referral legs and its timeline, for the reporting agency (``report``); for an ``oversee``
        token whose jurisdiction covers the case, its legs and their statuses only: no timeline, no identity. Any
        other case answers 404, as one that does not exist."""
        reporter = Scope.REPORT in caller.scopes and await referrals.reported_by(case_id, caller.id)
        if not reporter and Scope.REPORT in caller.scopes and Scope.OVERSEE not in caller.scopes:
            # Another unit's case answers as if there were none: case ids are derived from report numbers,
            # and a 403 would confirm that a unit filed a given report.
            raise UnknownCaseError(case_id)
        if not reporter:
            case, legs = await referrals.overview(case_id, overseer=caller.acting_as(Scope.OVERSEE))
            return JSONResponse(
                {
                    "case_id": str(case.case_id),
                    "case_code": case.case_code,
                    "regency_code": case.regency_code,
                    "status": _bundle(legs),
                    "referrals": [_status_only(_referral_summary(r, referrals.now())) for r in legs],
                }
            )
        view = await referrals.case_view(case_id, agency_id=caller.id)
        return JSONResponse(
            {
                "case_id": str(view.case.case_id),
                "case_code": view.case.case_code,
                "police_report_number": view.case.police_report_number,
                "regency_code": view.case.regency_code,
                "status": _bundle(view.referrals),
                "referrals": [_referral_summary(r, referrals.now()) for r in view.referrals],
                "timeline": [
                    {
                        "at": entry.at.isoformat(),
                        "event": entry.event,
                        "referral_id": str(entry.referral_id) if entry.referral_id else None,
                        "actor": entry.actor,
                        "detail": entry.detail,
                    }
                    for entry in view.timeline
                ],
            }
        )

    @router.get("/referrals/{referral_id}", response_model=ReferralView, responses={403: {}, 404: {}})
    async def get_referral(referral_id: UUID, agency: Receiver) -> JSONResponse:
        """A referral for the receiving agency, with the identity of its own victims (the read is recorded). A victim
        an amendment took off the case is named in ``victim_refs`` only: the case no longer holds their facts."""
        view = await referrals.referral_view(referral_id, agency_id=agency.id)
        facts = {v.victim_ref: v for v in view.case.victims}
        return JSONResponse(
            {
                **_referral_summary(view.referral, referrals.now()),
                "case_id": str(view.case.case_id),
                "case_code": view.case.case_code,
                "regency_code": view.case.regency_code,
                "victims": [
                    {**_facts(facts[ref]), "identity": view.identity.get(ref, {})}
                    for ref in view.referral.victim_refs
                    if ref in facts
                ],
            }
        )

    async def move(
        referral_id: UUID, agency: Agency, reply: Reply, body: ReplyRequest, idempotency_key: str | None
    ) -> JSONResponse:
        referral = await referrals.reply(
            ReplyCommand(
                referral_id=referral_id,
                agency_id=agency.id,
                reply=reply,
                via="http",
                officer=body.officer,
                note=body.note,
                detail=body.detail(),
                # The key stands for this move of this referral: one reused for another move must not hide it.
                message_id=f"http:{referral_id}:{reply.value}:{idempotency_key}" if idempotency_key else None,
            )
        )
        return JSONResponse(_referral_summary(referral, referrals.now()))

    Key = Annotated[str | None, Header(alias="Idempotency-Key", max_length=100)]
    moves: dict[int | str, dict[str, Any]] = {
        409: {"description": "not allowed from the current state, which the answer names"}
    }

    @router.post(
        "/referrals/{referral_id}/acknowledge", response_model=ReferralSummary, responses={403: {}, 404: {}, **moves}
    )
    async def acknowledge(
        referral_id: UUID, agency: Receiver, body: Annotated[ReplyRequest | None, Body()] = None, key: Key = None
    ) -> JSONResponse:
        """A duty officer takes the referral (the deadline clock stops). No body needed."""
        return await move(referral_id, agency, Reply.ACKNOWLEDGED, body or ReplyRequest(), key)

    @router.post(
        "/referrals/{referral_id}/accept", response_model=ReferralSummary, responses={403: {}, 404: {}, **moves}
    )
    async def accept(
        referral_id: UUID, agency: Receiver, body: Annotated[ReplyRequest | None, Body()] = None, key: Key = None
    ) -> JSONResponse:
        """The agency commits to act."""
        return await move(referral_id, agency, Reply.ACCEPTED, body or ReplyRequest(), key)

    @router.post(
        "/referrals/{referral_id}/decline", response_model=ReferralSummary, responses={403: {}, 404: {}, **moves}
    )
    async def decline(referral_id: UUID, agency: Receiver, body: DeclineRequest, key: Key = None) -> JSONResponse:
        """The agency declines with a coded reason (a note is required for ``other``)."""
        return await move(referral_id, agency, Reply.DECLINED, body, key)

    @router.post(
        "/referrals/{referral_id}/start", response_model=ReferralSummary, responses={403: {}, 404: {}, **moves}
    )
    async def start(
        referral_id: UUID, agency: Receiver, body: Annotated[ReplyRequest | None, Body()] = None, key: Key = None
    ) -> JSONResponse:
        """Service is under way."""
        return await move(referral_id, agency, Reply.STARTED, body or ReplyRequest(), key)

    @router.post("/referrals/{referral_id}/hold", response_model=ReferralSummary, responses={403: {}, 404: {}, **moves})
    async def hold(referral_id: UUID, agency: Receiver, body: HoldRequest, key: Key = None) -> JSONResponse:
        """Service is paused, with a reason."""
        return await move(referral_id, agency, Reply.HELD, body, key)

    @router.post(
        "/referrals/{referral_id}/resume", response_model=ReferralSummary, responses={403: {}, 404: {}, **moves}
    )
    async def resume(
        referral_id: UUID, agency: Receiver, body: Annotated[ReplyRequest | None, Body()] = None, key: Key = None
    ) -> JSONResponse:
        """Service resumes after a hold."""
        return await move(referral_id, agency, Reply.RESUMED, body or ReplyRequest(), key)

    @router.post(
        "/referrals/{referral_id}/complete", response_model=ReferralSummary, responses={403: {}, 404: {}, **moves}
    )
    async def complete(referral_id: UUID, agency: Receiver, body: CompleteRequest, key: Key = None) -> JSONResponse:
        """The referral is closed with an outcome."""
        return await move(referral_id, agency, Reply.COMPLETED, body, key)

    @router.post(
        "/referrals/{referral_id}/refer-onward",
        response_model=ReferralSummary,
        responses={403: {}, 404: {}, 422: {}, **moves},
    )
    async def refer_onward(
        referral_id: UUID, agency: Receiver, body: ReferOnwardRequest, key: Key = None
    ) -> JSONResponse:
        """Declined here but sent on to another agency, which gets a referral of its own."""
        return await move(referral_id, agency, Reply.REFERRED_ONWARD, body, key)

    @router.post(
        "/referrals/{referral_id}/entered-in-error",
        response_model=ReferralSummary,
        responses={403: {}, 404: {}, **moves},
    )
    async def entered_in_error(referral_id: UUID, agency: Reporter, body: EnteredInErrorRequest) -> JSONResponse:
        """The reporting agency: this referral was sent by mistake. It is kept for audit and left out of
        statistics; its agency is told to stand down."""
        referral = await referrals.enter_in_error(referral_id, agency_id=agency.id, note=body.note)
        return JSONResponse(_referral_summary(referral, referrals.now()))

    return router


def _status_only(summary: dict[str, Any]) -> dict[str, Any]:
    """An overseer's view of a leg: how it stands, not whom it is about (victim references are typed by the
    police and may carry more than a number)."""
    return {key: value for key, value in summary.items() if key not in ("victim_refs", "reasons")}


def _facts(victim: VictimFacts) -> dict[str, Any]:
    return victim.model_dump(mode="json")
