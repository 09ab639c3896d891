"""One long-lived HTTP session for the channels that POST (webhook, gateway), with their failures classified."""

from __future__ import annotations

from typing import Any

import aiohttp
from yarl import URL

from services.notifier.channels import PermanentChannelError, TransientChannelError, classify_status
from services.notifier.channels.targets import GuardedResolver


class HttpPoster:
    """Connects only where ``resolver`` allows (services/notifier/channels/targets.py) and never follows a
    redirect, which could lead anywhere."""

    def __init__(self, *, timeout_seconds: float, what: str, resolver: GuardedResolver) -> None:
        # aiohttp's client costs about a third of httpx's CPU per webhook here (FASTSTREAM.md, measured).
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._what = what
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, connector=aiohttp.TCPConnector(resolver=self._resolver)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._resolver.close()

    async def post(self, url: str, **request: Any) -> None:
        """Returns on a 2xx answer; raises a transient or permanent channel error for anything else."""
        assert self._session is not None, "start() the channel first"
        try:
            host = URL(url).host
        except ValueError as exc:
            raise PermanentChannelError(f"{self._what} address is invalid") from exc
        if host is None:
            raise PermanentChannelError(f"{self._what} address has no host")
        self._resolver.check_literal(host)
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
