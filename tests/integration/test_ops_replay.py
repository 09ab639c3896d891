"""A dead letter that died because the ledger's database was down is replayed once it is back, and its case
completes its flow; the replay and a discard are on the audit trail, which still verifies."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.referral.audit import ChainedEntry
from services.referral.ledger import Ledger
from shared.database import make_engine
from tests.builders import a_case_report_body
from tests.integration.test_ops_dead_letters import an_invalid_report, listed, ops
from tests.rabbit import BrokerClient
from tests.system import ROOT, System, WebhookSink, delivered_everywhere, directory_for, free_port, settings_for

pytestmark = pytest.mark.rabbit

ADMIN_DSN = os.environ.get("RUJUKAN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


class DatabaseGate:
    """A TCP proxy in front of PostgreSQL that can be shut: while shut, connections are refused and open ones cut,
    as when the database server is down."""

    def __init__(self, host: str, port: int) -> None:
        self._target = host, port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def shut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._open |= {writer, upstream_writer}

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()
                self._open.discard(sink)

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))


@pytest.fixture
async def gated_database() -> AsyncIterator[tuple[str, DatabaseGate]]:
    """A fresh PostgreSQL database for the ledger, reached through a gate."""
    name = f"rujukan_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    gate = DatabaseGate("127.0.0.1", 5432)
    await gate.open()
    user = ADMIN_DSN.split("://", 1)[1].split("@", 1)[0]
    yield f"postgresql+asyncpg://{user}@127.0.0.1:{gate.port}/{name}", gate
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def system_on_postgres(
    amqp_url: str, sink: WebhookSink, tmp_path: Path, gated_database: tuple[str, DatabaseGate]
) -> AsyncIterator[System]:
    directory = directory_for(sink)
    sink.directory = directory
    settings = settings_for(amqp_url, tmp_path, database_url=gated_database[0])
    running = System(settings, directory, sink, ("intake", "referral", "notifier"))
    await running.start()
    yield running
    await running.stop()


async def rujukan(*args: str, system: System) -> tuple[int, str]:
    """The `rujukan` command as an operator runs it on the System's host (its ledger and demo keys)."""
    env = {
        **os.environ,
        "RUJUKAN_DATABASE_URL": system.settings.database_url,
        "RUJUKAN_DATA_DIR": str(system.settings.data_dir),
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


async def test_a_case_that_died_while_the_database_was_down_completes_when_replayed(
    system_on_postgres: System, gated_database: tuple[str, DatabaseGate], broker: BrokerClient
) -> None:
    system = system_on_postgres
    database_url, gate = gated_database
    await gate.shut()
    accepted = await system.report(a_case_report_body())
    assert accepted.status_code == 202, accepted.text
    case_id = accepted.json()["case_id"]

    [letter] = await listed(system, "referral.cases", 1)
    assert letter["reason"].startswith("gave up after")
    assert letter["message_type"] == "case.reported.v1"
    await gate.open()
    replayed = await ops(
        system,
        "POST",
        f"/dead-letters/referral.cases/{letter['message_id']}/replay",
        json={"note": "database back"},
    )

    assert replayed.status_code == 200, replayed.text
    case = await system.case_when(case_id, delivered_everywhere)
    assert {leg["agency_id"] for leg in case["referrals"]} == {"dinsos-bengkayang", "uptd-ppa-kalbar"}
    assert await broker.depth("referral.cases.dead") == 0
    [entry] = [row.entry for row in await audit_rows(database_url) if row.entry.action == "dlq_replayed"]
    assert entry.actor == "ops-rujukan"
    assert str(entry.case_id) == case_id
    assert set(entry.fields) == {"queue:referral.cases", f"message_id:{letter['message_id']}", "note:database back"}


async def test_replay_and_discard_are_on_the_audit_trail_which_still_verifies(
    system: System, broker: BrokerClient
) -> None:
    replayed_id = await an_invalid_report(broker)
    discarded_id = await an_invalid_report(broker)
    await listed(system, "intake.reports", 2)

    replay = await ops(system, "POST", f"/dead-letters/intake.reports/{replayed_id}/replay")
    discard = await ops(system, "POST", f"/dead-letters/intake.reports/{discarded_id}/discard", json={"note": "dup"})

    assert replay.status_code == 200, replay.text
    assert discard.status_code == 200, discard.text
    actions = {
        (row.entry.action, row.entry.actor, row.entry.fields[1])
        for row in await audit_rows(system.settings.database_url)
    }
    assert actions == {
        ("dlq_replayed", "ops-rujukan", f"message_id:{replayed_id}"),
        ("dlq_discarded", "ops-rujukan", f"message_id:{discarded_id}"),
    }
    code, output = await rujukan("audit", "verify", system=system)
    assert code == 0, output
    assert "2 entries" in output
