"""Intake's memory of reports it accepted: enough to answer 409 for a changed report synchronously."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from uuid import UUID

from sqlalchemy import Boolean, Column, MetaData, String, Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.database import UtcDateTime

metadata = MetaData()

reports = Table(
    "intake_reports",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("published", Boolean, nullable=False, default=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
)


class Claim(Enum):
    NEW = "new"
    """Never accepted before: publish it."""
    REPEAT_UNPUBLISHED = "repeat_unpublished"
    """Seen, but its publish was never confirmed: publish again (same message id)."""
    REPEAT = "repeat"
    """Already accepted with this content: nothing new."""
    CONFLICT = "conflict"
    """Already accepted with other content."""


class ReportRegistry:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_schema(self) -> None:
        async with self._engine.begin() as connection:
            await connection.run_sync(metadata.create_all)

    async def claim(self, case_id: UUID, fingerprint: str) -> Claim:
        key = str(case_id)
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    reports.insert().values(
                        case_id=key, fingerprint=fingerprint, published=False, first_seen_at=datetime.now(UTC)
                    )
                )
            return Claim.NEW
        except IntegrityError:
            pass
        async with self._engine.begin() as connection:
            row = (await connection.execute(select(reports).where(reports.c.case_id == key).with_for_update())).one()
            if row.fingerprint == fingerprint:
                return Claim.REPEAT if row.published else Claim.REPEAT_UNPUBLISHED
            if row.published:
                return Claim.CONFLICT
            # The earlier content was never confirmed by the broker, so it was never accepted either.
            await connection.execute(update(reports).where(reports.c.case_id == key).values(fingerprint=fingerprint))
            return Claim.NEW

    async def mark_published(self, case_id: UUID, fingerprint: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(reports)
                .where(reports.c.case_id == str(case_id), reports.c.fingerprint == fingerprint)
                .values(published=True)
            )
