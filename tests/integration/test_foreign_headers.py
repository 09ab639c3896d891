"""Headers another client wrote, on the notifier's own queue: refused at once with a reason, not retried until
the delivery limit (found by the queue fuzzer, tests/fuzz/test_queues.py)."""

from __future__ import annotations

import uuid

import pytest

from services.notifier.messages import SYSTEM, Address, Notification, Recipient
from shared.consuming import REASON_HEADER
from tests.notifying import an_issued_referral
from tests.rabbit import BrokerClient
from tests.system import System

pytestmark = pytest.mark.rabbit


def a_notification() -> Notification:
    issued = an_issued_referral()
    return Notification(
        notification_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        event=issued,
        recipient=Recipient(
            role="system",
            id=SYSTEM,
            agency_id=issued.agency_id,
            channels=(Address(kind="webhook", to=issued.agency_id),),
        ),
    )


@pytest.mark.parametrize("round_", ["dua", 2.5, -1, True])
async def test_a_notification_whose_retry_round_is_no_whole_number_is_dead_lettered_at_once(
    system: System, broker: BrokerClient, round_: object
) -> None:
    await broker.publish(
        "",
        "notifier.notifications",
        a_notification().model_dump(mode="json"),
        message_type=Notification.TYPE,
        headers={"x-rujukan-retry-round": round_},
    )

    [dead] = await broker.take("notifier.notifications.dead", timeout=15)

    assert dead.headers[REASON_HEADER] == "x-rujukan-retry-round is not a whole number"  # not "gave up after 10"


async def test_a_reply_claiming_an_origin_longer_than_any_routing_key_is_dead_lettered_with_its_reason(
    system: System, broker: BrokerClient
) -> None:
    """Found by review: the origin a replayed message carries in a header was copied whole into its dead letter and
    into the reason, so a header just under the frame size came back over it, and the broker closed the referral
    service's connection at every redelivery."""
    forged = "referral.dinsos-bengkayang.acknowledged" + "x" * 130_000
    reply = {"referral_id": str(uuid.uuid4()), "agency_id": "dinsos-bengkayang"}

    message_id = await broker.publish(
        "", "referral.replies", reply, message_type="referral.acknowledged.v1",
        headers={"x-rujukan-routing-key": forged},
    )  # fmt: skip

    [dead] = await broker.take("referral.replies.dead", timeout=15)
    assert dead.message_id == message_id
    assert "does not match referral.dinsos-bengkayang.acknowledged" in dead.headers[REASON_HEADER]
    assert len(dead.headers["x-rujukan-routing-key"]) <= 255
