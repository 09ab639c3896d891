"""The dead-letter page's buttons, resolved as a browser resolves them (no broker: the operations are a stand-in)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import cast
from urllib.parse import urljoin

import httpx
import pytest
from fastapi import FastAPI

from services.referral.operations import Operations
from services.referral.operations.views import DeadLetter
from services.referral.ops_page import build_ops_page
from shared.directory import load_directory

CONFIG = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"
NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
PAGE = "https://rujukan.example/ops/dead-letters"


def a_dead_letter(queue: str, message_id: str) -> DeadLetter:
    return DeadLetter(
        message_id=message_id, dead_letter_queue=f"{queue}.dead", queue=queue, reason="invalid", attempts=1,
        dead_at=NOW, age=timedelta(minutes=3), routing_key=None, message_type="referral.reply.v1",
        correlation_id=None, content_type="application/json", size=2, sealed=False,
    )  # fmt: skip


class DeadLetterDesk:
    """The part of ``Operations`` the dead-letter page uses: one queue's letters, and the actions asked of them."""

    def __init__(self, *letters: DeadLetter) -> None:
        self.letters = letters
        self.asked: list[tuple[str, str, str]] = []

    def now(self) -> datetime:
        return NOW

    async def dead_letters(self, queue: str | None = None) -> list[DeadLetter]:
        return [letter for letter in self.letters if queue in (None, letter.queue)]

    async def replay(self, queue: str, message_id: str, operator: str, note: str | None = None) -> DeadLetter | None:
        self.asked.append(("replay", queue, message_id))
        return None

    async def discard(self, queue: str, message_id: str, operator: str, note: str) -> DeadLetter | None:
        self.asked.append(("discard", queue, message_id))
        return None

    async def signed_out_at(self, operator_id: str) -> datetime | None:
        return None


def an_ops_page(desk: DeadLetterDesk) -> FastAPI:
    directory = load_directory(CONFIG)
    app = FastAPI()
    page = build_ops_page(cast("Operations", desk), lambda: directory, os.urandom(32), secure_cookie=True)
    app.include_router(page)
    return app


@pytest.mark.parametrize(
    "message_id",
    ["../intake.reports/7f3c2a", "./../../dead-letters/intake.reports/7f3c2a", "LP/B/123/VIII/2025/SPKT", "a?b#c%2F"],
)
async def test_replay_and_discard_act_on_the_letter_shown_whatever_its_sender_chose_as_message_id(
    message_id: str,
) -> None:
    desk = DeadLetterDesk(a_dead_letter("referral.replies", message_id), a_dead_letter("intake.reports", "7f3c2a"))
    transport = httpx.ASGITransport(app=an_ops_page(desk))

    async with httpx.AsyncClient(transport=transport, base_url="https://rujukan.example") as client:
        await client.post("/ops/signin", data={"token": "dev-ops-rujukan"})
        page = await client.get(PAGE, params={"queue": "referral.replies"})
        letter = page.text.split('data-queue="referral.replies"', 1)[1]
        actions = [unescape(action) for action in re.findall(r'<form method="post" action="([^"]+)"', letter)]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        # As a browser would: resolved against the page, dot segments and all, then sent as it stands.
        for action in actions:
            await client.post(urljoin(PAGE, action), data={"csrf": csrf[1], "note": "police resent it"})

    assert sorted(desk.asked) == [(action, "referral.replies", message_id) for action in ("discard", "replay")]
