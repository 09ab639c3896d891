"""Verifying Rujukan's webhooks in an agency's own system: copy this file, it needs only the standard library.

Rujukan signs every webhook the Standard Webhooks way (https://www.standardwebhooks.com): three headers,
``webhook-id`` (the notification id: the same on every retry of one notification), ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>">``, keyed with the
base64 part of your ``whsec_...`` secret). Verify the raw body before parsing it, refuse a timestamp more than five
minutes away, and drop an id you have already handled: a resend after a network failure carries the same id.

    receiver = WebhookReceiver(secret=os.environ["RUJUKAN_WEBHOOK_SECRET"])
    payload = receiver.verify(raw_body, request_headers)    # raises InvalidWebhookError: answer 400 (or 401)
    if receiver.handled_before(request_headers):            # a resend of one already handled: answer 2xx
        return 204
    ...                                                     # store it / act on it
    receiver.mark_handled(request_headers)                  # only now: a failure above means a resend is wanted
    return 204
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

TOLERANCE_SECONDS = 5 * 60


class InvalidWebhookError(Exception):
    """Not a webhook from Rujukan, changed on the way, or too old or too new: do not act on it."""


class WebhookReceiver:
    def __init__(self, *, secret: str, remember: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        """``remember``: how many recent ids are kept to drop resends (use your database in production: an id
        seen before a restart must still be recognised)."""
        self._key = base64.b64decode(secret.removeprefix("whsec_") + "==")
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """The parsed payload of a genuine, fresh webhook; raises ``InvalidWebhookError`` otherwise."""
        lowered = {name.lower(): value for name, value in headers.items()}
        webhook_id = lowered.get("webhook-id", "")
        timestamp = lowered.get("webhook-timestamp", "")
        signatures = lowered.get("webhook-signature", "")
        if not (webhook_id and timestamp and signatures):
            raise InvalidWebhookError("missing webhook headers")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise InvalidWebhookError("webhook-timestamp is not a number") from None
        if abs(self._clock() - sent_at) > TOLERANCE_SECONDS:
            raise InvalidWebhookError("webhook-timestamp is more than five minutes away")
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest())
        # Several signatures may be sent while a secret is rotated: any one that matches will do.
        for candidate in signatures.split():
            version, _, signature = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(signature.encode(), expected):
                payload: dict[str, Any] = json.loads(body)
                return payload
        raise InvalidWebhookError("no signature matches")

    def handled_before(self, headers: Mapping[str, str]) -> bool:
        """Whether this notification (its ``webhook-id``) was already marked handled: a resend to drop."""
        return _webhook_id(headers) in self._seen

    def mark_handled(self, headers: Mapping[str, str]) -> None:
        """Call once the notification is stored or acted on, never before: until then a resend must get through."""
        self._seen[_webhook_id(headers)] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)


def _webhook_id(headers: Mapping[str, str]) -> str:
    return next((value for name, value in headers.items() if name.lower() == "webhook-id"), "")
