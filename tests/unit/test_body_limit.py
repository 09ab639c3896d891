"""A request body over the limit is refused with 413 however it is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from shared.http import BodyLimit

LIMIT = 1_000


def an_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=LIMIT)

    @app.post("/cases")
    async def report(body: dict[str, Any]) -> dict[str, int]:
        return {"fields": len(body)}

    return app


async def post(content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    transport = httpx.ASGITransport(app=an_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        return await client.post("/cases", content=content, headers={"content-type": "application/json"})


async def chunks(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b" " * 400
    yield b'{"a": 1}'


async def test_a_body_declaring_a_length_over_the_limit_gets_413() -> None:
    response = await post(b'{"a": 1}' + b" " * LIMIT)

    assert response.status_code == 413


async def test_a_chunked_body_over_the_limit_gets_413_not_a_parse_error() -> None:
    response = await post(chunks(3))

    assert response.status_code == 413
    assert response.json() == {"detail": f"request body is larger than {LIMIT} bytes"}


async def test_a_chunked_body_within_the_limit_is_read() -> None:
    response = await post(chunks(2))

    assert response.status_code == 200
    assert response.json() == {"fields": 1}
