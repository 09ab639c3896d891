"""The notifier's domain metrics: sends by channel and outcome and notifications that failed on every channel,
recorded as they happen; notifications still pending, read from the store when Prometheus scrapes. Labels are
channels and outcomes: never a recipient, a referral or a victim."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.store import Status, notifications
from shared.observability import Gauge, Sample, ScrapedGauges

PENDING = Gauge(
    "rujukan_notifications_pending",
    "Notifications neither sent nor given up yet (waiting to be sent, in a wait queue, or being sent), by channel.",
    ("channel",),
)


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    """Timed out, 5xx, 429 after the quick retries: a wait queue next, or the next channel once the schedule is
    spent."""
    CIRCUIT_OPEN = "circuit_open"
    """Not tried: the endpoint failed for everyone lately."""
    PERMANENT = "permanent"
    """Refused (4xx, unknown address): the recipient's next channel next."""


class NotifierMetrics:
    """What the notifier records as it happens, in its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._sends = Counter(
            "rujukan_delivery_attempts",
            "Sends of one notification on one channel (quick retries included), by channel and outcome.",
            ("channel", "outcome"),
            registry=registry,
        )
        self._failures = Counter(
            "rujukan_delivery_failures",
            "Notifications that failed on every channel of their recipient and were reported delivery_failed, "
            "by the last channel tried ('none': nobody to notify).",
            ("channel",),
            registry=registry,
        )

    def sent(self, channel: str, outcome: Outcome) -> None:
        self._sends.labels(channel=channel, outcome=outcome.value).inc()

    def failed(self, channel: str) -> None:
        self._failures.labels(channel=channel).inc()


def store_gauges(engine: AsyncEngine, channels: Iterable[str], *, ttl: float = 5.0) -> ScrapedGauges:
    """Every one of ``channels`` has a sample, 0 when nothing waits on it: a series that vanished at zero would
    read as "no data" on a dashboard."""
    table = notifications.c
    open_ = [Status.PENDING.value, Status.SENDING.value]
    kinds = sorted(set(channels))

    async def read() -> list[Sample]:
        query = select(table.channel, func.count()).where(table.status.in_(open_)).group_by(table.channel)
        async with engine.connect() as connection:
            counts: dict[str, float] = dict.fromkeys(kinds, 0.0)
            counts |= {channel: float(count) for channel, count in (await connection.execute(query)).all()}
        return [(PENDING.name, (channel,), count) for channel, count in counts.items()]

    return ScrapedGauges("notification store", (PENDING,), read, ttl=ttl)
