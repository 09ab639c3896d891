from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.observability import broker_checks


@dataclass
class FakeUnderlay:
    """aiormq's channel, which holds the consumers the broker still feeds."""

    consumers: set[str] = field(default_factory=lambda: {"ctag-1"})


@dataclass
class FakeContext:
    channel: FakeUnderlay


@dataclass
class FakeChannel:
    """aio-pika's channel, over aiormq's."""

    is_closed: bool = False
    consumers: set[str] = field(default_factory=lambda: {"ctag-1"})
    _channel: FakeContext | None = None

    def __post_init__(self) -> None:
        self._channel = FakeContext(FakeUnderlay(self.consumers))


@dataclass
class FakeQueue:
    channel: FakeChannel = field(default_factory=FakeChannel)


@dataclass
class FakeSubscriber:
    running: bool = True
    _consumer_tag: str | None = "ctag-1"
    _queue_obj: FakeQueue | None = field(default_factory=FakeQueue)


@dataclass
class FakeBroker:
    subscribers: list[FakeSubscriber]

    async def ping(self, timeout: float) -> bool:
        return True


async def consuming(*subscribers: FakeSubscriber) -> bool:
    checks: dict[str, Any] = broker_checks(FakeBroker(list(subscribers)))  # type: ignore[arg-type]
    return bool(await checks["consumers"]())


async def test_service_is_ready_while_every_consumer_has_an_open_channel() -> None:
    assert await consuming(FakeSubscriber(), FakeSubscriber())


async def test_a_consumer_whose_channel_closed_makes_the_service_not_ready() -> None:
    assert not await consuming(FakeSubscriber(), FakeSubscriber(_queue_obj=FakeQueue(FakeChannel(is_closed=True))))


async def test_a_consumer_never_started_makes_the_service_not_ready() -> None:
    assert not await consuming(FakeSubscriber(_consumer_tag=None))


async def test_a_consumer_the_broker_cancelled_makes_the_service_not_ready_though_faststream_keeps_its_tag() -> None:
    cancelled = FakeSubscriber(_queue_obj=FakeQueue(FakeChannel(consumers=set())))

    assert not await consuming(FakeSubscriber(), cancelled)
