"""Operators list, replay and discard dead letters through the referral service's ops API, over a real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from shared.topology import DELIVERY_LIMIT
from tests.builders import a_case_report_body, a_victim
from tests.rabbit import BrokerClient
from tests.system import System, WebhookSink, delivered_everywhere, eventually

OPERATOR = {"Authorization": "Bearer dev-ops-rujukan"}


async def ops(system: System, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await system.http.request(method, system.url("referral", f"/v1/ops{path}"), headers=OPERATOR, **kwargs)


async def listed(
    system: System, queue: str, count: int, *, where: Callable[[dict[str, Any]], bool] = lambda _: True
) -> list[dict[str, Any]]:
    """The dead letters of ``queue`` once ``count`` of them satisfy ``where``."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        response = await ops(system, "GET", "/dead-letters", params={"queue": queue})
        assert response.status_code == 200, response.text
        found = response.json()
        return len([letter for letter in found if where(letter)]) >= count

    await eventually(enough)
    return found


async def an_invalid_report(broker: BrokerClient) -> str:
    body = a_case_report_body(victims=[a_victim(age_years=-3, full_name="Siti Aminah", nik="6107014501900001")])
    return await broker.publish("rujukan.intake", "case.report", body, message_type="case.report.v1")


async def test_an_invalid_amqp_report_is_listed_with_its_reason_and_no_identity(
    system: System, broker: BrokerClient
) -> None:
    message_id = await an_invalid_report(broker)

    [letter] = await listed(system, "intake.reports", 1)
    shown = await ops(system, "GET", f"/dead-letters/intake.reports/{message_id}")

    assert letter["message_id"] == message_id
    assert letter["queue"] == "intake.reports"
    assert "victims.0.age_years" in letter["reason"]
    assert letter["attempts"] == 1
    assert letter["sealed"] is True
    assert letter["size"] > 0
    assert letter["content_type"] == "application/json"
    assert shown.status_code == 200
    assert {**shown.json(), "age": None} == {**letter, "age": None}
    everything = (await ops(system, "GET", "/dead-letters")).text
    for identity in ("Siti", "Aminah", "6107014501900001"):
        assert identity not in everything


async def test_looking_at_dead_letters_loses_none_and_keeps_their_order(system: System, broker: BrokerClient) -> None:
    sent = {await an_invalid_report(broker) for _ in range(5)}
    # Intake refuses them concurrently: the queue's order is whatever the first listing shows.
    order = [letter["message_id"] for letter in await listed(system, "intake.reports", 5)]

    listings = await asyncio.gather(*(ops(system, "GET", "/dead-letters") for _ in range(4)))
    # More looks than a work queue's delivery limit: a dead-letter queue has none to reach.
    for _ in range(DELIVERY_LIMIT + 2):
        await ops(system, "GET", f"/dead-letters/intake.reports/{order[2]}")

    assert set(order) == sent
    for listing in listings:
        assert [letter["message_id"] for letter in listing.json()] == order
    taken = await broker.take("intake.reports.dead", 5)
    assert [message.message_id for message in taken] == order


async def spy_on_topic_exchanges(broker: BrokerClient) -> str:
    """A queue bound to everything published through the topic exchanges: a replay must never pass there."""
    channel = await broker.channel()
    spy = await channel.declare_queue(f"spy-{uuid.uuid4().hex[:8]}", exclusive=True)
    for exchange in ("rujukan.intake", "rujukan.events", "rujukan.replies"):
        await spy.bind(exchange, routing_key="#")
    return spy.name


async def test_a_replay_goes_back_into_its_own_queue_only(system: System, broker: BrokerClient) -> None:
    message_id = await an_invalid_report(broker)
    await listed(system, "intake.reports", 1)
    spy = await spy_on_topic_exchanges(broker)

    replayed = await ops(system, "POST", f"/dead-letters/intake.reports/{message_id}/replay", json={"note": "retry"})

    assert replayed.status_code == 200, replayed.text
    # Still invalid, intake refuses it again: it went through intake.reports, and it counts a second attempt.
    again = await listed(system, "intake.reports", 1, where=lambda letter: letter["attempts"] == 2)
    assert [letter["message_id"] for letter in again] == [message_id]
    assert await broker.depth(spy) == 0


async def test_an_agency_reply_that_came_too_early_is_replayed_once_its_referral_is_ready(
    system: System, broker: BrokerClient
) -> None:
    """The replay comes back through the default exchange under the queue's name; it is still checked against
    the routing key the agency published it with, and still passes."""
    accepted = await system.report(a_case_report_body(victims=[a_victim(sex="male", age_years=40)]))
    case = await system.case_when(accepted.json()["case_id"], delivered_everywhere)
    [leg] = case["referrals"]
    reply = {"referral_id": leg["referral_id"], "agency_id": leg["agency_id"]}
    started = await broker.publish(
        "rujukan.replies", f"referral.{leg['agency_id']}.started", reply, message_type="referral.started.v1"
    )
    [letter] = await listed(system, "referral.replies", 1)
    assert letter["reason"] == f"referral {leg['referral_id']}: delivered -> in_progress is not allowed"
    await broker.publish(
        "rujukan.replies", f"referral.{leg['agency_id']}.accepted", reply, message_type="referral.accepted.v1"
    )
    await system.case_when(case["case_id"], lambda c: c["referrals"][0]["status"] == "accepted")

    replayed = await ops(system, "POST", f"/dead-letters/referral.replies/{started}/replay", json={})

    assert replayed.status_code == 200, replayed.text
    await system.case_when(case["case_id"], lambda c: c["referrals"][0]["status"] == "in_progress")
    assert await broker.depth("referral.replies.dead") == 0


async def test_a_referral_an_agency_system_rejected_is_replayed_into_that_agencys_inbox_alone(
    system: System, broker: BrokerClient
) -> None:
    accepted = await system.report(a_case_report_body())
    assert accepted.status_code == 202, accepted.text
    inbox = "agency.dinsos-bengkayang.inbox"
    await eventually(lambda: broker.depth(inbox))
    agency_system = await broker.connection.channel()
    issued = await (await agency_system.get_queue(inbox)).get(no_ack=False)
    assert issued is not None
    await issued.reject(requeue=False)  # the agency's system could not take it: the broker dead-letters it
    [letter] = await listed(system, inbox, 1)
    spy = await spy_on_topic_exchanges(broker)

    replayed = await ops(system, "POST", f"/dead-letters/{inbox}/{letter['message_id']}/replay")

    assert replayed.status_code == 200, replayed.text
    assert letter["message_id"] == issued.message_id
    assert letter["reason"] == "broker: rejected"
    assert letter["routing_key"] == "referral.dinsos-bengkayang.issued"
    [back] = await broker.take(inbox)
    assert back.message_id == issued.message_id
    assert back.body == issued.body
    assert back.headers["x-rujukan-replays"] == 1
    assert await broker.depth(spy) == 0
    assert await broker.depth(f"{inbox}.dead") == 0


async def test_a_notification_parked_when_every_channel_failed_is_sent_once_when_replayed(
    system: System, sink: WebhookSink
) -> None:
    """Found by the chaos harness: the notifier took a replayed notification for a copy of one already ended,
    and dropped it, so a replay after an agency's outage delivered nothing."""
    desk = "meja.dinsos-bengkayang@example.org"
    sink.fail_next("dinsos-bengkayang", 410)  # refused for good: on to the desk's email at once
    system.smtp.refuse(desk)  # and that refused too: parked
    accepted = await system.report(a_case_report_body(victims=[a_victim(sex="male", age_years=40)]))
    assert accepted.status_code == 202, accepted.text
    [letter] = await listed(system, "notifier.notifications", 1)
    del system.smtp.refusals[desk]

    replayed = await ops(system, "POST", f"/dead-letters/notifier.notifications/{letter['message_id']}/replay")

    assert replayed.status_code == 200, replayed.text
    await system.case_when(accepted.json()["case_id"], delivered_everywhere)
    await asyncio.sleep(1)  # time enough for a second copy, were one coming
    assert len(system.smtp.to(desk)) == 1


async def test_a_discard_needs_a_note_and_removes_the_dead_letter(system: System, broker: BrokerClient) -> None:
    message_id = await an_invalid_report(broker)
    await listed(system, "intake.reports", 1)

    without_note = await ops(system, "POST", f"/dead-letters/intake.reports/{message_id}/discard", json={})
    blank_note = await ops(system, "POST", f"/dead-letters/intake.reports/{message_id}/discard", json={"note": ""})
    discarded = await ops(
        system, "POST", f"/dead-letters/intake.reports/{message_id}/discard", json={"note": "police resent it"}
    )

    assert without_note.status_code == 422
    assert blank_note.status_code == 422
    assert discarded.status_code == 200, discarded.text
    assert (await ops(system, "GET", f"/dead-letters/intake.reports/{message_id}")).status_code == 404
    assert await broker.depth("intake.reports.dead") == 0


async def test_a_dead_letter_whose_message_id_has_slashes_can_be_shown_and_discarded(
    system: System, broker: BrokerClient
) -> None:
    """Found by review: a police system that uses its report number as the message id (LP/B/...) left a dead letter
    that the ops API and the CLI answered 404 for, whether its slashes were escaped or not."""
    body = a_case_report_body(victims=[a_victim(age_years=-3)])
    message_id = f"LP/B/{uuid.uuid4().hex[:6]}/VIII/2025/SPKT"
    await broker.publish("rujukan.intake", "case.report", body, message_type="case.report.v1", message_id=message_id)
    await listed(system, "intake.reports", 1)
    escaped = quote(message_id, safe="")

    shown = await ops(system, "GET", f"/dead-letters/intake.reports/{escaped}")
    discarded = await ops(
        system, "POST", f"/dead-letters/intake.reports/{message_id}/discard", json={"note": "police resent it"}
    )

    assert shown.status_code == 200
    assert shown.json()["message_id"] == message_id
    assert discarded.status_code == 200, discarded.text
    assert await broker.depth("intake.reports.dead") == 0


async def test_a_replay_that_cannot_be_made_leaves_the_dead_letter_where_it_was(
    system: System, broker: BrokerClient
) -> None:
    message_id = await broker.publish(
        "",
        "intake.reports.dead",
        b'{"sealed": "not really"}',
        message_type="case.report.v1",
        headers={"x-rujukan-sealed-body": True, "x-rujukan-reason": "invalid case.report.v1: (body)"},
    )
    await listed(system, "intake.reports", 1)

    refused = await ops(system, "POST", f"/dead-letters/intake.reports/{message_id}/replay")

    assert refused.status_code == 409
    assert "sealed body does not open" in refused.json()["detail"]
    [kept] = await broker.take("intake.reports.dead")
    assert kept.message_id == message_id
    assert kept.body == b'{"sealed": "not really"}'


async def test_an_unknown_queue_or_message_answers_404(system: System) -> None:
    unknown_queue = await ops(system, "GET", "/dead-letters", params={"queue": "rujukan.events"})
    unknown_message = await ops(system, "POST", "/dead-letters/intake.reports/nope/replay")

    assert unknown_queue.status_code == 404
    assert unknown_message.status_code == 404
