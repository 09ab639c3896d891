"""SQLite run on the event loop's own thread, by SQLAlchemy's asyncio extension over pysqlite's own dialect.

aiosqlite runs every call on a worker thread, and SQLAlchemy makes four calls of each statement (cursor, execute,
fetch, close): on the benchmark those hand-offs between threads took about a fifth of each service's CPU. An
adapter answering aiosqlite's calls at once on the loop's thread still cost a greenlet switch for each of them.
Here SQLAlchemy's asyncio extension runs the plain sqlite3 module in its greenlet: a statement is a call where it
is awaited. The one exception is a durable commit (``synchronous=FULL``), which waits for the disk (0.16 ms on an
idle machine, 0.7 ms under a raid) on a worker thread while the loop goes on (``do_commit``).

What must never run on the loop is a wait for another connection's lock: these connections have no busy timeout,
and every transaction takes its lock at ``BEGIN IMMEDIATE`` (``begin_immediate``), which waits with asyncio
sleeps instead. Another process holding the database (a CLI command, a test's own engine) then delays this one's
transactions, never its heartbeats or its other handlers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_

LOCK_WAIT_SECONDS = 30.0
"""How long a transaction waits for another connection's write lock before it fails."""
_FIRST_RETRY_SECONDS = 0.001
_LONGEST_RETRY_SECONDS = 0.05


IN_ONE_GREENLET = "rujukan_in_one_greenlet"
"""Execution option of a connection whose whole transaction runs in one greenlet (``shared.database``)."""


class InlineSQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite's dialect, run by SQLAlchemy's asyncio extension as if its driver were asynchronous."""

    driver = "inline"
    is_async = True
    supports_statement_cache = True
    # A connection left unreturned is closed when collected: closing a sqlite3 connection needs no loop.
    has_terminate = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:  # noqa: ARG003 (the same for every SQLite URL)
        # A task waiting for the process's one connection must wait in asyncio, not block the loop's thread.
        return pool.AsyncAdaptedQueuePool

    def do_begin(self, dbapi_connection: Any) -> None:
        # Every transaction takes the write lock at its start, so none fails at lock upgrade (SQLITE_BUSY
        # mid-transaction), and the only wait for the lock is the one that yields to the loop.
        begin_immediate(dbapi_connection)

    def do_commit(self, dbapi_connection: Any) -> None:
        if not dbapi_connection.waits_for_disk:
            dbapi_connection.commit()
            return
        # The wait for the disk on a worker thread (the connection is this transaction's alone meanwhile): the loop
        # goes on, and the units of work that queue during it share the next transaction (``shared.group_commit``).
        finished = threading.Event()

        def commit() -> None:
            try:
                dbapi_connection.commit()
            finally:
                finished.set()

        try:
            await_(asyncio.to_thread(commit))
        except BaseException:
            # Cancelled (the loop is ending): the connection is closed next, and never while the thread commits.
            finished.wait(LOCK_WAIT_SECONDS)
            raise

    def do_terminate(self, dbapi_connection: Any) -> None:
        dbapi_connection.close()

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        cursor.execute(statement, parameters)
        _await_unless_in_one_greenlet(context)

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        cursor.execute(statement)
        _await_unless_in_one_greenlet(context)

    def do_executemany(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        cursor.executemany(statement, parameters)
        _await_unless_in_one_greenlet(context)


registry.register("sqlite.inline", __name__, InlineSQLiteDialect.__name__)


async def _nothing() -> None:
    return None


def _await_unless_in_one_greenlet(context: Any) -> None:
    """``AsyncConnection.execute`` refuses a statement during which nothing was awaited (its check for a
    synchronous driver used by mistake): one awaited no-op satisfies it. A unit of work run by
    ``shared.database.in_transaction`` is spared even that."""
    if context is None or not context.execution_options.get(IN_ONE_GREENLET, False):
        await_(_nothing())


class _Cursor(sqlite3.Cursor):
    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's asyncio extension on a cursor whose result it hands to async code, to close an
        async driver's cursor early: a sqlite3 cursor's rows stay readable where they are, with nothing to do."""


class _Connection(sqlite3.Connection):
    waits_for_disk = False
    """Whether a commit waits for the disk (``synchronous=FULL``)."""

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)


def begin_immediate(connection: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, retried with asyncio sleeps while another connection holds the write lock. Runs in
    SQLAlchemy's greenlet, which hands each sleep to the loop."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = _FIRST_RETRY_SECONDS
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.Error as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                # As SQLAlchemy raises what a statement meets: callers catch its errors, not sqlite3's.
                raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
        await_(asyncio.sleep(delay))
        delay = min(2 * delay, _LONGEST_RETRY_SECONDS)


def connect(database: str, *, survive_power_loss: bool) -> sqlite3.Connection:
    """A connection in WAL mode with foreign keys on, transactions left to us (``isolation_level=None``).
    ``synchronous=FULL`` puts a transaction on disk before the message that caused it is acked, even through a
    power loss; ``NORMAL`` only through a crash of the process. The engine's pool calls it in its greenlet."""
    # Opened on a worker thread: the switch to WAL may wait for another connection's lock.
    return await_(asyncio.to_thread(_open, database, survive_power_loss))


def _open(database: str, survive_power_loss: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(
        database, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT_SECONDS, factory=_Connection
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={'FULL' if survive_power_loss else 'NORMAL'}")
    connection.waits_for_disk = survive_power_loss
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=0")
    return connection
