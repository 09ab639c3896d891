"""``in_transaction``: synchronous work committed or rolled back as one transaction, on SQLite and PostgreSQL,
while the event loop goes on whenever the driver waits; on SQLite, units of work that queue share a commit."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import sqlite_inline
from shared.database import execute_in_transaction, in_transaction, make_engine
from tests.loop_ticks import counting_ticks
from tests.postgres import fresh_database

metadata = MetaData()
entries = Table("entries", metadata, Column("id", Integer, primary_key=True), Column("what", String(40)))


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        made = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
        async with made.begin() as connection:
            await connection.run_sync(metadata.create_all)
        yield made
        await made.dispose()
        return
    async with fresh_database() as url:
        made = make_engine(url)
        async with made.begin() as connection:
            await connection.run_sync(metadata.create_all)
        yield made
        await made.dispose()


async def _written(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.execute(select(entries.c.what).order_by(entries.c.id))).scalars())


def _record_two(connection: Connection, first: str, second: str) -> int:
    connection.execute(entries.insert(), [{"what": first}, {"what": second}])
    return connection.execute(select(func.count()).select_from(entries)).scalar_one()


async def test_work_that_returns_is_committed_with_its_answer(engine: AsyncEngine) -> None:
    assert await in_transaction(engine, _record_two, "case reported", "referral issued") == 2

    assert await _written(engine) == ["case reported", "referral issued"]


async def test_work_that_raises_leaves_nothing_behind(engine: AsyncEngine) -> None:
    def record_then_fail(connection: Connection) -> None:
        _record_two(connection, "case reported", "referral issued")
        raise LookupError("the referral is not there")

    with pytest.raises(LookupError, match="the referral is not there"):
        await in_transaction(engine, record_then_fail)

    assert await _written(engine) == []
    await execute_in_transaction(engine, entries.insert(), {"what": "after the failure"})
    assert await _written(engine) == ["after the failure"]


async def test_the_loop_goes_on_while_postgresql_works() -> None:
    async with fresh_database() as url:
        engine = make_engine(url)
        async with counting_ticks() as ticks:
            await in_transaction(engine, lambda connection: connection.execute(text("SELECT pg_sleep(0.3)")))
        await engine.dispose()

    assert ticks.count >= 10


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    async with made.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield made
    await made.dispose()


def _record(connection: Connection, what: str) -> str:
    connection.execute(entries.insert(), {"what": what})
    return f"recorded {what}"


def _record_or_refuse(connection: Connection, what: str) -> str:
    _record(connection, what)
    if what == "refused":
        raise LookupError("the referral is not there")
    return f"recorded {what}"


async def test_units_of_work_queued_together_on_sqlite_share_one_commit(sqlite_engine: AsyncEngine) -> None:
    commits: list[object] = []
    event.listen(sqlite_engine.sync_engine, "commit", commits.append)
    reports = [f"delivery report {n}" for n in range(20)]

    answers = await asyncio.gather(*(in_transaction(sqlite_engine, _record, report) for report in reports))

    assert answers == [f"recorded {report}" for report in reports]
    assert await _written(sqlite_engine) == reports
    assert len(commits) < len(reports)


async def test_one_failing_unit_of_work_undoes_nothing_of_those_it_shared_a_transaction_with(
    sqlite_engine: AsyncEngine,
) -> None:
    reports = ["first", "second", "refused", "fourth"]

    answers = await asyncio.gather(
        *(in_transaction(sqlite_engine, _record_or_refuse, report) for report in reports), return_exceptions=True
    )

    assert answers[:2] == ["recorded first", "recorded second"]
    assert isinstance(answers[2], LookupError)
    assert answers[3] == "recorded fourth"
    assert await _written(sqlite_engine) == ["first", "second", "fourth"]


async def test_one_failing_unit_of_work_costs_the_others_no_commit_of_their_own(sqlite_engine: AsyncEngine) -> None:
    commits: list[object] = []
    event.listen(sqlite_engine.sync_engine, "commit", commits.append)
    reports = [f"delivery report {n}" for n in range(20)]
    reports[10] = "refused"

    answers = await asyncio.gather(
        *(in_transaction(sqlite_engine, _record_or_refuse, report) for report in reports), return_exceptions=True
    )

    assert [type(answer) for answer in answers].count(LookupError) == 1
    assert sorted(await _written(sqlite_engine)) == sorted(report for report in reports if report != "refused")
    # The ten before it together, the ten after it together: not nineteen transactions, one each.
    assert len(commits) <= 3


async def test_a_unit_of_work_that_raises_first_in_its_transaction_is_not_run_again(
    sqlite_engine: AsyncEngine,
) -> None:
    """What it raised on what it would have seen alone is its answer: its warnings are logged once."""
    runs: list[str] = []

    def refuse(connection: Connection) -> None:
        runs.append("refused")
        _record_or_refuse(connection, "refused")

    answers = await asyncio.gather(
        in_transaction(sqlite_engine, refuse), in_transaction(sqlite_engine, _record, "next"), return_exceptions=True
    )

    assert isinstance(answers[0], LookupError)
    assert answers[1] == "recorded next"
    assert runs == ["refused"]
    assert await _written(sqlite_engine) == ["next"]


async def test_each_unit_of_work_runs_in_its_callers_context(sqlite_engine: AsyncEngine) -> None:
    """Log lines of a unit of work carry its own message's ids, whichever caller's task ran the transaction."""
    message_id: ContextVar[str] = ContextVar("message_id")

    async def handle(n: int) -> str:
        message_id.set(f"message {n}")
        return await in_transaction(sqlite_engine, lambda _: message_id.get())

    assert await asyncio.gather(*(handle(n) for n in range(5))) == [f"message {n}" for n in range(5)]


def test_an_engine_outlives_a_loop_that_ended_before_its_transaction_began(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")

    async def create_and_leave_one_waiting() -> None:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        asyncio.get_running_loop().create_task(in_transaction(engine, _record, "never begun"))

    async def record_then_dispose() -> str:
        try:
            return await asyncio.wait_for(in_transaction(engine, _record, "after"), 10)
        finally:
            await engine.dispose()

    with asyncio.Runner() as first:
        first.run(create_and_leave_one_waiting())
    with asyncio.Runner() as second:
        assert second.run(record_then_dispose()) == "recorded after"


async def test_a_unit_of_work_whose_caller_gave_up_before_its_turn_writes_nothing(sqlite_engine: AsyncEngine) -> None:
    kept = asyncio.create_task(in_transaction(sqlite_engine, _record, "kept"))
    given_up = asyncio.create_task(in_transaction(sqlite_engine, _record, "given up"))
    await asyncio.sleep(0)

    given_up.cancel()

    assert await kept == "recorded kept"
    with pytest.raises(asyncio.CancelledError):
        await given_up
    assert await _written(sqlite_engine) == ["kept"]


async def test_the_loop_goes_on_while_sqlite_waits_for_the_disk(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_disk(connection: sqlite3.Connection) -> None:
        time.sleep(0.3)
        sqlite3.Connection.commit(connection)

    monkeypatch.setattr(sqlite_inline._Connection, "commit", slow_disk)

    async with counting_ticks() as ticks:
        await in_transaction(sqlite_engine, _record, "case reported")

    assert ticks.count >= 10
    assert await _written(sqlite_engine) == ["case reported"]
