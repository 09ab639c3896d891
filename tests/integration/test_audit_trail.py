"""Every identity read lands on a tamper-evident audit trail, and agencies see only their profile's fields."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import update

from services.intake.reports import ReportIntake, fingerprint_of
from services.referral.audit import ChainCheck, ChainedEntry
from services.referral.ledger import Ledger, audit_trail
from services.referral.referrals import Referrals
from shared.contracts.cases import CaseReported
from shared.database import make_engine
from shared.directory import Directory, load_directory
from shared.ids import case_id_for
from shared.sealing import IdentitySealer
from tests.builders import a_case_report, a_case_report_body, a_victim
from tests.integration.test_officer_desk import link_for, officer_browser
from tests.system import CONFIG, ROOT, System, delivered_everywhere

pytestmark = pytest.mark.rabbit

ADMIN_DSN = os.environ.get("RUJUKAN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
IDENTITY = {
    "nik": "6107014506100001",
    "birth_date": "2010-06-05",
    "passport_number": "C1234567",
    "phone": "+6281234500001",
    "current_location": "Rumah aman Dinsos, Jl. Sanggau Ledo 12, Bengkayang",
}
A_GIRL = a_victim(victim_ref="V1", full_name="Siti Aminah", sex="female", age_years=15, **IDENTITY)
A_WOMAN_BACK_FROM_MALAYSIA = a_victim(
    victim_ref="V2",
    full_name="Dewi Lestari",
    age_years=24,
    migrant_worker_status="returned",
    destination_country="MY",
    needs=["medical"],
    **{**IDENTITY, "nik": "6107014506100002", "passport_number": "C7654321", "birth_date": "2001-01-01"},
)


async def rujukan(*args: str, database_url: str, config: Path = CONFIG) -> tuple[int, str]:
    """The `rujukan` command as an operator runs it against the ledger."""
    env = {**os.environ, "RUJUKAN_DATABASE_URL": database_url, "RUJUKAN_CONFIG": str(config)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, output.decode()


async def audit_rows(database_url: str) -> list[ChainedEntry]:
    engine = make_engine(database_url)
    try:
        return [row async for row in Ledger(engine).audit_rows()]
    finally:
        await engine.dispose()


def intact(rows: list[ChainedEntry]) -> bool:
    check = ChainCheck()
    return all(check.add(row) is None for row in rows)


async def referred_case(system: System, victims: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """A Bengkayang case delivered everywhere: its id, and each agency's referral id."""
    response = await system.report(a_case_report_body(victims=victims))
    assert response.status_code == 202
    case = await system.case_when(response.json()["case_id"], delivered_everywhere)
    return case["case_id"], {leg["agency_id"]: leg["referral_id"] for leg in case["referrals"]}


async def read_referral(system: System, referral_id: str, agency_id: str) -> dict[str, Any]:
    response = await system.http.get(
        system.url("referral", f"/v1/referrals/{referral_id}"), headers=system.token(agency_id)
    )
    assert response.status_code == 200
    return dict(response.json())


async def test_each_identity_read_adds_a_chained_entry_per_victim_naming_the_fields_shown(system: System) -> None:
    case_id, legs = await referred_case(system, [A_GIRL, A_WOMAN_BACK_FROM_MALAYSIA])

    first = await read_referral(system, legs["bp3mi-kalbar"], "bp3mi-kalbar")
    await read_referral(system, legs["bp3mi-kalbar"], "bp3mi-kalbar")
    social = await read_referral(system, legs["dinsos-bengkayang"], "dinsos-bengkayang")

    [dewi] = first["victims"]
    assert dewi["identity"] == {"full_name": "Dewi Lestari", "passport_number": "C7654321"}
    assert dewi["destination_country"] == "MY"
    assert [v["identity"] for v in social["victims"]] == [
        {"full_name": "Siti Aminah", "birth_date": "2010-06-05", "current_location": IDENTITY["current_location"]},
        {"full_name": "Dewi Lestari", "birth_date": "2001-01-01", "current_location": IDENTITY["current_location"]},
    ]
    rows = await audit_rows(system.settings.database_url)
    assert [(r.id, r.entry.actor, r.entry.victim_ref, r.entry.fields) for r in rows] == [
        (1, "bp3mi-kalbar", "V2", ("full_name", "passport_number")),
        (2, "bp3mi-kalbar", "V2", ("full_name", "passport_number")),
        (3, "dinsos-bengkayang", "V1", ("birth_date", "current_location", "full_name")),
        (4, "dinsos-bengkayang", "V2", ("birth_date", "current_location", "full_name")),
    ]
    assert {str(r.entry.case_id) for r in rows} == {case_id}
    assert {r.entry.action for r in rows} == {"identity_read"}
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert intact(rows)
    reads = [e for e in (await system.case(case_id)).json()["timeline"] if e["event"] == "identity_read"]
    assert len(reads) == 3


async def test_the_officer_page_shows_only_the_agencys_fields_and_the_read_is_audited(system: System) -> None:
    _, legs = await referred_case(system, [A_GIRL])
    token = link_for(system, legs["dinsos-bengkayang"])

    async with officer_browser(system) as phone:
        page = await phone.post(f"/o/{token}", data={"pin": "1234"})

    assert page.status_code == 200
    assert "Siti Aminah" in page.text
    assert "Rumah aman Dinsos" in page.text
    for hidden in ("nik", "passport_number", "phone"):
        assert IDENTITY[hidden] not in page.text
    [row] = await audit_rows(system.settings.database_url)
    assert (row.entry.actor, row.entry.officer, row.entry.victim_ref) == ("dinsos-bengkayang", "piket-pagi", "V1")
    assert row.entry.fields == ("birth_date", "current_location", "full_name")


async def test_audit_verify_passes_on_an_intact_trail_and_names_the_first_edited_or_deleted_row(
    system: System,
) -> None:
    _, legs = await referred_case(system, [A_GIRL, A_WOMAN_BACK_FROM_MALAYSIA])
    for _ in range(2):
        await read_referral(system, legs["dinsos-bengkayang"], "dinsos-bengkayang")
    url = system.settings.database_url
    database = url.removeprefix("sqlite+aiosqlite:///")

    passed = await rujukan("audit", "verify", database_url=url)
    with sqlite3.connect(database) as db:
        db.execute('UPDATE audit_trail SET fields = \'["full_name","nik"]\' WHERE id = 2')
    edited = await rujukan("audit", "verify", database_url=url)
    with sqlite3.connect(database) as db:
        db.execute('UPDATE audit_trail SET fields = \'["birth_date","current_location","full_name"]\' WHERE id = 2')
        db.execute("DELETE FROM audit_trail WHERE id = 3")
    deleted = await rujukan("audit", "verify", database_url=url)

    assert passed[0] == 0
    assert "audit trail intact: 4 entries" in passed[1]
    assert edited[0] == 1
    assert "row 2: its fields do not match its hash" in edited[1]
    assert deleted[0] == 1
    assert "row 4: the row after 2 is missing" in deleted[1]


# PostgreSQL: several referral replicas append to one chain.


async def postgres_database() -> AsyncIterator[str]:
    """A database of its own on the local PostgreSQL, dropped afterwards."""
    name = f"rujukan_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


postgres_url = pytest.fixture(postgres_database, name="postgres_url")


def case_reported(sealer: IdentitySealer, directory: Directory) -> CaseReported:
    report = a_case_report(victims=[A_GIRL, A_WOMAN_BACK_FROM_MALAYSIA])
    intake = ReportIntake(lambda: directory, sealer, None, None)  # type: ignore[arg-type]
    case_id = case_id_for(report.reporting_agency, report.police_report_number)
    return intake._case_reported(report, case_id, fingerprint_of(report))


async def test_reads_on_two_postgres_replicas_at_once_never_fork_the_chain(postgres_url: str) -> None:
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    ledgers = [Ledger(make_engine(postgres_url)) for _ in range(2)]
    try:
        await ledgers[0].migrate()
        replicas = [Referrals(ledger, lambda: directory, sealer) for ledger in ledgers]
        event = case_reported(sealer, directory)
        await replicas[0].open_case(event, message_id="m-1")
        [referral] = [r for r in (await replicas[0].case_view(event.case_id, agency_id="polres-bengkayang")).referrals
                      if r.agency_id == "dinsos-bengkayang"]  # fmt: skip

        await asyncio.gather(
            *(replicas[n % 2].referral_view(referral.referral_id, agency_id="dinsos-bengkayang") for n in range(20))
        )

        rows = await audit_rows(postgres_url)
        assert [row.id for row in rows] == list(range(1, 41))
        assert intact(rows)
        async with ledgers[0].engine.begin() as connection:
            await connection.execute(update(audit_trail).where(audit_trail.c.id == 7).values(actor="bp3mi-kalbar"))
        check = ChainCheck()
        assert next(problem for row in await audit_rows(postgres_url) if (problem := check.add(row)))
        assert check.intact == 6
    finally:
        for ledger in ledgers:
            await ledger.engine.dispose()
