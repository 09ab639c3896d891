"""A service that cannot start says so and ends, whatever its background work was doing at the time."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from services.cli import build_services
from services.referral.privacy import Privacy
from shared.directory import load_directory
from shared.sealing import load_sealer
from shared.service import Running, ServiceStartError
from tests.system import settings_for

pytestmark = pytest.mark.rabbit


async def test_a_taken_port_ends_the_referral_service_s_start_even_when_its_sweep_swallowed_the_cancellation(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rujukan demo` beside a running `rujukan run` hung: uvicorn stops the app it could not bind, and the
    retention sweep, cancelled in the middle of a broker call that raised another error in its place, went to
    sleep for an hour instead of ending."""

    async def sweep_that_swallows_a_cancellation(self: Privacy, *, interval_seconds: float) -> None:
        # As the real loop does when the broker call it was cancelled in raises another error in its place.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await asyncio.sleep(interval_seconds)

    monkeypatch.setattr(Privacy, "run", sweep_that_swallows_a_cancellation)
    settings = settings_for(amqp_url, tmp_path)
    directory = load_directory(settings.config)
    [referral] = build_services(("referral",), settings, directory, load_sealer(settings))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", referral.port))
        taken.listen()
        running = Running([referral], "127.0.0.1")

        with pytest.raises(ServiceStartError, match=f"port {referral.port}"):
            # Generous: the bound is only for the test's own sake; it failed by never returning at all.
            await asyncio.wait_for(running.start(), timeout=60)
