"""Every identity read lands on a tamper-evident audit trail, and agencies see only their profile's fields."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from services.intake.reports import ReportIntake, fingerprint_of
from services.referral.audit import AuditAction, AuditEntry, AuditKeys, ChainCheck, ChainedEntry, entry_hash
from services.referral.ledger import Ledger, LedgerTx, audit_trail, upgrade_with_alembic
from services.referral.referrals import Referrals
from shared.contracts.cases import CaseReported
from shared.database import make_engine
from shared.directory import Directory, load_directory
from shared.ids import case_id_for
from shared.sealing import IdentitySealer, load_audit_keys
from shared.settings import Settings
from tests.builders import a_case_report, a_case_report_body, a_victim
from tests.integration.test_officer_desk import link_for, officer_browser
from tests.postgres import fresh_database
from tests.system import CONFIG, ROOT, System, delivered_everywhere

pytestmark = pytest.mark.rabbit

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


async def rujukan(*args: str, database_url: str, config: Path = CONFIG, **variables: str) -> tuple[int, str]:
    """The `rujukan` command as an operator runs it against the System's ledger, with the System's demo keys
    (they are in its data directory, beside its SQLite ledger)."""
    assert database_url.startswith("sqlite+aiosqlite:///"), "the System's ledger is SQLite"
    data_dir = Path(database_url.removeprefix("sqlite+aiosqlite:///")).parent
    env = {
        **os.environ,
        "RUJUKAN_DATABASE_URL": database_url,
        "RUJUKAN_CONFIG": str(config),
        "RUJUKAN_DATA_DIR": str(data_dir),
        **{f"RUJUKAN_{name.upper()}": value for name, value in variables.items()},
    }
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


def intact(rows: list[ChainedEntry], keys: Mapping[str, bytes]) -> bool:
    check = ChainCheck(keys)
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
    assert {r.key_id for r in rows} == {"a1"}
    assert intact(rows, load_audit_keys(system.settings))
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


async def rehash_without_the_key(database_url: str) -> None:
    """What write access to the ledger allows without the audit key: every row rehashed with plain SHA-256, in
    order and without key ids, so that each row follows the one before."""
    previous = "0" * 64
    rows = await audit_rows(database_url)
    # The System's referral service may be writing: wait for its lock as long as the tests may take.
    with sqlite3.connect(database_url.removeprefix("sqlite+aiosqlite:///"), timeout=60) as db:
        for row in rows:
            digest = entry_hash(previous, row.id, row.entry, None)
            db.execute(
                "UPDATE audit_trail SET key_id = '', prev_hash = ?, hash = ? WHERE id = ?", (previous, digest, row.id)
            )
            previous = digest


async def test_audit_verify_names_a_chain_rehashed_without_the_key(system: System) -> None:
    _, legs = await referred_case(system, [A_GIRL])
    for _ in range(3):
        await read_referral(system, legs["dinsos-bengkayang"], "dinsos-bengkayang")
    url = system.settings.database_url

    await rehash_without_the_key(url)
    code, output = await rujukan("audit", "verify", database_url=url)

    assert code == 1
    assert "audit trail broken at row 1: not keyed" in output


async def test_audit_verify_with_an_earlier_head_names_a_trail_cut_short_at_the_end(system: System) -> None:
    _, legs = await referred_case(system, [A_GIRL])
    for _ in range(2):
        await read_referral(system, legs["dinsos-bengkayang"], "dinsos-bengkayang")
    url = system.settings.database_url
    first = await rujukan("audit", "verify", database_url=url)
    head = first[1].rsplit("the last hash is ", 1)[1].strip()
    await read_referral(system, legs["dinsos-bengkayang"], "dinsos-bengkayang")

    grown = await rujukan("audit", "verify", "--expect-head", head, database_url=url)
    with sqlite3.connect(url.removeprefix("sqlite+aiosqlite:///"), timeout=60) as db:
        db.execute("DELETE FROM audit_trail WHERE id >= 2")
    cut = await rujukan("audit", "verify", "--expect-head", head, database_url=url)
    unchecked = await rujukan("audit", "verify", database_url=url)

    assert first[0] == 0
    assert "audit trail intact: 2 entries" in first[1]
    assert grown[0] == 0
    assert "audit trail intact: 3 entries" in grown[1]
    assert cut[0] == 1
    assert f"audit trail cut short: no entry has the expected head {head}; the 1 entries left are intact" in cut[1]
    assert unchecked[0] == 0, "without a head kept elsewhere a cut tail looks like a shorter trail"


async def test_after_a_key_rotation_audit_verify_checks_old_entries_with_the_retired_key(system: System) -> None:
    case_id, legs = await referred_case(system, [A_GIRL])
    await read_referral(system, legs["dinsos-bengkayang"], "dinsos-bengkayang")
    url = system.settings.database_url
    [old_key] = load_audit_keys(system.settings).values()
    new_key = os.urandom(32)
    [read] = await audit_rows(url)
    rotated = Ledger(make_engine(url), audit_keys=AuditKeys("a2", {"a2": new_key, "a1": old_key}))
    try:
        await rotated.run(LedgerTx.append_audit, [replace(read.entry, at=datetime.now(UTC))])
    finally:
        await rotated.engine.dispose()
    new = {"audit_key": base64.b64encode(new_key).decode(), "audit_key_id": "a2"}

    both = await rujukan(
        "audit", "verify", database_url=url, **new, audit_retired_keys=f"a1:{base64.b64encode(old_key).decode()}"
    )
    new_only = await rujukan("audit", "verify", database_url=url, **new)

    assert [row.key_id for row in await audit_rows(url)] == ["a1", "a2"]
    assert str((await audit_rows(url))[1].entry.case_id) == case_id
    assert both[0] == 0
    assert "audit trail intact: 2 entries" in both[1]
    assert new_only[0] == 1
    assert "row 1: keyed with 'a1', which is not configured" in new_only[1]


async def test_entries_written_before_the_trail_was_keyed_pass_with_their_count_and_the_chain_goes_on_keyed(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/rujukan.db"
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_with_alembic, "0006")
            previous = "0" * 64
            for entry_id in (1, 2):
                entry = AuditEntry(
                    at=datetime(2026, 11, 1, entry_id, tzinfo=UTC),
                    actor="bp3mi-kalbar",
                    action=AuditAction.IDENTITY_READ,
                    case_id=uuid.uuid4(),
                    victim_ref="V1",
                    fields=("full_name",),
                )
                digest = entry_hash(previous, entry_id, entry, None)
                # The columns of revision 0006: no key id yet.
                values = {"at": entry.at, "actor": entry.actor, "action": str(entry.action)}
                values |= {"case_id": str(entry.case_id), "victim_ref": "V1", "fields": ["full_name"]}
                await connection.execute(
                    audit_trail.insert(), {"id": entry_id, **values, "prev_hash": previous, "hash": digest}
                )
                previous = digest
        keys = AuditKeys("a1", {"a1": load_audit_keys(Settings(data_dir=tmp_path))["a1"]})
        ledger = Ledger(engine, audit_keys=keys)
        await ledger.migrate()
        await ledger.run(LedgerTx.append_audit, [replace(entry, at=datetime(2026, 11, 28, tzinfo=UTC))])
    finally:
        await engine.dispose()

    counted = await rujukan("audit", "verify", "--unkeyed-rows", "2", database_url=url)
    uncounted = await rujukan("audit", "verify", database_url=url)

    assert [row.key_id for row in await audit_rows(url)] == ["", "", "a1"]
    assert counted[0] == 0
    assert "audit trail intact: 3 entries" in counted[1]
    assert uncounted[0] == 1
    assert "row 1: not keyed, and only the first 0 rows predate the keyed trail" in uncounted[1]


# PostgreSQL: several referral replicas append to one chain.


async def postgres_database() -> AsyncIterator[str]:
    """A database of its own on the local PostgreSQL, dropped afterwards."""
    async with fresh_database() as url:
        yield url


postgres_url = pytest.fixture(postgres_database, name="postgres_url")


def case_reported(sealer: IdentitySealer, directory: Directory) -> CaseReported:
    report = a_case_report(victims=[A_GIRL, A_WOMAN_BACK_FROM_MALAYSIA])
    intake = ReportIntake(lambda: directory, sealer, None, None)  # type: ignore[arg-type]
    case_id = case_id_for(report.reporting_agency, report.police_report_number)
    return intake._case_reported(report, case_id, fingerprint_of(report))


async def test_reads_on_two_postgres_replicas_at_once_never_fork_the_chain(postgres_url: str) -> None:
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    keys = AuditKeys("a1", {"a1": os.urandom(32)})
    ledgers = [Ledger(make_engine(postgres_url), audit_keys=keys) for _ in range(2)]
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
        assert intact(rows, keys.keys)
        async with ledgers[0].engine.begin() as connection:
            await connection.execute(update(audit_trail).where(audit_trail.c.id == 7).values(actor="bp3mi-kalbar"))
        check = ChainCheck(keys.keys)
        assert next(problem for row in await audit_rows(postgres_url) if (problem := check.add(row)))
        assert check.intact == 6
    finally:
        for ledger in ledgers:
            await ledger.engine.dispose()
