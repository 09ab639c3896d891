"""API tokens: what a token may do (its scopes), when it stops working, how it is found, and how failed
attempts are throttled. Only a token's SHA-256 is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Holder = TypeVar("Holder")


class Scope(StrEnum):
    REPORT = "report"
    """Police: submit, amend and withdraw cases, read its own cases, mark its referrals entered in error."""
    RECEIVE = "receive"
    """Receiving agencies: read and move the agency's own referrals."""
    OPERATE = "operate"
    """Operators: monitoring and dead-letter actions; no victim identity."""
    OVERSEE = "oversee"
    """Polda and the Gugus Tugas TPPO: statuses and statistics across their area; no victim identity."""


class ApiToken(BaseModel):
    """One token of an agency or operator; two are valid at once while a token is rotated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    scopes: tuple[Scope, ...] = Field(min_length=1)
    label: str | None = Field(default=None, max_length=100, description="e.g. the system or person holding it")
    not_after: AwareDatetime | None = Field(default=None, description="The token stops working after this time.")

    def valid_at(self, now: datetime) -> bool:
        return self.not_after is None or now <= self.not_after


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(scopes: tuple[Scope, ...], *, label: str | None = None) -> tuple[str, ApiToken]:
    """A new random token, and its entry for the directory (which never holds the token itself)."""
    token = secrets.token_urlsafe(32)
    return token, ApiToken(sha256=token_sha256(token), scopes=scopes, label=label)


def find_token(holders: Iterable[tuple[Holder, ApiToken]], token: str) -> tuple[Holder, ApiToken] | None:
    """The holder and entry of ``token``, expired or not. Every entry is compared, in constant time, so the
    answer's timing says nothing about how close a guess came."""
    digest = token_sha256(token)
    found: tuple[Holder, ApiToken] | None = None
    for holder, entry in holders:
        if hmac.compare_digest(digest, entry.sha256):
            found = holder, entry
    return found


class FailureLimiter:
    """Failed authentications per client address in a sliding window: past ``limit`` the address waits."""

    def __init__(self, *, limit: int = 10, window_seconds: float = 60.0, max_addresses: int = 10_000) -> None:
        self.limit = limit
        self.window = window_seconds
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str, now: float) -> float | None:
        """Seconds until ``address`` may try again, or None while it is under the limit."""
        failures = self._recent(address, now)
        if len(failures) < self.limit:
            return None
        return failures[-self.limit] + self.window - now

    def fail(self, address: str, now: float) -> int:
        """Record a failure; answers the address's failures in the window, this one included."""
        if address not in self._failures and len(self._failures) >= self.max_addresses:
            self._forget_quiet(now)
        failures = self._recent(address, now)
        failures.append(now)
        self._failures[address] = failures
        return len(failures)

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def _forget_quiet(self, now: float) -> None:
        # A flood from many addresses must not grow memory without bound: drop those with nothing recent,
        # and if every one is recent, the oldest.
        for address in list(self._failures):
            if not self._recent(address, now):
                del self._failures[address]
        if len(self._failures) >= self.max_addresses:
            del self._failures[min(self._failures, key=lambda a: self._failures[a][-1])]
