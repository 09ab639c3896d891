"""Reading a dead letter's headers, and the headers of its replay. Pure: no broker, no I/O.

Two kinds of dead letter land in ``<queue>.dead``: ours (shared/consuming.py ``DeadLetters``: the reason in
``x-rujukan-reason``, the queue in ``x-rujukan-queue``, a sealed body flagged by ``x-rujukan-sealed-body``), and
the broker's own backstop (delivery limit, reject), which records ``x-death``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from shared.consuming import REASON_HEADER, REPLAY_HEADER, SEALED_BODY_HEADER
from shared.ids import case_id_for

QUEUE_HEADER = "x-rujukan-queue"
DEAD_AT_HEADER = "x-rujukan-dead-at"
REPLAYS_HEADER = "x-rujukan-replays"
"""How many times operators put the message back; a replay sets it one higher."""
REPLAYED_BY_HEADER = "x-rujukan-replayed-by"

DEAD_SUFFIX = ".dead"

IDENTITY_READ_LIMIT = 4 * 1024 * 1024
"""Bodies up to this size are read for the identity they carry; a larger one was refused unread as oversized."""

# What the broker and the dead-letter path wrote: a replay starts a fresh round without them (a copied
# x-delivery-count would have the consumer give up early, a copied reason would outlive the cause).
_DROPPED_ON_REPLAY = frozenset(
    {
        "x-delivery-count", "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
        "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
        REASON_HEADER, QUEUE_HEADER, DEAD_AT_HEADER, SEALED_BODY_HEADER, REPLAYED_BY_HEADER,
    }
)  # fmt: skip


def work_queue_of(dead_letter_queue: str) -> str:
    """The one queue a dead letter in ``dead_letter_queue`` may go back to: a header naming another queue is
    not trusted (any publisher can write headers)."""
    if not dead_letter_queue.endswith(DEAD_SUFFIX) or len(dead_letter_queue) == len(DEAD_SUFFIX):
        raise ValueError(f"{dead_letter_queue} is not a dead-letter queue")
    return dead_letter_queue[: -len(DEAD_SUFFIX)]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def reason_of(headers: Mapping[str, Any]) -> str:
    """Our reason when we dead-lettered it; else the broker's (``delivery_limit``, ``rejected``, ``expired``)."""
    if (ours := _text(headers.get(REASON_HEADER))) is not None:
        return ours
    death = _first_death(headers)
    broker_reason = _text(death.get("reason")) or _text(headers.get("x-first-death-reason"))
    if broker_reason is None:
        return "unknown (no reason header)"
    return f"broker: {broker_reason}"


def replays_of(headers: Mapping[str, Any]) -> int:
    try:
        return max(0, int(str(headers.get(REPLAYS_HEADER, 0))))
    except ValueError:
        return 0


def routing_key_of(headers: Mapping[str, Any]) -> str | None:
    keys = _first_death(headers).get("routing-keys")
    if isinstance(keys, list | tuple) and keys:
        return _text(keys[0])
    return None


def dead_at_of(headers: Mapping[str, Any], timestamp: datetime | None) -> datetime | None:
    """When it died: our header, the broker's ``x-death`` time, or at worst when it was first published."""
    if (ours := _text(headers.get(DEAD_AT_HEADER))) is not None:
        try:
            return _aware(datetime.fromisoformat(ours))
        except ValueError:
            pass
    death_time = _first_death(headers).get("time")
    if isinstance(death_time, datetime):
        return _aware(death_time)
    return _aware(timestamp) if timestamp is not None else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def replay_headers(headers: Mapping[str, Any], *, operator: str) -> dict[str, Any]:
    """The headers a replayed message carries: its own, less the dead-letter bookkeeping, with the replay
    counted, the operator named (an id, never identity) and the replay marked: without the mark the notifier takes
    a parked notification for a copy of one that already ended, and drops it."""
    kept = {key: value for key, value in headers.items() if key not in _DROPPED_ON_REPLAY}
    return {**kept, REPLAYS_HEADER: replays_of(headers) + 1, REPLAYED_BY_HEADER: operator, REPLAY_HEADER: True}


IDENTITY_REMOVED_HEADER = "x-rujukan-identity-removed"
"""Set on a case event kept in its dead-letter queue after its case's identity was erased, with the identity and
note taken out: there is nothing left to take out of it."""

NO_IDENTITY: dict[str, Any] = {"victims": {}, "summary": "", "contact_officer": None}
"""What intake seals as a case's identity (services/intake/reports.py ``identity_of``), with nothing in it."""


def _object_of(body: bytes) -> dict[str, Any] | None:
    if len(body) > IDENTITY_READ_LIMIT:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def submission_case_of(body: bytes) -> UUID | None:
    """The case a police unit's submission names by its reporting agency and report number (a report, an
    amendment, a withdrawal request, as intake's queue receives them), or None when the body names none. Such a
    body holds the victims' identity, or a note, in the police unit's own words."""
    data = _object_of(body)
    if data is None:
        return None
    agency, number = data.get("reporting_agency"), data.get("police_report_number")
    if isinstance(agency, str) and isinstance(number, str) and number.strip():
        return case_id_for(agency, number)
    return None


def without_identity(body: bytes, sealed_nothing: Callable[[UUID], dict[str, Any]]) -> tuple[UUID, bytes] | None:
    """A case event as intake publishes it (reported, amended, withdrawn), its case, and the event with the
    identity replaced by ``sealed_nothing(case_id)`` and the note by none: still an event its consumer takes (an
    erased case's identity is never read again, and an amendment leaves it erased). None when the body is no such
    event or holds neither."""
    data = _object_of(body)
    if data is None:
        return None
    try:
        case_id = UUID(str(data.get("case_id")))
    except ValueError:
        return None
    kept = dict(data)
    if isinstance(data.get("identity"), dict):
        kept["identity"] = sealed_nothing(case_id)
    if data.get("note") is not None:
        kept["note"] = None
    if kept == data:
        return None
    return case_id, json.dumps(kept, separators=(",", ":")).encode()
