"""SQLite run on the event loop's own thread, behind SQLAlchemy's aiosqlite dialect.

aiosqlite runs every call on a worker thread, and SQLAlchemy makes four calls of each statement (cursor, execute,
fetch, close): on the benchmark those hand-offs between threads took about a fifth of each service's CPU. Here a
statement runs where it is awaited; on this machine a commit with ``synchronous=FULL`` takes about 0.2 ms, less
than the hand-offs did.

What must never run on the loop is a wait for another connection's lock: these connections have no busy timeout,
and every transaction takes its lock at ``BEGIN IMMEDIATE`` (``begin_immediate``), which waits with asyncio
sleeps instead. Another process holding the database (a CLI command, a test's own engine) then delays this one's
transactions, never its heartbeats or its other handlers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_

LOCK_WAIT_SECONDS = 30.0
"""How long a transaction waits for another connection's write lock before it fails."""
_FIRST_RETRY_SECONDS = 0.001
_LONGEST_RETRY_SECONDS = 0.05


class InlineCursor:
    """The part of aiosqlite's cursor that SQLAlchemy's adapter uses, answered at once."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any] | dict[str, Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """The part of aiosqlite's connection that SQLAlchemy's adapter uses, answered at once."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection

    @property
    def _connection(self) -> sqlite3.Connection:
        """The adapter commits and rolls back only while this is set."""
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()

    def stop(self) -> None:
        self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    def begin_immediate(self) -> None:
        """``BEGIN IMMEDIATE``, retried with asyncio sleeps while another connection holds the write lock. Runs in
        SQLAlchemy's greenlet, which hands each sleep to the loop."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = _FIRST_RETRY_SECONDS
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as exc:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    # As SQLAlchemy raises what a statement meets: callers catch its errors, not sqlite3's.
                    raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
            await_(asyncio.sleep(delay))
            delay = min(2 * delay, _LONGEST_RETRY_SECONDS)


async def connect(database: str, *, survive_power_loss: bool) -> InlineConnection:
    """A connection in WAL mode with foreign keys on, transactions left to us (``isolation_level=None``).
    ``synchronous=FULL`` puts a transaction on disk before the message that caused it is acked, even through a
    power loss; ``NORMAL`` only through a crash of the process."""
    # Opened on a worker thread: the switch to WAL may wait for another connection's lock.
    return InlineConnection(await asyncio.to_thread(_open, database, survive_power_loss))


def _open(database: str, survive_power_loss: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT_SECONDS)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={'FULL' if survive_power_loss else 'NORMAL'}")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=0")
    return connection
