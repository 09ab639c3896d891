"""Operator sessions for the ops page: a signed, short-lived cookie naming the operator, the token they signed in
with, when they signed in and the session's CSRF token. Nothing is stored server-side; the directory is asked on
every request, so an operator (or a token) taken out of it is signed out at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.directory import Directory, Operator
from shared.tokens import Scope

SESSION_MINUTES = 60
"""An unattended console signs itself out: only page loads and actions extend a session, not the auto-refresh."""
SESSION_HOURS = 12
"""However busy, a session ends this long after its sign-in: a copied cookie cannot be kept alive by using it."""

_TOKEN_HASH_CHARS = 16


@dataclass(frozen=True)
class OpsSession:
    operator_id: str
    token_hash: str
    """A prefix of the token's SHA-256: the session ends when that token leaves the directory or expires."""
    csrf: str
    expires_at: datetime
    signed_in_at: datetime


@dataclass(frozen=True)
class SignedIn:
    operator: Operator
    session: OpsSession


class SignInRefusedError(Exception):
    """A sign-in that cannot be honoured; ``status_code`` is the HTTP answer (401 unknown, 403 not an operator)."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class OpsSessions:
    def __init__(self, key: bytes) -> None:
        # The link key signs officer links and sessions too; its own purpose keeps the three apart.
        self._key = hmac.new(key, b"ops-session", hashlib.sha256).digest()

    def sign_in(self, directory: Directory, token: str, now: datetime) -> OpsSession:
        """A new session for the operator holding ``token``."""
        found = directory.token_holder(token)
        if found is None:
            raise SignInRefusedError(401, "unknown token")
        holder, entry = found
        if not entry.valid_at(now):
            raise SignInRefusedError(401, f"expired token of {holder.id}")
        if not isinstance(holder, Operator) or Scope.OPERATE not in entry.scopes:
            raise SignInRefusedError(403, f"token of {holder.id} has no operate scope")
        return OpsSession(
            operator_id=holder.id,
            token_hash=entry.sha256[:_TOKEN_HASH_CHARS],
            csrf=secrets.token_urlsafe(24),
            expires_at=now + timedelta(minutes=SESSION_MINUTES),
            signed_in_at=now,
        )

    def renewed(self, session: OpsSession, now: datetime) -> OpsSession:
        """Another hour, but never past ``SESSION_HOURS`` after the sign-in, which a renewal carries unchanged."""
        last = session.signed_in_at + timedelta(hours=SESSION_HOURS)
        expires_at = min(now + timedelta(minutes=SESSION_MINUTES), last)
        return OpsSession(session.operator_id, session.token_hash, session.csrf, expires_at, session.signed_in_at)

    def encode(self, session: OpsSession) -> str:
        payload = {
            "o": session.operator_id,
            "t": session.token_hash,
            "c": session.csrf,
            "e": int(session.expires_at.timestamp()),
            "s": int(session.signed_in_at.timestamp()),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def verify(self, value: str | None, directory: Directory, now: datetime) -> SignedIn | None:
        """The signed-in operator and their session, or None for a missing, forged, expired or revoked session."""
        session = self.decode(value, now)
        if session is None:
            return None
        operator = next((op for op in directory.operators if op.id == session.operator_id), None)
        if operator is None:
            return None
        still_valid = any(
            entry.sha256.startswith(session.token_hash) and entry.valid_at(now) for entry in operator.api_tokens
        )
        return SignedIn(operator, session) if still_valid else None

    def decode(self, value: str | None, now: datetime) -> OpsSession | None:
        """The session a cookie carries when its signature holds and it has not expired (the directory unasked)."""
        if not value:
            return None
        body, _, signature = value.partition(".")
        # Bytes, not str: compare_digest refuses non-ASCII text, and a cookie is whatever a browser sends.
        if not body or not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        try:
            payload = json.loads(_unb64(body))
            session = OpsSession(
                operator_id=str(payload["o"]),
                token_hash=str(payload["t"]),
                csrf=str(payload["c"]),
                expires_at=datetime.fromtimestamp(int(payload["e"]), UTC),
                signed_in_at=datetime.fromtimestamp(int(payload["s"]), UTC),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if now >= session.expires_at or len(session.token_hash) != _TOKEN_HASH_CHARS:
            return None
        return session

    @staticmethod
    def csrf_matches(session: OpsSession, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(session.csrf.encode(), (submitted or "").encode())

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
