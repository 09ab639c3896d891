"""Intake's domain metrics: case messages accepted, and refused by reason class, whichever way they came (HTTP or
AMQP). Labels are the kind of message and a fixed reason class: never a report number, an agency's words or a
victim."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter

from services.intake.reports import InvalidReportError, UncertainReportError, UnknownCaseError
from shared.consuming import InvalidMessageError, UnverifiedSenderError
from shared.contracts.cases import CaseAmendment, CaseReport, CaseWithdrawal
from shared.errors import (
    MissingMessageIdError,
    NotPermittedError,
    ReportConflictError,
    TransientError,
    UnknownContractError,
)


class Kind(StrEnum):
    REPORT = "report"
    AMENDMENT = "amendment"
    WITHDRAWAL = "withdrawal"
    UNKNOWN = "unknown"
    """An AMQP message whose type names no case message."""


_KINDS = {CaseReport.TYPE: Kind.REPORT, CaseAmendment.TYPE: Kind.AMENDMENT, CaseWithdrawal.TYPE: Kind.WITHDRAWAL}

_REASONS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...] = (
    ((InvalidReportError, InvalidMessageError, UnknownContractError, MissingMessageIdError), "invalid"),
    (ReportConflictError, "conflict"),
    (UncertainReportError, "uncertain"),
    (UnknownCaseError, "unknown_case"),
    (NotPermittedError, "not_permitted"),
    (UnverifiedSenderError, "unverified_sender"),
    (TransientError, "unavailable"),
)


def kind_of(message_type: str | None) -> Kind:
    return _KINDS.get(message_type or "", Kind.UNKNOWN)


def reason_class(error: Exception) -> str:
    """A fixed word per kind of refusal (``error`` for anything unforeseen); never the error's own text."""
    return next((reason for types, reason in _REASONS if isinstance(error, types)), "error")


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._accepted = Counter(
            "rujukan_reports_accepted",
            "Case reports, amendments and withdrawals intake accepted (a repeat of an accepted one included).",
            ("kind",),
            registry=registry,
        )
        self._refused = Counter(
            "rujukan_reports_refused",
            "Case messages intake refused, by kind and reason class (unavailable: the sender should retry). HTTP "
            "bodies that fail the contract are answered 422 by the framework before intake sees them.",
            ("kind", "reason"),
            registry=registry,
        )

    @contextmanager
    def counting(self, kind: Kind) -> Iterator[None]:
        """Counts the block as accepted when it returns, refused (by the class of its error) when it raises."""
        try:
            yield
        except Exception as exc:
            self._refused.labels(kind=kind.value, reason=reason_class(exc)).inc()
            raise
        self._accepted.labels(kind=kind.value).inc()
