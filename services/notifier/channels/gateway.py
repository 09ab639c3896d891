"""The SMS/WhatsApp channel: one HTTP gateway that sends either, idempotent on the notification id."""

from __future__ import annotations

import aiohttp

from services.notifier.channels import (
    Outgoing,
    PermanentChannelError,
    QuickRetries,
    TransientChannelError,
    classify_status,
)


class GatewayChannel:
    """POSTs ``{"channel", "to", "text", "id"}`` with ``Idempotency-Key: <notification id>``, so a message resent
    after a crash mid-send reaches the phone once."""

    kinds = frozenset({"sms", "whatsapp"})

    def __init__(self, *, url: str, token: str | None, timeout_seconds: float, retries: QuickRetries) -> None:
        self._url = url
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._retries = retries
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def deliver(self, message: Outgoing) -> int:
        return await self._retries.run(self._url, lambda: self._post_once(message), channel="gateway")

    async def _post_once(self, message: Outgoing) -> None:
        assert self._session is not None, "start() the channel first"
        headers = {"Idempotency-Key": message.notification_id}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = {"channel": message.kind, "to": message.to, "text": message.text, "id": message.notification_id}
        try:
            async with self._session.post(self._url, json=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                status = response.status
        except aiohttp.InvalidURL as exc:
            raise PermanentChannelError("gateway address is invalid") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Every other client error (a cut-off body, a broken response) says nothing against the request.
            raise TransientChannelError(f"gateway unreachable: {type(exc).__name__}") from exc
        if error := classify_status(status, "gateway"):
            raise error
