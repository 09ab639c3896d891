"""`rujukan report`: monthly statistics from a seeded ledger, checked against figures worked out by hand."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from services.referral.ledger import Ledger, cases, referrals, timeline
from services.referral.reporting.csv_file import COLUMNS
from shared.database import make_engine

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "kalbar.yaml"
CANARY_NAME = "Kenanga Canarywati"
CANARY_NIK = "6107015505100009"
REPORT_NUMBER = "LP/B/9123/I/2026/SPKT/POLRES BENGKAYANG"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Seeded:
    """A referral as the test writes it: times in UTC (the province's months are WIB, UTC+7)."""

    agency_id: str
    regency_code: str
    issued: str
    ack_due: str
    acknowledged: str | None = None
    status: str = "delivered"
    priority: str = "normal"
    accepted: str | None = None
    declined: tuple[str, str] | None = None  # (at, reason)
    escalated: tuple[tuple[str, int], ...] = ()
    referral_id: str = field(default_factory=lambda: str(uuid.uuid4()))


SEED = (
    # 2026-01, dinsos-bengkayang, Bengkayang: four referrals.
    # 31 Dec 17:30 UTC is 1 January 00:30 WIB: January's. Never acknowledged.
    Seeded("dinsos-bengkayang", "61.07", "2025-12-31 17:30", "2026-01-02 17:30"),
    # Acknowledged after 30 minutes (on time), accepted after 120.
    Seeded(
        "dinsos-bengkayang",
        "61.07",
        "2026-01-10 03:00",
        "2026-01-11 03:00",
        "2026-01-10 03:30",
        status="accepted",
        accepted="2026-01-10 05:00",
    ),
    # Escalated to level 1, then declined (which takes it) 1560 minutes after issue: late.
    Seeded(
        "dinsos-bengkayang",
        "61.07",
        "2026-01-12 03:00",
        "2026-01-13 03:00",
        "2026-01-13 05:00",
        status="declined",
        declined=("2026-01-13 05:00", "no_capacity"),
        escalated=(("2026-01-13 03:00", 1),),
    ),
    # Nobody took it: levels 1, 2 and 3.
    Seeded(
        "dinsos-bengkayang",
        "61.07",
        "2026-01-20 03:00",
        "2026-01-21 03:00",
        escalated=(("2026-01-21 03:00", 1), ("2026-01-21 07:00", 2), ("2026-01-21 11:00", 3)),
    ),
    # 2026-01, uptd-ppa-kalbar, Bengkayang: urgent, acknowledged after 10 minutes, accepted after 40.
    Seeded(
        "uptd-ppa-kalbar",
        "61.07",
        "2026-01-10 03:00",
        "2026-01-10 04:00",
        "2026-01-10 03:10",
        status="accepted",
        priority="urgent",
        accepted="2026-01-10 03:40",
    ),
    # 2026-02, dinsos-bengkayang, Bengkayang. 31 Jan 18:00 UTC is 1 February 01:00 WIB: February's.
    # Acknowledged after 60 minutes, then declined as not eligible.
    Seeded(
        "dinsos-bengkayang",
        "61.07",
        "2026-01-31 18:00",
        "2026-02-02 18:00",
        "2026-01-31 19:00",
        status="declined",
        declined=("2026-02-01 02:00", "not_eligible"),
    ),
    # Acknowledged after 20 minutes, accepted after 1440.
    Seeded(
        "dinsos-bengkayang",
        "61.07",
        "2026-02-05 02:00",
        "2026-02-06 02:00",
        "2026-02-05 02:20",
        status="accepted",
        accepted="2026-02-06 02:00",
    ),
    # 2026-02, bp3mi-kalbar, Sambas: acknowledged exactly at the deadline, which is on time.
    Seeded("bp3mi-kalbar", "61.01", "2026-02-10 02:00", "2026-02-11 02:00", "2026-02-11 02:00", status="acknowledged"),
    # Not counted: entered in error (February), and issued in March (after the period).
    Seeded("bp3mi-kalbar", "61.01", "2026-02-12 02:00", "2026-02-13 02:00", status="entered_in_error"),
    Seeded("dinsos-bengkayang", "61.07", "2026-03-01 00:00", "2026-03-02 00:00"),
)

ZEROS = {name: "0" for name, _ in COLUMNS if name.startswith(("declined", "escalations"))}
EXPECTED = [
    {
        **ZEROS,
        "month": "2026-01", "agency_id": "dinsos-bengkayang", "regency_code": "61.07", "regency_name": "Bengkayang",
        "referrals": "4", "urgent": "0", "acknowledged": "2", "acknowledged_on_time": "1",
        # 30 and 1560 minutes: the median halfway, the 90th percentile 30 + 0.9 * 1530.
        "ack_median_minutes": "795.0", "ack_p90_minutes": "1407.0",
        "accepted": "1", "accept_median_minutes": "120.0", "accept_p90_minutes": "120.0",
        "declined": "1", "declined_no_capacity": "1",
        "escalations_level_1": "2", "escalations_level_2": "1", "escalations_level_3": "1",
    },
    {
        **ZEROS,
        "month": "2026-01", "agency_id": "uptd-ppa-kalbar", "regency_code": "61.07", "regency_name": "Bengkayang",
        "referrals": "1", "urgent": "1", "acknowledged": "1", "acknowledged_on_time": "1",
        "ack_median_minutes": "10.0", "ack_p90_minutes": "10.0",
        "accepted": "1", "accept_median_minutes": "40.0", "accept_p90_minutes": "40.0",
    },
    {
        **ZEROS,
        "month": "2026-02", "agency_id": "bp3mi-kalbar", "regency_code": "61.01", "regency_name": "Sambas",
        "referrals": "1", "urgent": "0", "acknowledged": "1", "acknowledged_on_time": "1",
        "ack_median_minutes": "1440.0", "ack_p90_minutes": "1440.0",
        "accepted": "0", "accept_median_minutes": "", "accept_p90_minutes": "",
    },
    {
        **ZEROS,
        "month": "2026-02", "agency_id": "dinsos-bengkayang", "regency_code": "61.07", "regency_name": "Bengkayang",
        "referrals": "2", "urgent": "0", "acknowledged": "2", "acknowledged_on_time": "2",
        # 60 and 20 minutes: median 40, 90th percentile 20 + 0.9 * 40.
        "ack_median_minutes": "40.0", "ack_p90_minutes": "56.0",
        "accepted": "1", "accept_median_minutes": "1440.0", "accept_p90_minutes": "1440.0",
        "declined": "1", "declined_not_eligible": "1",
    },
]  # fmt: skip


async def seed(database_url: str, seeded: tuple[Seeded, ...]) -> list[str]:
    """Writes the referrals (one case each) into a migrated ledger; returns the ids and codes that must not leak."""
    engine = make_engine(database_url)
    secrets: list[str] = []
    try:
        await Ledger(engine).migrate()
        async with engine.begin() as connection:
            for number, item in enumerate(seeded):
                case_id, case_code = str(uuid.uuid4()), f"KB-26-CANARY{number}"
                report_number = f"{REPORT_NUMBER}/{number}"
                secrets += [case_id, case_code, report_number, item.referral_id]
                issued = utc(item.issued)
                await connection.execute(
                    insert(cases).values(
                        case_id=case_id, case_code=case_code, police_report_number=report_number,
                        reporting_agency="polres-bengkayang", regency_code=item.regency_code, reported_at=issued,
                        fingerprint="0" * 64, exploitation_types=["forced_labour"],
                        victims=[{"victim_ref": "V1", "sex": "female", "age": 15}],
                        identity={"V1": {"name": CANARY_NAME, "nik": CANARY_NIK}}, created_at=issued,
                    )
                )  # fmt: skip
                acknowledged = utc(item.acknowledged) if item.acknowledged else None
                await connection.execute(
                    insert(referrals).values(
                        referral_id=item.referral_id, case_id=case_id, agency_id=item.agency_id, status=item.status,
                        priority=item.priority, victim_refs=["V1"], reasons=[], issued_at=issued,
                        ack_due_at=utc(item.ack_due), acknowledged_at=acknowledged, updated_at=issued,
                        escalation_level=max((level for _, level in item.escalated), default=0),
                    )
                )  # fmt: skip
                events: list[dict[str, Any]] = [
                    {"at": utc(at), "event": "escalated", "detail": {"level": level, "deadline": "acknowledge"}}
                    for at, level in item.escalated
                ]
                if item.accepted:
                    events.append({"at": utc(item.accepted), "event": "accepted", "detail": {"officer": CANARY_NAME}})
                if item.declined:
                    at, reason = item.declined
                    events.append(
                        {"at": utc(at), "event": "declined", "detail": {"reason": reason, "note": CANARY_NIK}}
                    )
                for event in events:
                    await connection.execute(
                        insert(timeline).values(
                            case_id=case_id, referral_id=item.referral_id, actor=item.agency_id, **event
                        )
                    )
    finally:
        await engine.dispose()
    return secrets


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/rujukan.db"


def rujukan_report(ledger: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, in its own process (it configures logging for the whole process)."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "services.cli", "report", *args],
        cwd=ROOT,
        env={**os.environ, "RUJUKAN_DATABASE_URL": ledger, "RUJUKAN_CONFIG": str(CONFIG)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def report_files(out: Path, first: str, last: str) -> tuple[list[dict[str, str]], str, str]:
    csv_text = (out / f"rujukan-report-{first}-{last}.csv").read_text(encoding="utf-8")
    html = (out / f"rujukan-report-{first}-{last}.html").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(csv_text))), csv_text, html


def test_the_csv_has_the_figures_worked_out_by_hand_per_month_agency_and_regency(ledger: str, tmp_path: Path) -> None:
    asyncio.run(seed(ledger, SEED))

    done = rujukan_report(ledger, "--from", "2026-01", "--to", "2026-02", "--out", str(tmp_path / "out"))

    assert done.returncode == 0, done.stderr

    rows, _, _ = report_files(tmp_path / "out", "2026-01", "2026-02")
    assert [{key: value for key, value in row.items() if key != "agency_name"} for row in rows] == EXPECTED
    assert [row["agency_name"] for row in rows][:2] == [
        "Dinas Sosial Kabupaten Bengkayang",
        "UPTD Perlindungan Perempuan dan Anak Provinsi Kalimantan Barat",
    ]


def test_the_html_page_shows_the_same_figures_and_no_identity_or_case_reference(ledger: str, tmp_path: Path) -> None:
    secrets = asyncio.run(seed(ledger, SEED))

    done = rujukan_report(ledger, "--from", "2026-01", "--to", "2026-02", "--out", str(tmp_path / "out"))

    assert done.returncode == 0, done.stderr

    _, csv_text, html = report_files(tmp_path / "out", "2026-01", "2026-02")
    for expected in EXPECTED:
        cells = [
            expected[key] for key in ("referrals", "acknowledged_on_time", "ack_median_minutes", "ack_p90_minutes")
        ]
        row = f"<td>{cells[0]}</td>"
        assert row in html
        for figure in cells[2:]:
            assert f"<td>{float(figure):g}</td>" in html, figure
    # The month totals: 5 referrals in January (2 on time), 3 in February (3 on time).
    assert "<td>2026-01</td><td>5</td><td>3</td><td>2</td><td>40%</td>" in html.replace(' class="text"', "")
    assert "<td>2026-02</td><td>3</td><td>3</td><td>3</td><td>100%</td>" in html.replace(' class="text"', "")
    assert "<svg" in html
    assert "<script" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "@media print" in html
    for text in (csv_text, html):
        for secret in (CANARY_NAME, CANARY_NIK, "CANARY", "LP/B/9123", *secrets):
            assert secret not in text, secret


def test_an_empty_period_gives_a_valid_report_with_only_the_header(ledger: str, tmp_path: Path) -> None:
    asyncio.run(seed(ledger, SEED))

    done = rujukan_report(ledger, "--from", "2025-06", "--to", "2025-08", "--out", str(tmp_path / "out"))

    assert done.returncode == 0, done.stderr

    rows, csv_text, html = report_files(tmp_path / "out", "2025-06", "2025-08")
    assert rows == []
    assert csv_text == ",".join(name for name, _ in COLUMNS) + "\n"
    assert "No referral was issued in this period" in html
    assert html.rstrip().endswith("</html>")


def test_from_after_to_is_a_usage_error(ledger: str, tmp_path: Path) -> None:
    done = rujukan_report(ledger, "--from", "2026-03", "--to", "2026-01", "--out", str(tmp_path / "out"))

    assert done.returncode == 2
    assert "--from 2026-03 is after --to 2026-01" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_month_that_is_not_yyyy_mm_is_a_usage_error(ledger: str) -> None:
    done = rujukan_report(ledger, "--from", "2026-13", "--to", "2026-12")

    assert done.returncode == 2
    assert "argument --from: invalid month value: '2026-13'" in done.stderr
