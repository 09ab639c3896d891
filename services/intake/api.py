"""HTTP entrypoint of intake: ``POST /v1/cases``."""

# No `from __future__ import annotations`: FastAPI must see the closure's dependency in the signatures.
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.intake.metrics import IntakeMetrics, Kind
from services.intake.reports import (
    IntakeUnavailableError,
    InvalidReportError,
    ReportIntake,
    UncertainReportError,
    UnknownCaseError,
)
from shared.contracts.cases import CaseReport, WithdrawalReason
from shared.directory import Agency
from shared.errors import NotPermittedError, ReportConflictError
from shared.http import ErrorAnswers, problem, scoped
from shared.ids import case_id_for
from shared.tokens import Scope

log = structlog.get_logger(__name__)


class WithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: WithdrawalReason
    note: str | None = Field(default=None, max_length=2000)


class CaseAccepted(BaseModel):
    case_id: UUID
    case_code: str


class CaseWithdrawalAccepted(BaseModel):
    case_id: UUID
    withdrawn: bool


def _unavailable(exc: IntakeUnavailableError) -> JSONResponse:
    log.error("not_confirmed", reason=str(exc), error=type(exc.__cause__).__name__)
    return problem(503, f"{exc}; send the same request again (a repeat never makes a second case)")


ERROR_ANSWERS: ErrorAnswers = {
    InvalidReportError: lambda exc: problem(422, "request is invalid", errors=exc.fields),
    ReportConflictError: lambda exc: problem(409, str(exc), case_id=str(exc.case_id)),
    UncertainReportError: lambda exc: problem(409, str(exc), case_id=str(exc.case_id)),
    UnknownCaseError: lambda exc: problem(404, str(exc)),
    NotPermittedError: lambda exc: problem(403, str(exc)),
    IntakeUnavailableError: _unavailable,
}
"""How intake's refusals reach a reporter over HTTP (installed on the app by the composition root)."""


def build_api(intake: ReportIntake, authenticate: Any, metrics: IntakeMetrics) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["cases"])
    Reporter = Annotated[Agency, scoped(authenticate, Scope.REPORT)]

    @router.post(
        "/cases",
        status_code=202,
        response_model=CaseAccepted,
        responses={
            401: {"description": "missing, unknown or expired token"},
            403: {"description": "the token has no report scope, or is not the reporting agency's"},
            409: {"description": "the same police report number was reported with different content"},
            413: {"description": "body too large"},
            422: {"description": "invalid report: the fields at fault, never their values"},
            429: {"description": "too many failed authentications from this address"},
            503: {"description": "the broker did not confirm in time: send the same report again"},
        },
    )
    async def report_case(report: CaseReport, agency: Reporter) -> JSONResponse:
        """Report a TPPO case. 202 only once the broker confirmed it; the same report again is the same case."""
        with metrics.counting(Kind.REPORT):
            if agency.id != report.reporting_agency:
                raise NotPermittedError(f"agency {agency.id} cannot report on behalf of {report.reporting_agency}")
            accepted = await intake.accept(report)
        return JSONResponse(
            CaseAccepted(case_id=accepted.case_id, case_code=accepted.case_code).model_dump(mode="json"),
            status_code=202,
        )

    @router.post(
        "/cases/{case_id}/amend",
        status_code=202,
        response_model=CaseAccepted,
        responses={403: {}, 404: {}, 409: {}, 422: {}, 503: {}},
    )
    async def amend_case(case_id: UUID, report: CaseReport, agency: Reporter) -> JSONResponse:
        """The whole case as it now is (e.g. a victim added): only newly needed agencies or victims are referred."""
        if agency.id != report.reporting_agency:
            raise NotPermittedError(f"agency {agency.id} cannot amend a case of {report.reporting_agency}")
        if case_id_for(report.reporting_agency, report.police_report_number) != case_id:
            return problem(
                422,
                "request is invalid",
                errors=[{"field": "police_report_number", "message": f"does not belong to case {case_id}"}],
            )
        with metrics.counting(Kind.AMENDMENT):
            accepted = await intake.amend(report)
        return JSONResponse(
            CaseAccepted(case_id=accepted.case_id, case_code=accepted.case_code).model_dump(mode="json"),
            status_code=202,
        )

    @router.post(
        "/cases/{case_id}/withdraw",
        status_code=202,
        response_model=CaseWithdrawalAccepted,
        responses={403: {}, 404: {}, 409: {}, 503: {}},
    )
    async def withdraw_case(case_id: UUID, body: WithdrawRequest, agency: Reporter) -> JSONResponse:
        """Withdraw a case this police unit reported: every open referral is cancelled and its agency told."""
        with metrics.counting(Kind.WITHDRAWAL):
            await intake.withdraw(case_id, agency_id=agency.id, reason=body.reason, note=body.note)
        return JSONResponse(
            CaseWithdrawalAccepted(case_id=case_id, withdrawn=True).model_dump(mode="json"), status_code=202
        )

    return router
