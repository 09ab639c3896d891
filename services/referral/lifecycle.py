"""The referral state machine (DESIGN.md, "Referral lifecycle"): which moves are allowed. Pure domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from shared.contracts.referrals import DeadlineKind
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


class Reply(StrEnum):
    """What a receiving agency says about its referral: the last word of ``referral.<agency>.<reply>``."""

    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    STARTED = "started"
    HELD = "held"
    RESUMED = "resumed"
    COMPLETED = "completed"
    REFERRED_ONWARD = "referred_onward"


REPEATABLE_REPLIES = frozenset({Reply.HELD, Reply.RESUMED})
"""Replies a referral may get more than once: it may be put on hold and resumed any number of times."""

AWAITING_ACK = frozenset({Status.REQUESTED, Status.DELIVERED, Status.FAILED})
"""Nobody has taken the referral yet: the acknowledgement deadline runs."""
_BEFORE_DECISION = AWAITING_ACK | {Status.ACKNOWLEDGED}
_DECISIONS = frozenset({Status.ACCEPTED, Status.DECLINED, Status.REFERRED_ONWARD})

REPLY_MOVES: dict[Reply, tuple[frozenset[Status], Status]] = {
    Reply.ACKNOWLEDGED: (AWAITING_ACK, Status.ACKNOWLEDGED),
    # Deciding implies having taken it: an agency system may accept without acknowledging first.
    Reply.ACCEPTED: (_BEFORE_DECISION, Status.ACCEPTED),
    Reply.DECLINED: (_BEFORE_DECISION, Status.DECLINED),
    Reply.REFERRED_ONWARD: (_BEFORE_DECISION, Status.REFERRED_ONWARD),
    Reply.STARTED: (frozenset({Status.ACCEPTED}), Status.IN_PROGRESS),
    Reply.HELD: (frozenset({Status.ACCEPTED, Status.IN_PROGRESS}), Status.ON_HOLD),
    Reply.RESUMED: (frozenset({Status.ON_HOLD}), Status.IN_PROGRESS),
    Reply.COMPLETED: (frozenset({Status.ACCEPTED, Status.IN_PROGRESS, Status.ON_HOLD}), Status.COMPLETED),
}

ACCEPTED_STATES = frozenset({Status.ACCEPTED, Status.IN_PROGRESS, Status.ON_HOLD, Status.COMPLETED})
ACKNOWLEDGED_STATES = ACCEPTED_STATES | _DECISIONS | {Status.ACKNOWLEDGED}
CLOSED_LEGS = frozenset({Status.DECLINED, Status.REFERRED_ONWARD, Status.CANCELLED, Status.ENTERED_IN_ERROR})
"""Legs that no longer count towards a case being fully acknowledged or accepted."""
FINISHED_LEGS = CLOSED_LEGS | {Status.COMPLETED}
"""A case is closed when every leg is one of these: no agency will act on it again."""

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.REQUESTED: frozenset({Status.DELIVERED, Status.FAILED, Status.CANCELLED, Status.ACKNOWLEDGED} | _DECISIONS),
    # A channel that failed may still deliver later (an operator replay), or the agency may take it anyway.
    Status.FAILED: frozenset({Status.DELIVERED, Status.CANCELLED, Status.ACKNOWLEDGED} | _DECISIONS),
    Status.DELIVERED: frozenset({Status.CANCELLED, Status.ACKNOWLEDGED} | _DECISIONS),
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


def apply_reply(referral_id: UUID, current: Status, reply: Reply) -> Status:
    """The status an agency's reply moves the referral to, or ``IllegalTransitionError`` naming both."""
    allowed_from, target = REPLY_MOVES[reply]
    if current not in allowed_from:
        raise IllegalTransitionError(referral_id, current.value, target.value)
    return target


def after_delivery_report(current: Status, *, delivered: bool, level: int = 0) -> Status | None:
    """A delivery report moves only a referral still waiting for one; a late report (the agency already
    acknowledged from its inbox) is recorded on the timeline and moves nothing back. A report about an
    escalation (level 1-3) tells of a reminder, not of the referral itself, and moves nothing either."""
    if level > 0 or current not in AWAITING_ACK:
        return None
    target = Status.DELIVERED if delivered else Status.FAILED
    if current is target or (current is Status.DELIVERED and not delivered):
        return None
    return target


def deadline_met(kind: DeadlineKind, current: Status) -> bool:
    """Acknowledgement is met once the referral left the states awaiting it (taken, decided, or closed);
    acceptance once it was decided or closed. A met deadline never escalates."""
    return current not in (AWAITING_ACK if kind is DeadlineKind.ACKNOWLEDGE else _BEFORE_DECISION)


def deadlines_met_by(status: Status) -> frozenset[DeadlineKind]:
    """The deadlines a referral in ``status`` has met."""
    return frozenset(kind for kind in DeadlineKind if deadline_met(kind, status))


def overdue(kind: DeadlineKind, current: Status, due_at: datetime | None, now: datetime) -> bool:
    """The deadline passed and is still not met."""
    return due_at is not None and now > due_at and not deadline_met(kind, current)
