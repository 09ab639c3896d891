"""A running service takes a new directory on `rujukan directory reload`, and keeps its own when the new one
is invalid."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.system import ROOT, ServiceProcess, WebhookSink, directory_for, eventually, settings_for

pytestmark = pytest.mark.rabbit


@pytest.fixture
async def referral(amqp_url: str, sink: WebhookSink, tmp_path: Path) -> AsyncIterator[tuple[ServiceProcess, int]]:
    settings = settings_for(amqp_url, tmp_path)
    service = ServiceProcess("referral", settings, directory_for(sink), tmp_path)
    await service.start()
    yield service, settings.referral_port
    await service.stop()


async def _rujukan_directory(action: str, data_dir: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "directory", action,
        cwd=ROOT,
        env={**os.environ, "RUJUKAN_CONFIG": str(data_dir / "directory.yaml"), "RUJUKAN_DATA_DIR": str(data_dir)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


def _edit(data_dir: Path, change: Any) -> None:
    path = data_dir / "directory.yaml"
    document = yaml.safe_load(path.read_text())
    change(next(a for a in document["agencies"] if a["id"] == "dinsos-kalbar"))
    path.write_text(yaml.safe_dump(document))


async def _status_with(token: str, port: int) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"http://127.0.0.1:{port}/v1/referrals/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
        )
    return response.status_code


async def test_directory_reload_puts_a_rotated_token_in_force_without_a_restart(
    referral: tuple[ServiceProcess, int], tmp_path: Path
) -> None:
    _, port = referral
    rotated = [{"sha256": hashlib.sha256(b"rotated").hexdigest(), "scopes": ["receive"]}]
    _edit(tmp_path, lambda agency: agency.update(api_tokens=rotated))

    code, output = await _rujukan_directory("reload", tmp_path)

    assert code == 0, output
    assert "reload sent to referral" in output

    async def rotated_token_works() -> bool:
        return await _status_with("rotated", port) == 404  # known agency, unknown referral

    await eventually(rotated_token_works)
    assert await _status_with("dev-dinsos-kalbar", port) == 401


async def test_an_invalid_directory_is_refused_and_the_running_one_stays_in_force(
    referral: tuple[ServiceProcess, int], tmp_path: Path
) -> None:
    service, port = referral
    _edit(tmp_path, lambda agency: agency["roster"].update(supervisor="nobody-by-that-name"))

    code, output = await _rujukan_directory("reload", tmp_path)

    assert code == 2
    assert "supervisor 'nobody-by-that-name' is not one of the agency's officers" in output
    assert "nothing reloaded" in output
    assert service.process is not None
    service.process.send_signal(signal.SIGHUP)  # straight to the process: the bad file is refused all the same
    await asyncio.sleep(0.5)
    assert await _status_with("dev-dinsos-kalbar", port) == 404
