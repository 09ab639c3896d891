"""structlog set-up: JSON lines on stdout, and a redaction step with an allowlist of loggable fields.

Global logging state is changed here only, through ``configure_logging``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

LOGGABLE_FIELDS: frozenset[str] = frozenset(
    {
        "event", "level", "timestamp", "logger", "service", "exception",
        "case_id", "case_code", "referral_id", "message_id", "causation_id", "agency_id",
        "reporting_agency", "regency_code", "queue", "routing_key", "message_type", "reason", "status",
        "from_status", "to_status", "priority", "attempt", "attempts", "delay_seconds", "channel",
        "notification_id", "error", "count", "port", "url", "path", "method", "status_code",
        "victim_count", "referrals", "published", "elapsed_ms", "key_id", "key_file", "directory",
        "recipient", "history", "gaps", "nobody_on_duty", "escalation_level",
        "operator",  # an operator's id from the directory (ops console actions)
        "fields",  # paths of the fields a validation error names (shared.errors.field_path), never their values
        "tasks",  # where each of a service's tasks waits: names of functions and lines of code (shared.service)
    }
)  # fmt: skip
"""Everything else is replaced by ``[redacted]``: a new field must be shown to be victim-safe first."""

REDACTED = "[redacted]"


def redact_sensitive(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: keep allowlisted fields, redact the values of all others."""
    for key in list(event_dict):
        if key not in LOGGABLE_FIELDS and not key.startswith("_"):
            event_dict[key] = REDACTED
    return event_dict


def _drop_foreign_extras(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Records from the standard library (FastStream, uvicorn) arrive with their own extras; keep them
    # under the allowlist too instead of trusting what a library chose to attach.
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


def configure_logging(level: str = "INFO", *, service: str | None = None, cache_loggers: bool = False) -> None:
    """``cache_loggers`` for a service process: each logger is assembled once instead of on every call (FastStream
    logs every message it takes, below the level, through one: about 1 % of a service's samples in a profile of a
    raid). Off where a test captures logs, which reconfigures structlog after loggers were first used."""
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            redact_sensitive,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=cache_loggers,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[
                _drop_foreign_extras,
                structlog.processors.format_exc_info,
                redact_sensitive,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
