"""Notifying an agency of a referral: deliver now, retry later from a wait queue, or give up and say so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from services.notifier.channels import PermanentChannelError, TransientChannelError, WebhookChannel
from services.notifier.templates import cancellation_notification, referral_notification
from shared.broker import Envelope, MessagePublisher
from shared.contracts.referrals import ReferralCancelled, ReferralDelivered, ReferralDeliveryFailed, ReferralIssued
from shared.directory import Directory
from shared.ids import derived_id
from shared.topology import EVENTS

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryLater:
    """Transient failure after the in-process retries: wait ``round`` of the schedule, then try again."""

    round: int
    attempts: int


@dataclass(frozen=True)
class Done:
    pass


class Notifications:
    def __init__(
        self,
        directory: Callable[[], Directory],
        channel: WebhookChannel,
        publisher: MessagePublisher,
        *,
        referral_url: str,
        retry_rounds: int,
    ) -> None:
        self._directory = directory
        self._channel = channel
        self._publisher = publisher
        self._referral_url = referral_url
        self._retry_rounds = retry_rounds

    async def notify(
        self, event: ReferralIssued | ReferralCancelled, *, notification_id: str, round_: int, attempts_so_far: int
    ) -> RetryLater | Done:
        """``notification_id`` is the issued message's id: the same for every retry and redelivery."""
        directory = self._directory()
        agency = directory.agency(event.agency_id)
        if agency is None or agency.webhook is None:
            await self._failed(event, notification_id, attempts_so_far, "agency has no webhook in the directory")
            return Done()
        payload = (
            referral_notification(event, directory, self._referral_url)
            if isinstance(event, ReferralIssued)
            else cancellation_notification(event, directory)
        )
        try:
            attempts = await self._channel.deliver(agency.webhook, notification_id=notification_id, payload=payload)
        except TransientChannelError as exc:
            attempts = attempts_so_far + exc.attempts
            if round_ < self._retry_rounds:
                log.warning("notification_retry_later", reason=exc.reason, attempt=round_ + 1)
                return RetryLater(round=round_ + 1, attempts=attempts)
            await self._failed(event, notification_id, attempts, f"retry schedule spent: {exc.reason}")
            return Done()
        except PermanentChannelError as exc:
            await self._failed(event, notification_id, attempts_so_far + exc.attempts, exc.reason)
            return Done()
        delivered = ReferralDelivered(
            referral_id=event.referral_id,
            case_id=event.case_id,
            agency_id=event.agency_id,
            channel=self._channel.name,
            notification_id=notification_id,
            attempts=attempts_so_far + attempts,
            delivered_at=datetime.now(UTC),
        )
        await self._report(event, delivered, "delivered", notification_id)
        log.info("notification_delivered", attempts=delivered.attempts, channel=self._channel.name)
        return Done()

    async def _failed(
        self, event: ReferralIssued | ReferralCancelled, notification_id: str, attempts: int, reason: str
    ) -> None:
        failed = ReferralDeliveryFailed(
            referral_id=event.referral_id,
            case_id=event.case_id,
            agency_id=event.agency_id,
            channel=self._channel.name,
            notification_id=notification_id,
            attempts=max(attempts, 1),
            reason=reason,
            failed_at=datetime.now(UTC),
        )
        await self._report(event, failed, "delivery_failed", notification_id)
        log.warning("notification_failed", reason=reason, attempts=failed.attempts)

    async def _report(
        self,
        event: ReferralIssued | ReferralCancelled,
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
