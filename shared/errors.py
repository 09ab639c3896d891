"""Errors raised on purpose, classified once by what the broker should do with the message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from uuid import UUID


class RujukanError(Exception):
    """Base for errors we raise on purpose."""


class PermanentError(RujukanError):
    """Retrying cannot help: the message goes to its dead-letter queue with this reason."""


class UnknownContractError(PermanentError):
    """A message's AMQP ``type`` names no contract (or a major version) this service knows."""

    def __init__(self, message_type: str | None) -> None:
        super().__init__(f"unknown contract {message_type or '(no type property)'}")


class MissingMessageIdError(PermanentError):
    """A message without ``message_id`` cannot be de-duplicated, so it is not accepted."""

    def __init__(self) -> None:
        super().__init__("message has no message_id property")


class IllegalTransitionError(PermanentError):
    """A referral was asked to move to a state its current state does not allow."""

    def __init__(self, referral_id: UUID, current: str, requested: str) -> None:
        self.referral_id = referral_id
        self.current = current
        self.requested = requested
        super().__init__(f"referral {referral_id}: {current} -> {requested} is not allowed")


class UnknownReferralError(PermanentError):
    """A reply or report names a referral the ledger does not hold."""

    def __init__(self, referral_id: UUID) -> None:
        self.referral_id = referral_id
        super().__init__(f"referral {referral_id} does not exist")


class NotPermittedError(PermanentError):
    """An agency acted on something that is not its own (another agency's referral or case)."""


class ReportConflictError(PermanentError):
    """The same police report number arrived again with different content."""

    def __init__(self, case_id: UUID) -> None:
        self.case_id = case_id
        super().__init__(f"case {case_id} was already reported with different content; send an amendment (case.amend)")


class TransientError(RujukanError):
    """Worth retrying: the broker, the database or a channel was briefly unavailable."""


class ConfigurationError(RujukanError):
    """The directory or settings are invalid; the service refuses to start."""


UNKNOWN_FIELD = "(a field not in the contract)"


_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def field_path(loc: Iterable[str | int], error_type: str) -> str:
    """A validation error's field path, for an error body or a dead-letter reason. The name of a field that is
    not in the contract is the sender's own text: named when it is written like a field name (``religion``,
    ``reporter_name``: what an integrator needs to see), left out otherwise (a system may key a victim by name)."""
    parts = [str(part) for part in loc]
    if error_type == "extra_forbidden" and parts and not _FIELD_NAME.fullmatch(parts[-1]):
        parts[-1] = UNKNOWN_FIELD
    return ".".join(parts) or "(body)"
