"""Killing the referral service mid-stream loses no case and duplicates no effect."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.builders import a_case_report_body, the_sample_victims
from tests.rabbit import BrokerClient
from tests.system import ServiceProcess, System, WebhookSink, delivered_everywhere, directory_for, settings_for

pytestmark = pytest.mark.rabbit

CASES = 200
KILL_AFTER = 70


@pytest.fixture
async def split_system(
    amqp_url: str, sink: WebhookSink, tmp_path: Path
) -> AsyncIterator[tuple[System, ServiceProcess]]:
    directory = directory_for(sink)
    sink.directory = directory
    settings = settings_for(amqp_url, tmp_path)
    in_process = System(settings, directory, sink, ("intake", "notifier"))
    referral = ServiceProcess("referral", settings, directory, tmp_path)
    await in_process.start()
    await referral.start()
    yield in_process, referral
    await referral.stop()
    await in_process.stop()


async def test_killing_the_referral_service_mid_stream_loses_none_and_duplicates_none(
    split_system: tuple[System, ServiceProcess], broker: BrokerClient
) -> None:
    system, referral = split_system
    bodies = [a_case_report_body(victims=the_sample_victims()) for _ in range(CASES)]
    accepted: list[str] = []

    async def report(body: dict[str, object]) -> None:
        response = await system.report(body)
        assert response.status_code == 202
        accepted.append(response.json()["case_id"])

    # A burst leaves a backlog in the referral queue and outbox, so the kill lands mid-work.
    await asyncio.gather(*(report(body) for body in bodies[:KILL_AFTER]))
    await referral.kill()
    await asyncio.gather(*(report(body) for body in bodies[KILL_AFTER : KILL_AFTER + 30]))
    await referral.start()
    await asyncio.gather(*(report(body) for body in bodies[KILL_AFTER + 30 :]))

    cases = [await system.case_when(case_id, delivered_everywhere, timeout=60) for case_id in accepted]
    legs = [(leg["referral_id"], leg["agency_id"]) for case in cases for leg in case["referrals"]]
    assert len(legs) == len(set(legs)) == 3 * CASES
    ids_per_referral: dict[str, set[str]] = {}
    for delivery in system.sink.deliveries:
        ids_per_referral.setdefault(delivery.payload["referral_id"], set()).add(delivery.webhook_id)
    assert len(ids_per_referral) == 3 * CASES
    assert all(len(ids) == 1 for ids in ids_per_referral.values())
    # At-least-once: a message re-published after the kill may arrive twice, under the same id.
    inboxed = await broker.drain("agency.uptd-ppa-kalbar.inbox", at_least=CASES)
    assert len({message.message_id for message in inboxed}) == CASES
    for case in cases:
        events = Counter(e["event"] for e in case["timeline"])
        assert events["case_reported"] == 1
        assert events["referral_issued"] == 3
