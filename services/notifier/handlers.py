"""AMQP entrypoint of the notifier: ``referral.<agency>.issued``, first delivery and retries alike."""

from __future__ import annotations

import structlog
from faststream.rabbit import RabbitRouter
from faststream.rabbit.annotations import RabbitMessage

from services.notifier.dispatch import Notifications, RetryLater
from shared.broker import MessagePublisher, consumer_channel
from shared.consuming import decode, message_id_of, raw, republish
from shared.contracts.referrals import ReferralCancelled, ReferralIssued
from shared.settings import Settings
from shared.topology import Topology

ROUND_HEADER = "x-rujukan-retry-round"
ATTEMPTS_HEADER = "x-rujukan-attempts"


def build_router(
    notifications: Notifications, publisher: MessagePublisher, topology: Topology, settings: Settings
) -> RabbitRouter:
    router = RabbitRouter()

    @router.subscriber(topology.notifier_referrals, channel=consumer_channel(settings))
    async def on_referral_issued(msg: RabbitMessage) -> None:
        """Tell the agency of a referral or its cancellation; after a transient failure park the message in the
        next wait queue, then ack."""
        event = decode(msg, ReferralIssued, ReferralCancelled)
        headers = raw(msg).headers or {}
        with structlog.contextvars.bound_contextvars(
            referral_id=str(event.referral_id), agency_id=event.agency_id, message_id=message_id_of(msg)
        ):
            outcome = await notifications.notify(
                event,
                notification_id=message_id_of(msg),
                round_=int(str(headers.get(ROUND_HEADER, 0))),
                attempts_so_far=int(str(headers.get(ATTEMPTS_HEADER, 0))),
            )
            if isinstance(outcome, RetryLater):
                wait_queue = topology.notifier_waits[outcome.round - 1]
                await republish(
                    publisher,
                    raw(msg),
                    queue=wait_queue.name,
                    headers={ROUND_HEADER: outcome.round, ATTEMPTS_HEADER: outcome.attempts},
                )

    return router
