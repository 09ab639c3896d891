"""The SMS gateway webhook's token check, as the gateway (or anyone on the internet) meets it."""

from __future__ import annotations

from typing import cast

import httpx
import pytest
from fastapi import FastAPI

from services.referral.officer_desk import OfficerDesk
from services.referral.sms_replies import build_sms_replies


class _UnreachableDesk:
    """The token check must answer before any reply reaches the desk."""

    async def sms_reply(self, phone: str, text: str) -> None:
        raise AssertionError(f"the desk was reached with {text!r} from {phone}")


async def a_reply_with(authorization: bytes) -> httpx.Response:
    app = FastAPI()
    app.include_router(build_sms_replies(cast("OfficerDesk", _UnreachableDesk()), "gw-test"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://rujukan.example") as client:
        return await client.post(
            "/v1/inbound/sms",
            json={"from": "+6281234567890", "text": "TERIMA 1234"},
            headers={"Authorization": authorization},
        )


@pytest.mark.parametrize("token", ["gé", "жетон", "gw-test\u00a0"])
async def test_a_gateway_token_with_non_ascii_characters_is_refused_as_unauthenticated(token: str) -> None:
    response = await a_reply_with(f"Bearer {token}".encode())

    assert response.status_code == 401
