"""Message contracts, and the registry that maps an AMQP ``type`` to its model."""

from __future__ import annotations

from shared.contracts.base import Contract
from shared.contracts.cases import CaseAmended, CaseAmendment, CaseReport, CaseReported, CaseWithdrawal, CaseWithdrawn
from shared.contracts.referrals import (
    REPLIES,
    CaseReceipt,
    ReferralCancelled,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralIssued,
)

_ALL: tuple[type[Contract], ...] = (
    CaseReport,
    CaseAmendment,
    CaseReported,
    CaseAmended,
    CaseWithdrawal,
    CaseWithdrawn,
    ReferralIssued,
    ReferralCancelled,
    ReferralDelivered,
    ReferralDeliveryFailed,
    *REPLIES,
    CaseReceipt,
)
CONTRACTS: dict[str, type[Contract]] = {model.TYPE: model for model in _ALL}


def is_known_contract(message_type: str | None) -> bool:
    """A consumer never guesses at a contract (or a major version) it does not know."""
    return message_type in CONTRACTS
