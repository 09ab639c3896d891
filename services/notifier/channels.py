"""The webhook channel: Standard Webhooks signatures, one long-lived HTTP session, transient vs permanent."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from shared.directory import Webhook as WebhookConfig


class ChannelError(Exception):
    def __init__(self, reason: str, *, attempts: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        """Requests actually sent before giving up (0 when the circuit was open)."""


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


class CircuitOpenError(TransientChannelError):
    """The endpoint's circuit is open: no request was sent, and no quick retry is worth waiting for."""


def _worth_a_quick_retry(error: BaseException) -> bool:
    return isinstance(error, TransientChannelError) and not isinstance(error, CircuitOpenError)


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreakers:
    """Stops hammering an endpoint that keeps failing: after ``threshold`` transient failures in a row its
    circuit opens for ``cool_down`` seconds, during which its messages go straight to a wait queue instead of
    holding prefetch slots that other agencies' notifications need. The first request after that probes."""

    def __init__(self, *, threshold: int, cool_down: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._cool_down = cool_down
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def allows(self, endpoint: str) -> bool:
        return self._clock() >= self._circuits.get(endpoint, _Circuit()).open_until

    def failed(self, endpoint: str) -> None:
        circuit = self._circuits.setdefault(endpoint, _Circuit())
        circuit.failures += 1
        if circuit.failures >= self._threshold:
            circuit.open_until = self._clock() + self._cool_down
            # A failed probe after the cool-down opens the circuit again at once.
            circuit.failures = self._threshold - 1

    def succeeded(self, endpoint: str) -> None:
        self._circuits.pop(endpoint, None)


class WebhookChannel:
    """POSTs signed notifications. ``webhook-id`` is the caller's and stays the same across retries, so a
    receiver that saw it already drops the repeat."""

    name = "webhook"

    def __init__(
        self, *, timeout_seconds: float, attempts: int, breakers: CircuitBreakers, max_wait_seconds: float = 4.0
    ) -> None:
        # aiohttp's client costs about a third of httpx's CPU per webhook here (FASTSTREAM.md, measured).
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._attempts = attempts
        self._breakers = breakers
        self._max_wait = max_wait_seconds
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

    async def deliver(self, config: WebhookConfig, *, notification_id: str, payload: dict[str, Any]) -> int:
        """Delivers with a few quick in-process retries; returns the attempts it took, or raises the last error
        (its ``attempts`` saying how many requests were sent)."""
        endpoint = str(config.url)
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_worth_a_quick_retry),
                wait=wait_random_exponential(multiplier=0.25, max=self._max_wait),
                stop=stop_after_attempt(self._attempts),
                reraise=True,
            ):
                with attempt:
                    if not self._breakers.allows(endpoint):
                        raise CircuitOpenError("webhook circuit open after repeated failures")
                    attempts += 1
                    try:
                        await self._post_once(config, notification_id, payload)
                    except TransientChannelError:
                        self._breakers.failed(endpoint)
                        raise
        except ChannelError as exc:
            exc.attempts = attempts
            raise
        self._breakers.succeeded(endpoint)
        return attempts

    async def _post_once(self, config: WebhookConfig, notification_id: str, payload: dict[str, Any]) -> None:
        assert self._session is not None, "start() the channel first"
        body = json.dumps(payload, separators=(",", ":"))
        sent_at = datetime.now(UTC)
        signature = self._signer(config.secret).sign(notification_id, sent_at, body)
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
