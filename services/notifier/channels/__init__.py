"""What every channel shares: one adapter interface, transient vs permanent failures, quick in-process retries
and a circuit breaker per endpoint. The adapters are webhook.py, email.py and gateway.py beside this file."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential


class ChannelError(Exception):
    def __init__(self, reason: str, *, attempts: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        """Requests actually sent before giving up (0 when the circuit was open)."""


class TransientChannelError(ChannelError):
    """Timeout, connection refused, 408, 429, 5xx, SMTP 4xx: the same request may succeed later."""


class PermanentChannelError(ChannelError):
    """Other 4xx, a redirect, SMTP 5xx, a bad address: retrying cannot help."""


def classify_status(status: int, channel: str = "webhook") -> ChannelError | None:
    if 200 <= status < 300:
        return None
    if status in (408, 429) or status >= 500:
        return TransientChannelError(f"{channel} answered HTTP {status}")
    return PermanentChannelError(f"{channel} answered HTTP {status}")


class RecipientDeferredError(TransientChannelError):
    """The endpoint works but defers this one recipient (SMTP 4xx on RCPT: a full or greylisting mailbox): worth
    trying later, and no mark against the endpoint's circuit."""


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
    holding prefetch slots that other agencies' notifications need. After that one request at a time probes; the
    others keep waiting until a probe succeeds (or, if a probe never answers, another cool-down passes)."""

    def __init__(self, *, threshold: int, cool_down: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._cool_down = cool_down
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def allows(self, endpoint: str) -> bool:
        circuit = self._circuits.get(endpoint)
        if circuit is None or circuit.open_until == 0.0:
            return True
        now = self._clock()
        if now < circuit.open_until:
            return False
        # Half-open: this caller is the probe; the circuit counts as open for everyone else meanwhile.
        circuit.open_until = now + self._cool_down
        return True

    def failed(self, endpoint: str) -> None:
        circuit = self._circuits.setdefault(endpoint, _Circuit())
        circuit.failures += 1
        if circuit.failures >= self._threshold:
            circuit.open_until = self._clock() + self._cool_down
            # A failed probe after the cool-down opens the circuit again at once.
            circuit.failures = self._threshold - 1

    def succeeded(self, endpoint: str) -> None:
        self._circuits.pop(endpoint, None)


@dataclass(frozen=True)
class Outgoing:
    """One notification as a channel sends it; built at send time, never put on the broker."""

    notification_id: str
    """The same for every resend (webhook-id, email Message-ID, gateway Idempotency-Key): receivers drop copies."""
    kind: str
    """``webhook``, ``email``, ``sms`` or ``whatsapp``."""
    to: str
    """The webhook URL, the email address or the phone number."""
    text: str
    subject: str = ""
    payload: Mapping[str, Any] | None = None
    """The webhook's JSON body."""
    secret: str | None = None
    """The webhook's signing secret."""


class Channel(Protocol):
    """One way out. ``deliver`` returns the attempts it took, or raises a ``ChannelError`` whose ``attempts``
    says how many requests were sent."""

    kinds: frozenset[str]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, message: Outgoing) -> int: ...


QUICK_RETRY_MAX_WAIT_SECONDS = 4.0


class QuickRetries:
    """Seconds of jittered in-process retries around one send, behind the endpoint's circuit breaker; longer
    waits are the wait queues' business, so a message never holds a prefetch slot for long."""

    def __init__(
        self, *, attempts: int, breakers: CircuitBreakers, max_wait_seconds: float = QUICK_RETRY_MAX_WAIT_SECONDS
    ) -> None:
        self._attempts = attempts
        self._breakers = breakers
        self._max_wait = max_wait_seconds

    async def run(self, endpoint: str, send: Callable[[], Awaitable[None]], *, channel: str) -> int:
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
                        raise CircuitOpenError(f"{channel} circuit open after repeated failures")
                    attempts += 1
                    try:
                        await send()
                    except RecipientDeferredError:
                        raise
                    except TransientChannelError:
                        self._breakers.failed(endpoint)
                        raise
        except ChannelError as exc:
            exc.attempts = attempts
            raise
        self._breakers.succeeded(endpoint)
        return attempts
