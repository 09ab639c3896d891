"""HTTP entrypoints of the referral service: the case timeline, a referral, its acknowledgement."""

# No `from __future__ import annotations`: FastAPI must see the closure's dependency in the signatures.
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.referral.ledger import Referral
from services.referral.referrals import Acknowledgement, Referrals, UnknownCaseError
from shared.contracts.cases import VictimFacts
from shared.directory import Agency
from shared.errors import IllegalTransitionError, NotPermittedError, UnknownReferralError
from shared.http import problem


class AcknowledgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    officer: str | None = Field(default=None, min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


def _referral_summary(referral: Referral) -> dict[str, Any]:
    return {
        "referral_id": str(referral.referral_id),
        "agency_id": referral.agency_id,
        "status": referral.status.value,
        "priority": referral.priority.value,
        "victim_refs": list(referral.victim_refs),
        "reasons": [reason.model_dump(mode="json") for reason in referral.reasons],
        "ack_due_at": referral.ack_due_at.isoformat(),
        "acknowledged_at": referral.acknowledged_at.isoformat() if referral.acknowledged_at else None,
    }


def _bundle(referrals: list[Referral]) -> dict[str, Any]:
    acked = {"acknowledged", "accepted", "in_progress", "on_hold", "completed"}
    return {
        "fully_acknowledged": bool(referrals) and all(r.status.value in acked for r in referrals),
        "open_legs": sum(r.status.value in {"requested", "delivered", "failed"} for r in referrals),
    }


def build_api(referrals: Referrals, authenticate: Any) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["referrals"])
    Caller = Annotated[Agency, authenticate]

    @router.get("/cases/{case_id}", responses={403: {}, 404: {}})
    async def get_case(case_id: UUID, agency: Caller) -> JSONResponse:
        """The case, its referral legs and its timeline; for the reporting agency only."""
        try:
            view = await referrals.case_view(case_id, agency_id=agency.id)
        except UnknownCaseError:
            return problem(404, f"case {case_id} not found")
        except NotPermittedError:
            return problem(403, "only the reporting agency may read this case")
        return JSONResponse(
            {
                "case_id": str(view.case.case_id),
                "case_code": view.case.case_code,
                "police_report_number": view.case.police_report_number,
                "regency_code": view.case.regency_code,
                "status": _bundle(view.referrals),
                "referrals": [_referral_summary(r) for r in view.referrals],
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

    @router.get("/referrals/{referral_id}", responses={403: {}, 404: {}})
    async def get_referral(referral_id: UUID, agency: Caller) -> JSONResponse:
        """A referral for the receiving agency, with the identity of its own victims (the read is recorded)."""
        try:
            view = await referrals.referral_view(referral_id, agency_id=agency.id)
        except UnknownReferralError:
            return problem(404, f"referral {referral_id} not found")
        except NotPermittedError:
            return problem(403, "this referral is addressed to another agency")
        facts = {v.victim_ref: v for v in view.case.victims}
        return JSONResponse(
            {
                **_referral_summary(view.referral),
                "case_id": str(view.case.case_id),
                "case_code": view.case.case_code,
                "regency_code": view.case.regency_code,
                "victims": [
                    {**_facts(facts[ref]), "identity": view.identity.get(ref, {})} for ref in view.referral.victim_refs
                ],
            }
        )

    @router.post("/referrals/{referral_id}/acknowledge", responses={403: {}, 404: {}, 409: {}})
    async def acknowledge(
        referral_id: UUID,
        agency: Caller,
        body: Annotated[AcknowledgeRequest | None, Body()] = None,
        idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
    ) -> JSONResponse:
        """A duty officer takes the referral. With an ``Idempotency-Key`` a retried request is harmless."""
        request = body or AcknowledgeRequest()
        try:
            referral = await referrals.acknowledge(
                Acknowledgement(
                    referral_id=referral_id,
                    agency_id=agency.id,
                    officer=request.officer,
                    note=request.note,
                    at=datetime.now(UTC),
                    via="http",
                    message_id=f"http:{agency.id}:{idempotency_key}" if idempotency_key else None,
                )
            )
        except UnknownReferralError:
            return problem(404, f"referral {referral_id} not found")
        except NotPermittedError:
            return problem(403, "this referral is addressed to another agency")
        except IllegalTransitionError as exc:
            return problem(409, f"referral is {exc.current}; it cannot be acknowledged", status=exc.current)
        return JSONResponse(_referral_summary(referral))

    return router


def _facts(victim: VictimFacts) -> dict[str, Any]:
    return victim.model_dump(mode="json")
