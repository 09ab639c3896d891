"""The audit trail's hash chain: an edited, deleted or reordered row is named; an intact trail passes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from services.referral.audit import GENESIS, AuditAction, AuditEntry, ChainCheck, ChainedEntry, chain

CASE_ID = UUID("6f0c6a3e-2a51-5d43-9a4c-1f6ad2b1a001")
REFERRAL_ID = UUID("6f0c6a3e-2a51-5d43-9a4c-1f6ad2b1a002")
T0 = datetime(2026, 11, 28, 1, 0, 0, 123456, tzinfo=UTC)


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


def a_trail(length: int = 5) -> list[ChainedEntry]:
    return chain(0, GENESIS, [a_read(f"V{n}", minutes=n) for n in range(1, length + 1)])


def first_problem(rows: list[ChainedEntry]) -> tuple[str | None, int]:
    check = ChainCheck()
    for row in rows:
        if problem := check.add(row):
            return problem, check.intact
    return None, check.intact


def test_an_intact_trail_passes_and_counts_every_row() -> None:
    trail = a_trail()

    assert first_problem(trail) == (None, 5)


def test_appends_continue_the_chain_from_the_last_row() -> None:
    first = a_trail(3)

    more = chain(first[-1].id, first[-1].hash, [a_read("V9")])

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
    trail[2] = chain(2, trail[1].hash, [forged])[0]

    problem, intact = first_problem(trail)

    assert str(problem).startswith("row 4: does not follow row 3")
    assert intact == 3
