"""Acknowledgement codes: six digits, never one another referral of the agency may still be answered with; a
four-digit code given before codes had six still acknowledges its referral."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.intake.reports import ReportIntake, fingerprint_of
from services.referral.ack_codes import ACK_CODES, answerable_ack_code, nth_free
from services.referral.ledger import Ledger, Referral, upgrade_with_alembic
from services.referral.lifecycle import Status
from services.referral.officer_desk import OfficerDesk
from services.referral.referrals import Referrals
from shared.clock import utcnow
from shared.contracts.base import Priority
from shared.contracts.cases import CaseReported
from shared.database import make_engine
from shared.directory import Directory, load_directory
from shared.ids import case_id_for
from shared.sealing import IdentitySealer
from tests.builders import a_case_report, the_sample_victims
from tests.system import CONFIG

AGENCY = "dinsos-bengkayang"
AN_OFFICER_PHONE = "+628125502001"  # dinsos-bengkayang's morning officer in the shipped directory


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/ledger.db")
    ledger = Ledger(engine)
    await ledger.migrate()
    yield ledger
    await engine.dispose()


@pytest.fixture
def directory() -> Directory:
    return load_directory(CONFIG)


@pytest.fixture
def referrals(ledger: Ledger, directory: Directory) -> Referrals:
    return Referrals(ledger, lambda: directory, IdentitySealer({"k": os.urandom(32)}, "k"))


def _case_reported(directory: Directory) -> CaseReported:
    report = a_case_report(victims=the_sample_victims())
    intake = ReportIntake(lambda: directory, IdentitySealer({"k": os.urandom(32)}, "k"), None, None)  # type: ignore[arg-type]
    case_id = case_id_for(report.reporting_agency, report.police_report_number)
    return intake._case_reported(report, case_id, fingerprint_of(report))


async def _a_leg_code(referrals: Referrals, directory: Directory) -> tuple[uuid.UUID, str | None]:
    event = _case_reported(directory)
    await referrals.open_case(event, message_id=str(uuid.uuid4()))
    view = await referrals.case_view(event.case_id, agency_id="polres-bengkayang")
    [leg] = [referral for referral in view.referrals if referral.agency_id == AGENCY]
    return leg.referral_id, leg.ack_code


async def _a_referral_holding_a_four_digit_code(
    referrals: Referrals, directory: Directory, database: Path
) -> uuid.UUID:
    """A referral issued now whose code is ``4821``, as one issued before codes had six digits."""
    referral_id, _ = await _a_leg_code(referrals, directory)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE referrals SET ack_code = '4821' WHERE referral_id = ?", (str(referral_id),))
    return referral_id


def _hold_codes(database: Path, codes: set[str]) -> None:
    """Copies of the agency's one referral (each on a case of its own) awaiting acknowledgement with ``codes``,
    straight into the ledger."""
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        referral = dict(connection.execute("SELECT * FROM referrals WHERE agency_id = ?", (AGENCY,)).fetchone())
        case = dict(connection.execute("SELECT * FROM cases WHERE case_id = ?", (referral["case_id"],)).fetchone())
        cases, referrals = [], []
        for code in codes:
            case_id = str(uuid.uuid4())
            cases.append({**case, "case_id": case_id})
            referrals.append({**referral, "referral_id": str(uuid.uuid4()), "case_id": case_id, "ack_code": code})
        for table, rows in (("cases", cases), ("referrals", referrals)):
            columns = ", ".join(rows[0])
            marks = ", ".join(f":{column}" for column in rows[0])
            connection.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608


@pytest.fixture
def probes_hitting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The random probes for a free code draw from the list the test fills, round and round; other draws (and
    probes while it is empty) are random."""
    codes: list[int] = []
    draws = itertools.count()
    real = secrets.randbelow

    def draw(below: int) -> int:
        if below == ACK_CODES and codes:
            return codes[next(draws) % len(codes)]
        return real(below)

    monkeypatch.setattr("services.referral.ack_codes.secrets.randbelow", draw)
    return codes


def a_desk(
    ledger: Ledger, referrals: Referrals, directory: Directory, *, clock: Callable[[], datetime] = utcnow
) -> OfficerDesk:
    return OfficerDesk(
        ledger, referrals, lambda: directory, os.urandom(32), pin_attempts=5, pin_lockout=timedelta(minutes=30),
        clock=clock,
    )  # fmt: skip


async def test_a_new_referral_gets_a_six_digit_code(referrals: Referrals, directory: Directory) -> None:
    _, code = await _a_leg_code(referrals, directory)

    assert code is not None
    assert re.fullmatch(r"[0-9]{6}", code)


async def test_an_agency_whose_every_probe_hits_a_held_code_gets_a_free_one_for_its_next_referral(
    referrals: Referrals, directory: Directory, tmp_path: Path, probes_hitting: list[int]
) -> None:
    _, first = await _a_leg_code(referrals, directory)
    held = {f"{number:06d}" for number in range(0, 1_000_000, 7919)}
    _hold_codes(tmp_path / "ledger.db", held)
    probes_hitting.extend(int(code) for code in sorted(held)[:20])

    _, code = await _a_leg_code(referrals, directory)

    assert code is not None
    assert re.fullmatch(r"[0-9]{6}", code)
    assert code not in held | {first}


@pytest.mark.parametrize(
    ("n", "taken", "expected"),
    [(0, [], 0), (0, [0, 1], 2), (1, [1, 3], 2), (2, [1, 3], 4), (5, [0, 1, 2], 8), (999_996, [7, 8, 9], 999_999)],
)
def test_the_nth_free_code_skips_every_code_held_before_it(n: int, taken: list[int], expected: int) -> None:
    assert nth_free(n, taken) == expected


async def test_an_officer_texting_back_a_four_digit_code_given_before_codes_had_six_acknowledges_its_referral(
    ledger: Ledger, referrals: Referrals, directory: Directory, tmp_path: Path
) -> None:
    referral_id = await _a_referral_holding_a_four_digit_code(referrals, directory, tmp_path / "ledger.db")
    desk = a_desk(ledger, referrals, directory)

    answer = await desk.sms_reply(AN_OFFICER_PHONE, "TERIMA 4821")

    assert (answer.accepted, answer.referral_id) == (True, referral_id)


async def test_a_four_digit_code_given_before_codes_had_six_no_longer_acknowledges_a_week_after_its_issue(
    ledger: Ledger, referrals: Referrals, directory: Directory, tmp_path: Path
) -> None:
    await _a_referral_holding_a_four_digit_code(referrals, directory, tmp_path / "ledger.db")
    eight_days_on = datetime.now(UTC) + timedelta(days=8)
    desk = a_desk(ledger, referrals, directory, clock=lambda: eight_days_on)

    answer = await desk.sms_reply(AN_OFFICER_PHONE, "TERIMA 4821")

    assert not answer.accepted
    assert "tidak berlaku lagi" in answer.reply


def test_only_a_four_digit_code_stops_being_answerable_a_week_after_its_referral_was_issued() -> None:
    issued = datetime(2026, 12, 1, tzinfo=UTC)
    legacy = _a_referral(issued, "4821")
    current = _a_referral(issued, "482193")

    assert answerable_ack_code(legacy, issued + timedelta(days=7)) == "4821"
    assert answerable_ack_code(legacy, issued + timedelta(days=7, seconds=1)) is None
    assert answerable_ack_code(current, issued + timedelta(days=365)) == "482193"


def _a_referral(issued_at: datetime, code: str) -> Referral:
    return Referral(
        referral_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        agency_id=AGENCY,
        status=Status.DELIVERED,
        priority=Priority.NORMAL,
        victim_refs=("V1",),
        reasons=(),
        issued_at=issued_at,
        ack_due_at=issued_at + timedelta(days=1),
        ack_code=code,
    )


async def test_a_reply_with_five_digits_is_answered_with_the_format_of_a_code(
    ledger: Ledger, referrals: Referrals, directory: Directory
) -> None:
    _, code = await _a_leg_code(referrals, directory)
    assert code is not None
    desk = a_desk(ledger, referrals, directory)

    answer = await desk.sms_reply(AN_OFFICER_PHONE, f"TERIMA {code[:5]}")

    assert not answer.accepted
    assert "6 angka" in answer.reply


async def test_a_ledger_upgraded_to_six_digit_codes_keeps_its_referrals_and_their_four_digit_codes(
    tmp_path: Path, directory: Directory
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/old.db")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_with_alembic, "0010")
        ledger = Ledger(engine)
        referrals = Referrals(ledger, lambda: directory, IdentitySealer({"k": os.urandom(32)}, "k"))
        referral_id, _ = await _a_leg_code(referrals, directory)
        with sqlite3.connect(tmp_path / "old.db") as connection:
            connection.execute("UPDATE referrals SET ack_code = '4821' WHERE referral_id = ?", (str(referral_id),))
            before = {table: _count(connection, table) for table in ("cases", "referrals", "deadlines", "outbox")}

        await ledger.migrate()

        with sqlite3.connect(tmp_path / "old.db") as connection:
            after = {table: _count(connection, table) for table in before}
        found = await ledger.run(lambda tx: tx.referrals_by_code(AGENCY, "4821"))
        _, fresh = await _a_leg_code(referrals, directory)
    finally:
        await engine.dispose()

    assert after == before
    assert [referral.referral_id for referral in found] == [referral_id]
    assert fresh is not None
    assert re.fullmatch(r"[0-9]{6}", fresh)


def _count(connection: sqlite3.Connection, table: str) -> int:
    return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
