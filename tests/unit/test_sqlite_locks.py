"""SQLite runs on the event loop's thread: another connection's lock delays a transaction, never the loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import sqlite_inline
from shared.database import execute_in_transaction, make_engine
from tests.loop_ticks import counting_ticks


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    setup = sqlite3.connect(path, isolation_level=None)
    # In WAL mode, as every database of ours is from its first connection on.
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, what TEXT NOT NULL)")
    setup.close()
    return path


def _held(path: Path) -> sqlite3.Connection:
    """Another process's connection, holding the write lock (as a CLI command in the middle of a write would)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def _insert_async(engine: AsyncEngine, what: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO entries (what) VALUES (:what)"), {"what": what})


async def _insert_in_one_greenlet(engine: AsyncEngine, what: str) -> None:
    await execute_in_transaction(engine, text("INSERT INTO entries (what) VALUES (:what)"), {"what": what})


@pytest.mark.parametrize("insert", [_insert_async, _insert_in_one_greenlet])
async def test_a_transaction_waiting_for_another_connections_lock_leaves_the_loop_free(
    database: Path, insert: Callable[[AsyncEngine, str], Coroutine[None, None, None]]
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    other = _held(database)

    async with counting_ticks() as ticks:
        writing = asyncio.create_task(insert(engine, "referral issued"))
        await asyncio.sleep(0.3)
        assert not writing.done()
    assert ticks.count >= 10  # the loop went on while the write waited

    other.execute("COMMIT")
    await asyncio.wait_for(writing, timeout=5)
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT what FROM entries"))).scalars().all() == ["referral issued"]
    await engine.dispose()
    other.close()


async def test_a_lock_held_past_the_wait_fails_the_transaction_instead_of_hanging(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "LOCK_WAIT_SECONDS", 0.2)
    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    other = _held(database)

    with pytest.raises(OperationalError, match="database is locked"):
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO entries (what) VALUES ('referral issued')"))

    other.execute("ROLLBACK")
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO entries (what) VALUES ('after the lock')"))
    await engine.dispose()
    other.close()
