"""One-click links for duty officers: signed, expiring tokens naming a referral and an officer.

The notifier issues them inside notifications; the referral service verifies them and makes each one
single-use (its ledger records the token id once used).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID


class LinkError(ValueError):
    """A link that cannot be honoured; the message is safe to show the officer."""


class ExpiredLinkError(LinkError):
    pass


@dataclass(frozen=True)
class LinkClaim:
    token_id: str
    """The notification id: one link per notification, so a resent notification carries the same link."""
    referral_id: UUID
    agency_id: str
    officer_id: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, key: bytes, *, purpose: str = "officer-link") -> None:
        # One key, several purposes: a session cookie can never be replayed as a link or the reverse.
        self._key = hmac.new(key, purpose.encode(), hashlib.sha256).digest()

    def issue(self, claim: LinkClaim) -> str:
        payload = {
            "t": claim.token_id,
            "r": str(claim.referral_id),
            "a": claim.agency_id,
            "o": claim.officer_id,
            "e": int(claim.expires_at.timestamp()),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str, *, now: datetime) -> LinkClaim:
        body, _, signature = token.partition(".")
        # Bytes, not str: compare_digest refuses non-ASCII text, and a link is whatever a browser sends.
        if not body or not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            raise LinkError("tautan tidak sah (invalid link)")
        try:
            payload = json.loads(_unb64(body))
            claim = LinkClaim(
                token_id=str(payload["t"]),
                referral_id=UUID(payload["r"]),
                agency_id=str(payload["a"]),
                officer_id=str(payload["o"]),
                expires_at=datetime.fromtimestamp(int(payload["e"]), UTC),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LinkError("tautan tidak sah (invalid link)") from exc
        if now >= claim.expires_at:
            raise ExpiredLinkError("tautan sudah kedaluwarsa (link expired)")
        return claim

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
