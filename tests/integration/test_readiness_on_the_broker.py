"""``/readyz`` against the real broker: a subscriber that stops consuming while the connection stays up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.topology import build_topology
from tests.rabbit import BrokerClient
from tests.system import System, WebhookSink, directory_for, eventually, settings_for

pytestmark = pytest.mark.rabbit


@pytest.fixture
async def intake(amqp_url: str, sink: WebhookSink, tmp_path: Path) -> AsyncIterator[System]:
    directory = directory_for(sink)
    sink.directory = directory
    running = System(settings_for(amqp_url, tmp_path), directory, sink, ("intake",))
    await running.start()
    yield running
    await running.stop()


async def readiness(system: System) -> httpx.Response:
    return await system.http.get(system.url("intake", "/readyz"))


async def consumers_seen_by_metrics(system: System) -> str | None:
    scraped = (await system.http.get(system.url("intake", "/metrics"))).text
    prefix = 'rujukan_queue_consumers{queue="intake.reports"} '
    return next((line.removeprefix(prefix) for line in scraped.splitlines() if line.startswith(prefix)), None)


async def test_readyz_fails_naming_the_consumers_check_while_the_broker_has_cancelled_a_consumer(
    intake: System, broker: BrokerClient
) -> None:
    """Deleting a consumed queue makes the broker cancel its consumer (Basic.Cancel) on a connection that stays up;
    FastStream keeps its ``running`` flag and consumer tag, so only the consumers the channel still holds tell.
    aio-pika's robust channel consumes again once the queue exists again (it probes with a passive declare
    until then): after an operator re-declares it (``rujukan broker setup``, or a restart of any service that
    declares it) the service is ready again by itself. Until then nothing would take reports off the queue, and
    an orchestrator should route no traffic to this replica: that is what readiness is for."""
    assert (await readiness(intake)).status_code == 200
    queue = build_topology(intake.directory, intake.settings.retry_schedule).intake_reports
    channel = await broker.channel()

    await channel.queue_delete(queue.name)

    async def not_ready() -> bool:
        return (await readiness(intake)).status_code == 503

    await eventually(not_ready, timeout=10)
    answer = (await readiness(intake)).json()
    assert answer == {"status": "not ready", "checks": {"broker": True, "consumers": False, "database": True}}
    assert (await intake.http.get(intake.url("intake", "/healthz"))).status_code == 200

    # As the topology declares it: with other arguments the broker would refuse aio-pika's own re-declare.
    await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)

    async def ready() -> bool:
        return (await readiness(intake)).status_code == 200

    await eventually(ready, timeout=30)

    async def consumed_again() -> bool:
        return await consumers_seen_by_metrics(intake) == "1.0"

    await eventually(consumed_again, timeout=15)
