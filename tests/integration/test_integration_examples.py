"""The integration guide's examples (docs/examples) run as an agency would run them, against the services on a
real broker vhost: configured only through their environment variables, so what the guide shows is what runs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import HttpUrl

from tests.system import CONFIG, System, WebhookSink, directory_for, free_port, settings_for

ROOT = CONFIG.parent.parent
EXAMPLES = ROOT / "docs" / "examples"
RECEIVING = "dinsos-bengkayang"
POLICE = "polres-bengkayang"


class Example:
    """One example script as a child process; its output is read line by line while the services run."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[str] = []

    @classmethod
    async def start(cls, program: str, script: Path, *args: str, env: dict[str, str]) -> Example:
        process = await asyncio.create_subprocess_exec(
            program,
            str(script),
            *args,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process, script.name)

    async def line_with(self, text: str, *, timeout: float = 30) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"{self.name} ended without printing {text!r}: {await self._stderr()}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if text in line:
                    return line

    async def finished(self, *, timeout: float = 60) -> tuple[int, str]:
        async with asyncio.timeout(timeout):
            stdout, stderr = await self.process.communicate()
        self.lines += stdout.decode().splitlines()
        return self.process.returncode or 0, stderr.decode()

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()

    def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[tuple[Example, int]]:
    """The guide's webhook receiver, with shared/verify_webhook.py copied beside it as the guide says."""
    beside = tmp_path / "receiver"
    beside.mkdir()
    shutil.copy(EXAMPLES / "webhook_receiver.py", beside)
    shutil.copy(ROOT / "shared" / "verify_webhook.py", beside)
    port = free_port()
    secret = next(a for a in directory_for(WebhookSink()).agencies if a.id == RECEIVING).webhook
    assert secret is not None
    example = await Example.start(
        sys.executable,
        beside / "webhook_receiver.py",
        env={"RUJUKAN_WEBHOOK_SECRET": secret.secret, "PORT": str(port)},
    )
    await example.line_with("listening on")
    yield example, port
    example.stop()
    await example.process.wait()


@pytest.fixture
async def system_with_receiver(
    amqp_url: str, sink: WebhookSink, tmp_path: Path, receiver: tuple[Example, int]
) -> AsyncIterator[System]:
    """The usual system, except that the receiving agency's webhook goes to the guide's receiver."""
    _, port = receiver
    directory = directory_for(sink)
    agencies = tuple(
        agency.model_copy(
            update={"webhook": agency.webhook.model_copy(update={"url": HttpUrl(f"http://127.0.0.1:{port}/")})}
        )
        if agency.id == RECEIVING and agency.webhook
        else agency
        for agency in directory.agencies
    )
    directory = directory.model_copy(update={"agencies": agencies})
    sink.directory = directory
    running = System(settings_for(amqp_url, tmp_path), directory, sink, ("intake", "referral", "notifier"))
    await running.start()
    yield running
    await running.stop()


def report_number() -> str:
    return f"LP/B/{uuid.uuid4().int % 100000}/XI/2026/SPKT/POLRES BENGKAYANG"


async def test_the_aio_pika_examples_report_a_case_take_it_from_the_inbox_and_acknowledge_it_and_the_webhook_verifies(
    system_with_receiver: System, amqp_url: str, receiver: tuple[Example, int]
) -> None:
    system = system_with_receiver
    webhooks, _ = receiver
    inbox = await Example.start(
        sys.executable,
        EXAMPLES / "consume_inbox.py",
        "--count",
        "1",
        env={"RUJUKAN_AMQP_URL": amqp_url, "RUJUKAN_AGENCY": RECEIVING},
    )
    await inbox.line_with("waiting for referrals")

    police = await Example.start(
        sys.executable,
        EXAMPLES / "publish_case_report.py",
        report_number(),
        env={"RUJUKAN_AMQP_URL": amqp_url, "RUJUKAN_AGENCY": POLICE},
    )
    code, stderr = await police.finished()

    assert code == 0, stderr
    assert any(f"referred to {RECEIVING}: " in line for line in police.lines), police.lines
    case_id = next(line for line in police.lines if line.startswith("published")).rsplit(" ", 1)[-1]
    code, stderr = await inbox.finished()
    assert code == 0, stderr
    acknowledged = next(line for line in inbox.lines if line.startswith("acknowledged referral"))
    referral_id = acknowledged.rsplit(" ", 1)[-1]
    case = await system.case_when(
        case_id,
        lambda c: any(leg["referral_id"] == referral_id and leg["status"] == "acknowledged" for leg in c["referrals"]),
    )
    verified = json.loads(await webhooks.line_with(f'"referral_id": "{referral_id}"'))
    assert verified["verified"] is True
    assert verified["type"] == "referral.issued"
    assert verified["case_code"] == case["case_code"]


async def sh(script: str, *args: str, env: dict[str, str]) -> Any:
    example = await Example.start("sh", EXAMPLES / script, *args, env=env)
    code, stderr = await example.finished()
    assert code == 0, f"{script}: {stderr} {example.lines}"
    return json.loads("\n".join(example.lines))


@pytest.mark.skipif(shutil.which("curl") is None, reason="the curl examples need curl")
async def test_the_curl_examples_report_a_case_read_its_referral_with_identity_and_acknowledge_it(
    system: System,
) -> None:
    intake, referral = system.url("intake", ""), system.url("referral", "")

    created = await sh(
        "report_case.sh", report_number(), env={"RUJUKAN_INTAKE_URL": intake, "RUJUKAN_TOKEN": f"dev-{POLICE}"}
    )
    case = await system.case_when(
        created["case_id"], lambda c: any(leg["agency_id"] == RECEIVING for leg in c["referrals"])
    )
    (referral_id,) = (leg["referral_id"] for leg in case["referrals"] if leg["agency_id"] == RECEIVING)
    agency = {"RUJUKAN_REFERRAL_URL": referral, "RUJUKAN_TOKEN": f"dev-{RECEIVING}"}
    read = await sh("read_referral.sh", referral_id, env=agency)
    acknowledged = await sh("acknowledge.sh", referral_id, env={**agency, "RUJUKAN_OFFICER": "Rina"})

    assert created["case_code"] == case["case_code"]
    assert read["victims"][0]["identity"]["full_name"] == "Contoh Korban"
    assert acknowledged["status"] == "acknowledged"
    after = (await system.case(created["case_id"])).json()
    assert next(e for e in after["timeline"] if e["event"] == "acknowledged")["detail"]["officer"] == "Rina"


async def test_each_service_serves_the_committed_asyncapi_contract_and_openapi_but_no_page_loading_a_cdn(
    system: System,
) -> None:
    ports = {
        "intake": system.settings.intake_port,
        "referral": system.settings.referral_port,
        "notifier": system.settings.notifier_port,
    }
    async with httpx.AsyncClient(timeout=10) as http:
        for service, port in ports.items():
            base = f"http://127.0.0.1:{port}"
            served = (await http.get(f"{base}/asyncapi.json")).json()
            committed = json.loads((ROOT / "docs" / "asyncapi" / f"{service}.json").read_text(encoding="utf-8"))
            assert served["channels"].keys() == committed["channels"].keys(), service
            assert served["components"]["messages"].keys() == committed["components"]["messages"].keys(), service
            assert "guest" not in json.dumps(served["servers"]), service
            assert (await http.get(f"{base}/openapi.json")).status_code == 200, service
            assert (await http.get(f"{base}/docs")).status_code == 404, service
            assert (await http.get(f"{base}/redoc")).status_code == 404, service
