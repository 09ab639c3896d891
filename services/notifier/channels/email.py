"""The email channel: plain-text mail over SMTP (aiosmtplib), one connection per message."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from services.notifier.channels import (
    ChannelError,
    Outgoing,
    PermanentChannelError,
    QuickRetries,
    RecipientDeferredError,
    TransientChannelError,
)
from shared.settings import Settings

_LOGIN_REFUSED = (530, 535)
"""Authentication required, or credentials refused."""


def classify_smtp_error(error: aiosmtplib.SMTPException) -> ChannelError:
    """SMTP's own split: 4xx may pass later (greylisting, a full mailbox), 5xx will not; a dropped or refused
    connection is the server's trouble, not the address's."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        permanent = all(code >= 500 for code in codes)
        reason = f"email recipient refused (SMTP {', '.join(map(str, codes))})"
        return PermanentChannelError(reason) if permanent else RecipientDeferredError(reason)
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        # aiosmtplib says so only of an address that needs SMTPUTF8 on a relay without it: no retry changes that,
        # and the relay still takes every other address.
        return PermanentChannelError("email address needs SMTPUTF8, which the email server does not offer")
    if isinstance(error, aiosmtplib.SMTPSenderRefused) or (
        isinstance(error, aiosmtplib.SMTPResponseException) and error.code in _LOGIN_REFUSED
    ):
        # Our own login or sender address at fault: the relay's trouble (and ours), never the recipient's.
        return TransientChannelError(f"email server refused our login or sender: SMTP {error.code}")
    if isinstance(error, aiosmtplib.SMTPResponseException) and not isinstance(
        error, aiosmtplib.SMTPConnectResponseError
    ):
        reason = f"email refused: SMTP {error.code}"
        return PermanentChannelError(reason) if error.code >= 500 else TransientChannelError(reason)
    return TransientChannelError(f"email server unreachable: {type(error).__name__}")


class EmailChannel:
    """``Message-ID`` is the notification id: a mail resent after a crash is recognisably the same mail."""

    kinds = frozenset({"email"})

    def __init__(self, settings: Settings, *, retries: QuickRetries) -> None:
        self._settings = settings
        self._retries = retries
        self._endpoint = f"smtp://{settings.smtp_host}:{settings.smtp_port}"
        self._domain = parseaddr(settings.smtp_sender)[1].rpartition("@")[2] or "rujukan.local"

    async def start(self) -> None:
        """Nothing to open: each message has its own SMTP connection."""

    async def close(self) -> None:
        """Nothing held open."""

    async def deliver(self, message: Outgoing) -> int:
        return await self._retries.run(self._endpoint, lambda: self._send_once(message), channel="email")

    def compose(self, message: Outgoing) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._settings.smtp_sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = f"<{message.notification_id}@{self._domain}>"
        mail.set_content(message.text)
        return mail

    async def _send_once(self, message: Outgoing) -> None:
        settings = self._settings
        try:
            await aiosmtplib.send(
                self.compose(message),
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password,
                start_tls=settings.smtp_starttls,
                timeout=settings.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPException as exc:
            raise classify_smtp_error(exc) from exc
        except (TimeoutError, OSError) as exc:
            raise TransientChannelError(f"email server unreachable: {type(exc).__name__}") from exc
