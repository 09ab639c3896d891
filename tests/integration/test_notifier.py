"""Notifications reach the agency once, retried through transient failures, and failures are never silent."""

from __future__ import annotations

import pytest

from shared.contracts.referrals import ReferralIssued
from tests.builders import a_case_report_body, a_victim
from tests.rabbit import BrokerClient
from tests.system import System, agency_deliveries, delivered_everywhere, eventually

pytestmark = pytest.mark.rabbit

AN_ADULT_MAN = a_victim(sex="male", age_years=40, full_name="Andi Wijaya")
DESK = "meja.dinsos-bengkayang@example.org"


def delivered_by_email(case: dict[str, object]) -> bool:
    return any(e["detail"]["channel"] == "email" for e in agency_deliveries(case))  # type: ignore[arg-type]


async def test_webhook_failing_twice_then_succeeding_is_delivered_once_with_one_webhook_id(system: System) -> None:
    system.sink.fail_next("dinsos-bengkayang", 503, 429)
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    case = await system.case_when(response.json()["case_id"], delivered_everywhere)

    assert system.sink.requests["dinsos-bengkayang"] == 3
    [delivery] = system.sink.deliveries
    [delivered] = agency_deliveries(case)
    assert delivered["detail"]["attempts"] == 3
    assert delivered["detail"]["notification_id"] == delivery.webhook_id


async def test_permanent_webhook_failure_falls_back_to_the_agencys_email_at_once(system: System) -> None:
    system.sink.fail_next("dinsos-bengkayang", 410)
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    case = await system.case_when(response.json()["case_id"], delivered_by_email)

    assert system.sink.requests["dinsos-bengkayang"] == 1
    [mail] = system.smtp.to(DESK)
    [delivered] = agency_deliveries(case)
    assert mail.message_id.startswith(f"<{delivered['detail']['notification_id']}@")
    assert not [e for e in case["timeline"] if e["event"] == "delivery_failed"]


async def test_endpoint_down_past_quick_retries_is_retried_from_a_wait_queue_with_the_same_id(
    system: System, broker: BrokerClient
) -> None:
    system.sink.fail_next("dinsos-bengkayang", 502, 502, 502, 502)
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    case = await system.case_when(response.json()["case_id"], delivered_everywhere, timeout=20)

    [delivered] = agency_deliveries(case)
    assert delivered["detail"]["attempts"] == 5
    assert len(system.sink.distinct_ids("dinsos-bengkayang")) == 1
    assert await broker.depth("agency.dinsos-bengkayang.inbox") == 1


async def test_endpoint_down_for_the_whole_retry_schedule_falls_back_to_email(system: System) -> None:
    system.sink.fail_next("dinsos-bengkayang", *([503] * 9))
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    case = await system.case_when(response.json()["case_id"], delivered_by_email, timeout=25)

    assert system.sink.distinct_ids("dinsos-bengkayang") == set()
    assert len(system.smtp.to(DESK)) == 1
    assert [e["detail"]["channel"] for e in agency_deliveries(case)] == ["email"]


async def test_a_dead_endpoint_is_not_hammered_and_other_agencies_are_still_notified(system: System) -> None:
    system.sink.fail_next("dinsos-bengkayang", *([503] * 100))
    doomed = [(await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))).json()["case_id"] for _ in range(6)]
    elsewhere = await system.report(
        a_case_report_body(reporting_agency="polresta-pontianak", regency_code="61.71", victims=[AN_ADULT_MAN])
    )

    await system.case_when(elsewhere.json()["case_id"], delivered_everywhere, agency_id="polresta-pontianak")
    for case_id in doomed:
        await system.case_when(case_id, delivered_by_email, timeout=25)

    # Without the circuit breaker six referrals would cost 6 x 3 requests in the first round alone.
    assert system.sink.requests["dinsos-bengkayang"] < 6 * 3


async def test_a_victim_added_after_the_agency_acknowledged_still_reaches_its_system(
    system: System, broker: BrokerClient
) -> None:
    a_girl = a_victim(victim_ref="V2", sex="female", age_years=15, full_name="Siti Aminah")
    body = a_case_report_body(victims=[AN_ADULT_MAN])
    case_id = (await system.report(body)).json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    [referral_id] = [leg["referral_id"] for leg in case["referrals"] if leg["agency_id"] == "dinsos-bengkayang"]
    assert (await system.acknowledge(referral_id, "dinsos-bengkayang")).status_code == 200

    amended = await system.http.post(
        system.url("intake", f"/v1/cases/{case_id}/amend"),
        json={**body, "victims": [AN_ADULT_MAN, a_girl]},
        headers=system.token("polres-bengkayang"),
    )

    assert amended.status_code == 202
    await eventually(lambda: len(system.sink.distinct_ids("dinsos-bengkayang")) == 2)
    widened = [d for d in system.sink.deliveries if d.agency_id == "dinsos-bengkayang"][-1]
    assert widened.payload["victim_count"] == 2
    issued = [m for m in await broker.take("agency.dinsos-bengkayang.inbox", 2) if m.type == ReferralIssued.TYPE]
    assert [ReferralIssued.model_validate_json(m.body).amended_at is None for m in issued] == [True, False]
