"""Killing the referral service mid-stream loses no case and duplicates no effect."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.builders import a_case_report_body, the_sample_victims
from tests.rabbit import BrokerClient
from tests.system import System, WebhookSink, delivered_everywhere, directory_for, settings_for

pytestmark = pytest.mark.rabbit

CASES = 200
KILL_AFTER = 70
ROOT = Path(__file__).resolve().parents[2]


class ReferralProcess:
    """The referral service as its own OS process, so it can be killed with SIGKILL like in production."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self._env = env
        self._port = port
        self._log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli", "referral", cwd=ROOT, env=self._env, stdout=log, stderr=log
            )
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(f"http://127.0.0.1:{self._port}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert self.process.returncode is None, self._log.read_text()[-2000:]
                await asyncio.sleep(0.1)
        raise AssertionError("referral service did not become ready")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), timeout=30)


@pytest.fixture
async def split_system(
    amqp_url: str, sink: WebhookSink, tmp_path: Path
) -> AsyncIterator[tuple[System, ReferralProcess]]:
    directory = directory_for(sink)
    sink.directory = directory
    settings = settings_for(amqp_url, tmp_path)
    config = tmp_path / "directory.yaml"
    config.write_text(yaml.safe_dump(directory.model_dump(mode="json")))
    in_process = System(settings, directory, sink, ("intake", "notifier"))
    env = {
        **os.environ,
        "RUJUKAN_AMQP_URL": str(settings.amqp_url),
        "RUJUKAN_DATABASE_URL": settings.database_url,
        "RUJUKAN_DATA_DIR": str(tmp_path),
        "RUJUKAN_CONFIG": str(config),
        "RUJUKAN_REFERRAL_PORT": str(settings.referral_port),
        "RUJUKAN_OUTBOX_POLL_SECONDS": "0.2",
        "RUJUKAN_LOG_LEVEL": "WARNING",
    }
    referral = ReferralProcess(env, settings.referral_port, tmp_path / "referral.log")
    await in_process.start()
    await referral.start()
    yield in_process, referral
    await referral.stop()
    await in_process.stop()


async def test_killing_the_referral_service_mid_stream_loses_none_and_duplicates_none(
    split_system: tuple[System, ReferralProcess], broker: BrokerClient
) -> None:
    system, referral = split_system
    bodies = [a_case_report_body(victims=the_sample_victims()) for _ in range(CASES)]

    accepted = []
    for index, body in enumerate(bodies):
        if index == KILL_AFTER:
            await referral.kill()
        if index == KILL_AFTER + 30:
            await referral.start()
        response = await system.report(body)
        assert response.status_code == 202
        accepted.append(response.json()["case_id"])

    cases = [await system.case_when(case_id, delivered_everywhere, timeout=60) for case_id in accepted]
    legs = [(leg["referral_id"], leg["agency_id"]) for case in cases for leg in case["referrals"]]
    assert len(legs) == 3 * CASES
    assert len(set(legs)) == 3 * CASES
    notified = Counter(d.payload["referral_id"] for d in system.sink.deliveries)
    ids_per_referral = {
        referral_id: {d.webhook_id for d in system.sink.deliveries if d.payload["referral_id"] == referral_id}
        for referral_id in notified
    }
    assert len(ids_per_referral) == 3 * CASES
    assert all(len(ids) == 1 for ids in ids_per_referral.values())
    inboxed = await broker.take("agency.uptd-ppa-kalbar.inbox", CASES, timeout=30)
    assert len({m.message_id for m in inboxed}) == CASES
    for case in cases:
        events = Counter(e["event"] for e in case["timeline"])
        assert events["case_reported"] == 1
        assert events["referral_issued"] == 3
