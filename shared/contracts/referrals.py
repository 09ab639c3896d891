"""Referrals between the services and the agencies, and receipts back to the reporting agency."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from shared.contracts.base import AgencyId, Contract, Priority, RegencyCode
from shared.contracts.cases import ExploitationType, VictimFacts

ACK_CODE_DIGITS = 6
"""The digits of a new SMS acknowledgement code."""
# Four digits were given before six: a referral issued then keeps its code, answerable for a week after its issue.
AckCode = Annotated[str, StringConstraints(pattern=r"^(?:[0-9]{6}|[0-9]{4})$")]


class ReferralReason(Contract):
    """A routing rule that fired, and the victims it concerns."""

    rule_id: str
    description: str
    victim_refs: tuple[str, ...]


class ReferralIssued(Contract):
    """A case is referred to one agency; published by referral on ``referral.<agency>.issued``.

    Carries victim references and non-identifying facts only; identity is read through the API.
    """

    TYPE: ClassVar[str] = "referral.issued.v1"

    referral_id: UUID
    case_id: UUID
    case_code: str
    agency_id: AgencyId
    reporting_agency: AgencyId
    regency_code: RegencyCode
    priority: Priority
    exploitation_types: tuple[ExploitationType, ...]
    victims: tuple[VictimFacts, ...] = Field(min_length=1)
    reasons: tuple[ReferralReason, ...] = Field(min_length=1)
    issued_at: AwareDatetime
    ack_due_at: AwareDatetime
    ack_code: AckCode | None = Field(
        default=None,
        description="Six digits a duty officer texts back (``TERIMA 482193``) to acknowledge (four on a referral issued"
        " before codes had six).",
    )
    amended_at: AwareDatetime | None = Field(
        default=None, description="Set when an amendment added victims to the referral: news even once it is taken."
    )


class DeadlineKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ACCEPT = "accept"


class ReferralEscalated(Contract):
    """A deadline passed with nobody acting: published by referral on ``referral.<agency>.escalated``, once per
    level. Level 1: the duty officer and the backup again; 2: the agency's supervisor; 3: the next institution
    up (``escalated_to``: the provincial unit, or ``None`` for the Gugus Tugas TPPO coordinator)."""

    TYPE: ClassVar[str] = "referral.escalated.v1"

    referral_id: UUID
    case_id: UUID
    case_code: str
    agency_id: AgencyId
    regency_code: RegencyCode
    priority: Priority
    victims: tuple[VictimFacts, ...] = Field(
        default=(), description="The leg's victims as the case now stands (an amendment may have removed them all)."
    )
    level: int = Field(ge=1, le=3)
    deadline: DeadlineKind
    due_at: AwareDatetime
    reason: str = Field(description="Why now: the deadline passed, nobody is on duty, or delivery failed.")
    escalated_to: AgencyId | None = None
    ack_code: AckCode | None = Field(
        default=None, description="Only while the referral still awaits acknowledgement (acknowledge deadline)."
    )
    escalated_at: AwareDatetime


class ReferralTaken(Contract):
    """A referral needs no more reminders: someone acknowledged it (or it was decided or closed). Published by
    referral on ``referral.<agency>.taken`` so the notifier drops every notification still pending for it."""

    TYPE: ClassVar[str] = "referral.taken.v1"

    referral_id: UUID
    case_id: UUID
    agency_id: AgencyId
    status: str
    taken_at: AwareDatetime


class ReferralCancelled(Contract):
    """A referral is no longer needed (its case was withdrawn); published by referral on
    ``referral.<agency>.cancelled`` and told to the agency like the referral itself."""

    TYPE: ClassVar[str] = "referral.cancelled.v1"

    referral_id: UUID
    case_id: UUID
    case_code: str
    agency_id: AgencyId
    regency_code: RegencyCode
    reason: str
    cancelled_at: AwareDatetime


class ReferralDelivered(Contract):
    """One notification of a referral (or of its escalation) reached its recipient; published by notifier."""

    TYPE: ClassVar[str] = "referral.delivered.v1"

    referral_id: UUID
    case_id: UUID
    agency_id: AgencyId
    channel: str
    notification_id: str = Field(description="Stable across retries of one notification (the webhook-id).")
    attempts: int = Field(ge=1)
    delivered_at: AwareDatetime
    recipient: str = Field(default="agency", description="``agency`` (its system) or the officer or contact id.")
    level: int = Field(default=0, ge=0, le=3, description="0 the referral itself, 1-3 an escalation.")
    nobody_on_duty: bool = Field(
        default=False, description="The agency's roster had no officer on duty: itself a reason to escalate."
    )


class ReferralDeliveryFailed(Contract):
    """A referral could not be delivered and retrying will not help; published by notifier."""

    TYPE: ClassVar[str] = "referral.delivery_failed.v1"

    referral_id: UUID
    case_id: UUID
    agency_id: AgencyId
    channel: str
    notification_id: str
    attempts: int = Field(ge=1)
    reason: str
    failed_at: AwareDatetime
    recipient: str = "agency"
    level: int = Field(default=0, ge=0, le=3)
    history: tuple[str, ...] = Field(default=(), description="Every channel tried, and why each failed.")


Officer = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(max_length=2000)]


class DeclineReason(StrEnum):
    NOT_IN_JURISDICTION = "not_in_jurisdiction"
    NOT_ELIGIBLE = "not_eligible"
    NO_CAPACITY = "no_capacity"
    DUPLICATE = "duplicate"
    OTHER = "other"


class Outcome(StrEnum):
    SUCCESSFUL = "successful"
    UNSUCCESSFUL = "unsuccessful"


def check_decline(reason: DeclineReason, note: str | None) -> None:
    """A decline for ``other`` must say why (over HTTP and AMQP alike)."""
    if reason is DeclineReason.OTHER and not (note and note.strip()):
        raise ValueError("a note is required when the reason is other")


class AgencyReply(Contract):
    """What a receiving agency's system says about its referral, on ``rujukan.replies`` as
    ``referral.<agency>.<event>``; ``agency_id`` is the agency speaking and must match the routing key."""

    EVENT: ClassVar[str]

    referral_id: UUID
    agency_id: AgencyId
    officer: Officer | None = None
    note: Note | None = None


class ReferralAcknowledged(AgencyReply):
    """A duty officer took the referral: the acknowledgement deadline is met."""

    TYPE: ClassVar[str] = "referral.acknowledged.v1"
    EVENT: ClassVar[str] = "acknowledged"

    acknowledged_at: AwareDatetime | None = Field(
        default=None, description="When the officer took it, as the agency's system saw it (kept as detail)."
    )


class ReferralAccepted(AgencyReply):
    """The agency commits to act on the referral."""

    TYPE: ClassVar[str] = "referral.accepted.v1"
    EVENT: ClassVar[str] = "accepted"


class ReferralDeclined(AgencyReply):
    """The agency declines, with a coded reason (a note is required for ``other``)."""

    TYPE: ClassVar[str] = "referral.declined.v1"
    EVENT: ClassVar[str] = "declined"

    reason: DeclineReason

    @model_validator(mode="after")
    def _note_for_other(self) -> ReferralDeclined:
        check_decline(self.reason, self.note)
        return self


class ReferralStarted(AgencyReply):
    """Service for the referred victims is under way."""

    TYPE: ClassVar[str] = "referral.started.v1"
    EVENT: ClassVar[str] = "started"


class ReferralHeld(AgencyReply):
    """Service is paused, e.g. repatriation held for the investigation."""

    TYPE: ClassVar[str] = "referral.held.v1"
    EVENT: ClassVar[str] = "held"

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ReferralResumed(AgencyReply):
    """Service resumes after a hold."""

    TYPE: ClassVar[str] = "referral.resumed.v1"
    EVENT: ClassVar[str] = "resumed"


class ReferralCompleted(AgencyReply):
    """The agency closed its referral with an outcome."""

    TYPE: ClassVar[str] = "referral.completed.v1"
    EVENT: ClassVar[str] = "completed"

    outcome: Outcome


class ReferralReferredOnward(AgencyReply):
    """Declined here but redirected to another agency, which gets a referral of its own."""

    TYPE: ClassVar[str] = "referral.referred_onward.v1"
    EVENT: ClassVar[str] = "referred_onward"

    to_agency_id: AgencyId


REPLIES: tuple[type[AgencyReply], ...] = (
    ReferralAcknowledged,
    ReferralAccepted,
    ReferralDeclined,
    ReferralStarted,
    ReferralHeld,
    ReferralResumed,
    ReferralCompleted,
    ReferralReferredOnward,
)


class ReceiptLeg(Contract):
    referral_id: UUID
    agency_id: AgencyId
    status: str


class CaseReceipt(Contract):
    """Tells a reporting agency what became of its report; published as ``case.<agency>.receipt``.

    ``referred``: the case was referred (one leg per agency); ``acknowledged``: one leg was taken by
    a duty officer; ``progress``: a leg moved on (accepted, declined, started, held, completed, referred
    onward: its new status is in ``legs``); ``rejected``: a report sent over AMQP could not be accepted,
    with the reason.
    """

    TYPE: ClassVar[str] = "case.receipt.v1"

    event: Literal["referred", "acknowledged", "progress", "rejected"]
    reporting_agency: AgencyId
    case_id: UUID | None = None
    case_code: str | None = None
    police_report_number: str | None = None
    legs: tuple[ReceiptLeg, ...] = ()
    reason: str | None = None
    source_message_id: str | None = Field(default=None, description="The message this receipt answers.")
    at: AwareDatetime
