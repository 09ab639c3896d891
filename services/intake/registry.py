"""Intake's memory of reports it accepted: enough to answer 409 for a changed report synchronously."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from uuid import UUID

from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.database import UtcDateTime

metadata = MetaData()

reports = Table(
    "intake_reports",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
)


class Seen(Enum):
    NEVER = "never"
    SAME = "same"
    """Accepted before with this content: nothing new to publish."""
    DIFFERENT = "different"
    """Accepted before with other content: a conflict."""


class ReportRegistry:
    """A row is written only after the broker confirmed the report, so every row was really accepted."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_schema(self) -> None:
        async with self._engine.begin() as connection:
            await connection.run_sync(metadata.create_all)

    async def seen(self, case_id: UUID, fingerprint: str) -> Seen:
        async with self._engine.connect() as connection:
            known = await connection.scalar(select(reports.c.fingerprint).where(reports.c.case_id == str(case_id)))
        if known is None:
            return Seen.NEVER
        return Seen.SAME if known == fingerprint else Seen.DIFFERENT

    async def remember(self, case_id: UUID, fingerprint: str) -> Seen:
        """Records an accepted report; a concurrent acceptance of the same case answers what it saw."""
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    reports.insert().values(
                        case_id=str(case_id), fingerprint=fingerprint, first_seen_at=datetime.now(UTC)
                    )
                )
        except IntegrityError:
            return await self.seen(case_id, fingerprint)
        return Seen.NEVER
