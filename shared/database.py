"""Async SQLAlchemy engines: SQLite (the embedded default) set up for several writers, or PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, DateTime, DefaultClause, Table, inspect, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType
from sqlalchemy.util import greenlet_spawn

from shared import sqlite_inline
from shared.group_commit import GroupCommit, in_a_transaction_of_its_own

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert


def make_engine(url: str, *, survive_power_loss: bool = True) -> AsyncEngine:
    """``survive_power_loss=False`` (SQLite only) keeps a commit through a crash of the process but not of the
    machine: for records whose last few writes may be lost at worst to a resend under the same id."""
    parsed = make_url(url)
    # An error names its statement but never its values: they may be a note an officer typed a victim's name in,
    # and a message's error is logged when it is retried.
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, hide_parameters=True)
    database = parsed.database or ":memory:"
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    # One connection per process: SQLite has one writer anyway, and queueing in asyncio is far cheaper than
    # SQLite's busy handler, which sleeps up to 100 ms between tries when connections of one process collide.
    return create_async_engine(
        parsed.set(drivername="sqlite+inline"),
        creator=partial(sqlite_inline.connect, database, survive_power_loss=survive_power_loss),
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        hide_parameters=True,
    )


_P = ParamSpec("_P")
_T = TypeVar("_T")


async def in_transaction(
    engine: AsyncEngine, work: Callable[Concatenate[Connection, _P], _T], /, *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """``work(connection, *args, **kwargs)`` in one transaction, committed if it returns, rolled back if it raises.

    ``work`` is plain synchronous code run in one greenlet, as ``AsyncConnection.run_sync`` runs it. Through an
    ``AsyncConnection`` every step (connect, begin, each statement, commit, close) is a greenlet of its own, and
    closing adds a task: a short transaction spent about 130 µs on that, as much as on its statements. Where the
    driver must wait (asyncpg, SQLite's wait for another process's write lock) it still yields to the loop.

    On SQLite, units of work that queue while another transaction is written share the next one
    (``shared.group_commit``): ``work`` may run a second time, in a transaction of its own, after a rolled-back
    first run."""

    def job(connection: Connection) -> _T:
        return work(connection, *args, **kwargs)

    if engine.dialect.name == "sqlite":
        return cast("_T", await _group_commit(engine).run(job))
    # PostgreSQL runs transactions side by side, with row locks: sharing one would only add deadlocks.
    return cast("_T", await greenlet_spawn(in_a_transaction_of_its_own, engine.sync_engine, job))


_group_commits: WeakKeyDictionary[AsyncEngine, GroupCommit] = WeakKeyDictionary()
"""Keyed by the async engine, which the group holds nothing of: an engine let go of is collected with its group."""


def _group_commit(engine: AsyncEngine) -> GroupCommit:
    group = _group_commits.get(engine)
    if group is None:
        group = _group_commits[engine] = GroupCommit(engine.sync_engine)
    return group


async def execute_in_transaction(
    engine: AsyncEngine, statement: Executable, parameters: Mapping[str, object] | None = None
) -> None:
    """One statement, committed by ``in_transaction``."""
    await in_transaction(engine, _execute, statement, parameters)


def _execute(connection: Connection, statement: Executable, parameters: Mapping[str, object] | None) -> None:
    connection.execute(statement, parameters)


def upsert(table: Table, dialect_name: str) -> SqliteInsert | PostgresInsert:
    """An insert into ``table`` that takes ``on_conflict_do_nothing`` or ``on_conflict_do_update``, in the dialect
    named (``sqlite`` or ``postgresql``)."""
    # Imported for the database in use only: PostgreSQL's dialect adds 2 MB to a process that never talks to it.
    if dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def add_missing_columns(connection: Connection, table: Table) -> None:
    """A table made by an earlier version gets the columns added since, with their defaults (intake's and the
    notifier's stores have no migration tool: their tables only ever gain columns)."""
    present = {column["name"] for column in inspect(connection).get_columns(table.name)}
    for column in table.columns:
        if column.name not in present:
            kind = column.type.compile(connection.dialect)
            default = (
                f" DEFAULT '{column.server_default.arg}'" if isinstance(column.server_default, DefaultClause) else ""
            )
            connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{default}'))


async def ping(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True


class _SqliteDateTimeText(UserDefinedType[str]):
    """DATETIME in SQLite's DDL, as before; the text itself is written and read by ``UtcDateTime``, in one step
    each way where SQLAlchemy's own DATETIME takes two (a processor of its own after the decorator's)."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "DATETIME"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes in and out, stored as UTC (SQLite keeps no offset of its own: there the value is
    the text ``YYYY-MM-DD HH:MM:SS.ffffff``, microseconds always written, so text order is time order)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return _SqliteDateTimeText()
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def process_result_value(self, value: datetime | str | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
