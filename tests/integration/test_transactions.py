"""``in_transaction``: synchronous work committed or rolled back as one transaction, on SQLite and PostgreSQL,
while the event loop goes on whenever the driver waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

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
