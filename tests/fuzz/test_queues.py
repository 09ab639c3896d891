"""Every queue a service consumes, fed generated case reports (valid and near-valid), agency replies, delivery
reports and arbitrary bytes, content types, content encodings and header values, on the real broker: each message
is either processed or dead-lettered with a reason, none is left behind, valid reports become cases, no reason
quotes a victim's identity, and every consumer still works afterwards."""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import replace
from typing import Any
from urllib.parse import quote, unquote

import aio_pika
import aiohttp
import pamqp.encode
import pamqp.frame
import pamqp.header
import pytest
from hypothesis import given

from shared.consuming import REASON_HEADER
from shared.contracts.cases import IDENTITY_FIELDS
from shared.contracts.referrals import ReferralAcknowledged
from shared.ids import case_id_for
from shared.topology import INTAKE, REPLIES, dead_letter_queue_name
from tests.builders import a_case_report_body, the_sample_victims
from tests.fuzz.budget import examples, fuzz_settings, seeded
from tests.fuzz.messages import QUEUES, Fuzzed, World, encoding_foreign_values, messages
from tests.rabbit import _AUTH, MANAGEMENT_URL, BrokerClient
from tests.system import System, delivered_everywhere

pytestmark = [pytest.mark.rabbit, pytest.mark.fuzz]

TAG = "x-fuzz-n"
MESSAGES = 120


def draw_messages(world: World, count: int) -> list[Fuzzed]:
    """``count`` messages: a third for intake (case reports are the richest input), the rest shared out."""
    drawn: list[Fuzzed] = []
    for queue in QUEUES:

        @seeded
        @fuzz_settings(count // 3 if queue == "intake.reports" else count * 2 // 3 // (len(QUEUES) - 1))
        @given(message=messages(world, queue))
        def collect(message: Fuzzed) -> None:
            drawn.append(message)

        collect()
    return [replace(m, message_id=f"fuzz-{n}") if m.tidy else m for n, m in enumerate(drawn)]


FRAME_MAX = 131072
"""RabbitMQ's default: a message's properties and headers must fit in one frame of this size."""


def header_frame_size(message: aio_pika.Message) -> int:
    return len(pamqp.frame.marshal(pamqp.header.ContentHeader(0, len(message.body), message.properties), 1))


def as_published(message: Fuzzed, n: int) -> aio_pika.Message | None:
    """The AMQP message, or None for one no client could send: headers pamqp cannot write, or a header frame
    over the broker's frame limit (it closes the connection). With ``fill_frame``, a header pads the frame to
    within a few bytes of that limit: a consumer that adds headers when it dead-letters must still fit."""
    headers = {**message.headers, TAG: n}
    try:
        built = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.message_id,
            type=message.message_type,
            user_id=message.user_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        size = header_frame_size(built)
        if message.fill_frame and size < FRAME_MAX - 64:
            headers["x-fuzz-padding"] = "p" * (FRAME_MAX - 64 - size)
            built = replace_headers(built, headers)
            size = header_frame_size(built)
    except (ValueError, TypeError, UnicodeError, OverflowError, struct.error):
        return None
    return built if size <= FRAME_MAX else None


def replace_headers(message: aio_pika.Message, headers: dict[str, Any]) -> aio_pika.Message:
    properties = message.properties
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        message_id=properties.message_id,
        type=properties.message_type,
        user_id=properties.user_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def publish(broker: BrokerClient, message: Fuzzed, n: int) -> bool:
    """Whether the broker took (confirmed) the message; one no client could send is no part of the count."""
    built = as_published(message, n)
    if built is None:
        return False
    channel = await broker.channel()
    exchange = await channel.get_exchange(message.exchange, ensure=False) if message.exchange else None
    await (exchange or channel.default_exchange).publish(built, routing_key=message.routing_key, mandatory=True)
    return True


async def queue_totals(amqp_url: str) -> dict[str, int]:
    """Messages in each queue of the vhost, ready or unacknowledged (the management API's view)."""
    vhost = quote(unquote(amqp_url.rsplit("/", 1)[1]), safe="")
    async with (
        aiohttp.ClientSession(headers=_AUTH) as session,
        session.get(f"{MANAGEMENT_URL}/api/queues/{vhost}?columns=name,messages") as response,
    ):
        return {queue["name"]: int(queue.get("messages") or 0) for queue in await response.json()}


async def settled(amqp_url: str, broker: BrokerClient, *, timeout: float = 60) -> dict[str, int]:
    """Work and wait queues, once none holds a message on four looks in a row, two seconds apart (or what they
    hold at the end). A look asks the broker for ready messages (exact, now) and the management API for ready and
    unacknowledged ones (refreshed every five seconds, so the looks span longer than that)."""
    deadline = asyncio.get_running_loop().time() + timeout
    quiet = 0
    while True:
        totals = await queue_totals(amqp_url)
        watched = [name for name in totals if not name.endswith(".dead") and not name.startswith("agency.")]
        busy = {name: max(totals[name], await broker.depth(name)) for name in watched}
        busy = {name: count for name, count in busy.items() if count}
        quiet = 0 if busy else quiet + 1
        if quiet == 4 or asyncio.get_running_loop().time() > deadline:
            return busy
        await asyncio.sleep(2)


async def seed(system: System) -> World:
    accepted = await system.report(a_case_report_body(victims=the_sample_victims()))
    assert accepted.status_code == 202, accepted.text
    case_id = accepted.json()["case_id"]
    case = await system.case_when(case_id, lambda c: len(c["referrals"]) == 3)
    return World(
        police=[agency.id for agency in system.directory.police_units()],
        regencies=sorted(system.directory.province.regencies),
        legs={leg["agency_id"]: leg["referral_id"] for leg in case["referrals"]},
        case_id=case_id,
    )


async def every_consumer_still_works(system: System, broker: BrokerClient) -> None:
    """A valid report sent last over AMQP is taken by intake, routed by referral, delivered by the notifier
    (whose reports referral records), and an agency's acknowledgement over AMQP moves its referral."""
    report = a_case_report_body()
    await broker.publish(INTAKE.name, "case.report", report, message_type="case.report.v1")
    case_id = str(case_id_for(report["reporting_agency"], report["police_report_number"]))
    case = await system.case_when(case_id, delivered_everywhere, timeout=60)
    leg = case["referrals"][0]
    await broker.publish(
        REPLIES.name,
        f"referral.{leg['agency_id']}.acknowledged",
        {"referral_id": leg["referral_id"], "agency_id": leg["agency_id"]},
        message_type=ReferralAcknowledged.TYPE,
    )
    await system.case_when(case_id, lambda c: any(r["status"] == "acknowledged" for r in c["referrals"]))


def identity_in(report: dict[str, Any]) -> set[str]:
    return {
        str(victim[name])
        for victim in report.get("victims", [])
        if isinstance(victim, dict)
        for name in IDENTITY_FIELDS
        if isinstance(victim.get(name), str) and len(str(victim[name])) >= 6
    }


@pytest.fixture
def foreign_header_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pamqp.encode, "encode_table_value", encoding_foreign_values(pamqp.encode.encode_table_value))


@pytest.mark.usefixtures("foreign_header_values")
async def test_every_message_on_every_queue_is_processed_or_dead_lettered_and_the_consumers_go_on(
    system: System, broker: BrokerClient, amqp_url: str
) -> None:
    world = await seed(system)
    # Drawn in the loop's own thread: hypothesis watches the global random state, which the services use too.
    fuzzed = draw_messages(world, MESSAGES)  # scaled by RUJUKAN_FUZZ_SCALE in fuzz_settings
    for message in fuzzed:
        if message.case_report:
            system.identities.note(message.case_report)  # none of it may reach a notification either

    taken = {n: message for n, message in enumerate(fuzzed) if await publish(broker, message, n)}
    await every_consumer_still_works(system, broker)
    left = await settled(amqp_url, broker, timeout=examples(60))

    dead: dict[int, dict[str, Any]] = {}
    untagged: list[str] = []
    for queue in QUEUES:
        for letter in await broker.drain(dead_letter_queue_name(queue), at_least=0):
            headers = dict(letter.headers or {})
            if TAG in headers:
                dead[int(str(headers[TAG]))] = headers
            else:
                untagged.append(f"{queue}: {headers.get(REASON_HEADER)}")
    processed = set(taken) - set(dead)

    assert not left, f"messages left behind: {left}"
    assert len(taken) == len(processed) + len(dead)
    assert set(dead) <= set(taken)
    without_reason = {(n, taken[n].queue): headers for n, headers in dead.items() if not headers.get(REASON_HEADER)}
    assert not without_reason, f"dead-lettered without a reason: {without_reason}"
    # Nothing here is a passing failure: a message retried until the delivery limit was mistaken for one.
    retried = {(n, taken[n].queue): h[REASON_HEADER] for n, h in dead.items() if "gave up" in str(h[REASON_HEADER])}
    assert not retried, f"bad input retried until the delivery limit instead of dead-lettered at once: {retried}"
    assert not untagged, f"messages the services made themselves were dead-lettered: {untagged}"
    identity = set().union(*(identity_in(m.report) for m in fuzzed if m.report is not None))
    quoted = {str(h[REASON_HEADER]) for h in dead.values() for value in identity if value in str(h[REASON_HEADER])}
    assert not quoted, f"dead-letter reasons quoting identity: {quoted}"

    reports = [m.case_report for n, m in taken.items() if m.case_report is not None]
    assert reports, "no valid case report was drawn"
    assert not [n for n in dead if taken[n].case_report is not None], "a valid case report was dead-lettered"
    for report in reports:
        case_id = case_id_for(report["reporting_agency"], report["police_report_number"])
        answer = await system.case(str(case_id), agency_id=report["reporting_agency"])
        assert answer.status_code == 200, (report["police_report_number"], answer.text)
    assert any(re.match(r"referral\.", taken[n].routing_key) for n in processed)
