from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.logging import configure_logging
from tests.rabbit import BrokerClient, fresh_vhost
from tests.system import System, WebhookSink, directory_for, settings_for


@pytest.fixture(scope="session", autouse=True)
def _quiet_logs() -> None:
    configure_logging("WARNING")


@pytest.fixture
async def amqp_url() -> AsyncIterator[str]:
    async with fresh_vhost() as url:
        yield url


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture
async def system(amqp_url: str, sink: WebhookSink, tmp_path: Path) -> AsyncIterator[System]:
    directory = directory_for(sink)
    sink.directory = directory
    running = System(settings_for(amqp_url, tmp_path), directory, sink, ("intake", "referral", "notifier"))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[BrokerClient]:
    client = await BrokerClient.connect(amqp_url)
    yield client
    await client.close()
