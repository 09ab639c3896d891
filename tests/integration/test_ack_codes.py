"""Acknowledgement codes: four digits, never one another referral of the agency may still be answered with."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.intake.reports import ReportIntake, fingerprint_of
from services.referral.ledger import Ledger
from services.referral.referrals import Referrals
from shared.contracts.cases import CaseReported
from shared.database import make_engine
from shared.directory import Directory, load_directory
from shared.ids import case_id_for
from shared.sealing import IdentitySealer
from tests.builders import a_case_report, the_sample_victims
from tests.system import CONFIG

AGENCY = "uptd-ppa-kalbar"


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/ledger.db")
    ledger = Ledger(engine)
    await ledger.migrate()
    yield ledger
    await engine.dispose()


def _case_reported(directory: Directory, sealer: IdentitySealer) -> CaseReported:
    report = a_case_report(victims=the_sample_victims())
    intake = ReportIntake(lambda: directory, sealer, None, None)  # type: ignore[arg-type]
    case_id = case_id_for(report.reporting_agency, report.police_report_number)
    return intake._case_reported(report, case_id, fingerprint_of(report))


def _hold_every_code_but(database: Path, free: str) -> None:
    """Copies of the agency's one referral (each on a case of its own) awaiting acknowledgement with every other
    code, straight into the ledger: issuing ten thousand referrals one by one would take minutes."""
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        referral = dict(connection.execute("SELECT * FROM referrals WHERE agency_id = ?", (AGENCY,)).fetchone())
        case = dict(connection.execute("SELECT * FROM cases WHERE case_id = ?", (referral["case_id"],)).fetchone())
        taken = {f"{number:04d}" for number in range(10_000)} - {free, referral["ack_code"]}
        cases, referrals = [], []
        for code in taken:
            case_id = str(uuid.uuid4())
            cases.append({**case, "case_id": case_id})
            referrals.append({**referral, "referral_id": str(uuid.uuid4()), "case_id": case_id, "ack_code": code})
        for table, rows in (("cases", cases), ("referrals", referrals)):
            columns = ", ".join(rows[0])
            marks = ", ".join(f":{column}" for column in rows[0])
            connection.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608


async def test_an_agency_holding_all_codes_but_one_gets_that_one_for_its_next_referral(
    ledger: Ledger, tmp_path: Path
) -> None:
    directory = load_directory(CONFIG)
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    referrals = Referrals(ledger, lambda: directory, sealer)
    await referrals.open_case(_case_reported(directory, sealer), message_id="m-1")
    _hold_every_code_but(tmp_path / "ledger.db", "4821")

    event = _case_reported(directory, sealer)
    await referrals.open_case(event, message_id="m-2")

    view = await referrals.case_view(event.case_id, agency_id="polres-bengkayang")
    [leg] = [referral for referral in view.referrals if referral.agency_id == AGENCY]
    assert leg.ack_code == "4821"
