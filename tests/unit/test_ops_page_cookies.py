"""The ops page's cookies, as a browser receives them (no broker: signing in reads only the directory)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.referral.ledger import Ledger
from services.referral.operations import Operations
from services.referral.ops_page import COOKIE, build_ops_page
from services.referral.ops_sessions import SESSION_MINUTES
from shared.clock import utcnow
from shared.database import make_engine
from shared.directory import load_directory
from shared.sealing import IdentitySealer
from shared.settings import Settings

CONFIG = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"
OPERATOR_TOKEN = "dev-ops-rujukan"


async def an_ops_page(tmp_path: Path, *, secure_cookie: bool, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    directory = load_directory(CONFIG)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/rujukan.db")
    ledger = Ledger(make_engine(settings.database_url))
    await ledger.migrate()
    operations = Operations(ledger, lambda: directory, settings, IdentitySealer({"k": os.urandom(32)}, "k"))
    app = FastAPI()
    page = build_ops_page(operations, lambda: directory, os.urandom(32), secure_cookie=secure_cookie, clock=clock)
    app.include_router(page)
    return app


async def signed_in(app: FastAPI, token: str = OPERATOR_TOKEN) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://rujukan.example") as client:
        return await client.post("/ops/signin", data={"token": token})


@pytest.mark.parametrize("secure", [True, False])
async def test_the_session_cookie_is_http_only_strict_short_lived_and_secure_behind_https(
    tmp_path: Path, secure: bool
) -> None:
    response = await signed_in(await an_ops_page(tmp_path, secure_cookie=secure))

    assert response.status_code == 303
    assert response.headers["location"] == "/ops/overview"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "max-age", "path", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "max-age=3600" in cookie.lower()
    assert ("secure" in attributes) is secure


async def test_a_refused_sign_in_sets_no_cookie(tmp_path: Path) -> None:
    response = await signed_in(await an_ops_page(tmp_path, secure_cookie=True), token="dev-dinsos-bengkayang")

    assert response.status_code == 403
    assert COOKIE not in response.headers.get("set-cookie", "")
    assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_a_session_kept_busy_still_ends_twelve_hours_after_sign_in(tmp_path: Path) -> None:
    """A copied cookie must not live for as long as someone keeps loading pages with it."""
    signed_in_at = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    now = [signed_in_at]
    transport = httpx.ASGITransport(app=await an_ops_page(tmp_path, secure_cookie=True, clock=lambda: now[0]))

    answers: dict[timedelta, int] = {}
    async with httpx.AsyncClient(transport=transport, base_url="https://rujukan.example") as client:
        await client.post("/ops/signin", data={"token": OPERATOR_TOKEN})
        # A page load every 50 minutes, well within each renewal's hour, for thirteen hours.
        while now[0] < signed_in_at + timedelta(hours=13):
            now[0] += timedelta(minutes=SESSION_MINUTES - 10)
            answers[now[0] - signed_in_at] = (await client.get("/ops/case")).status_code

    assert {code for since, code in answers.items() if since < timedelta(hours=12)} == {200}
    assert {code for since, code in answers.items() if since >= timedelta(hours=12)} == {303}


async def test_signing_out_ends_the_operators_sessions_in_every_browser(tmp_path: Path) -> None:
    """A cookie copied before the sign-out, or left in another browser, is over too; signing in again works."""
    now = [datetime(2026, 11, 28, 1, 0, tzinfo=UTC)]
    transport = httpx.ASGITransport(app=await an_ops_page(tmp_path, secure_cookie=True, clock=lambda: now[0]))
    async with (
        httpx.AsyncClient(transport=transport, base_url="https://rujukan.example") as desk,
        httpx.AsyncClient(transport=transport, base_url="https://rujukan.example") as laptop,
    ):
        for browser in (desk, laptop):
            await browser.post("/ops/signin", data={"token": OPERATOR_TOKEN})
        page = (await desk.get("/ops/case")).text
        [csrf] = re.findall(r'name="csrf" value="([^"]+)"', page)[:1]
        now[0] += timedelta(minutes=5)

        signed_out = await desk.post("/ops/signout", data={"csrf": csrf})
        after = (await laptop.get("/ops/case")).status_code
        now[0] += timedelta(seconds=1)
        await desk.post("/ops/signin", data={"token": OPERATOR_TOKEN})
        again = (await desk.get("/ops/case")).status_code

    assert signed_out.status_code == 303
    assert after == 303
    assert again == 200
