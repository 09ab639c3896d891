"""Intake's claims on cases: which content owns a report number, and whether the broker confirmed it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from uuid import UUID

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    case,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.database import UtcDateTime, add_missing_columns, execute_in_transaction, in_transaction, upsert

metadata = MetaData()

claims = Table(
    "intake_claims",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("reporting_agency", String(60), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("confirmed", Boolean, nullable=False),
    Column("claimed_at", UtcDateTime, nullable=False),
    Column("amendments", Integer, nullable=False, server_default="0"),
)

# Built once, values bound at each execution: building a statement costs about as much CPU as running it.
_CLAIMED = select(claims.c.fingerprint, claims.c.confirmed).where(claims.c.case_id == bindparam("case_id"))
_CONFIRM = (
    update(claims)
    .where(claims.c.case_id == bindparam("b_case_id"), claims.c.fingerprint == bindparam("b_fingerprint"))
    .values(confirmed=True)
)


class Claim(Enum):
    NEW = "new"
    """First time: this content now owns the case; publish it."""
    SAME = "same"
    """This content owns the case already: publish again under the same message id (its first publish may
    have timed out unconfirmed), and the referral service drops it if the broker had it after all."""
    CONFLICT = "conflict"
    """Other content owns the case, confirmed by the broker."""
    UNCERTAIN = "uncertain"
    """Other content owns the case, but whether the broker has it is unknown (its publish timed out):
    until the original is sent again nobody can tell which version the case is."""


@dataclass(frozen=True)
class Owner:
    """Who reported a claimed case and what the case now is."""

    reporting_agency: str
    confirmed: bool
    """Whether the broker confirmed its report."""
    fingerprint: str
    """Of the report, or of its latest amendment the broker confirmed."""
    amendments: int
    """The number of the latest amendment the broker confirmed (0: none)."""


class ReportRegistry:
    """The first content claimed for a case owns it from before its publish. Only a publish the broker refused
    releases the claim; one that timed out, or lost its connection before the confirm, keeps it, because the broker
    may hold the report."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._claim_new = upsert(claims, engine.dialect.name).on_conflict_do_nothing(index_elements=["case_id"])

    async def create_schema(self) -> None:
        async with self._engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            await connection.run_sync(add_missing_columns, claims)

    async def owner(self, case_id: UUID) -> Owner | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        claims.c.reporting_agency, claims.c.confirmed, claims.c.fingerprint, claims.c.amendments
                    ).where(claims.c.case_id == str(case_id))
                )
            ).one_or_none()
        return Owner(row.reporting_agency, row.confirmed, row.fingerprint, row.amendments) if row else None

    async def claim(self, case_id: UUID, fingerprint: str, *, reporting_agency: str) -> Claim:
        new = {"case_id": str(case_id), "reporting_agency": reporting_agency, "fingerprint": fingerprint,
               "confirmed": False, "claimed_at": datetime.now(UTC)}  # fmt: skip
        return await in_transaction(self._engine, self._claim, new)

    def _claim(self, connection: Connection, new: dict[str, object]) -> Claim:
        # Insert-or-nothing, then read only what an earlier claim holds: a new case, the usual one, costs one
        # statement, and two reports of one case at once cannot both find it unclaimed.
        while True:
            if connection.execute(self._claim_new, new).rowcount == 1:
                return Claim.NEW
            row = connection.execute(_CLAIMED, {"case_id": new["case_id"]}).one_or_none()
            if row is not None:
                break
            # On PostgreSQL the claim found can be released (its publish certainly failed) before the read
            # sees it: the case is free again, so claim it afresh.
        if row.fingerprint == new["fingerprint"]:
            return Claim.SAME
        return Claim.CONFLICT if row.confirmed else Claim.UNCERTAIN

    async def confirm(self, case_id: UUID, fingerprint: str, *, reporting_agency: str) -> None:
        """The broker confirmed this content. Its claim is made again if it was released meanwhile: a copy of the
        same report whose publish the broker refused gives the claim up, while the broker has this one."""
        confirmed = {"case_id": str(case_id), "reporting_agency": reporting_agency, "fingerprint": fingerprint,
                     "confirmed": True, "claimed_at": datetime.now(UTC)}  # fmt: skip
        await in_transaction(self._engine, self._confirm, confirmed)

    def _confirm(self, connection: Connection, confirmed: dict[str, object]) -> None:
        found = connection.execute(
            _CONFIRM, {"b_case_id": confirmed["case_id"], "b_fingerprint": confirmed["fingerprint"]}
        )
        if found.rowcount == 0:
            connection.execute(self._claim_new, confirmed)

    async def amend(self, case_id: UUID, fingerprint: str, *, number: int) -> None:
        """The case now is this content, amendment ``number`` (confirmed by the broker): a resend of it is a
        repeat. Amendments confirmed out of order never take the number back."""
        await execute_in_transaction(
            self._engine,
            update(claims)
            .where(claims.c.case_id == str(case_id))
            .values(
                fingerprint=fingerprint,
                confirmed=True,
                amendments=case((claims.c.amendments < number, number), else_=claims.c.amendments),
            ),
        )

    async def release(self, case_id: UUID, fingerprint: str) -> None:
        """The broker certainly did not take this content: other content may claim the case."""
        await execute_in_transaction(
            self._engine,
            delete(claims).where(
                claims.c.case_id == str(case_id), claims.c.fingerprint == fingerprint, claims.c.confirmed.is_(False)
            ),
        )
