"""The `rujukan` command as an operator and a newcomer use it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.system import CONFIG, ROOT, free_port

pytestmark = pytest.mark.rabbit


async def _rujukan(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    return process.returncode or 0, output.decode()


def _environment(amqp_url: str, tmp_path: Path, config: Path = CONFIG) -> dict[str, str]:
    return {
        **os.environ,
        "RUJUKAN_AMQP_URL": amqp_url,
        "RUJUKAN_DATA_DIR": str(tmp_path),
        "RUJUKAN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/rujukan.db",
        "RUJUKAN_INTAKE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/intake.db",
        "RUJUKAN_CONFIG": str(config),
        "RUJUKAN_INTAKE_PORT": str(free_port()),
        "RUJUKAN_REFERRAL_PORT": str(free_port()),
        "RUJUKAN_NOTIFIER_PORT": str(free_port()),
    }


async def test_demo_sends_the_sample_case_and_sees_every_referral_acknowledged(amqp_url: str, tmp_path: Path) -> None:
    directory = yaml.safe_load(CONFIG.read_text())
    webhook_port = free_port()
    for agency in directory["agencies"]:
        if "webhook" in agency:
            agency["webhook"]["url"] = agency["webhook"]["url"].replace(":8099/", f":{webhook_port}/")
    config = tmp_path / "directory.yaml"
    config.write_text(yaml.safe_dump(directory))

    code, output = await _rujukan("demo", env=_environment(amqp_url, tmp_path, config))

    assert code == 0, output
    assert "All 3 referrals delivered and acknowledged" in output
    assert "uptd-ppa-kalbar      acknowledged  urgent  victims V1, V2" in output
    assert "Contoh" not in output


async def test_run_serves_all_three_services_in_one_process_and_stops_on_sigterm(amqp_url: str, tmp_path: Path) -> None:
    env = _environment(amqp_url, tmp_path)
    ports = [env[f"RUJUKAN_{name}_PORT"] for name in ("INTAKE", "REFERRAL", "NOTIFIER")]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "run", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ready: dict[str, int] = {}
        async with httpx.AsyncClient() as client:
            for _ in range(150):
                for port in ports:
                    try:
                        ready[port] = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
                    except httpx.TransportError:
                        ready[port] = 0
                if all(status == 200 for status in ready.values()):
                    break
                await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()

    assert ready == dict.fromkeys(ports, 200)
    assert code == 0


async def test_a_bad_directory_stops_the_service_naming_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "directory.yaml"
    config.write_text(CONFIG.read_text().replace("kind: child_protection", "kind: fire_brigade"))

    code, output = await _rujukan("referral", env=_environment("amqp://guest:guest@127.0.0.1:5672/", tmp_path, config))

    assert code == 2
    assert f"{config}:" in output
    assert "kind" in output
    assert "uptd-ppa-kalbar" in output
