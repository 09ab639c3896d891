"""A receiving agency's webhook endpoint: verifies Rujukan's signature before trusting anything, drops resends.

    cp shared/verify_webhook.py .         # beside this file; from the Rujukan repository, standard library only
    RUJUKAN_WEBHOOK_SECRET=whsec_... PORT=8080 python webhook_receiver.py

Rujukan POSTs one JSON notification per referral event (``referral.issued``, ``referral.escalated``,
``referral.cancelled``) to the URL in the directory, signed the Standard Webhooks way (README, "Verifying our
webhooks"). Answer 2xx once it is stored: anything else, or no answer, and Rujukan tries again later with the
same ``webhook-id``. Put it behind your HTTPS reverse proxy; this server speaks plain HTTP.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from verify_webhook import InvalidWebhookError, WebhookReceiver

receiver = WebhookReceiver(secret=os.environ["RUJUKAN_WEBHOOK_SECRET"])


class Notifications(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            payload = receiver.verify(body, dict(self.headers.items()))  # the raw body, before parsing it
        except InvalidWebhookError as exc:
            print(f"refused: {exc}", flush=True)
            self.send_response(400)
            self.end_headers()
            return
        if not receiver.handled_before(dict(self.headers.items())):
            store(payload)
            receiver.mark_handled(dict(self.headers.items()))  # only once stored: a failure above means a resend
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the access log would repeat what store() prints


def store(payload: dict[str, object]) -> None:
    """Your case system takes it here; the example prints one JSON line."""
    print(json.dumps({"verified": True, **payload}), flush=True)


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Notifications)
    print(f"listening on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()
