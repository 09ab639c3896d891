"""The referral service's domain metrics: the ledger's referrals by agency and status and those overdue, read when
Prometheus scrapes; time to acknowledge and escalations, recorded as they happen. Labels are agency ids, statuses,
deadline kinds and levels: never a case, a referral, an officer or a victim."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.referral.ledger import Referral, idle_open_cases_query, referrals
from services.referral.lifecycle import FINISHED_LEGS, Status, deadline_met
from shared.contracts.referrals import DeadlineKind
from shared.directory import Directory
from shared.observability import Gauge, Sample, ScrapedGauges

REFERRALS = Gauge("rujukan_referrals", "Referrals in the ledger, by receiving agency and status.", ("agency", "status"))
OVERDUE = Gauge(
    "rujukan_referrals_overdue",
    "Referrals past a deadline they have not met, by receiving agency and deadline (acknowledge, accept).",
    ("agency", "deadline"),
)

HELD_OPEN = Gauge(
    "rujukan_cases_held_open_past_retention",
    "Cases still holding victims' identity because a referral is open, with nothing on their timeline for longer"
    " than the retention period after a case closes (or than retention.identity_after_idle, where set).",
    (),
)

_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
ACKNOWLEDGE_BUCKETS = (
    5 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE, _HOUR, 2 * _HOUR, 4 * _HOUR, 8 * _HOUR, 12 * _HOUR,
    _DAY, 2 * _DAY, 3 * _DAY, 7 * _DAY,
)  # fmt: skip
"""An urgent referral's deadline is an hour, a routine one's days (config/kalbar.yaml): minutes to a week."""


def _not_met(kind: DeadlineKind) -> list[str]:
    return [status.value for status in Status if not deadline_met(kind, status)]


def ledger_gauges(engine: AsyncEngine, clock: Callable[[], datetime], *, ttl: float = 5.0) -> ScrapedGauges:
    """Counted in one GROUP BY over the ledger, so the numbers are the ledger's whatever replica is scraped."""
    table = referrals.c

    async def read() -> list[Sample]:
        now = clock()
        late = {
            DeadlineKind.ACKNOWLEDGE: table.status.in_(_not_met(DeadlineKind.ACKNOWLEDGE)) & (table.ack_due_at < now),
            DeadlineKind.ACCEPT: table.status.in_(_not_met(DeadlineKind.ACCEPT)) & (table.accept_due_at < now),
        }
        query = select(
            table.agency_id,
            table.status,
            func.count(),
            *(func.sum(case((condition, 1), else_=0)) for condition in late.values()),
        ).group_by(table.agency_id, table.status)
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        samples: list[Sample] = []
        overdue: dict[tuple[str, str], float] = {}
        for agency, status, count, *late_counts in rows:
            samples.append((REFERRALS.name, (agency, status), float(count)))
            for kind, late_count in zip(late, late_counts, strict=True):
                overdue[agency, kind.value] = overdue.get((agency, kind.value), 0.0) + float(late_count or 0)
        samples += [(OVERDUE.name, labels, value) for labels, value in overdue.items()]
        return samples

    return ScrapedGauges("referral ledger", (REFERRALS, OVERDUE), read, ttl=ttl)


class ReferralMetrics:
    """What the referral service records as it happens, in its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._time_to_acknowledge = Histogram(
            "rujukan_time_to_acknowledge_seconds",
            "From a referral's issue to its agency's first reply (acknowledgement or decision), by agency.",
            ("agency",),
            buckets=ACKNOWLEDGE_BUCKETS,
            registry=registry,
        )
        self._escalations = Counter(
            "rujukan_escalations",
            "Escalation levels fired (1: reminder, 2: the agency's head, 3: the coordinator), by agency and level.",
            ("agency", "level"),
            registry=registry,
        )

    def acknowledged(self, referral: Referral) -> None:
        """``referral`` was taken for the first time (its ``acknowledged_at`` just set)."""
        assert referral.acknowledged_at is not None  # called only once it is
        waited = (referral.acknowledged_at - referral.issued_at).total_seconds()
        self._time_to_acknowledge.labels(agency=referral.agency_id).observe(max(waited, 0.0))

    def escalated(self, agency_id: str, level: int) -> None:
        self._escalations.labels(agency=agency_id, level=str(level)).inc()


def retention_gauges(
    engine: AsyncEngine, directory: Callable[[], Directory], clock: Callable[[], datetime], *, ttl: float = 300.0
) -> ScrapedGauges:
    """Read every few minutes, not at every scrape: it reads every open case's timeline, and changes by the day."""

    async def read() -> list[Sample]:
        idle_before = clock() - directory().retention.identity_held_open
        query = select(func.count()).select_from(
            idle_open_cases_query(FINISHED_LEGS, idle_before, None, None).subquery()
        )
        async with engine.connect() as connection:
            held = (await connection.execute(query)).scalar_one()
        return [(HELD_OPEN.name, (), float(held))]

    return ScrapedGauges("retention", (HELD_OPEN,), read, ttl=ttl)
