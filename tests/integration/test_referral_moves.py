"""Receiving agencies move their referrals through the lifecycle, over HTTP and AMQP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.builders import a_case_report_body, a_victim, the_sample_victims
from tests.rabbit import BrokerClient
from tests.system import System, delivered_everywhere

pytestmark = pytest.mark.rabbit

AN_ADULT_MAN = a_victim(sex="male", age_years=40, full_name="Andi Wijaya")


async def referred(system: System, victims: list[dict[str, Any]]) -> dict[str, Any]:
    response = await system.report(a_case_report_body(victims=victims))
    return await system.case_when(response.json()["case_id"], delivered_everywhere)


def leg(case: dict[str, Any], agency_id: str) -> str:
    [referral_id] = [r["referral_id"] for r in case["referrals"] if r["agency_id"] == agency_id]
    return referral_id


async def move(system: System, referral_id: str, action: str, by: str, **body: Any) -> Any:
    return await system.http.post(
        system.url("referral", f"/v1/referrals/{referral_id}/{action}"), json=body or None, headers=system.token(by)
    )


async def test_a_referral_goes_from_acceptance_through_a_hold_to_completion(
    system: System, broker: BrokerClient
) -> None:
    case = await referred(system, [AN_ADULT_MAN])
    referral_id = leg(case, "dinsos-bengkayang")

    statuses = [
        (await move(system, referral_id, action, "dinsos-bengkayang", **body)).json()["status"]
        for action, body in [
            ("accept", {"officer": "Rina"}),
            ("start", {}),
            ("hold", {"reason": "ditahan untuk penyidikan"}),
            ("resume", {}),
            ("complete", {"outcome": "successful", "note": "korban kembali ke keluarga"}),
        ]
    ]

    assert statuses == ["accepted", "in_progress", "on_hold", "in_progress", "completed"]
    final = (await system.case(case["case_id"])).json()
    events = [e["event"] for e in final["timeline"] if e["referral_id"] == referral_id]
    assert events[-5:] == ["accepted", "started", "held", "resumed", "completed"]
    held = next(e for e in final["timeline"] if e["event"] == "held")
    assert held["detail"]["reason"] == "ditahan untuk penyidikan"
    assert final["status"]["fully_accepted"]
    receipts = [json.loads(m.body) for m in await broker.take("agency.polres-bengkayang.receipts", 6)]
    assert [r["legs"][0]["status"] for r in receipts[1:]] == statuses


async def test_a_referral_may_be_put_on_hold_and_resumed_again_and_again(system: System, broker: BrokerClient) -> None:
    """Found by review: each move's receipt had an id of the move's kind alone, so a second hold collided with the
    first in the outbox and failed with 500 every time it was sent."""
    case = await referred(system, [AN_ADULT_MAN])
    referral_id = leg(case, "dinsos-bengkayang")
    moves = [("accept", {}), ("start", {}), *[("hold", {"reason": "saksi belum siap"}), ("resume", {})] * 2]

    answers = [
        (await move(system, referral_id, action, "dinsos-bengkayang", **body)).status_code for action, body in moves
    ]

    assert answers == [200] * len(moves)
    receipts = [json.loads(m.body) for m in await broker.take("agency.polres-bengkayang.receipts", 1 + len(moves))]
    assert [r["legs"][0]["status"] for r in receipts[-4:]] == ["on_hold", "in_progress", "on_hold", "in_progress"]


async def test_an_idempotency_key_makes_a_resent_move_a_repeat_but_never_hides_another_move(system: System) -> None:
    """Found by review: the key stood for any move of the agency, so an accept sent with the key an acknowledgement
    had used answered 200 "acknowledged" and was never applied."""
    case = await referred(system, [AN_ADULT_MAN])
    referral_id = leg(case, "dinsos-bengkayang")
    url = system.url("referral", f"/v1/referrals/{referral_id}")
    headers = {**system.token("dinsos-bengkayang"), "Idempotency-Key": referral_id}

    acknowledged = await system.http.post(f"{url}/acknowledge", headers=headers)
    resent = await system.http.post(f"{url}/acknowledge", headers=headers)
    accepted = await system.http.post(f"{url}/accept", headers=headers)

    answers = (acknowledged, resent, accepted)
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.json()["status"] for r in answers] == ["acknowledged", "acknowledged", "accepted"]


async def test_an_illegal_move_gets_409_naming_the_current_state(system: System) -> None:
    case = await referred(system, [AN_ADULT_MAN])

    response = await move(system, leg(case, "dinsos-bengkayang"), "start", "dinsos-bengkayang")

    assert response.status_code == 409
    assert response.json()["status"] == "delivered"
    assert "delivered" in response.json()["detail"]


async def test_a_decline_needs_a_coded_reason_and_a_note_for_other(system: System) -> None:
    case = await referred(system, the_sample_victims())
    social = leg(case, "dinsos-bengkayang")

    without_note = await move(system, social, "decline", "dinsos-bengkayang", reason="other")
    declined = await move(system, social, "decline", "dinsos-bengkayang", reason="no_capacity")
    for agency_id in ("uptd-ppa-kalbar", "bp3mi-kalbar"):
        await move(system, leg(case, agency_id), "accept", agency_id)

    assert without_note.status_code == 422
    assert declined.json()["status"] == "declined"
    bundle = (await system.case(case["case_id"])).json()["status"]
    assert bundle == {"fully_acknowledged": True, "fully_accepted": True, "open_legs": 0}


async def test_referring_onward_issues_a_referral_to_the_named_agency(system: System, broker: BrokerClient) -> None:
    case = await referred(system, the_sample_victims())
    bp3mi = leg(case, "bp3mi-kalbar")

    again = await move(system, bp3mi, "refer-onward", "bp3mi-kalbar", agency_id="dinsos-bengkayang")
    onward = await move(system, bp3mi, "refer-onward", "bp3mi-kalbar", agency_id="dinsos-kalbar")

    assert again.status_code == 422
    assert onward.json()["status"] == "referred_onward"
    case = await system.case_when(case["case_id"], lambda c: len(c["referrals"]) == 4 and delivered_everywhere(c))
    [new] = [r for r in case["referrals"] if r["agency_id"] == "dinsos-kalbar"]
    assert new["victim_refs"] == ["V2", "V3"]
    assert new["reasons"][0]["description"] == "referred onward by bp3mi-kalbar"
    [issued] = await broker.take("agency.dinsos-kalbar.inbox")
    assert json.loads(issued.body)["referral_id"] == new["referral_id"]


async def test_agency_systems_move_referrals_over_amqp_and_illegal_moves_are_dead_lettered(
    system: System, broker: BrokerClient
) -> None:
    case = await referred(system, [AN_ADULT_MAN])
    referral_id = leg(case, "dinsos-bengkayang")
    body = {"referral_id": referral_id, "agency_id": "dinsos-bengkayang"}

    await broker.publish(
        "rujukan.replies",
        "referral.dinsos-bengkayang.completed",
        {**body, "outcome": "successful"},
        message_type="referral.completed.v1",
    )
    await broker.publish(
        "rujukan.replies", "referral.dinsos-bengkayang.accepted", body, message_type="referral.accepted.v1"
    )

    [dead] = await broker.take("referral.replies.dead")
    assert dead.headers["x-rujukan-reason"] == f"referral {referral_id}: delivered -> completed is not allowed"
    accepted = await system.case_when(case["case_id"], lambda c: c["referrals"][0]["status"] == "accepted")
    assert accepted["status"]["fully_accepted"]


async def test_an_agency_reply_over_the_size_limit_is_dead_lettered_before_it_is_parsed(
    system: System, broker: BrokerClient
) -> None:
    """Found by review: replies over HTTP got 413 past the limit, the same reply padded with whitespace over AMQP was
    parsed whatever its size."""
    case = await referred(system, [AN_ADULT_MAN])
    referral_id = leg(case, "dinsos-bengkayang")
    body = json.dumps({"referral_id": referral_id, "agency_id": "dinsos-bengkayang"}).encode()
    padded = body + b" " * system.settings.max_request_bytes

    await broker.publish(
        "rujukan.replies", "referral.dinsos-bengkayang.accepted", padded, message_type="referral.accepted.v1"
    )
    await broker.publish(
        "rujukan.replies", "referral.dinsos-bengkayang.acknowledged", body, message_type="referral.acknowledged.v1"
    )

    [dead] = await broker.take("referral.replies.dead")
    assert dead.headers["x-rujukan-reason"] == (
        f"body of {len(padded)} bytes is over the limit of {system.settings.max_request_bytes} bytes"
    )
    acknowledged = await system.case_when(case["case_id"], lambda c: c["referrals"][0]["status"] == "acknowledged")
    assert acknowledged["referrals"][0]["status"] == "acknowledged"


async def test_an_unknown_referral_or_case_gets_404(system: System) -> None:
    unknown = "00000000-0000-5000-8000-000000000000"

    referral = await move(system, unknown, "accept", "dinsos-bengkayang")
    case = await system.case(unknown)

    assert referral.status_code == 404
    assert case.status_code == 404


async def test_the_reporting_unit_marks_a_referral_sent_by_mistake_and_its_agency_stands_down(
    system: System, broker: BrokerClient
) -> None:
    case = await referred(system, [AN_ADULT_MAN])
    referral_id = leg(case, "dinsos-bengkayang")
    url = system.url("referral", f"/v1/referrals/{referral_id}/entered-in-error")

    by_the_agency = await system.http.post(url, json={"note": "salah"}, headers=system.token("dinsos-bengkayang"))
    without_note = await system.http.post(url, json={}, headers=system.token("polres-bengkayang"))
    marked = await system.http.post(url, json={"note": "salah wilayah"}, headers=system.token("polres-bengkayang"))
    again = await system.http.post(url, json={"note": "lagi"}, headers=system.token("polres-bengkayang"))

    assert (by_the_agency.status_code, without_note.status_code) == (403, 422)
    assert marked.status_code == 200
    assert marked.json()["status"] == "entered_in_error"
    assert again.status_code == 409
    issued, stand_down = await broker.take("agency.dinsos-bengkayang.inbox", 2)
    assert (issued.type, stand_down.type) == ("referral.issued.v1", "referral.cancelled.v1")
    assert json.loads(stand_down.body)["reason"] == "entered_in_error"
    case = (await system.case(case["case_id"])).json()
    [entry] = [e for e in case["timeline"] if e["event"] == "entered_in_error"]
    assert (entry["actor"], entry["detail"]["note"]) == ("polres-bengkayang", "salah wilayah")
    assert case["status"]["open_legs"] == 0


async def test_an_agency_that_declined_a_referral_no_longer_sees_who_its_victims_are(system: System) -> None:
    case = await referred(system, [AN_ADULT_MAN])
    referral_id = leg(case, "dinsos-bengkayang")
    url = system.url("referral", f"/v1/referrals/{referral_id}")
    before = (await system.http.get(url, headers=system.token("dinsos-bengkayang"))).json()

    await move(system, referral_id, "decline", "dinsos-bengkayang", reason="no_capacity")
    after = await system.http.get(url, headers=system.token("dinsos-bengkayang"))

    assert before["victims"][0]["identity"]["full_name"] == "Andi Wijaya"
    assert after.status_code == 200
    assert after.json()["status"] == "declined"
    assert after.json()["victims"][0]["identity"] == {}
    assert "Andi Wijaya" not in after.text
