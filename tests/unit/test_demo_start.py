"""`rujukan demo` on a machine where its ports are taken: one line saying which, and a non-zero exit."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from services.cli import main
from shared.logging import configure_logging
from tests.system import free_port


async def test_the_demo_exits_at_once_naming_the_taken_port_when_rujukan_run_already_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUJUKAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RUJUKAN_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/rujukan.db")
    monkeypatch.setenv("RUJUKAN_INTAKE_PORT", str(free_port()))
    monkeypatch.setenv("RUJUKAN_NOTIFIER_PORT", str(free_port()))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("RUJUKAN_REFERRAL_PORT", str(port))
        try:
            # Generous: the bound is for the test's own sake; the demo used to hang here until killed.
            code = await asyncio.wait_for(asyncio.to_thread(main, ["demo", "--timeout", "5"]), timeout=60)
        finally:
            # The demo logs to the captured stdout, which closes when this test ends.
            with capsys.disabled():
                configure_logging("WARNING")

    error = capsys.readouterr().err
    assert code == 1
    assert f"port {port} already in use" in error.splitlines()[0]
    assert "Traceback" not in error
