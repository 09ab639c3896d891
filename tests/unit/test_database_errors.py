"""A database error names the statement, never the values it was given: they may be a note an officer typed a
victim's name in, and errors are logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.database import make_engine
from tests.postgres import fresh_database


async def failing_insert(url: str) -> str:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, note TEXT NOT NULL)"))
            await connection.execute(text("INSERT INTO notes VALUES (1, 'first')"))
            with pytest.raises(DBAPIError) as failed:
                await connection.execute(
                    text("INSERT INTO notes VALUES (:id, :note)"), {"id": 1, "note": "Siti Aminah dirawat di RS"}
                )
    finally:
        await engine.dispose()
    return str(failed.value)


async def test_a_sqlite_error_does_not_quote_the_values_it_was_given(tmp_path: Path) -> None:
    """Found by review: errors carried '[parameters: ...]', and a retried message's error is logged in full."""
    message = await failing_insert(f"sqlite+aiosqlite:///{tmp_path}/ledger.db")

    assert "INSERT INTO notes" in message
    assert "Siti" not in message


async def test_a_postgresql_error_does_not_quote_the_values_it_was_given() -> None:
    async with fresh_database() as url:
        message = await failing_insert(url)

    assert "INSERT INTO notes" in message
    assert "Siti" not in message
