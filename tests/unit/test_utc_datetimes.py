"""Datetimes in SQLite: aware UTC in and out, stored as the text the ledgers have always held."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select

from shared.database import UtcDateTime, in_transaction, make_engine

metadata = MetaData()
entries = Table("entries", metadata, Column("id", Integer, primary_key=True), Column("at", UtcDateTime))

WIB = timezone(timedelta(hours=7))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    setup = sqlite3.connect(path)
    # The column as the ledgers' migrations declare it.
    setup.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, at DATETIME)")
    # Written by an earlier version, through SQLAlchemy's own DATETIME.
    setup.execute("INSERT INTO entries (id, at) VALUES (1, '2026-12-07 06:00:00.000000')")
    setup.commit()
    setup.close()
    return path


async def test_a_datetime_is_kept_as_utc_text_and_read_back_aware(database: Path) -> None:
    engine = make_engine(f"sqlite:///{database}")
    written = datetime(2026, 12, 7, 13, 1, 2, 345678, tzinfo=WIB)
    try:
        await in_transaction(engine, lambda c: c.execute(insert(entries).values(id=2, at=written)))
        read = await in_transaction(engine, lambda c: c.scalar(select(entries.c.at).where(entries.c.id == 2)))
    finally:
        await engine.dispose()

    assert read == written
    assert read.tzinfo is UTC
    with sqlite3.connect(database) as raw:
        [(stored,)] = raw.execute("SELECT at FROM entries WHERE id = 2")
    assert stored == "2026-12-07 06:01:02.345678"


async def test_rows_written_before_compare_and_read_as_they_did(database: Path) -> None:
    engine = make_engine(f"sqlite:///{database}")
    on_the_hour = datetime(2026, 12, 7, 6, tzinfo=UTC)
    try:
        await in_transaction(engine, lambda c: c.execute(insert(entries).values(id=2, at=on_the_hour)))
        await in_transaction(
            engine, lambda c: c.execute(insert(entries).values(id=3, at=on_the_hour.replace(second=1)))
        )
        since = await in_transaction(
            engine, lambda c: c.execute(select(entries.c.id, entries.c.at).where(entries.c.at >= on_the_hour)).all()
        )
        before = await in_transaction(
            engine, lambda c: c.scalars(select(entries.c.id).where(entries.c.at < on_the_hour)).all()
        )
    finally:
        await engine.dispose()

    assert sorted(since) == [(1, on_the_hour), (2, on_the_hour), (3, on_the_hour.replace(second=1))]
    assert before == []


async def test_a_naive_datetime_is_refused(database: Path) -> None:
    engine = make_engine(f"sqlite:///{database}")
    try:
        with pytest.raises(Exception, match="naive datetime"):
            await in_transaction(engine, lambda c: c.execute(insert(entries).values(id=2, at=datetime(2026, 12, 7))))
    finally:
        await engine.dispose()
