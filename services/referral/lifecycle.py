"""The referral state machine (DESIGN.md, "Referral lifecycle"): which moves are allowed. Pure domain."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from shared.errors import IllegalTransitionError


class Status(StrEnum):
    REQUESTED = "requested"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REFERRED_ONWARD = "referred_onward"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ENTERED_IN_ERROR = "entered_in_error"


_OPEN_BEFORE_ACK = frozenset({Status.REQUESTED, Status.DELIVERED, Status.FAILED})

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.REQUESTED: frozenset({Status.DELIVERED, Status.ACKNOWLEDGED, Status.FAILED, Status.CANCELLED}),
    # A channel that failed may still deliver later (an operator replay), or the agency may take it anyway.
    Status.FAILED: frozenset({Status.DELIVERED, Status.ACKNOWLEDGED, Status.CANCELLED}),
    Status.DELIVERED: frozenset({Status.ACKNOWLEDGED, Status.CANCELLED}),
    Status.ACKNOWLEDGED: frozenset({Status.ACCEPTED, Status.DECLINED, Status.REFERRED_ONWARD, Status.CANCELLED}),
    Status.ACCEPTED: frozenset({Status.IN_PROGRESS, Status.ON_HOLD, Status.COMPLETED, Status.CANCELLED}),
    Status.IN_PROGRESS: frozenset({Status.ON_HOLD, Status.COMPLETED, Status.CANCELLED}),
    Status.ON_HOLD: frozenset({Status.IN_PROGRESS, Status.COMPLETED, Status.CANCELLED}),
    Status.DECLINED: frozenset(),
    Status.REFERRED_ONWARD: frozenset(),
    Status.COMPLETED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.ENTERED_IN_ERROR: frozenset(),
}


def move(referral_id: UUID, current: Status, requested: Status) -> Status:
    """The new status, or ``IllegalTransitionError`` naming both states."""
    if requested is Status.ENTERED_IN_ERROR and current is not Status.ENTERED_IN_ERROR:
        return requested
    if requested not in ALLOWED[current]:
        raise IllegalTransitionError(referral_id, current.value, requested.value)
    return requested


def after_delivery_report(current: Status, *, delivered: bool) -> Status | None:
    """A delivery report moves only a referral still waiting for one; a late report (the agency already
    acknowledged from its inbox) is recorded on the timeline and moves nothing back."""
    if current not in _OPEN_BEFORE_ACK:
        return None
    target = Status.DELIVERED if delivered else Status.FAILED
    if current is target or (current is Status.DELIVERED and not delivered):
        return None
    return target
