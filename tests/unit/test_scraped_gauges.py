"""Gauges read at scrape time: one read per ``ttl`` whatever the scrapes, and a failed read costs its samples,
never the scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from shared.observability import Gauge, Metrics, Sample, ScrapedGauges

DEPTH = Gauge("rujukan_test_depth", "A depth.", ("queue",))


class Source:
    def __init__(self) -> None:
        self.reads = 0
        self.failing = False

    async def read(self) -> list[Sample]:
        self.reads += 1
        if self.failing:
            raise ConnectionError("broker away")
        return [(DEPTH.name, ("q",), float(self.reads))]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def samples(exposition: bytes) -> dict[str, float]:
    families = text_string_to_metric_families(exposition.decode())
    return {sample.labels["queue"]: sample.value for family in families for sample in family.samples}


async def test_scrapes_within_the_ttl_share_one_read() -> None:
    source, clock = Source(), Clock()
    metrics = Metrics(CollectorRegistry())
    metrics.add(ScrapedGauges("test", (DEPTH,), source.read, ttl=5, monotonic=clock))

    first = samples(await metrics.exposition())
    clock.now = 4.9
    second = samples(await metrics.exposition())
    clock.now = 10.0
    third = samples(await metrics.exposition())

    assert (first, second, third) == ({"q": 1.0}, {"q": 1.0}, {"q": 2.0})
    assert source.reads == 2


async def test_a_failed_read_leaves_the_gauge_without_samples_and_the_scrape_answers() -> None:
    source, clock = Source(), Clock()
    metrics = Metrics(CollectorRegistry())
    metrics.add(ScrapedGauges("test", (DEPTH,), source.read, ttl=5, monotonic=clock))
    await metrics.exposition()

    source.failing = True
    clock.now = 10.0
    failed = await metrics.exposition()
    source.failing = False
    clock.now = 20.0
    recovered = samples(await metrics.exposition())

    assert samples(failed) == {}
    assert b"# TYPE rujukan_test_depth gauge" in failed
    assert recovered == {"q": 3.0}
