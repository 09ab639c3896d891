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
