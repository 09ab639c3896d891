"""The webhook channel: Standard Webhooks signatures over one long-lived HTTP session."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from services.notifier.channels import Outgoing, QuickRetries
from services.notifier.channels.http import HttpPoster
from services.notifier.channels.targets import GuardedResolver


class WebhookChannel:
    """POSTs signed notifications. ``webhook-id`` is the notification id and stays the same across retries, so a
    receiver that saw it already drops the repeat."""

    kinds = frozenset({"webhook"})

    def __init__(self, *, timeout_seconds: float, retries: QuickRetries, resolver: GuardedResolver) -> None:
        self._retries = retries
        self._http = HttpPoster(timeout_seconds=timeout_seconds, what="webhook", resolver=resolver)
        self._signers: dict[str, Webhook] = {}

    def _signer(self, secret: str) -> Webhook:
        # One per secret, not per request: building one decodes the secret.
        if secret not in self._signers:
            self._signers[secret] = Webhook(secret)
        return self._signers[secret]

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def deliver(self, message: Outgoing) -> int:
        return await self._retries.run(message.to, lambda: self._post_once(message), channel="webhook")

    async def _post_once(self, message: Outgoing) -> None:
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
        await self._http.post(message.to, data=body.encode(), headers=headers)
