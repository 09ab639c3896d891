"""Referrals between the services and the agencies, and receipts back to the reporting agency."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints

from shared.contracts.base import AgencyId, Contract, Priority, RegencyCode
from shared.contracts.cases import ExploitationType, VictimFacts


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
    issued_at: datetime
    ack_due_at: datetime


class ReferralDelivered(Contract):
    """An agency's channel confirmed receipt of a referral; published by notifier."""

    TYPE: ClassVar[str] = "referral.delivered.v1"

    referral_id: UUID
    case_id: UUID
    agency_id: AgencyId
    channel: str
    notification_id: str = Field(description="The webhook-id, stable across retries of one notification.")
    attempts: int = Field(ge=1)
    delivered_at: datetime


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
    failed_at: datetime


class ReferralAcknowledged(Contract):
    """A duty officer of the receiving agency took the referral; sent by the agency's system on
    ``rujukan.replies`` as ``referral.<agency>.acknowledged``."""

    TYPE: ClassVar[str] = "referral.acknowledged.v1"

    referral_id: UUID
    agency_id: AgencyId
    officer: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None
    acknowledged_at: AwareDatetime | None = None


class ReceiptLeg(Contract):
    referral_id: UUID
    agency_id: AgencyId
    status: str


class CaseReceipt(Contract):
    """Tells a reporting agency what became of its report; published as ``case.<agency>.receipt``.

    ``referred``: the case was referred (one leg per agency); ``acknowledged``: one leg was taken by
    a duty officer; ``rejected``: a report sent over AMQP could not be accepted, with the reason.
    """

    TYPE: ClassVar[str] = "case.receipt.v1"

    event: Literal["referred", "acknowledged", "rejected"]
    reporting_agency: AgencyId
    case_id: UUID | None = None
    case_code: str | None = None
    police_report_number: str | None = None
    legs: tuple[ReceiptLeg, ...] = ()
    reason: str | None = None
    source_message_id: str | None = Field(default=None, description="The message this receipt answers.")
    at: datetime
