"""Deterministic identifiers: the same facts always give the same id, so repeats are recognised."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

CASE_NAMESPACE = UUID("5b0c7a3e-3f0e-5d1a-9c1e-6a7e2f4d8b10")
"""UUIDv5 namespace of case ids: ``case_id = uuid5(CASE_NAMESPACE, "<agency id>:<report number>")``."""

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def normalise_report_number(number: str) -> str:
    """``lp/b/123  /viii`` and ``LP/B/123 /VIII`` are the same nomor LP typed twice."""
    return " ".join(number.split()).upper()


def case_id_for(reporting_agency: str, police_report_number: str) -> UUID:
    return uuid5(CASE_NAMESPACE, f"{reporting_agency}:{normalise_report_number(police_report_number)}")


def case_code_for(case_id: UUID, *, prefix: str, reported_at: datetime) -> str:
    """A short code people can read out on the phone: province, year, six Crockford base-32 characters."""
    value = case_id.int
    chars = []
    for _ in range(6):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return f"{prefix}-{reported_at:%y}-{''.join(chars)}"


def derived_id(source: str | UUID, purpose: str) -> str:
    """A message id derived from the message that caused it: a redelivery derives the same id."""
    return str(uuid5(CASE_NAMESPACE, f"{source}:{purpose}"))


def referral_id_for(case_id: UUID, agency_id: str) -> UUID:
    return uuid5(case_id, agency_id)
