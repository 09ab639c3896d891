"""The SMS/WhatsApp channel: one HTTP gateway that sends either, idempotent on the notification id."""

from __future__ import annotations

from services.notifier.channels import Outgoing, QuickRetries
from services.notifier.channels.http import HttpPoster
from services.notifier.channels.targets import GuardedResolver


class GatewayChannel:
    """POSTs ``{"channel", "to", "text", "id"}`` with ``Idempotency-Key: <notification id>``, so a message resent
    after a crash mid-send reaches the phone once."""

    kinds = frozenset({"sms", "whatsapp"})

    def __init__(
        self, *, url: str, token: str | None, timeout_seconds: float, retries: QuickRetries, resolver: GuardedResolver
    ) -> None:
        self._url = url
        self._token = token
        self._retries = retries
        self._http = HttpPoster(timeout_seconds=timeout_seconds, what="gateway", resolver=resolver)

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def deliver(self, message: Outgoing) -> int:
        return await self._retries.run(self._url, lambda: self._post_once(message), channel="gateway")

    async def _post_once(self, message: Outgoing) -> None:
        headers = {"Idempotency-Key": message.notification_id}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = {"channel": message.kind, "to": message.to, "text": message.text, "id": message.notification_id}
        await self._http.post(self._url, json=body, headers=headers)
