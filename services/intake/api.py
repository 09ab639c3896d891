"""HTTP entrypoint of intake: ``POST /v1/cases``."""

# No `from __future__ import annotations`: FastAPI must see the closure's dependency in the signatures.
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.intake.reports import IntakeUnavailableError, InvalidReportError, ReportIntake, UncertainReportError
from shared.contracts.cases import CaseReport
from shared.directory import Agency, AgencyKind
from shared.errors import ReportConflictError
from shared.http import problem

log = structlog.get_logger(__name__)


class CaseAccepted(BaseModel):
    case_id: UUID
    case_code: str


def build_api(intake: ReportIntake, authenticate: Any) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["cases"])

    @router.post(
        "/cases",
        status_code=202,
        response_model=CaseAccepted,
        responses={
            401: {"description": "missing or unknown token"},
            403: {"description": "the token's agency is not a police unit, or not the reporting agency"},
            409: {"description": "the same police report number was reported with different content"},
            413: {"description": "body too large"},
            422: {"description": "invalid report: the fields at fault, never their values"},
            503: {"description": "the broker did not confirm in time: send the same report again"},
        },
    )
    async def report_case(report: CaseReport, agency: Annotated[Agency, authenticate]) -> JSONResponse:
        """Report a TPPO case. 202 only once the broker confirmed it; the same report again is the same case."""
        if agency.kind is not AgencyKind.POLICE:
            return problem(403, f"agency {agency.id} is not a police unit and cannot report cases")
        if agency.id != report.reporting_agency:
            return problem(403, f"agency {agency.id} cannot report on behalf of {report.reporting_agency}")
        try:
            accepted = await intake.accept(report)
        except InvalidReportError as exc:
            return problem(422, "request is invalid", errors=exc.fields)
        except (ReportConflictError, UncertainReportError) as exc:
            return problem(409, str(exc), case_id=str(exc.case_id))
        except IntakeUnavailableError as exc:
            log.error("case_not_confirmed", reason=str(exc), error=type(exc.__cause__).__name__)
            return problem(503, f"{exc}; send the same report again (a repeat never makes a second case)")
        return JSONResponse(
            CaseAccepted(case_id=accepted.case_id, case_code=accepted.case_code).model_dump(mode="json"),
            status_code=202,
        )

    return router
