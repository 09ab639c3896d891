"""AMQP entrypoints of the notifier: referral events fan out into notifications; each notification is sent,
retried from a wait queue, moved to the recipient's next channel, or parked with its history."""

from __future__ import annotations

import structlog
from faststream.rabbit import RabbitRouter
from faststream.rabbit.annotations import RabbitMessage

from services.notifier.dispatch import Notifier, RetryLater
from services.notifier.messages import Notification
from shared.broker import MessagePublisher, consumer_channel
from shared.consuming import DeadLetters, decode, message_id_of, raw, republish
from shared.contracts.referrals import ReferralCancelled, ReferralEscalated, ReferralIssued, ReferralTaken
from shared.settings import Settings
from shared.topology import Topology

ROUND_HEADER = "x-rujukan-retry-round"


def build_router(
    notifier: Notifier,
    publisher: MessagePublisher,
    dead_letters: DeadLetters,
    topology: Topology,
    settings: Settings,
) -> RabbitRouter:
    router = RabbitRouter()
    notifications = topology.notifier_notifications.name

    @router.subscriber(topology.notifier_referrals, channel=consumer_channel(settings))
    async def on_referral_event(msg: RabbitMessage) -> None:
        """``referral.<agency>.issued|escalated|cancelled``: who to tell, decided now; ``.taken``: stop reminding."""
        with structlog.contextvars.bound_contextvars(message_id=message_id_of(msg)):
            if raw(msg).type == ReferralTaken.TYPE:
                taken = decode(msg, ReferralTaken)
                with structlog.contextvars.bound_contextvars(referral_id=str(taken.referral_id)):
                    await notifier.settle(taken)
                return
            event = decode(msg, ReferralIssued, ReferralEscalated, ReferralCancelled)
            with structlog.contextvars.bound_contextvars(referral_id=str(event.referral_id), agency_id=event.agency_id):
                await notifier.fan_out(event, event_id=message_id_of(msg))

    @router.subscriber(topology.notifier_notifications, channel=consumer_channel(settings))
    async def on_notification(msg: RabbitMessage) -> None:
        """Send one notification; after a transient failure park it in the next wait queue, then ack."""
        note = decode(msg, Notification)
        message = raw(msg)

        async def park(reason: str) -> None:
            await dead_letters.send(message, queue=notifications, reason=reason)

        with structlog.contextvars.bound_contextvars(
            referral_id=str(note.event.referral_id), agency_id=note.event.agency_id, message_id=message_id_of(msg)
        ):
            outcome = await notifier.deliver(
                note, round_=int(str((message.headers or {}).get(ROUND_HEADER, 0))), park=park
            )
            if isinstance(outcome, RetryLater):
                wait_queue = topology.notifier_waits[outcome.round - 1]
                await republish(publisher, message, queue=wait_queue.name, headers={ROUND_HEADER: outcome.round})

    return router
