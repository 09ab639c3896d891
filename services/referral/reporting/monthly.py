"""The monthly report from the ledger: what ``rujukan report`` writes and ``GET /v1/statistics`` answers."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.referral.reporting.source import referral_facts
from services.referral.reporting.statistics import Month, Report, build_report
from shared.directory import Directory


async def monthly_report(
    engine: AsyncEngine,
    directory: Directory,
    *,
    first: Month,
    last: Month,
    within: Callable[[str], bool] = lambda _regency_code: True,
) -> Report:
    """Months ``first`` to ``last`` in the province's time; ``within`` keeps the regencies a reader may see."""
    zone = directory.timezone
    facts = await referral_facts(engine, start=first.start(zone), end=last.next().start(zone))

    def agency_name(agency_id: str) -> str:
        agency = directory.agency(agency_id)
        return agency.name if agency else ""

    return build_report(
        [fact for fact in facts if within(fact.regency_code)],
        first=first,
        last=last,
        zone=zone,
        agency_name=agency_name,
        regency_name=lambda code: directory.regency_name(code) or "",
    )
