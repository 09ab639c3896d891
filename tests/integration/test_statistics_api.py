"""Polda reads the monthly figures of its province over the API: counts and durations, never a case or a victim."""

from __future__ import annotations

from datetime import datetime

import httpx

from shared.clock import utcnow
from tests.builders import a_case_report_body, the_sample_victims
from tests.system import System, delivered_everywhere

POLDA = {"Authorization": "Bearer dev-polda-kalbar"}


def this_month(system: System) -> str:
    local: datetime = utcnow().astimezone(system.directory.timezone)
    return f"{local:%Y-%m}"


async def statistics(system: System, first: str, last: str, headers: dict[str, str]) -> httpx.Response:
    return await system.http.get(
        system.url("referral", "/v1/statistics"), params={"from": first, "to": last}, headers=headers
    )


async def test_an_overseer_reads_this_months_referrals_of_its_province_without_identity(system: System) -> None:
    report = a_case_report_body(victims=the_sample_victims())
    case_id = (await system.report(report)).json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    month = this_month(system)

    answer = await statistics(system, month, month, POLDA)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["from"], body["to"], body["area"]) == (month, month, "61")
    counted = {(row["agency_id"], row["regency_code"]): row["referrals"] for row in body["rows"]}
    assert counted == {(leg["agency_id"], case["regency_code"]): 1 for leg in case["referrals"]}
    text = answer.text
    for secret in (case_id, case["case_code"], report["police_report_number"]):
        assert secret not in text
    for victim in report["victims"]:
        assert victim["full_name"] not in text


async def test_statistics_are_for_overseers_only_and_refuse_a_period_backwards_or_too_long(system: System) -> None:
    month = this_month(system)

    receiver = await statistics(system, month, month, system.token("dinsos-bengkayang"))
    operator = await statistics(system, month, month, system.token("ops-rujukan"))
    nobody = await statistics(system, month, month, {})
    backwards = await statistics(system, "2026-05", "2026-04", POLDA)
    too_long = await statistics(system, "2023-01", "2026-01", POLDA)
    not_a_month = await statistics(system, "2026-13", "2026-13", POLDA)
    year_zero = await statistics(system, "0000-01", "0000-01", POLDA)

    assert (receiver.status_code, operator.status_code, nobody.status_code) == (403, 403, 401)
    assert backwards.status_code == 422
    assert "after" in backwards.text
    assert too_long.status_code == 422
    assert (not_a_month.status_code, year_zero.status_code) == (422, 422)
