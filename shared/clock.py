"""The time, as every service reads it: injectable, so tests move it instead of waiting."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
