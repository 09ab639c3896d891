"""A police case reaches every agency that must act: routing, inboxes, webhooks, acknowledgements."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.builders import a_case_report_body, a_victim, the_sample_victims
from tests.rabbit import BrokerClient
from tests.system import System, delivered_everywhere

pytestmark = pytest.mark.rabbit

NAMES = ("Siti Aminah", "Dewi Lestari", "Budi Santoso")
AN_ADULT_MAN = a_victim(sex="male", age_years=40, full_name="Andi Wijaya", needs=["legal_aid"])


def legs_of(case: dict[str, object]) -> dict[str, list[str]]:
    return {leg["agency_id"]: leg["victim_refs"] for leg in case["referrals"]}  # type: ignore[index, union-attr]


async def test_sample_case_is_referred_to_exactly_three_agencies_each_in_its_inbox_and_webhook(
    system: System, broker: BrokerClient
) -> None:
    response = await system.report(a_case_report_body(victims=the_sample_victims()))
    assert response.status_code == 202
    case_id = response.json()["case_id"]

    case = await system.case_when(case_id, delivered_everywhere)

    assert legs_of(case) == {
        "dinsos-bengkayang": ["V1", "V2", "V3"],
        "uptd-ppa-kalbar": ["V1", "V2"],
        "bp3mi-kalbar": ["V2", "V3"],
    }
    priorities = {leg["agency_id"]: leg["priority"] for leg in case["referrals"]}
    assert priorities["uptd-ppa-kalbar"] == "urgent"
    for agency_id, refs in legs_of(case).items():
        [issued] = await broker.take(f"agency.{agency_id}.inbox")
        assert issued.type == "referral.issued.v1"
        assert issued.correlation_id == case_id
        assert [v["victim_ref"] for v in json.loads(issued.body)["victims"]] == refs
        assert not any(name.encode() in issued.body for name in NAMES)
        assert len(system.sink.distinct_ids(agency_id)) == 1
    assert not any(name in delivery.body for delivery in system.sink.deliveries for name in NAMES)


async def test_case_in_kota_pontianak_falls_back_to_provincial_social_services(system: System) -> None:
    response = await system.report(
        a_case_report_body(reporting_agency="polresta-pontianak", regency_code="61.71", victims=[AN_ADULT_MAN])
    )

    case = await system.case_when(response.json()["case_id"], delivered_everywhere, agency_id="polresta-pontianak")

    assert legs_of(case) == {"dinsos-kalbar": ["V1"]}


async def test_sanggau_case_goes_to_the_provincial_units(system: System) -> None:
    response = await system.report(a_case_report_body(regency_code="61.03", victims=the_sample_victims()))

    case = await system.case_when(response.json()["case_id"], delivered_everywhere)

    assert set(legs_of(case)) == {"dinsos-kalbar", "uptd-ppa-kalbar", "bp3mi-kalbar"}


async def test_repeated_report_is_the_same_case_and_creates_nothing_new(system: System, broker: BrokerClient) -> None:
    body = a_case_report_body(victims=the_sample_victims())
    first = await system.report(body)
    case = await system.case_when(first.json()["case_id"], delivered_everywhere)

    again = await system.report(body)

    assert again.status_code == 202
    assert again.json() == first.json()
    sentinel = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))
    await system.case_when(sentinel.json()["case_id"], delivered_everywhere)
    after = await system.case_when(first.json()["case_id"], delivered_everywhere)
    assert after["referrals"] == case["referrals"]
    assert _without_officer_deliveries(after) == _without_officer_deliveries(case)
    assert await broker.depth("agency.bp3mi-kalbar.inbox") == 1


def _without_officer_deliveries(case: dict[str, Any]) -> list[str]:
    """The timeline's events but the duty officers' deliveries, which may still land after the agencies' (seen
    failing under load: two officer texts recorded between the first look and the second)."""
    return [
        e["event"] for e in case["timeline"] if not (e["event"] == "delivered" and e["detail"]["recipient"] != "agency")
    ]


async def test_redelivered_case_reported_creates_nothing_new(system: System, broker: BrokerClient) -> None:
    channel = await broker.channel()
    tap = await channel.declare_queue(exclusive=True)
    await tap.bind("rujukan.events", routing_key="case.reported")
    response = await system.report(a_case_report_body(victims=the_sample_victims()))
    case_id = response.json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    reported = await tap.get(timeout=5)

    await broker.publish(
        "rujukan.events",
        "case.reported",
        reported.body,
        message_type=reported.type,
        message_id=reported.message_id,
        correlation_id=reported.correlation_id,
    )

    sentinel = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))
    await system.case_when(sentinel.json()["case_id"], delivered_everywhere)
    after = await system.case_when(case_id, delivered_everywhere)
    assert after["timeline"] == case["timeline"]
    assert len(system.sink.distinct_ids()) == 4
    assert await broker.depth("agency.dinsos-bengkayang.inbox") == 2
    assert await broker.depth("referral.cases.dead") == 0


async def test_acknowledgement_moves_referral_to_acknowledged_on_timeline_and_in_a_receipt(
    system: System, broker: BrokerClient
) -> None:
    response = await system.report(a_case_report_body(victims=the_sample_victims()))
    case_id = response.json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    [child_protection] = [leg for leg in case["referrals"] if leg["agency_id"] == "uptd-ppa-kalbar"]

    ack = await system.acknowledge(child_protection["referral_id"], "uptd-ppa-kalbar", officer="Yuliana")

    assert ack.status_code == 200
    assert ack.json()["status"] == "acknowledged"
    case = await system.case(case_id)
    [leg] = [leg for leg in case.json()["referrals"] if leg["agency_id"] == "uptd-ppa-kalbar"]
    assert leg["status"] == "acknowledged"
    [entry] = [e for e in case.json()["timeline"] if e["event"] == "acknowledged"]
    assert entry["actor"] == "uptd-ppa-kalbar"
    assert entry["detail"]["officer"] == "Yuliana"
    referred, acknowledged = await broker.take("agency.polres-bengkayang.receipts", 2)
    assert json.loads(referred.body)["event"] == "referred"
    receipt = json.loads(acknowledged.body)
    assert receipt["event"] == "acknowledged"
    assert receipt["legs"] == [
        {"referral_id": child_protection["referral_id"], "agency_id": "uptd-ppa-kalbar", "status": "acknowledged"}
    ]


async def test_second_acknowledgement_is_refused_naming_the_current_state(system: System) -> None:
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))
    case = await system.case_when(response.json()["case_id"], delivered_everywhere)
    [leg] = case["referrals"]
    await system.acknowledge(leg["referral_id"], "dinsos-bengkayang")

    again = await system.acknowledge(leg["referral_id"], "dinsos-bengkayang")

    assert again.status_code == 409
    assert again.json()["status"] == "acknowledged"


async def test_acknowledgement_over_amqp_moves_the_referral(system: System, broker: BrokerClient) -> None:
    response = await system.report(a_case_report_body(victims=the_sample_victims()))
    case_id = response.json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    [leg] = [leg for leg in case["referrals"] if leg["agency_id"] == "bp3mi-kalbar"]

    await broker.publish(
        "rujukan.replies",
        "referral.bp3mi-kalbar.acknowledged",
        {"referral_id": leg["referral_id"], "agency_id": "bp3mi-kalbar", "officer": "Agus"},
        message_type="referral.acknowledged.v1",
    )

    case = await system.case_when(case_id, lambda c: any(r["status"] == "acknowledged" for r in c["referrals"]))
    assert {r["agency_id"] for r in case["referrals"] if r["status"] == "acknowledged"} == {"bp3mi-kalbar"}


async def test_two_agencies_acknowledging_under_the_same_message_id_are_both_recorded(
    system: System, broker: BrokerClient
) -> None:
    """Found by review: the inbox knew a reply by its message id alone, and each agency's system picks its own (a
    counter, say), so one agency's acknowledgement was taken for a repeat of another's and silently dropped."""
    response = await system.report(a_case_report_body(victims=the_sample_victims()))
    case_id = response.json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    legs = {leg["agency_id"]: leg["referral_id"] for leg in case["referrals"]}

    for agency_id in ("bp3mi-kalbar", "dinsos-bengkayang"):
        await broker.publish(
            "rujukan.replies",
            f"referral.{agency_id}.acknowledged",
            {"referral_id": legs[agency_id], "agency_id": agency_id},
            message_type="referral.acknowledged.v1",
            message_id="1",
        )

    case = await system.case_when(
        case_id, lambda c: sum(r["status"] == "acknowledged" for r in c["referrals"]) == 2, timeout=10
    )
    assert {r["agency_id"] for r in case["referrals"] if r["status"] == "acknowledged"} == {
        "bp3mi-kalbar",
        "dinsos-bengkayang",
    }


async def test_acknowledgement_from_the_wrong_agency_is_refused(system: System, broker: BrokerClient) -> None:
    response = await system.report(a_case_report_body(victims=the_sample_victims()))
    case = await system.case_when(response.json()["case_id"], delivered_everywhere)
    [social] = [leg for leg in case["referrals"] if leg["agency_id"] == "dinsos-bengkayang"]

    over_http = await system.acknowledge(social["referral_id"], "bp3mi-kalbar")
    await broker.publish(
        "rujukan.replies",
        "referral.bp3mi-kalbar.acknowledged",
        {"referral_id": social["referral_id"], "agency_id": "bp3mi-kalbar"},
        message_type="referral.acknowledged.v1",
    )

    assert over_http.status_code == 403
    [dead] = await broker.take("referral.replies.dead")
    assert "not addressed to bp3mi-kalbar" in dead.headers["x-rujukan-reason"]
    case = await system.case(response.json()["case_id"])
    assert all(leg["status"] == "delivered" for leg in case.json()["referrals"])


async def test_receiving_agency_reads_identity_of_its_own_victims_only(system: System) -> None:
    response = await system.report(a_case_report_body(victims=the_sample_victims()))
    case = await system.case_when(response.json()["case_id"], delivered_everywhere)
    [bp3mi] = [leg for leg in case["referrals"] if leg["agency_id"] == "bp3mi-kalbar"]
    url = system.url("referral", f"/v1/referrals/{bp3mi['referral_id']}")

    own = await system.http.get(url, headers=system.token("bp3mi-kalbar"))
    other = await system.http.get(url, headers=system.token("dinsos-bengkayang"))

    assert own.status_code == 200
    assert [v["identity"]["full_name"] for v in own.json()["victims"]] == ["Dewi Lestari", "Budi Santoso"]
    assert "Siti Aminah" not in own.text
    assert other.status_code == 403
    reader = await system.case(response.json()["case_id"], agency_id="uptd-ppa-kalbar")
    assert reader.status_code == 403


async def test_a_delivery_report_with_a_time_of_no_time_zone_is_dead_lettered_at_once(
    system: System, broker: BrokerClient
) -> None:
    """Found by review: a timestamp without its offset passed the contract and failed only at the ledger's write, as
    if the database were away, so the report was retried ten times before it was dead-lettered."""
    report = {
        "referral_id": str(uuid.uuid4()),
        "case_id": str(uuid.uuid4()),
        "agency_id": "dinsos-bengkayang",
        "channel": "webhook",
        "notification_id": str(uuid.uuid4()),
        "attempts": 1,
        "delivered_at": "2026-12-07T10:00:00",
    }

    message_id = await broker.publish("", "referral.deliveries", report, message_type="referral.delivered.v1")

    [dead] = await broker.take("referral.deliveries.dead")
    assert dead.message_id == message_id
    assert "delivered_at" in dead.headers["x-rujukan-reason"]
    assert dead.headers["x-delivery-count"] == 0
