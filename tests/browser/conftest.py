"""Browser tests: one headless Chromium (Debian's, driven by Playwright) for the whole session, and the three
services running in-process against a fresh vhost of the real broker for each test.

Everything here runs in the session's event loop: the browser is shared across tests, and Playwright's objects
belong to the loop that made them, so the per-test services must live in that loop too."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from shared.clock import utcnow
from tests.rabbit import BrokerClient, fresh_vhost
from tests.system import ROOT, System, WebhookSink, directory_for, settings_for

CHROMIUM = Path(os.environ.get("RUJUKAN_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
OPERATOR_TOKEN = "dev-ops-rujukan"


class MovableClock:
    """The referral service's clock: the real time plus however far the test has moved it on."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **by: float) -> None:
        self.offset += timedelta(**by)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium (run scripts/test)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), headless=True)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def amqp_url() -> AsyncIterator[str]:
    async with fresh_vhost() as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def sink() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest_asyncio.fixture(loop_scope="session")
async def system(amqp_url: str, sink: WebhookSink, tmp_path: Path, clock: MovableClock) -> AsyncIterator[System]:
    directory = directory_for(sink)
    sink.directory = directory
    settings = settings_for(amqp_url, tmp_path, deadline_sweep_seconds=0.2)
    running = System(settings, directory, sink, ("intake", "referral", "notifier"), clock=clock)
    await running.start()
    yield running
    await running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def broker(amqp_url: str) -> AsyncIterator[BrokerClient]:
    client = await BrokerClient.connect(amqp_url)
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test, at desktop size."""
    fresh = await browser.new_context(viewport=VIEWPORTS["desktop"], locale="id-ID")
    yield fresh
    await fresh.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> Page:
    return await context.new_page()
