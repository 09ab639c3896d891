"""The webhook channel: Standard Webhooks signatures over one long-lived HTTP session."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook

from services.notifier.channels import (
    Outgoing,
    PermanentChannelError,
    QuickRetries,
    TransientChannelError,
    classify_status,
)


class WebhookChannel:
    """POSTs signed notifications. ``webhook-id`` is the notification id and stays the same across retries, so a
    receiver that saw it already drops the repeat."""

    kinds = frozenset({"webhook"})

    def __init__(self, *, timeout_seconds: float, retries: QuickRetries) -> None:
        # aiohttp's client costs about a third of httpx's CPU per webhook here (FASTSTREAM.md, measured).
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._retries = retries
        self._session: aiohttp.ClientSession | None = None
        self._signers: dict[str, Webhook] = {}

    def _signer(self, secret: str) -> Webhook:
        # One per secret, not per request: building one decodes the secret.
        if secret not in self._signers:
            self._signers[secret] = Webhook(secret)
        return self._signers[secret]

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def deliver(self, message: Outgoing) -> int:
        return await self._retries.run(message.to, lambda: self._post_once(message), channel="webhook")

    async def _post_once(self, message: Outgoing) -> None:
        assert self._session is not None, "start() the channel first"
        assert message.secret is not None, "a webhook is signed"
        body = json.dumps(message.payload, separators=(",", ":"))
        sent_at = datetime.now(UTC)
        signature = self._signer(message.secret).sign(message.notification_id, sent_at, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.notification_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        try:
            async with self._session.post(
                message.to, data=body.encode(), headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
        except aiohttp.InvalidURL as exc:
            raise PermanentChannelError("webhook address is invalid") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Every other client error (a cut-off body, a broken response) says nothing against the request.
            raise TransientChannelError(f"webhook unreachable: {type(exc).__name__}") from exc
        if error := classify_status(status):
            raise error
