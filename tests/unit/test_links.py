"""One-click links are signed, expire, and cannot be replayed as another kind of token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.links import ExpiredLinkError, LinkClaim, LinkError, LinkSigner

NOW = datetime(2026, 8, 17, 9, 0, tzinfo=UTC)
KEY = b"k" * 32


def a_claim(expires_at: datetime = NOW + timedelta(hours=1)) -> LinkClaim:
    return LinkClaim("notification-1", uuid.uuid4(), "dinsos-bengkayang", "piket-pagi", expires_at)


def test_a_link_names_its_referral_and_officer_until_it_expires() -> None:
    claim = a_claim()
    token = LinkSigner(KEY).issue(claim)

    assert LinkSigner(KEY).verify(token, now=NOW) == claim
    with pytest.raises(ExpiredLinkError):
        LinkSigner(KEY).verify(token, now=claim.expires_at)


def test_a_link_with_an_edited_claim_or_another_key_is_refused() -> None:
    token = LinkSigner(KEY).issue(a_claim())
    body, signature = token.split(".")
    other = LinkSigner(KEY).issue(a_claim(NOW + timedelta(days=365))).split(".")[0]

    for forged in (f"{other}.{signature}", f"{body}.{signature[:-2]}", "", "no-dot"):
        with pytest.raises(LinkError):
            LinkSigner(KEY).verify(forged, now=NOW)
    with pytest.raises(LinkError):
        LinkSigner(b"x" * 32).verify(token, now=NOW)


def test_a_session_token_cannot_be_used_as_a_link() -> None:
    session = LinkSigner(KEY, purpose="officer-session").issue(a_claim())

    with pytest.raises(LinkError):
        LinkSigner(KEY).verify(session, now=NOW)
