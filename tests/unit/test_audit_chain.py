"""The audit trail's keyed hash chain: an edited, deleted or reordered row is named, so is a chain recomputed
without the key; an intact trail passes, across a key rotation too."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from services.referral.audit import (
    GENESIS,
    AuditAction,
    AuditEntry,
    AuditKeys,
    ChainCheck,
    ChainedEntry,
    chain,
    entry_hash,
)

CASE_ID = UUID("6f0c6a3e-2a51-5d43-9a4c-1f6ad2b1a001")
REFERRAL_ID = UUID("6f0c6a3e-2a51-5d43-9a4c-1f6ad2b1a002")
T0 = datetime(2026, 11, 28, 1, 0, 0, 123456, tzinfo=UTC)
KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
KEYS = AuditKeys("a1", {"a1": KEY_1})


def a_read(victim_ref: str = "V1", *, minutes: int = 0, **overrides: object) -> AuditEntry:
    entry = AuditEntry(
        at=T0 + timedelta(minutes=minutes),
        actor="bp3mi-kalbar",
        action=AuditAction.IDENTITY_READ,
        case_id=CASE_ID,
        referral_id=REFERRAL_ID,
        victim_ref=victim_ref,
        fields=("full_name", "passport_number"),
    )
    return replace(entry, **overrides)  # type: ignore[arg-type]


def a_trail(length: int = 5, keys: AuditKeys = KEYS) -> list[ChainedEntry]:
    return chain(0, GENESIS, [a_read(f"V{n}", minutes=n) for n in range(1, length + 1)], keys)


def plain_chain(last_id: int, last_hash: str, entries: list[AuditEntry]) -> list[ChainedEntry]:
    """What someone with write access to the database but not the key can compute: the unkeyed hash."""
    rows = []
    for entry_id, entry in enumerate(entries, start=last_id + 1):
        digest = entry_hash(last_hash, entry_id, entry, None)
        rows.append(ChainedEntry(entry_id, entry, "", last_hash, digest))
        last_hash = digest
    return rows


def first_problem(
    rows: list[ChainedEntry], keys: dict[str, bytes] | None = None, *, unkeyed_rows: int = 0
) -> tuple[str | None, int]:
    check = ChainCheck({"a1": KEY_1} if keys is None else keys, unkeyed_rows=unkeyed_rows)
    for row in rows:
        if problem := check.add(row):
            return problem, check.intact
    return None, check.intact


def test_an_intact_trail_passes_and_counts_every_row() -> None:
    trail = a_trail()

    assert first_problem(trail) == (None, 5)


def test_appends_continue_the_chain_from_the_last_row() -> None:
    first = a_trail(3)

    more = chain(first[-1].id, first[-1].hash, [a_read("V9")], KEYS)

    assert more[0].id == 4
    assert more[0].prev_hash == first[-1].hash
    assert first_problem([*first, *more]) == (None, 4)


def test_an_edited_field_is_named_as_the_first_bad_row() -> None:
    trail = a_trail()
    trail[2] = replace(trail[2], entry=replace(trail[2].entry, actor="dinsos-bengkayang"))

    problem, intact = first_problem(trail)

    assert str(problem).startswith("row 3: ")
    assert "edited" in str(problem)
    assert intact == 2


def test_every_field_is_covered_by_the_hash() -> None:
    row = a_trail(1)[0]
    edits: list[dict[str, object]] = [
        {"at": T0 + timedelta(microseconds=1)},
        {"actor": "other"},
        {"officer": "piket-pagi"},
        {"action": AuditAction.CASE_ERASED},
        {"case_id": REFERRAL_ID},
        {"referral_id": None},
        {"victim_ref": "V2"},
        {"fields": ("full_name",)},
    ]

    for edit in edits:
        edited = replace(row, entry=replace(row.entry, **edit))  # type: ignore[arg-type]
        assert first_problem([edited])[0] is not None, edit


def test_a_deleted_row_is_named_at_the_row_after_it() -> None:
    trail = a_trail()
    del trail[1]

    problem, intact = first_problem(trail)

    assert str(problem).startswith("row 3: the row after 1 is missing")
    assert intact == 1


def test_a_deleted_first_row_is_noticed() -> None:
    problem, _ = first_problem(a_trail()[1:])

    assert str(problem).startswith("row 2: the first row is missing")


def test_rows_renumbered_to_hide_a_deletion_break_the_chain() -> None:
    trail = a_trail()
    del trail[1]
    trail[1] = replace(trail[1], id=2)

    problem, intact = first_problem(trail)

    assert str(problem).startswith("row 2: ")
    assert intact == 1


def test_two_rows_swapped_break_the_chain_at_the_first_of_them() -> None:
    trail = a_trail()
    trail[1], trail[2] = replace(trail[2], id=2), replace(trail[1], id=3)

    problem, _ = first_problem(trail)

    assert str(problem).startswith("row 2: ")


def test_a_row_rehashed_after_an_edit_no_longer_follows_the_one_before() -> None:
    """Whoever edits a row and recomputes its hash must rewrite every later row too, which the next row shows."""
    trail = a_trail()
    forged = replace(trail[2].entry, fields=("full_name",))
    trail[2] = chain(2, trail[1].hash, [forged], KEYS)[0]

    problem, intact = first_problem(trail)

    assert str(problem).startswith("row 4: does not follow row 3")
    assert intact == 3


def test_a_chain_recomputed_with_plain_hashes_under_the_same_key_ids_is_named_at_its_first_row() -> None:
    trail = a_trail()
    forged = [replace(row, key_id="a1") for row in plain_chain(0, GENESIS, [row.entry for row in trail])]

    problem, intact = first_problem(forged)

    assert str(problem).startswith("row 1: its fields do not match its hash")
    assert intact == 0


def test_a_chain_recomputed_with_plain_hashes_and_no_key_ids_is_named_at_its_first_row() -> None:
    forged = plain_chain(0, GENESIS, [row.entry for row in a_trail()])

    problem, intact = first_problem(forged)

    assert str(problem).startswith("row 1: not keyed")
    assert intact == 0


def test_a_chain_keyed_with_another_key_is_named_at_its_first_row() -> None:
    forged = a_trail(keys=AuditKeys("a1", {"a1": KEY_2}))

    problem, _ = first_problem(forged)

    assert str(problem).startswith("row 1: its fields do not match its hash")


def test_rows_written_before_keying_pass_with_plain_hashes_and_the_keyed_rows_continue_their_chain() -> None:
    legacy = plain_chain(0, GENESIS, [a_read(f"V{n}", minutes=n) for n in (1, 2, 3)])
    keyed = chain(3, legacy[-1].hash, [a_read("V4", minutes=4)], KEYS)

    assert first_problem([*legacy, *keyed], unkeyed_rows=3) == (None, 4)


def test_an_unkeyed_row_beyond_the_rows_written_before_keying_is_named() -> None:
    legacy = plain_chain(0, GENESIS, [a_read(f"V{n}", minutes=n) for n in (1, 2, 3)])

    problem, intact = first_problem(legacy, unkeyed_rows=2)

    assert str(problem).startswith("row 3: not keyed, and only the first 2 rows")
    assert intact == 2


def test_an_unkeyed_row_after_a_keyed_one_is_named_even_within_the_count_before_keying() -> None:
    keyed = a_trail(2)
    forged = plain_chain(2, keyed[-1].hash, [a_read("V3", minutes=3)])

    problem, _ = first_problem([*keyed, *forged], unkeyed_rows=10)

    assert str(problem).startswith("row 3: not keyed")


def test_rows_written_before_keying_cannot_be_rewritten_once_a_keyed_row_follows_them() -> None:
    legacy = plain_chain(0, GENESIS, [a_read(f"V{n}", minutes=n) for n in (1, 2)])
    keyed = chain(2, legacy[-1].hash, [a_read("V3", minutes=3)], KEYS)
    rewritten = plain_chain(0, GENESIS, [legacy[0].entry, replace(legacy[1].entry, fields=("full_name",))])

    problem, intact = first_problem([*rewritten, *keyed], unkeyed_rows=2)

    assert str(problem).startswith("row 3: does not follow row 2")
    assert intact == 2


def test_after_a_key_rotation_each_row_is_checked_with_the_key_it_names() -> None:
    before = a_trail(2)
    after = chain(2, before[-1].hash, [a_read("V3", minutes=3)], AuditKeys("a2", {"a2": KEY_2, "a1": KEY_1}))

    assert [row.key_id for row in [*before, *after]] == ["a1", "a1", "a2"]
    assert first_problem([*before, *after], {"a1": KEY_1, "a2": KEY_2}) == (None, 3)
    problem, intact = first_problem([*before, *after], {"a2": KEY_2})
    assert str(problem).startswith("row 1: keyed with 'a1', which is not configured")
    assert intact == 0


def test_a_retired_key_names_no_row_after_a_row_keyed_with_the_current_key() -> None:
    """Found by review: each row was checked with whichever configured key it named, so whoever held a retired key
    (and could write to the database) could rewrite the rows written since the rotation under it."""
    rotated = AuditKeys("a2", {"a2": KEY_2, "a1": KEY_1})
    before = a_trail(2)
    after = chain(2, before[-1].hash, [a_read("V3", minutes=3)], rotated)
    forged = chain(3, after[-1].hash, [a_read("V4", minutes=4)], AuditKeys("a1", {"a1": KEY_1}))

    check = ChainCheck(rotated.keys, current="a2")
    problems = [check.add(row) for row in [*before, *after, *forged]]

    assert problems[:3] == [None, None, None]
    assert problems[3] == "row 4: keyed with the retired 'a1' after rows keyed with 'a2'"


def test_a_key_set_must_hold_its_current_key_and_no_unnamed_one() -> None:
    with pytest.raises(ValueError, match="'a2' is not among"):
        AuditKeys("a2", {"a1": KEY_1})
    with pytest.raises(ValueError, match="needs an id"):
        AuditKeys("a1", {"a1": KEY_1, "": KEY_2})
