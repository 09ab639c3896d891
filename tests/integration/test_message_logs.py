"""What a service writes to its log for each message it consumes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog
import structlog.testing
from faststream.rabbit import RabbitQueue

from shared.broker import make_broker
from shared.logging import configure_logging
from shared.settings import Settings
from tests.rabbit import fresh_vhost


async def consume_two(*, fail_second: bool) -> None:
    async with fresh_vhost() as amqp_url:
        broker = make_broker(Settings(amqp_url=amqp_url), app_id="test-logs")
        seen: list[object] = []
        both = asyncio.Event()
        queue = RabbitQueue(f"logs.{uuid.uuid4().hex[:8]}", auto_delete=True)

        @broker.subscriber(queue, no_reply=True)
        async def handle(message: object) -> None:
            seen.append(message)
            if len(seen) == 2:
                both.set()
                if fail_second:
                    raise RuntimeError("the store is away")

        await broker.start()
        try:
            for body in (b"first", b"second"):
                await broker.publish(body, queue=queue)
            await asyncio.wait_for(both.wait(), timeout=10)
            await asyncio.sleep(0.2)
        finally:
            await broker.stop()


@pytest.fixture
def info_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """What the services' logging set-up at INFO lets through, captured instead of printed."""
    configure_logging("INFO", service="test")
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        configure_logging("WARNING")
        structlog.contextvars.clear_contextvars()


async def test_a_consumed_message_writes_no_info_line_of_its_own(info_logs: list[MutableMapping[str, Any]]) -> None:
    await consume_two(fail_second=False)

    events = [record["event"] for record in info_logs]
    assert "Received" not in events
    assert "Processed" not in events


async def test_a_message_whose_handler_fails_is_still_logged_as_an_error(
    info_logs: list[MutableMapping[str, Any]],
) -> None:
    await consume_two(fail_second=True)

    errors = [record for record in info_logs if record["log_level"] == "error"]
    assert [record["event"] for record in errors] == ["RuntimeError: the store is away"]
