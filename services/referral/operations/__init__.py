"""Operations: what operators see of the whole flow (queues, overdue referrals, dead letters, a case) and what
they may do about it (replay or discard a dead letter). No victim identity anywhere in here."""

from services.referral.operations.broker import ReplayRefusedError
from services.referral.operations.facade import NoteRequiredError, Operations, UnknownDeadLetterQueueError
from services.referral.operations.views import (
    AgencyFigures,
    CaseView,
    DeadLetter,
    LegView,
    OfficerOnDuty,
    OverdueReferral,
    Overview,
    QueueFigures,
    ServiceStatus,
    TimelineItem,
)

__all__ = [
    "AgencyFigures",
    "CaseView",
    "DeadLetter",
    "LegView",
    "NoteRequiredError",
    "OfficerOnDuty",
    "Operations",
    "OverdueReferral",
    "Overview",
    "QueueFigures",
    "ReplayRefusedError",
    "ServiceStatus",
    "TimelineItem",
    "UnknownDeadLetterQueueError",
]
