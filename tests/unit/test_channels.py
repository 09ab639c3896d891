from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)

from services.notifier.channels import (
    CircuitBreakers,
    Outgoing,
    PermanentChannelError,
    QuickRetries,
    RecipientDeferredError,
    TransientChannelError,
    classify_status,
)
from services.notifier.channels.email import EmailChannel, classify_smtp_error
from services.notifier.channels.gateway import GatewayChannel
from services.notifier.channels.targets import GuardedResolver
from services.notifier.channels.webhook import WebhookChannel
from shared.settings import Settings
from tests.system import SmtpSink

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize("status", [200, 202, 204])
def test_success_answer_is_no_error(status: int) -> None:
    assert classify_status(status) is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_timeout_throttling_and_server_errors_are_worth_retrying(status: int) -> None:
    error = classify_status(status)

    assert isinstance(error, TransientChannelError)
    assert str(status) in error.reason


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
def test_client_errors_and_redirects_are_not_retried(status: int) -> None:
    error = classify_status(status)

    assert isinstance(error, PermanentChannelError)
    assert str(status) in error.reason


def test_the_gateways_answers_are_classified_like_a_webhooks_and_named_as_the_gateway() -> None:
    throttled = classify_status(429, "gateway")
    refused = classify_status(400, "gateway")

    assert isinstance(throttled, TransientChannelError)
    assert throttled.reason == "gateway answered HTTP 429"
    assert isinstance(refused, PermanentChannelError)


def test_a_mailbox_that_does_not_exist_is_not_retried_but_a_full_or_greylisting_one_is() -> None:
    unknown = classify_smtp_error(SMTPRecipientsRefused([SMTPRecipientRefused(550, "no such user", "x@example.org")]))
    later = classify_smtp_error(SMTPRecipientsRefused([SMTPRecipientRefused(451, "try again", "x@example.org")]))

    assert isinstance(unknown, PermanentChannelError)
    assert unknown.reason == "email recipient refused (SMTP 550)"
    assert isinstance(later, TransientChannelError)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (SMTPDataError(554, "rejected"), False),
        (SMTPResponseException(421, "closing"), True),
        (SMTPServerDisconnected("gone"), True),
        (SMTPConnectError("refused"), True),
    ],
)
def test_smtp_failures_are_transient_unless_the_server_refuses_for_good(error: SMTPException, transient: bool) -> None:
    assert isinstance(classify_smtp_error(error), TransientChannelError) is transient


class _BrokenSession:
    """An HTTP session whose every answer breaks off mid-body."""

    def post(self, *_: object, **__: object) -> _BrokenSession:
        return self

    async def __aenter__(self) -> None:
        raise aiohttp.ClientPayloadError("Response payload is not completed")

    async def __aexit__(self, *_: object) -> None:
        return None


@pytest.mark.parametrize("kind", ["webhook", "gateway"])
async def test_an_answer_broken_off_mid_body_is_worth_retrying(kind: str) -> None:
    retries = QuickRetries(attempts=2, breakers=CircuitBreakers(threshold=10, cool_down=30), max_wait_seconds=0)
    channel: WebhookChannel | GatewayChannel
    if kind == "webhook":
        channel = WebhookChannel(
            timeout_seconds=1, retries=retries, resolver=GuardedResolver(lambda: (), what="webhook")
        )
        message = Outgoing("n-1", "webhook", "http://agency.example/hook", text="t", payload={}, secret=SECRET)
    else:
        channel = GatewayChannel(
            url="http://gateway.example/messages",
            token=None,
            timeout_seconds=1,
            retries=retries,
            resolver=GuardedResolver(lambda: (), what="gateway"),
        )
        message = Outgoing("n-1", "sms", "+628125502001", text="t")
    channel._http._session = _BrokenSession()  # type: ignore[assignment]

    with pytest.raises(TransientChannelError) as failure:
        await channel.deliver(message)

    assert failure.value.attempts == 2


async def test_a_recipient_deferred_by_the_mail_server_is_retried_later_without_opening_the_servers_circuit() -> None:
    breakers = CircuitBreakers(threshold=1, cool_down=30)
    retries = QuickRetries(attempts=2, breakers=breakers, max_wait_seconds=0)

    async def deferred() -> None:
        raise classify_smtp_error(SMTPRecipientsRefused([SMTPRecipientRefused(452, "mailbox full", "x@example.org")]))

    with pytest.raises(TransientChannelError):
        await retries.run("smtp://relay:25", deferred, channel="email")

    assert breakers.allows("smtp://relay:25")


@pytest.mark.parametrize(
    "error",
    [
        SMTPAuthenticationError(535, "authentication failed"),
        SMTPResponseException(530, "authentication required"),
        SMTPSenderRefused(550, "sender rejected", "rujukan@example.org"),
    ],
)
def test_a_relay_refusing_our_login_or_sender_is_a_transient_fault_of_the_relay(error: SMTPException) -> None:
    classified = classify_smtp_error(error)

    assert isinstance(classified, TransientChannelError)
    assert not isinstance(classified, RecipientDeferredError)


async def test_an_address_the_mail_server_cannot_take_fails_for_good_and_leaves_its_circuit_closed(
    tmp_path: Path,
) -> None:
    """Found by review: an address with a non-ASCII local part, on a relay without SMTPUTF8, was taken for the relay
    being down: retried for hours, and counted towards opening the relay's circuit for every other address."""
    relay = SmtpSink()
    await relay.start()
    breakers = CircuitBreakers(threshold=1, cool_down=30)
    channel = EmailChannel(
        Settings(smtp_port=relay.port, data_dir=tmp_path),
        retries=QuickRetries(attempts=2, breakers=breakers, max_wait_seconds=0),
    )
    try:
        with pytest.raises(PermanentChannelError) as refused:
            await channel.deliver(Outgoing("n-1", "email", "budi.ä@example.org", text="t", subject="s"))
        await channel.deliver(Outgoing("n-2", "email", "meja@example.org", text="t", subject="s"))
    finally:
        await relay.stop()

    assert "SMTPUTF8" in refused.value.reason
    assert [mail.to for mail in relay.mails] == [("meja@example.org",)]


def test_a_sender_address_a_relay_without_smtputf8_would_refuse_is_refused_at_start(tmp_path: Path) -> None:
    """Found by review: the relay's refusal of a non-ASCII sender reads as the recipient's address needing SMTPUTF8,
    which the notifier takes as the recipient's fault: every email would fail for good."""
    with pytest.raises(ValueError, match="sender's address must be ASCII"):
        Settings(smtp_sender="Rujukan <rujukän@example.org>", data_dir=tmp_path)

    assert Settings(smtp_sender="Rujukan TPPO Kalbar — Dinsos <rujukan@example.org>", data_dir=tmp_path)
