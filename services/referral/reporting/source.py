"""Reads the identity-free facts of the report from the referral ledger; never touches the identity columns."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.referral.ledger import cases, referrals, timeline
from services.referral.lifecycle import Status
from services.referral.reporting.statistics import ReferralFacts
from shared.contracts.base import Priority

# Entered in error: the referral should never have been sent; it is kept for audit, not counted.
_NOT_COUNTED = (Status.ENTERED_IN_ERROR.value,)


async def referral_facts(engine: AsyncEngine, *, start: datetime, end: datetime) -> list[ReferralFacts]:
    """Referrals issued in ``[start, end)``, with the timeline's first acceptance, its decline reason and its
    escalations."""
    legs = (
        select(
            referrals.c.referral_id,
            referrals.c.agency_id,
            referrals.c.priority,
            referrals.c.issued_at,
            referrals.c.ack_due_at,
            referrals.c.acknowledged_at,
            cases.c.regency_code,
        )
        .join(cases, cases.c.case_id == referrals.c.case_id)
        .where(referrals.c.issued_at >= start, referrals.c.issued_at < end)
        .where(referrals.c.status.not_in(_NOT_COUNTED))
    )
    events = (
        select(timeline.c.referral_id, timeline.c.event, timeline.c.at, timeline.c.detail)
        .join(referrals, referrals.c.referral_id == timeline.c.referral_id)
        .where(referrals.c.issued_at >= start, referrals.c.issued_at < end)
        .where(timeline.c.event.in_(("accepted", "declined", "escalated")))
        .order_by(timeline.c.at, timeline.c.id)
    )
    async with engine.connect() as connection:
        leg_rows = (await connection.execute(legs)).all()
        event_rows = (await connection.execute(events)).all()
    accepted: dict[str, datetime] = {}
    declined: dict[str, str] = {}
    escalations: dict[str, list[int]] = defaultdict(list)
    for row in event_rows:
        detail: dict[str, Any] = row.detail or {}
        if row.event == "accepted":
            accepted.setdefault(row.referral_id, row.at)
        elif row.event == "declined":
            declined[row.referral_id] = str(detail.get("reason", "other"))
        elif row.event == "escalated" and isinstance(detail.get("level"), int):
            escalations[row.referral_id].append(detail["level"])
    return [
        ReferralFacts(
            agency_id=row.agency_id,
            regency_code=row.regency_code,
            urgent=row.priority == Priority.URGENT.value,
            issued_at=row.issued_at,
            ack_due_at=row.ack_due_at,
            acknowledged_at=row.acknowledged_at,
            accepted_at=accepted.get(row.referral_id),
            declined_reason=declined.get(row.referral_id),
            escalation_levels=tuple(escalations[row.referral_id]),
        )
        for row in leg_rows
    ]
