"""Each service consumer takes at most RUJUKAN_PREFETCH messages at a time, on a channel of its own: a backlog
stays on the broker, shared among replicas, instead of being taken into one process at once."""

from __future__ import annotations

import pytest

from tests.rabbit import Consumer, consumers_of
from tests.system import System, eventually

pytestmark = pytest.mark.rabbit

SERVICE_QUEUES = {
    "intake.reports",
    "referral.cases",
    "referral.deliveries",
    "referral.replies",
    "notifier.referrals",
    "notifier.notifications",
}


async def test_every_service_consumer_has_the_prefetch_of_the_settings_on_a_channel_of_its_own(
    system: System, amqp_url: str
) -> None:
    """Found by the chaos harness: the topology a service declared at start-up left FastStream holding each queue
    on the declaring channel, and the subscriber consumed there, with no prefetch limit at all; a scaled-out
    notifier took a thousand messages at once and its publishes timed out behind them."""
    found: list[Consumer] = []

    async def all_consuming() -> bool:
        nonlocal found
        found = [consumer for consumer in await consumers_of(amqp_url) if consumer.queue in SERVICE_QUEUES]
        return {consumer.queue for consumer in found} == SERVICE_QUEUES

    await eventually(all_consuming, timeout=20)  # the management API's figures lag by a stats interval

    assert {consumer.queue: consumer.prefetch for consumer in found} == dict.fromkeys(
        SERVICE_QUEUES, system.settings.prefetch
    )
    assert len({consumer.channel for consumer in found}) == len(SERVICE_QUEUES)
