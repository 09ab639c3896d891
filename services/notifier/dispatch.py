"""Notifying people of a referral event: fan out one notification per (recipient, channel), then deliver each,
retry it later from a wait queue, fall back to the recipient's next channel, or give up and say so."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import structlog

from services.notifier.channels import (
    Channel,
    CircuitOpenError,
    Outgoing,
    PermanentChannelError,
    TransientChannelError,
)
from services.notifier.messages import Event, Notification
from services.notifier.metrics import NotifierMetrics, Outcome
from services.notifier.recipients import recipients_for
from services.notifier.store import ENDED, NotificationStore, Record, Status
from services.notifier.templates import Reader, api_link, email_message, reader_for, short_message, webhook_payload
from shared.broker import Envelope, MessagePublisher
from shared.clock import utcnow
from shared.contracts.base import Priority
from shared.contracts.referrals import (
    ReferralCancelled,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralEscalated,
    ReferralIssued,
    ReferralTaken,
)
from shared.directory import Directory
from shared.ids import derived_id
from shared.links import LinkClaim, LinkSigner
from shared.topology import EVENTS

log = structlog.get_logger(__name__)

URGENT_ROUNDS = 2
"""Wait rounds (30 s and 2 min by default) an urgent notification spends on a channel before the next one."""


@dataclass(frozen=True)
class Onward:
    """Where the message being handled goes next, besides being acked."""

    wait: Callable[[int, int], Awaitable[None]]
    """``wait(step, round)``: republish it to wait queue ``step`` (0-based) carrying ``round``."""
    park: Callable[[str], Awaitable[None]]
    """Into the dead-letter queue with its reason: every channel of the recipient is spent."""


def envelope_of(note: Notification, *, queue: str) -> Envelope:
    """``note`` as a message to one of the notifier's queues, under its notification id."""
    return Envelope.of(
        note,
        exchange="",
        routing_key=queue,
        message_id=note.notification_id,
        correlation_id=str(note.event.case_id),
        causation_id=note.event_id,
    )


def _event_time(event: Event) -> datetime:
    if isinstance(event, ReferralIssued):
        return event.amended_at or event.issued_at
    if isinstance(event, ReferralEscalated):
        return event.escalated_at
    return event.cancelled_at


class _Renewal:
    """Runs ``renew()`` every ``every`` seconds until stopped: a timer, not a task, because nearly every claim ends
    long before its first renewal is due. Each run is a task of its own, held until it ends (the loop holds tasks
    only weakly) by the class, since a run may outlive its renewal."""

    _running: ClassVar[set[asyncio.Future[None]]] = set()

    def __init__(self, renew: Callable[[], Awaitable[None]], every: float) -> None:
        self._renew = renew
        self._every = every
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(every, self._due)
        self._run: asyncio.Future[None] | None = None

    def _due(self) -> None:
        # One run at a time: a run still waiting for the database could otherwise be written after a later one,
        # and shorten the claim to its earlier end.
        if self._run is None or self._run.done():
            self._run = asyncio.ensure_future(self._renew())
            self._running.add(self._run)
            self._run.add_done_callback(self._running.discard)
        self._timer = self._loop.call_later(self._every, self._due)

    def stop(self) -> None:
        """No renewal after this; one already running finishes (it changes nothing once the claim has ended)."""
        self._timer.cancel()


class Notifier:
    def __init__(
        self,
        directory: Callable[[], Directory],
        channels: Sequence[Channel],
        publisher: MessagePublisher,
        store: NotificationStore,
        links: LinkSigner,
        *,
        notifications_queue: str,
        referral_url: str,
        link_ttl: timedelta,
        retry_rounds: int,
        metrics: NotifierMetrics,
        lease: timedelta,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._directory = directory
        self._channels = {kind: channel for channel in channels for kind in channel.kinds}
        self._publisher = publisher
        self._store = store
        self._links = links
        self._queue = notifications_queue
        self._referral_url = referral_url
        self._link_ttl = link_ttl
        self._retry_rounds = retry_rounds
        self._metrics = metrics
        self._clock = clock or utcnow
        self._lease = lease

    async def fan_out(self, event: Event, *, event_id: str, onward_for: Callable[[Notification], Onward]) -> None:
        """One notification per recipient, each on its first channel, decided now and sent from here: a hop through
        the notifier's own queue less for nearly every notification. ``onward_for(note)`` is where a notification
        goes when it must wait or be parked. A redelivered event makes the same notification ids, and the store
        lets only one copy of each send."""
        now = self._clock()
        if isinstance(event, ReferralCancelled):
            await self._store.settle(event.referral_id, "cancelled", now)
        fanout = recipients_for(event, self._directory(), now)
        if not fanout.recipients:
            await self._nobody_to_notify(event, event_id)
            return
        notes = [
            Notification.first(event_id, event, recipient, nobody_on_duty=fanout.nobody_on_duty)
            for recipient in fanout.recipients
        ]
        log.info("notifications_fanned_out", count=len(notes), nobody_on_duty=fanout.nobody_on_duty)
        tries = (self._first_try(note, onward_for(note)) for note in notes)
        outcomes = await asyncio.gather(*tries, return_exceptions=True)
        # Every note has been sent, handed on or failed by now: the event is redelivered only for one that failed.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _first_try(self, note: Notification, onward: Onward) -> None:
        """Where the store or the broker fails the first try, the notifier's own queue takes the notification, and
        its copy goes on from what the store recorded."""
        try:
            await self.deliver(note, round_=0, onward=onward)
        except Exception as exc:
            log.warning("notification_handed_to_queue", error=type(exc).__name__)
            await self._enqueue(note)

    async def settle(self, taken: ReferralTaken) -> None:
        """Someone took the referral: every reminder still pending or waiting in a wait queue is dropped."""
        await self._store.settle(taken.referral_id, taken.status, self._clock())

    async def deliver(self, note: Notification, *, round_: int, onward: Onward, replay: bool = False) -> None:
        """Sends ``note`` on its channel if this copy claims it; waits and retries after a transient failure, moves
        to the recipient's next channel, or gives up and parks it."""
        now = self._clock()
        claim = await self._store.claim(note, now, round_=round_, lease=self._lease, replay=replay)
        record = claim.record
        if not claim.claimed:
            await self._unclaimed(note, record, round_=round_, onward=onward)
            return
        # The claim is extended until what follows it is recorded, not only while the send lasts: a report's
        # publish or the store's write may outlast the short lease too, and a copy must not send meanwhile.
        renewal = _Renewal(lambda: self._extend_claim(note.notification_id, round_), self._lease.total_seconds() / 3)
        try:
            await self._claimed(note, record, round_=round_, onward=onward, now=now)
        finally:
            renewal.stop()

    async def _claimed(self, note: Notification, record: Record, *, round_: int, onward: Onward, now: datetime) -> None:
        """This copy holds the claim: sends ``note``, then records and reports how that went."""
        if note.moot_once(record.referral_status):
            await self._store.end(note.notification_id, now, status=Status.DROPPED, attempts=record.attempts)
            log.info("notification_dropped_referral_taken", recipient=note.recipient.id)
            return
        kind = note.address.kind
        try:
            attempts = await self._channels[kind].deliver(self._outgoing(note))
        except TransientChannelError as exc:
            self._metrics.sent(kind, Outcome.CIRCUIT_OPEN if isinstance(exc, CircuitOpenError) else Outcome.TRANSIENT)
            total = record.attempts + exc.attempts
            if round_ < self._rounds_before_next_channel(note, exc):
                # Published before the record says so: if the store fails now, the claim lapses and a copy sends.
                await onward.wait(round_, round_ + 1)
                await self._store.wait(note.notification_id, now, attempts=total, round_=round_ + 1)
                log.warning("notification_retry_later", channel=kind, reason=exc.reason, attempt=round_ + 1)
                return
            spent = "circuit open, next channel" if isinstance(exc, CircuitOpenError) else "retry schedule spent"
            why = f"{kind}: {spent} after {total} attempts: {exc.reason}"
            await self._give_up(note, (*note.history, why), total, onward)
            return
        except PermanentChannelError as exc:
            self._metrics.sent(kind, Outcome.PERMANENT)
            total = record.attempts + exc.attempts
            await self._give_up(note, (*note.history, f"{kind}: {exc.reason}"), total, onward)
            return
        except OSError:
            raise  # the network or the machine, not the notification: the caller's infrastructure handling waits
        except Exception as exc:
            # A defect, not a channel's answer (a key that will not sign, a template that fails): it would fail the
            # same way at every try, so the recipient's next channel is tried, and operators see why.
            log.exception("notification_could_not_be_sent", channel=kind)
            self._metrics.sent(kind, Outcome.PERMANENT)
            why = f"{kind}: could not be sent: {type(exc).__name__}"
            await self._give_up(note, (*note.history, why), record.attempts, onward)
            return
        self._metrics.sent(kind, Outcome.DELIVERED)
        total = record.attempts + attempts
        try:
            await self._delivered(note, note.earlier_attempts + total)
        except Exception:
            # Recorded as sent but not reported: the next copy publishes the report again, never the send.
            await self._store.end(note.notification_id, now, status=Status.SENT, attempts=total)
            raise
        # One write for the end and the report (a crash between them costs a resend under the same notification id,
        # which receivers drop, and a report under the same message id, which the referral service drops).
        await self._store.end(note.notification_id, now, status=Status.SENT, attempts=total, reported=True)

    async def _extend_claim(self, notification_id: str, round_: int) -> None:
        try:
            await self._store.extend_claim(notification_id, round_=round_, until=self._clock() + self._lease)
        except Exception as exc:
            # The claim may lapse mid-send: at worst another copy sends again under the same notification id.
            log.warning("notification_claim_not_extended", error=type(exc).__name__)

    def _rounds_before_next_channel(self, note: Notification, error: TransientChannelError) -> int:
        """The whole schedule on a recipient's last channel. With another channel to try, none while this one's
        circuit is open (the channel is down for everyone), and only the first steps for an urgent referral:
        a child's one-hour deadline must not wait hours on a dead gateway while email works."""
        if note.channel + 1 >= len(note.recipient.channels):
            return self._retry_rounds
        if isinstance(error, CircuitOpenError):
            return 0
        if getattr(note.event, "priority", None) is Priority.URGENT:
            return min(URGENT_ROUNDS, self._retry_rounds)
        return self._retry_rounds

    async def _unclaimed(self, note: Notification, record: Record, *, round_: int, onward: Onward) -> None:
        """Another copy holds it, held it, or ended it."""
        if record.status in ENDED:
            if not record.reported:
                await self._follow_up(note, record, onward)
            log.info("notification_copy_dropped", status=record.status.value)
        elif record.round > round_:
            log.info("notification_stale_copy_dropped", round=round_, current=record.round)
        else:
            # Its holder may still crash: this copy comes back after the first wait instead of being dropped.
            await onward.wait(0, round_)
            log.info("notification_copy_delayed", status=record.status.value)

    async def _follow_up(self, note: Notification, record: Record, onward: Onward) -> None:
        """Publishes again what should have followed an end its holder recorded but never saw confirmed."""
        if record.status is Status.SENT:
            await self._delivered(note, note.earlier_attempts + record.attempts)
        elif record.status is Status.FAILED:
            await self._after_failure(note, record.history, record.attempts, onward)
        await self._store.reported(note.notification_id)

    async def _give_up(self, note: Notification, history: tuple[str, ...], attempts: int, onward: Onward) -> None:
        await self._store.end(
            note.notification_id, self._clock(), status=Status.FAILED, attempts=attempts, history=history
        )
        await self._after_failure(note, history, attempts, onward)
        await self._store.reported(note.notification_id)

    async def _after_failure(self, note: Notification, history: tuple[str, ...], attempts: int, onward: Onward) -> None:
        """The recipient's next channel, or, with none left, the failure reported and the message parked."""
        everything = note.earlier_attempts + attempts
        following = note.next_channel(history=history, attempts=everything)
        if following is not None:
            await self._enqueue(following)
            log.warning("notification_next_channel", channel=following.address.kind, reason=history[-1])
        else:
            await self._failed(note, history, everything)
            await onward.park("; ".join(history))

    def _outgoing(self, note: Notification) -> Outgoing:
        directory = self._directory()
        address, event = note.address, note.event
        reader = self._reader(note, directory)
        if address.kind == "webhook":
            agency = directory.agency(address.to)
            if agency is None or agency.webhook is None:
                raise PermanentChannelError("webhook no longer in the directory", attempts=0)
            payload = webhook_payload(event, directory, reader, own=agency.id == event.agency_id)
            return Outgoing(
                note.notification_id,
                "webhook",
                str(agency.webhook.url),
                text=payload["text"],
                payload=payload,
                secret=agency.webhook.secret,
            )
        if address.kind == "email":
            subject, body = email_message(event, directory, reader)
            return Outgoing(note.notification_id, "email", address.to, text=body, subject=subject)
        return Outgoing(note.notification_id, address.kind, address.to, text=short_message(event, directory, reader))

    def _reader(self, note: Notification, directory: Directory) -> Reader:
        """An officer of the referral's agency gets the one-click link (and, by SMS or WhatsApp, the code to text
        back) while there is something to acknowledge; an agency system gets the API link."""
        recipient, event = note.recipient, note.event
        if recipient.role == "system":
            return reader_for(directory, recipient.agency_id, api_link(self._referral_url, event))
        if recipient.officer_id is None or isinstance(event, ReferralCancelled):
            return reader_for(directory, recipient.agency_id)
        assert recipient.agency_id is not None  # an officer belongs to an agency
        token = self._links.issue(
            LinkClaim(
                token_id=note.notification_id,
                referral_id=event.referral_id,
                agency_id=recipient.agency_id,
                officer_id=recipient.officer_id,
                # From the event, not the send: a resend carries the very same link.
                expires_at=_event_time(event) + self._link_ttl,
            )
        )
        link = f"{self._referral_url.rstrip('/')}/o/{token}"
        reply_code = event.ack_code if note.address.kind in ("sms", "whatsapp") else None
        return reader_for(directory, recipient.agency_id, link, reply_code)

    async def _enqueue(self, note: Notification) -> None:
        await self._publisher.publish(envelope_of(note, queue=self._queue))

    async def _delivered(self, note: Notification, attempts: int) -> None:
        event = note.event
        delivered = ReferralDelivered(
            referral_id=event.referral_id,
            case_id=event.case_id,
            agency_id=event.agency_id,
            channel=note.address.kind,
            notification_id=note.notification_id,
            attempts=attempts,
            delivered_at=self._clock(),
            recipient=note.recipient.id,
            level=note.level,
            nobody_on_duty=note.nobody_on_duty,
        )
        await self._report(event, delivered, "delivered", note.notification_id)
        log.info("notification_delivered", channel=note.address.kind, recipient=note.recipient.id, attempts=attempts)

    async def _failed(self, note: Notification, history: tuple[str, ...], attempts: int) -> None:
        event = note.event
        failed = ReferralDeliveryFailed(
            referral_id=event.referral_id,
            case_id=event.case_id,
            agency_id=event.agency_id,
            channel=note.address.kind,
            notification_id=note.notification_id,
            attempts=max(attempts, 1),
            reason="; ".join(history),
            failed_at=self._clock(),
            recipient=note.recipient.id,
            level=note.level,
            history=history,
        )
        await self._report(event, failed, "delivery_failed", note.notification_id)
        self._metrics.failed(note.address.kind)
        log.warning("notification_failed", recipient=note.recipient.id, history=list(history))

    async def failed_for_good(self, note: Notification, reason: str) -> None:
        """Reports ``note`` failed for a reason outside its channels (it is about to be parked): nothing fails
        silently."""
        await self._failed(note, (*note.history, reason), note.earlier_attempts)

    async def _nobody_to_notify(self, event: Event, event_id: str) -> None:
        """Nothing fails silently: an event nobody can be told of is reported failed (the directory lost the
        agency, or has no coordinator)."""
        if isinstance(event, ReferralCancelled):
            log.warning("cancellation_nobody_to_tell")
            return
        level = event.level if isinstance(event, ReferralEscalated) else 0
        reason = "nobody to notify: no recipient in the directory"
        failed = ReferralDeliveryFailed(
            referral_id=event.referral_id,
            case_id=event.case_id,
            agency_id=event.agency_id,
            channel="none",
            notification_id=derived_id(event_id, "notify:nobody"),
            attempts=1,
            reason=reason,
            failed_at=self._clock(),
            recipient="nobody",
            level=level,
            history=(reason,),
        )
        await self._report(event, failed, "delivery_failed", failed.notification_id)
        self._metrics.failed(failed.channel)
        log.warning("notification_nobody_to_notify", escalation_level=level)

    async def _report(
        self,
        event: Event,
        report: ReferralDelivered | ReferralDeliveryFailed,
        outcome: str,
        notification_id: str,
    ) -> None:
        """``referral.<agency>.delivered|delivery_failed``, one per notification whatever the redeliveries."""
        await self._publisher.publish(
            Envelope.of(
                report,
                exchange=EVENTS,
                routing_key=f"referral.{event.agency_id}.{outcome}",
                message_id=derived_id(notification_id, outcome),
                correlation_id=str(event.case_id),
                causation_id=notification_id,
            )
        )
