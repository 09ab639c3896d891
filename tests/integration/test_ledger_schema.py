"""A new ledger is created at the newest schema directly, without Alembic; it must be the schema the migrations
build, or a deployment upgraded revision by revision would differ from one started afresh."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from services.referral.ledger import SCHEMA_REVISION, Ledger, upgrade_with_alembic
from shared.database import make_engine
from tests.postgres import fresh_databases
from tests.system import ROOT

MIGRATIONS = ROOT / "services" / "referral" / "migrations"


def describe(connection: Connection) -> dict[str, Any]:
    """Every table's columns, keys, indexes and constraints, in a form two databases can be compared by."""
    inspector = inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": {
                column["name"]: (str(column["type"]), column["nullable"], column.get("default"))
                for column in inspector.get_columns(table)
            },
            "primary_key": (
                inspector.get_pk_constraint(table).get("name"),
                sorted(inspector.get_pk_constraint(table)["constrained_columns"]),
            ),
            "indexes": sorted(
                (index["name"], tuple(index["column_names"]), bool(index["unique"]), _predicate(index))
                for index in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (unique.get("name") or "", tuple(sorted(unique["column_names"])))
                for unique in inspector.get_unique_constraints(table)
            ),
            "foreign_keys": sorted(
                (
                    key.get("name") or "",
                    tuple(key["constrained_columns"]),
                    key["referred_table"],
                    tuple(key["referred_columns"]),
                )
                for key in inspector.get_foreign_keys(table)
            ),
            "checks": sorted(
                (check.get("name") or "", check["sqltext"]) for check in inspector.get_check_constraints(table)
            ),
        }
    return schema


def _predicate(index: Any) -> str:
    """A partial index's WHERE, as the database keeps it."""
    options = index.get("dialect_options", {})
    return " ".join(str(options.get(f"{dialect}_where", "")) for dialect in ("sqlite", "postgresql")).strip()


def revision(connection: Connection) -> str:
    return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


@pytest.fixture(params=["sqlite", "postgresql"])
async def two_empty_databases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/migrated.db", f"sqlite+aiosqlite:///{tmp_path}/new.db"
        return
    async with fresh_databases(("migrated", "new")) as made:
        yield made["migrated"], made["new"]


async def test_a_new_ledger_has_the_schema_and_revision_that_replaying_every_migration_gives(
    two_empty_databases: tuple[str, str],
) -> None:
    migrated_url, new_url = two_empty_databases
    migrated, new = make_engine(migrated_url), make_engine(new_url)
    try:
        async with migrated.begin() as connection:
            await connection.run_sync(upgrade_with_alembic)
        await Ledger(new).migrate()
        async with migrated.connect() as a, new.connect() as b:
            expected, actual = await a.run_sync(describe), await b.run_sync(describe)
            revisions = (await a.run_sync(revision), await b.run_sync(revision))
    finally:
        await migrated.dispose()
        await new.dispose()

    assert actual == expected
    assert revisions == (SCHEMA_REVISION, SCHEMA_REVISION)


def test_the_schema_revision_a_new_ledger_is_stamped_with_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))

    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


CREATE_THEN_MIGRATE_AGAIN = """
import asyncio, sys
from services.referral.ledger import Ledger
from shared.database import make_engine

async def main(url):
    for _ in range(2):  # created, then found at the newest revision on the next start
        engine = make_engine(url)
        await Ledger(engine).migrate()
        await engine.dispose()

asyncio.run(main(sys.argv[1]))
print("alembic" in sys.modules)
"""


def test_creating_a_ledger_and_starting_on_it_again_never_loads_alembic(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CREATE_THEN_MIGRATE_AGAIN, f"sqlite+aiosqlite:///{tmp_path}/ledger.db"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip

    assert done.stdout.split() == ["False"]
