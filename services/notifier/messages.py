"""The notifier's own message on ``notifier.notifications``: one notification of one event, to one recipient,
on one of the recipient's channels. Published and consumed by the notifier only."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from shared.contracts.base import AgencyId, Contract
from shared.contracts.referrals import DeadlineKind, ReferralCancelled, ReferralEscalated, ReferralIssued
from shared.ids import derived_id

ChannelKind = Literal["webhook", "email", "sms", "whatsapp"]
Event = ReferralIssued | ReferralEscalated | ReferralCancelled

SYSTEM = "agency"
ACKNOWLEDGED = "acknowledged"
"""The status a ``referral.<agency>.taken`` carries when an officer took the referral but nobody decided yet."""
"""The recipient id of the referral's own agency system (its webhook, then its desk's email)."""


class Address(Contract):
    kind: ChannelKind
    to: str = Field(description="For a webhook the agency whose system it is; else the email address or phone.")


class Recipient(Contract):
    role: Literal["system", "officer", "contact"]
    id: str = Field(
        description="``agency`` (the referral's agency system), an officer id of that agency, ``<agency>`` or "
        "``<agency>/<officer>`` for another agency, or the coordinator's id."
    )
    agency_id: AgencyId | None = Field(
        description="Whose system or roster (language, time zone); None for the coordinator."
    )
    officer_id: str | None = Field(
        default=None, description="Set for officers of the referral's own agency: they get the one-click link."
    )
    channels: tuple[Address, ...] = Field(min_length=1, description="Tried in this order.")


def notification_id_for(event_id: str, recipient: Recipient, address: Address) -> str:
    """One id for life per (event, recipient, channel): a redelivered fan-out and a resend carry the same."""
    return derived_id(event_id, f"notify:{recipient.id}:{address.kind}:{address.to}")


class Notification(Contract):
    TYPE: ClassVar[str] = "notifier.notification.v1"

    notification_id: str
    event_id: str = Field(description="The message id of the referral event this notification tells of.")
    event: Event
    recipient: Recipient
    channel: int = Field(default=0, ge=0, description="Index of the channel this notification uses.")
    nobody_on_duty: bool = False
    earlier_attempts: int = Field(default=0, ge=0, description="Attempts spent on the recipient's earlier channels.")
    history: tuple[str, ...] = Field(default=(), description="Why each earlier channel failed.")

    @model_validator(mode="after")
    def _channel_is_the_recipients(self) -> Notification:
        # Refused with the message, so that it is dead-lettered at once with this reason, not retried to the limit.
        if self.channel >= len(self.recipient.channels):
            raise ValueError(f"channel {self.channel} is not one of the recipient's {len(self.recipient.channels)}")
        return self

    @classmethod
    def first(cls, event_id: str, event: Event, recipient: Recipient, *, nobody_on_duty: bool) -> Notification:
        return cls(
            notification_id=notification_id_for(event_id, recipient, recipient.channels[0]),
            event_id=event_id,
            event=event,
            recipient=recipient,
            nobody_on_duty=nobody_on_duty,
        )

    @property
    def address(self) -> Address:
        return self.recipient.channels[self.channel]

    @property
    def level(self) -> int:
        return self.event.level if isinstance(self.event, ReferralEscalated) else 0

    def moot_once(self, referral_status: str | None) -> bool:
        """Whether the referral, as far as it got, makes this notification pointless. The referral itself and an
        acknowledgement escalation ask for an acknowledgement: any word from the agency settles them. An
        acceptance escalation asks for a decision: an acknowledgement alone does not. A cancellation, and victims
        added to a referral already taken, are news."""
        if referral_status is None or isinstance(self.event, ReferralCancelled):
            return False
        if isinstance(self.event, ReferralIssued) and self.event.amended_at is not None:
            return False
        if isinstance(self.event, ReferralEscalated) and self.event.deadline is DeadlineKind.ACCEPT:
            return referral_status != ACKNOWLEDGED
        return True

    def next_channel(self, *, history: tuple[str, ...], attempts: int) -> Notification | None:
        """The recipient's next channel, a notification of its own (its own id), or None when all are spent."""
        following = self.channel + 1
        if following >= len(self.recipient.channels):
            return None
        address = self.recipient.channels[following]
        return self.model_copy(
            update={
                "notification_id": notification_id_for(self.event_id, self.recipient, address),
                "channel": following,
                "earlier_attempts": attempts,
                "history": history,
            }
        )
