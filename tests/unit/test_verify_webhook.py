"""The verification helper agency integrators copy agrees with the Standard Webhooks reference library."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from shared.verify_webhook import InvalidWebhookError, WebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
BODY = json.dumps({"type": "referral.issued", "case_code": "KB-26-7QK2M9"}).encode()


def signed(body: bytes = BODY, *, secret: str = SECRET, at: datetime = NOW, webhook_id: str = "n-1") -> dict[str, str]:
    """Headers as the reference library (and Rujukan's notifier, which uses it) makes them."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body.decode()),
    }


def a_receiver() -> WebhookReceiver:
    return WebhookReceiver(secret=SECRET, clock=NOW.timestamp)


def test_a_genuine_webhook_is_accepted_and_parsed() -> None:
    assert a_receiver().verify(BODY, signed()) == json.loads(BODY)


@pytest.mark.parametrize(
    ("body", "headers", "why"),
    [
        (BODY.replace(b"KB-26", b"KB-27"), signed(), "no signature matches"),
        (BODY, signed(secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"), "no signature matches"),
        (BODY, signed(at=NOW - timedelta(minutes=6)), "more than five minutes"),
        (BODY, signed(at=NOW + timedelta(minutes=6)), "more than five minutes"),
        (BODY, {"webhook-id": "n-1"}, "missing webhook headers"),
    ],
    ids=["tampered body", "wrong secret", "too old", "from the future", "unsigned"],
)
def test_a_tampered_misdirected_or_stale_webhook_is_refused(body: bytes, headers: dict[str, str], why: str) -> None:
    with pytest.raises(InvalidWebhookError, match=why):
        a_receiver().verify(body, headers)


def test_a_resend_under_the_same_webhook_id_is_recognised_once_the_first_was_handled() -> None:
    receiver = a_receiver()
    first = signed()
    receiver.verify(BODY, first)
    assert not receiver.handled_before(first)  # the receiver failed before handling it: the resend must get in

    receiver.mark_handled(first)

    assert receiver.handled_before(signed())
    assert not receiver.handled_before(signed(webhook_id="n-2"))


def test_the_reference_library_accepts_what_the_helper_accepts() -> None:
    headers = signed(at=datetime.now(UTC))
    assert Webhook(SECRET).verify(BODY, headers) == WebhookReceiver(secret=SECRET).verify(BODY, headers)
