"""One long-lived HTTP session for the channels that POST (webhook, gateway), with their failures classified."""

from __future__ import annotations

from typing import Any

import aiohttp

from services.notifier.channels import PermanentChannelError, TransientChannelError, classify_status


class HttpPoster:
    def __init__(self, *, timeout_seconds: float, what: str) -> None:
        # aiohttp's client costs about a third of httpx's CPU per webhook here (FASTSTREAM.md, measured).
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._what = what
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, **request: Any) -> None:
        """Returns on a 2xx answer; raises a transient or permanent channel error for anything else."""
        assert self._session is not None, "start() the channel first"
        try:
            async with self._session.post(url, allow_redirects=False, **request) as response:
                await response.read()
                status = response.status
        except aiohttp.InvalidURL as exc:
            raise PermanentChannelError(f"{self._what} address is invalid") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Every other client error (a cut-off body, a broken response) says nothing against the request.
            raise TransientChannelError(f"{self._what} unreachable: {type(exc).__name__}") from exc
        if error := classify_status(status, self._what):
            raise error
