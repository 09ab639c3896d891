"""The audit trail's keyed hash chain, pure: each entry carries the HMAC of the one before it, so an edited,
deleted or reordered row breaks the chain at that row (DESIGN.md, "Victim privacy"). The HMAC key lives outside the
database: write access to the ledger alone is not enough to rewrite the chain consistently."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
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
class AuditKeys:
    """The key new entries are chained with, and every key an older entry may name (keys rotate)."""

    current_id: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.current_id not in self.keys:
            raise ValueError(f"audit key {self.current_id!r} is not among the configured keys")
        if "" in self.keys:
            raise ValueError("an audit key needs an id: an empty one marks entries written before keying")


@dataclass(frozen=True)
class ChainedEntry:
    id: int
    entry: AuditEntry
    key_id: str
    """The key its hash was made with; empty for entries written before the trail was keyed (plain SHA-256)."""
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


def entry_hash(prev_hash: str, entry_id: int, entry: AuditEntry, key: bytes | None) -> str:
    """HMAC-SHA256 under ``key``; plain SHA-256 without one (entries written before the trail was keyed)."""
    data = prev_hash.encode() + canonical(entry_id, entry)
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def chain(last_id: int, last_hash: str, entries: Sequence[AuditEntry], keys: AuditKeys) -> list[ChainedEntry]:
    """``entries`` appended after the row ``last_id`` (0 and ``GENESIS`` for an empty trail), keyed with the
    current key."""
    key = keys.keys[keys.current_id]
    chained = []
    for offset, entry in enumerate(entries, start=1):
        entry_id = last_id + offset
        digest = entry_hash(last_hash, entry_id, entry, key)
        chained.append(ChainedEntry(entry_id, entry, keys.current_id, last_hash, digest))
        last_hash = digest
    return chained


class ChainCheck:
    """Checks rows in id order as they come (a trail may be too long to hold at once), each with the key its row
    names. Unkeyed rows pass only among the first ``unkeyed_rows`` (written before the trail was keyed, a number
    the operator keeps outside the database): otherwise whoever can write to the database could recompute the
    whole chain with plain hashes. The first keyed row covers the hash of the last unkeyed one, so an unkeyed
    prefix cannot be rewritten either once a keyed row follows it. Likewise, once a row keyed with the ``current``
    key passed, a retired key (leaked, say) names no later row: with the head of a verify made since the rotation
    (``--expect-head``), no row after it can be forged with a retired key."""

    def __init__(self, keys: Mapping[str, bytes], *, current: str | None = None, unkeyed_rows: int = 0) -> None:
        self._keys = keys
        self._current = current
        self._unkeyed_rows = unkeyed_rows
        self._keyed = False
        """A keyed row passed: every later row must be keyed too."""
        self._rotated = False
        """A row keyed with the current key passed: every later row must be keyed with it too."""
        self.intact = 0
        """Rows checked and intact so far."""
        self.head = GENESIS
        """The last intact row's hash: kept elsewhere, it shows whether rows were later cut off the end."""
        self._last_id = 0

    def add(self, row: ChainedEntry) -> str | None:
        """None while the chain holds; else what is wrong with this row (the first bad one)."""
        if not row.key_id:
            if row.id > self._unkeyed_rows or self._keyed:
                return (
                    f"row {row.id}: not keyed, and only the first {self._unkeyed_rows} rows predate the keyed"
                    " trail (rewritten with plain hashes?)"
                )
            key = None
        elif (found := self._keys.get(row.key_id)) is None:
            return f"row {row.id}: keyed with {row.key_id!r}, which is not configured"
        elif self._rotated and row.key_id != self._current:
            return f"row {row.id}: keyed with the retired {row.key_id!r} after rows keyed with {self._current!r}"
        else:
            key = found
        if entry_hash(row.prev_hash, row.id, row.entry, key) != row.hash:
            return f"row {row.id}: its fields do not match its hash (the row was edited)"
        if row.id != self._last_id + 1:
            missing = "the first row" if self._last_id == 0 else f"the row after {self._last_id}"
            return f"row {row.id}: {missing} is missing (deleted, or the ids were changed)"
        if row.prev_hash != self.head:
            return f"row {row.id}: does not follow row {self._last_id} (a row was deleted, edited or reordered)"
        self.intact += 1
        self._keyed = self._keyed or key is not None
        self._rotated = self._rotated or row.key_id == self._current
        self.head = row.hash
        self._last_id = row.id
        return None
