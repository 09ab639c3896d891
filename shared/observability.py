"""Prometheus metrics and readiness probes every service shares.

Metric names start with ``rujukan_``; labels are low-cardinality only (agency, status, channel, queue, reason
class), never a case, referral, officer or victim: a label value is kept by Prometheus for weeks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from fastapi import APIRouter, Response
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.rabbit.subscriber import RabbitSubscriber
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from shared.topology import dead_letter_queue_name

log = structlog.get_logger(__name__)

READ_TIMEOUT_SECONDS = 3.0
"""A scrape waits this long for a database or broker read; Prometheus' own default timeout is 10 s."""


@dataclass(frozen=True)
class Gauge:
    name: str
    documentation: str
    labels: tuple[str, ...]


Sample = tuple[str, tuple[str, ...], float]
"""(gauge name, label values in the gauge's order, value)."""


class ScrapedGauges:
    """Gauges read from a database or the broker when Prometheus scrapes, kept ``ttl`` seconds so that several
    scrapers (or a dashboard refreshing) cost one read. A read that fails or times out leaves the gauges without
    samples until the next one succeeds: a stale number would look like a real one, and the scrape still
    answers with everything else."""

    def __init__(
        self,
        source: str,
        gauges: Sequence[Gauge],
        read: Callable[[], Awaitable[Iterable[Sample]]],
        *,
        ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._gauges = {gauge.name: gauge for gauge in gauges}
        self._read = read
        self._ttl = ttl
        self._monotonic = monotonic
        self._samples: list[Sample] = []
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:  # concurrent scrapes wait for the one read instead of each starting their own
            now = self._monotonic()
            if self._read_at is not None and now - self._read_at < self._ttl:
                return
            try:
                self._samples = list(await asyncio.wait_for(self._read(), timeout=READ_TIMEOUT_SECONDS))
            except Exception as exc:  # a failed read is an absent sample, never a failed scrape
                log.warning("metrics_read_failed", reason=self._source, error=type(exc).__name__)
                self._samples = []
            self._read_at = self._monotonic()

    def describe(self) -> Iterable[Metric]:
        return [self._family(gauge) for gauge in self._gauges.values()]

    def collect(self) -> Iterable[Metric]:
        families = {name: self._family(gauge) for name, gauge in self._gauges.items()}
        for name, labels, value in self._samples:
            families[name].add_metric(list(labels), value)
        return list(families.values())

    @staticmethod
    def _family(gauge: Gauge) -> GaugeMetricFamily:
        return GaugeMetricFamily(gauge.name, gauge.documentation, labels=list(gauge.labels))


@dataclass
class Metrics:
    """One service's registry, and the gauges that are read when it is scraped."""

    registry: CollectorRegistry
    scraped: list[ScrapedGauges] = field(default_factory=list)

    def add(self, gauges: ScrapedGauges) -> None:
        self.registry.register(gauges)
        self.scraped.append(gauges)

    async def exposition(self) -> bytes:
        await asyncio.gather(*(gauges.refresh() for gauges in self.scraped))
        return generate_latest(self.registry)


def instrument(broker: RabbitBroker, service: str) -> Metrics:
    """FastStream's received/processed/published counters and durations, in a registry of this service's own,
    plus the depth and consumers of the queues this service consumes and of their dead-letter queues."""
    registry = CollectorRegistry()
    broker.add_middleware(RabbitPrometheusMiddleware(registry=registry, app_name=f"rujukan-{service}"))
    metrics = Metrics(registry)
    metrics.add(queue_gauges(broker))
    return metrics


QUEUE_MESSAGES = Gauge("rujukan_queue_messages", "Messages ready in a queue this service consumes.", ("queue",))
QUEUE_CONSUMERS = Gauge(
    "rujukan_queue_consumers",
    "Consumers on a queue this service consumes, counted by the broker (all replicas); 0: nothing takes its messages.",
    ("queue",),
)
DEAD_LETTERS = Gauge(
    "rujukan_dead_letter_messages",
    "Messages in the dead-letter queue of a queue this service consumes, waiting for an operator.",
    ("queue",),
)


def queue_gauges(broker: RabbitBroker, *, ttl: float = 5.0) -> ScrapedGauges:
    """Passive declares of the queues the broker's subscribers consume and of their ``.dead`` queues."""

    async def read() -> list[Sample]:
        connection: AbstractConnection | None = getattr(broker, "_connection", None)
        if connection is None:
            raise ConnectionError("not connected to the broker")
        queues = sorted({s.queue.name for s in broker.subscribers if isinstance(s, RabbitSubscriber)})
        return await _passive_counts(connection, queues)

    return ScrapedGauges("broker queues", (QUEUE_MESSAGES, QUEUE_CONSUMERS, DEAD_LETTERS), read, ttl=ttl)


async def _passive_counts(connection: AbstractConnection, queues: Sequence[str]) -> list[Sample]:
    samples: list[Sample] = []
    probe = _Probe(connection)
    try:
        for queue in queues:
            if (work := await probe.counts(queue)) is not None:
                samples += [(QUEUE_MESSAGES.name, (queue,), work[0]), (QUEUE_CONSUMERS.name, (queue,), work[1])]
            dead = dead_letter_queue_name(queue)
            if (parked := await probe.counts(dead)) is not None:
                samples.append((DEAD_LETTERS.name, (dead,), parked[0]))
    finally:
        await probe.close()
    return samples


class _Probe:
    """Passive declares on a channel of its own: a declare of a missing queue closes its channel (404), which must
    never be one the service publishes or consumes on. Opened per read (reads are seconds apart), and again after
    such a 404."""

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None

    async def counts(self, queue: str) -> tuple[float, float] | None:
        """(messages ready, consumers), or None when the queue cannot be read: its samples are then absent."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=False)
        try:
            declared = await self._channel.declare_queue(queue, passive=True)
        except Exception as exc:  # missing, or refused to us
            log.warning("metrics_queue_unreadable", queue=queue, error=type(exc).__name__)
            return None
        result = declared.declaration_result
        return float(result.message_count or 0), float(result.consumer_count or 0)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


def metrics_router(metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/metrics", response_class=Response)
    async def scrape() -> Response:
        """Prometheus text exposition."""
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


def broker_checks(broker: RabbitBroker) -> dict[str, Callable[[], Awaitable[bool]]]:
    """The connection answers, and every subscriber is still consuming (a ping alone misses a dead consumer)."""

    async def connected() -> bool:
        return await broker.ping(timeout=3)

    async def consuming() -> bool:
        subscribers = broker.subscribers
        return bool(subscribers) and all(_consuming(subscriber) for subscriber in subscribers)

    return {"broker": connected, "consumers": consuming}


def _consuming(subscriber: Any) -> bool:
    # FastStream's `running` flag and its consumer tag stay as they were when the broker cancels a consumer (its
    # queue deleted, a quorum queue's member lost) or closes its channel (ag2ai/faststream#2758); the channel, and
    # the consumers the channel itself still holds, say whether messages can still arrive.
    queue = getattr(subscriber, "_queue_obj", None)
    tag = getattr(subscriber, "_consumer_tag", None)
    if not (subscriber.running and tag and queue is not None) or queue.channel.is_closed:
        return False
    # Not ``get_underlay_channel()``: on a robust channel it waits for a reconnection, and a probe must answer now.
    underlay = getattr(getattr(queue.channel, "_channel", None), "channel", None)
    return underlay is not None and tag in underlay.consumers
