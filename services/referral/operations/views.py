"""What an operator sees: plain, frozen, JSON-ready views. None of them holds victim identity."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, computed_field

from shared.contracts.referrals import DeadlineKind


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


QueueSource = Literal["management", "passive"]
QueueKind = Literal["work", "wait", "dead", "agency"]


class QueueFigures(_View):
    name: str
    owner: str
    """The service that consumes it (``intake``, ``referral``, ``notifier``), or ``agency:<id>`` for an agency's."""
    kind: QueueKind
    messages: int | None
    """None when the queue is missing on the broker."""
    consumers: int | None
    publish_rate: float | None = None
    """Messages per second, from the management API only."""
    deliver_rate: float | None = None
    idle_since: datetime | None = None
    """From the management API: when the queue last saw traffic (None while busy, or when unknown: quorum queues
    never report it on RabbitMQ 3.10)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def needs_consumer(self) -> bool:
        """Service work queues must always be consumed; wait and dead-letter queues never are, and an agency
        queue is its agency's to consume."""
        return self.kind == "work"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stalled(self) -> bool:
        """A work queue with no consumer (or missing): nothing takes its messages."""
        return self.needs_consumer and not self.consumers


class ServiceStatus(_View):
    name: str
    consuming: bool
    """Every work queue it consumes has at least one consumer."""
    queues: tuple[str, ...]
    last_message_seen: datetime | None
    """The newest message it took that we know of (the referral ledger's inbox, or the management API); None when
    unknown, as for intake and the notifier when their quorum queues report no ``idle_since`` and deliver
    nothing at the moment."""


class AgencyFigures(_View):
    agency_id: str
    name: str
    by_status: dict[str, int]
    overdue: int
    median_ack_7d: timedelta | None
    """Median time from issue to acknowledgement of referrals acknowledged in the last 7 days."""
    median_ack_30d: timedelta | None


class Overview(_View):
    at: datetime
    source: QueueSource
    """Where the queue figures came from: the management API, or passive declares (depth and consumers only)."""
    queues: tuple[QueueFigures, ...]
    services: tuple[ServiceStatus, ...]
    agencies: tuple[AgencyFigures, ...]

    @property
    def stalled_queues(self) -> tuple[QueueFigures, ...]:
        return tuple(queue for queue in self.queues if queue.stalled)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dead_letters(self) -> int:
        return sum(queue.messages or 0 for queue in self.queues if queue.kind == "dead")


class OfficerOnDuty(_View):
    id: str
    name: str


class OverdueReferral(_View):
    referral_id: UUID
    case_id: UUID
    case_code: str
    agency_id: str
    awaited: DeadlineKind
    """What the agency has not done yet: ``acknowledge`` or ``accept``."""
    status: str
    priority: str
    due_at: datetime
    late_by: timedelta
    escalation_level: int
    on_duty: tuple[OfficerOnDuty, ...]
    """The agency's officers on duty now (empty: nobody is, or the agency has no roster)."""


class DeadLetter(_View):
    """A message in a dead-letter queue, described without its body: a refused report's body is sealed, and
    any other body may hold what an operator has no business reading."""

    message_id: str
    dead_letter_queue: str
    queue: str
    """The work queue it died in: a replay goes back there and nowhere else."""
    reason: str
    attempts: int
    """How many times it went through its queue and died: 1, plus one for every replay before."""
    dead_at: datetime | None
    age: timedelta | None
    routing_key: str | None
    """The routing key it was first published with, where the broker recorded it."""
    message_type: str | None
    correlation_id: str | None
    content_type: str | None
    size: int
    sealed: bool


class TimelineItem(_View):
    at: datetime
    event: str
    referral_id: UUID | None
    actor: str
    detail: dict[str, object]


class LegView(_View):
    referral_id: UUID
    agency_id: str
    status: str
    priority: str
    ack_due_at: datetime
    acknowledged_at: datetime | None
    accept_due_at: datetime | None
    escalation_level: int
    overdue: DeadlineKind | None


class CaseView(_View):
    case_id: UUID
    case_code: str
    police_report_number: str
    reporting_agency: str
    regency_code: str
    reported_at: datetime
    withdrawn: bool
    legs: tuple[LegView, ...]
    timeline: tuple[TimelineItem, ...]
