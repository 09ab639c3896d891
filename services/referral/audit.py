"""The audit trail's hash chain, pure: each entry carries the hash of the one before it, so an edited, deleted or
reordered row breaks the chain at that row (DESIGN.md, "Victim privacy")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

GENESIS = "0" * 64
"""The previous hash of the first entry."""


class AuditAction(StrEnum):
    IDENTITY_READ = "identity_read"
    IDENTITY_ERASED = "identity_erased"
    """The retention period after the case closed ran out."""
    CASE_ERASED = "case_erased"
    """An operator erased the case's identity on request."""


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    """The agency (or ``operator`` / the system) on whose behalf it happened."""
    action: str
    """An ``AuditAction``; kept a plain string so a row edited to nonsense is reported, not a crash."""
    case_id: UUID
    officer: str | None = None
    referral_id: UUID | None = None
    victim_ref: str | None = None
    fields: tuple[str, ...] = ()
    """The identity fields shown (a read)."""


@dataclass(frozen=True)
class ChainedEntry:
    id: int
    entry: AuditEntry
    prev_hash: str
    hash: str


def canonical(entry_id: int, entry: AuditEntry) -> bytes:
    """One byte string per row: sorted keys, no spaces, UTC microseconds (what both databases keep)."""
    return json.dumps(
        {
            "id": entry_id,
            "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": entry.actor,
            "officer": entry.officer,
            "action": str(entry.action),
            "case_id": str(entry.case_id),
            "referral_id": str(entry.referral_id) if entry.referral_id else None,
            "victim_ref": entry.victim_ref,
            "fields": list(entry.fields),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def entry_hash(prev_hash: str, entry_id: int, entry: AuditEntry) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(entry_id, entry)).hexdigest()


def chain(last_id: int, last_hash: str, entries: Sequence[AuditEntry]) -> list[ChainedEntry]:
    """``entries`` appended after the row ``last_id`` (0 and ``GENESIS`` for an empty trail)."""
    chained = []
    for offset, entry in enumerate(entries, start=1):
        entry_id = last_id + offset
        digest = entry_hash(last_hash, entry_id, entry)
        chained.append(ChainedEntry(entry_id, entry, last_hash, digest))
        last_hash = digest
    return chained


class ChainCheck:
    """Checks rows in id order as they come (a trail may be too long to hold at once)."""

    def __init__(self) -> None:
        self.intact = 0
        """Rows checked and intact so far."""
        self.head = GENESIS
        """The last intact row's hash: kept elsewhere, it shows whether rows were later cut off the end."""
        self._last_id = 0

    def add(self, row: ChainedEntry) -> str | None:
        """None while the chain holds; else what is wrong with this row (the first bad one)."""
        if entry_hash(row.prev_hash, row.id, row.entry) != row.hash:
            return f"row {row.id}: its fields do not match its hash (the row was edited)"
        if row.id != self._last_id + 1:
            missing = "the first row" if self._last_id == 0 else f"the row after {self._last_id}"
            return f"row {row.id}: {missing} is missing (deleted, or the ids were changed)"
        if row.prev_hash != self.head:
            return f"row {row.id}: does not follow row {self._last_id} (a row was deleted, edited or reordered)"
        self.intact += 1
        self.head = row.hash
        self._last_id = row.id
        return None
