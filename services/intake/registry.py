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


class Claim(Enum):
    NEW = "new"
    """First time: this content now owns the case; publish it."""
    SAME = "same"
    """This content was claimed before (its publish may or may not have been confirmed): publish again,
    under the same message id, so a report whose outcome was unknown is never lost."""
    DIFFERENT = "different"
    """Other content owns the case: a conflict, whether or not that content was confirmed."""


class ReportRegistry:
    """The first content claimed for a case owns it, before it is published: after a timeout the outcome of
    a publish is unknown (the broker may hold it), so no other content may ever take the case over."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_schema(self) -> None:
        async with self._engine.begin() as connection:
            await connection.run_sync(metadata.create_all)

    async def claim(self, case_id: UUID, fingerprint: str) -> Claim:
        async with self._engine.connect() as connection:
            known = await connection.scalar(select(reports.c.fingerprint).where(reports.c.case_id == str(case_id)))
        if known is None:
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(
                        reports.insert().values(
                            case_id=str(case_id), fingerprint=fingerprint, first_seen_at=datetime.now(UTC)
                        )
                    )
                return Claim.NEW
            except IntegrityError:
                return await self.claim(case_id, fingerprint)
        return Claim.SAME if known == fingerprint else Claim.DIFFERENT
