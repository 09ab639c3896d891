"""The webhook channel: Standard Webhooks signatures, one long-lived HTTP session, transient vs permanent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from shared.directory import Webhook as WebhookConfig


class ChannelError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientChannelError(ChannelError):
    """Timeout, connection refused, 408, 429, 5xx: the same request may succeed later."""


class PermanentChannelError(ChannelError):
    """Other 4xx, a redirect, a bad address: retrying cannot help."""


def classify_status(status: int) -> ChannelError | None:
    if 200 <= status < 300:
        return None
    if status in (408, 429) or status >= 500:
        return TransientChannelError(f"webhook answered HTTP {status}")
    return PermanentChannelError(f"webhook answered HTTP {status}")


class WebhookChannel:
    """POSTs signed notifications. ``webhook-id`` is the caller's and stays the same across retries, so a
    receiver that saw it already drops the repeat."""

    name = "webhook"

    def __init__(self, *, timeout_seconds: float, attempts: int, max_wait_seconds: float = 4.0) -> None:
        # aiohttp's client costs about a third of httpx's CPU per webhook here (FASTSTREAM.md, measured).
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._attempts = attempts
        self._max_wait = max_wait_seconds
        self._session: aiohttp.ClientSession | None = None

    @property
    def attempts(self) -> int:
        return self._attempts

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def deliver(self, config: WebhookConfig, *, notification_id: str, payload: dict[str, Any]) -> int:
        """Delivers with a few quick in-process retries; returns the attempts it took, or raises the last error."""
        attempts = 0
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientChannelError),
            wait=wait_random_exponential(multiplier=0.25, max=self._max_wait),
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        ):
            with attempt:
                attempts += 1
                await self._post_once(config, notification_id, payload)
        return attempts

    async def _post_once(self, config: WebhookConfig, notification_id: str, payload: dict[str, Any]) -> None:
        assert self._session is not None, "start() the channel first"
        body = json.dumps(payload, separators=(",", ":"))
        sent_at = datetime.now(UTC)
        signature = Webhook(config.secret).sign(notification_id, sent_at, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": notification_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        try:
            async with self._session.post(
                str(config.url), data=body.encode(), headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise TransientChannelError(f"webhook unreachable: {type(exc).__name__}") from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentChannelError("webhook address is invalid") from exc
        if error := classify_status(status):
            raise error
