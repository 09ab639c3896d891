"""A police unit amends a case: only newly needed agencies, or new victims on a leg, are referred."""

from __future__ import annotations

from typing import Any

import pytest

from shared.ids import case_id_for
from tests.builders import a_case_report_body, a_victim
from tests.rabbit import BrokerClient
from tests.system import System, agency_deliveries, delivered_everywhere

pytestmark = pytest.mark.rabbit

AN_ADULT_MAN = a_victim(victim_ref="V1", sex="male", age_years=40, full_name="Andi Wijaya")
A_GIRL = a_victim(victim_ref="V2", sex="female", age_years=15, full_name="Siti Aminah")


async def amend(system: System, case_id: str, body: dict[str, Any]) -> Any:
    return await system.http.post(
        system.url("intake", f"/v1/cases/{case_id}/amend"), json=body, headers=system.token(body["reporting_agency"])
    )


def victims_of(case: dict[str, Any]) -> dict[str, list[str]]:
    return {leg["agency_id"]: leg["victim_refs"] for leg in case["referrals"]}


async def test_a_victim_added_opens_a_new_leg_and_widens_the_existing_one(system: System) -> None:
    body = a_case_report_body(victims=[AN_ADULT_MAN])
    case_id = (await system.report(body)).json()["case_id"]
    await system.case_when(case_id, delivered_everywhere)

    response = await amend(system, case_id, {**body, "victims": [AN_ADULT_MAN, A_GIRL]})

    assert response.status_code == 202
    case = await system.case_when(case_id, lambda c: len(c["referrals"]) == 2 and delivered_everywhere(c))
    assert victims_of(case) == {"dinsos-bengkayang": ["V1", "V2"], "uptd-ppa-kalbar": ["V2"]}
    [child] = [leg for leg in case["referrals"] if leg["agency_id"] == "uptd-ppa-kalbar"]
    assert child["priority"] == "urgent"
    assert "victims_added" in [e["event"] for e in case["timeline"]]
    await system.case_when(case_id, lambda c: len(agency_deliveries(c)) == 3)
    assert len(system.sink.distinct_ids("dinsos-bengkayang")) == 2
    assert "Siti" not in str([d.body for d in system.sink.deliveries])


async def test_an_amendment_that_changes_nothing_refers_nothing(system: System) -> None:
    body = a_case_report_body(victims=[AN_ADULT_MAN])
    case_id = (await system.report(body)).json()["case_id"]
    before = await system.case_when(case_id, delivered_everywhere)

    again = await amend(system, case_id, body)
    sentinel = (await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))).json()["case_id"]
    await system.case_when(sentinel, delivered_everywhere)

    assert again.status_code == 202
    after = (await system.case(case_id)).json()
    assert after["timeline"] == before["timeline"]


async def test_an_amendment_needs_a_reported_case_and_its_own_report_number(system: System) -> None:
    never_reported = a_case_report_body()
    body = a_case_report_body()
    reported = (await system.report(body)).json()["case_id"]

    unknown = await amend(
        system, str(case_id_for("polres-bengkayang", never_reported["police_report_number"])), never_reported
    )
    other_number = await amend(system, reported, never_reported)

    assert unknown.status_code == 404
    assert other_number.status_code == 422
    assert other_number.json()["errors"][0]["field"] == "police_report_number"


async def test_an_amendment_over_amqp_refers_the_new_victim(system: System, broker: BrokerClient) -> None:
    body = a_case_report_body(victims=[AN_ADULT_MAN])
    case_id = (await system.report(body)).json()["case_id"]
    await system.case_when(case_id, delivered_everywhere)

    await broker.publish(
        "rujukan.intake", "case.amend", {**body, "victims": [AN_ADULT_MAN, A_GIRL]}, message_type="case.amend.v1"
    )

    case = await system.case_when(case_id, lambda c: len(c["referrals"]) == 2)
    assert victims_of(case)["uptd-ppa-kalbar"] == ["V2"]


async def test_amending_back_to_earlier_content_and_forth_again_is_on_the_timeline_every_time(system: System) -> None:
    """Found by review: an amendment's message id came from its content alone, so the second amendment to content
    the case had once held was answered 202 and dropped by the referral service as a repeat."""
    body = a_case_report_body(victims=[AN_ADULT_MAN])
    widened = {**body, "victims": [AN_ADULT_MAN, A_GIRL]}
    case_id = (await system.report(body)).json()["case_id"]
    await system.case_when(case_id, delivered_everywhere)

    answers = []
    for count, content in enumerate([widened, body, widened], start=1):
        answers.append((await amend(system, case_id, content)).status_code)
        await system.case_when(case_id, lambda c, count=count: amendments(c) == count)
    again = await amend(system, case_id, widened)
    sentinel = (await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))).json()["case_id"]
    await system.case_when(sentinel, delivered_everywhere)

    assert answers == [202, 202, 202]
    assert again.status_code == 202
    assert amendments((await system.case(case_id)).json()) == 3


def amendments(case: dict[str, Any]) -> int:
    return sum(1 for entry in case["timeline"] if entry["event"] == "case_amended")


async def test_a_referral_stays_readable_after_an_amendment_takes_one_of_its_victims_off_the_case(
    system: System,
) -> None:
    """Found by review: the referral's read looked up the facts of every victim it was made for, and a victim the
    police had taken off the case made it fail with 500 for every agency holding that victim."""
    body = a_case_report_body(victims=[AN_ADULT_MAN, A_GIRL])
    case_id = (await system.report(body)).json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    legs = {leg["agency_id"]: leg["referral_id"] for leg in case["referrals"]}

    corrected = await amend(system, case_id, {**body, "victims": [AN_ADULT_MAN]})
    await system.case_when(case_id, lambda c: amendments(c) == 1)

    async def read(agency_id: str) -> Any:
        url = system.url("referral", f"/v1/referrals/{legs[agency_id]}")
        return await system.http.get(url, headers=system.token(agency_id))

    social, child_protection = await read("dinsos-bengkayang"), await read("uptd-ppa-kalbar")
    assert corrected.status_code == 202
    assert (social.status_code, child_protection.status_code) == (200, 200)
    assert [v["victim_ref"] for v in social.json()["victims"]] == ["V1"]
    assert social.json()["victim_refs"] == ["V1", "V2"]
    assert child_protection.json()["victims"] == []
