"""Operator actions on dead letters, on the referral service's tamper-evident audit trail."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from services.referral.audit import AuditEntry
from services.referral.ledger import Ledger, LedgerTx

NO_CASE = UUID(int=0)
"""The case id of an action on a message that names no case (its correlation id is not a case id)."""


class DeadLetterAction(StrEnum):
    REPLAYED = "dlq_replayed"
    DISCARDED = "dlq_discarded"
    ERASED = "dlq_erased"
    """A refused submission removed: it held the identity of a case whose identity was erased."""
    IDENTITY_REMOVED = "dlq_identity_removed"
    """A case event kept, its identity and note taken out, after its case's identity was erased."""


def _case_of(correlation_id: str | None) -> UUID:
    try:
        return UUID(correlation_id) if correlation_id else NO_CASE
    except ValueError:
        return NO_CASE


async def record_dead_letter_action(
    ledger: Ledger,
    *,
    at: datetime,
    operator: str,
    action: DeadLetterAction,
    queue: str,
    message_id: str,
    correlation_id: str | None,
    note: str | None,
) -> None:
    """Appends one entry to the audit chain. The trail's entries are shaped for identity reads; an operator's
    action fills them as: actor = the operator's id, case = the message's case (its correlation id) where it
    has one, and ``fields`` = the queue, the message id and the note, so all three are covered by the chain's
    hash like any other field."""
    fields = (f"queue:{queue}", f"message_id:{message_id}", *((f"note:{note}",) if note else ()))
    entry = AuditEntry(at=at, actor=operator, action=action.value, case_id=_case_of(correlation_id), fields=fields)
    await ledger.run(LedgerTx.append_audit, [entry])
