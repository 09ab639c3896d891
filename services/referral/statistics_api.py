"""``GET /v1/statistics`` (scope ``oversee``): Polda and the Gugus Tugas TPPO read the monthly figures of their own
area — counts and durations, never a case, a referral id or a victim."""

# No `from __future__ import annotations`: FastAPI must see the closure's dependency in the signatures.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from services.referral.ledger import Ledger
from services.referral.reporting.monthly import monthly_report
from services.referral.reporting.statistics import Month, Row, month, months
from shared.directory import Agency, Directory
from shared.http import scoped
from shared.tokens import Scope

MAX_MONTHS = 24
"""One request reads every referral issued in the period: two years is already more than a meeting needs."""

_MONTH_PATTERN = r"^[1-9]\d{3}-(0[1-9]|1[0-2])$"


class StatisticsRow(BaseModel):
    """One month, agency and regency; every figure is about the referrals issued that month."""

    month: str = Field(examples=["2026-03"])
    agency_id: str
    agency_name: str
    regency_code: str
    regency_name: str
    referrals: int
    urgent: int
    acknowledged: int
    acknowledged_on_time: int = Field(description="acknowledged at or before the acknowledgement deadline")
    ack_median_minutes: float | None
    ack_p90_minutes: float | None
    accepted: int
    accept_median_minutes: float | None
    accept_p90_minutes: float | None
    declined: dict[str, int] = Field(description="per decline reason, zero included")
    escalations: dict[str, int] = Field(description="escalations fired per level, 1 to 3")


class Statistics(BaseModel):
    from_month: str = Field(alias="from")
    to_month: str = Field(alias="to")
    timezone: str = Field(description="months are the province's, in this time zone")
    area: str = Field(description="the overseer's province, or its regencies")
    rows: list[StatisticsRow]


def _row(row: Row) -> StatisticsRow:
    fields = {name: getattr(row, name) for name in StatisticsRow.model_fields}
    escalations = {str(level): count for level, count in row.escalations.items()}
    return StatisticsRow.model_validate({**fields, "month": str(row.month), "escalations": escalations})


def _period(first_text: str, last_text: str) -> tuple[Month, Month]:
    try:
        first, last = month(first_text), month(last_text)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    if first > last:
        raise HTTPException(status_code=422, detail=f"from {first} is after to {last}")
    if len(months(first, last)) > MAX_MONTHS:
        raise HTTPException(status_code=422, detail=f"at most {MAX_MONTHS} months at a time")
    return first, last


def build_statistics_api(ledger: Ledger, directory: Callable[[], Directory], authenticate: Any) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["statistics"])
    Overseer = Annotated[Agency, scoped(authenticate, Scope.OVERSEE)]

    @router.get("/statistics", response_model=Statistics, response_model_by_alias=True, responses={403: {}, 422: {}})
    async def statistics(
        overseer: Overseer,
        first: Annotated[str, Query(alias="from", pattern=_MONTH_PATTERN, description="first month, YYYY-MM")],
        last: Annotated[str, Query(alias="to", pattern=_MONTH_PATTERN, description="last month, YYYY-MM")],
    ) -> Statistics:
        """The monthly statistics of ``rujukan report`` for the overseer's area: per month, agency and regency,
        referrals, acknowledged on time, median and 90th percentile time to acknowledge and to accept, declines by
        reason, escalations by level."""
        period = _period(first, last)
        area = overseer.jurisdiction
        current = directory()
        report = await monthly_report(ledger.engine, current, first=period[0], last=period[1], within=area.covers)
        return Statistics.model_validate(
            {
                "from": str(report.first),
                "to": str(report.last),
                "timezone": report.timezone,
                "area": area.province if area.is_provincial else ", ".join(area.regencies),
                "rows": [_row(row) for row in report.rows],
            }
        )

    return router
