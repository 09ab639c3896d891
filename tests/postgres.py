"""Databases of a test's or a run's own on the local PostgreSQL server, dropped on the way out."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

ADMIN_DSN = os.environ.get("RUJUKAN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@asynccontextmanager
async def fresh_databases(purposes: tuple[str, ...]) -> AsyncIterator[dict[str, str]]:
    """A fresh database per purpose; purpose -> SQLAlchemy URL."""
    try:
        admin = await asyncpg.connect(ADMIN_DSN)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(f"no PostgreSQL at {ADMIN_DSN} (set RUJUKAN_TEST_POSTGRES_DSN)") from exc
    run = uuid.uuid4().hex[:10]
    names = {purpose: f"rujukan_test_{run}_{purpose}" for purpose in purposes}
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield {purpose: f"{base}/{name}" for purpose, name in names.items()}
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    async with fresh_databases(("db",)) as made:
        yield made["db"]
