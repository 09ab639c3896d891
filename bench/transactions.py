"""Transactions a second on the embedded SQLite ledger, one unit of work after another and many at once.

Each unit of work inserts one row and commits with ``synchronous=FULL``, through ``shared.database.in_transaction``
as the services run theirs; ``writers`` tasks submit them side by side. CPU is the process's time per transaction.
Prints figures, asserts nothing: ``.venv/bin/python -m bench.transactions``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table

from shared.database import in_transaction, make_engine

UNITS_OF_WORK = 3000
WRITERS = (1, 4, 16)

_metadata = MetaData()
_rows = Table("rows", _metadata, Column("id", Integer, primary_key=True), Column("what", String(300)))


def _insert(connection: Connection) -> None:
    connection.execute(_rows.insert(), {"what": "x" * 200})


async def measure(writers: int, directory: Path) -> tuple[float, float]:
    """Transactions a second and µs of CPU per transaction, with ``writers`` submitting at once."""
    engine = make_engine(f"sqlite:///{directory / f'{writers}.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)
    remaining = iter(range(UNITS_OF_WORK))

    async def writer() -> None:
        for _ in remaining:
            await in_transaction(engine, _insert)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer() for _ in range(writers)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await engine.dispose()
    return UNITS_OF_WORK / wall, cpu / UNITS_OF_WORK * 1e6


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rujukan-transactions-") as directory:
        print(f"{'writers':>8} {'transactions/s':>15} {'CPU µs each':>12}")
        for writers in WRITERS:
            per_second, cpu = await measure(writers, Path(directory))
            print(f"{writers:>8} {per_second:>15,.0f} {cpu:>12.1f}")


if __name__ == "__main__":
    asyncio.run(main())
