"""AMQP entrypoints of the notifier: referral events fan out into notifications; each notification is sent,
retried from a wait queue, moved to the recipient's next channel, or parked with its history."""

from __future__ import annotations

from typing import Any

import structlog
from aio_pika import IncomingMessage
from aiormq.exceptions import AMQPError
from faststream.rabbit import RabbitRouter
from faststream.rabbit.annotations import RabbitMessage
from sqlalchemy.exc import SQLAlchemyError

from services.notifier.dispatch import Notifier, Onward, envelope_of
from services.notifier.messages import Notification
from shared.broker import MessagePublisher, consumer_channel
from shared.consuming import REPLAY_HEADER, DeadLetters, decode, earlier_deliveries, message_id_of, raw, republish
from shared.contracts.referrals import ReferralCancelled, ReferralEscalated, ReferralIssued, ReferralTaken
from shared.errors import PermanentError
from shared.settings import Settings
from shared.topology import DELIVERY_LIMIT, Topology

ROUND_HEADER = "x-rujukan-retry-round"
REFERRAL_EVENTS = (ReferralIssued, ReferralEscalated, ReferralCancelled, ReferralTaken)
"""What the referral service publishes about a referral, on ``notifier.referrals``."""
INFRASTRUCTURE_ERRORS = (SQLAlchemyError, AMQPError, TimeoutError, ConnectionError)
log = structlog.get_logger(__name__)


def _last_delivery(message: IncomingMessage) -> bool:
    """Whether a failure now hands the message to the delivery-limit backstop (quorum queues count earlier
    deliveries in ``x-delivery-count``)."""
    return earlier_deliveries(message) + 1 >= DELIVERY_LIMIT


def _round_of(headers: dict[str, Any]) -> int:
    """The retry round a notification is in; one whose round is not a whole number did not come from here."""
    round_ = headers.get(ROUND_HEADER, 0)
    if not isinstance(round_, int) or isinstance(round_, bool) or round_ < 0:
        raise PermanentError(f"{ROUND_HEADER} is not a whole number")
    return round_


def build_router(
    notifier: Notifier,
    publisher: MessagePublisher,
    dead_letters: DeadLetters,
    topology: Topology,
    settings: Settings,
) -> RabbitRouter:
    router = RabbitRouter()
    notifications = topology.notifier_notifications.name

    def fresh_onward(note: Notification) -> Onward:
        """Where a notification sent straight from its event goes next: the same wait queues and dead-letter queue
        as one that came through the notifier's own queue."""

        async def wait(step: int, round_: int) -> None:
            queue = topology.notifier_waits[step].name
            await publisher.publish(envelope_of(note, queue=queue), headers={ROUND_HEADER: round_})

        async def park(reason: str) -> None:
            await dead_letters.send_new(envelope_of(note, queue=notifications), queue=notifications, reason=reason)

        return Onward(wait, park)

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
                await notifier.fan_out(event, event_id=message_id_of(msg), onward_for=fresh_onward)

    @router.subscriber(topology.notifier_notifications, channel=consumer_channel(settings))
    async def on_notification(msg: RabbitMessage) -> None:
        """Send one notification; after a transient failure it waits in a wait queue, then comes back."""
        note = decode(msg, Notification)
        message = raw(msg)
        headers = message.headers or {}
        replay = str(headers.get(REPLAY_HEADER, "")).lower() == "true"
        # A replayed dead letter starts the schedule afresh, whatever round it was parked in.
        round_ = 0 if replay else _round_of(headers)

        async def wait(step: int, round_: int, *, still_a_replay: bool = False) -> None:
            queue = topology.notifier_waits[step].name
            headers = {ROUND_HEADER: round_, REPLAY_HEADER: still_a_replay}
            await republish(publisher, message, queue=queue, headers=headers)

        async def park(reason: str) -> None:
            await dead_letters.send(message, queue=notifications, reason=reason)

        with structlog.contextvars.bound_contextvars(
            referral_id=str(note.event.referral_id), agency_id=note.event.agency_id, message_id=message_id_of(msg)
        ):
            try:
                try:
                    await notifier.deliver(note, round_=round_, onward=Onward(wait, park), replay=replay)
                except INFRASTRUCTURE_ERRORS as exc:
                    # The store or the broker failed us, not the channel: try again after the first wait, without
                    # spending a round (an immediate requeue would spin and then be parked by the delivery limit).
                    log.warning("notification_delayed_by_infrastructure", error=type(exc).__name__)
                    # A replay stays one: the store's failure may have rolled back its reset of the record, and
                    # without the mark its copy would take the record's end for its own and drop itself.
                    await wait(0, round_, still_a_replay=replay)
            except Exception as exc:
                if not isinstance(exc, PermanentError) and _last_delivery(message):
                    # The delivery-limit backstop parks it next: say so, with what is known, before it does.
                    await notifier.failed_for_good(note, f"gave up after repeated errors: {type(exc).__name__}")
                raise

    return router
