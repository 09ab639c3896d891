"""Operator figures computed from ledger rows: overdue referrals, acknowledgement times. Pure: no I/O."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from services.referral.lifecycle import Status, overdue
from services.referral.operations.views import QueueFigures
from shared.contracts.referrals import DeadlineKind


@dataclass(frozen=True)
class OpenLeg:
    referral_id: UUID
    case_id: UUID
    case_code: str
    agency_id: str
    status: Status
    priority: str
    issued_at: datetime
    ack_due_at: datetime
    accept_due_at: datetime | None
    escalation_level: int


def awaited(leg: OpenLeg, now: datetime) -> tuple[DeadlineKind, datetime] | None:
    """The deadline a leg has let pass, if any: acknowledgement first (it is the earlier promise)."""
    if overdue(DeadlineKind.ACKNOWLEDGE, leg.status, leg.ack_due_at, now):
        return DeadlineKind.ACKNOWLEDGE, leg.ack_due_at
    if leg.accept_due_at is not None and overdue(DeadlineKind.ACCEPT, leg.status, leg.accept_due_at, now):
        return DeadlineKind.ACCEPT, leg.accept_due_at
    return None


def last_traffic(work: Sequence[QueueFigures], now: datetime) -> datetime | None:
    """When the management API shows a service's work queues last had traffic, or None when it does not tell.

    A queue's ``idle_since`` says when it went quiet; a queue delivering messages (a non-zero deliver rate) is
    busy now. A queue with neither tells nothing: quorum queues, every queue here, never report ``idle_since``
    on RabbitMQ 3.10, so taking its absence for "busy" showed a service idle for hours as seen just now."""
    moments = [
        queue.idle_since if queue.idle_since is not None else now
        for queue in work
        if queue.idle_since is not None or queue.deliver_rate
    ]
    return max(moments, default=None)


def median_span(spans: Iterable[timedelta]) -> timedelta | None:
    values = sorted(spans)
    if not values:
        return None
    return timedelta(seconds=statistics.median(span.total_seconds() for span in values))


def ack_medians(
    acknowledged: Iterable[tuple[str, datetime, datetime]], now: datetime
) -> dict[str, tuple[timedelta | None, timedelta | None]]:
    """Per agency, the median time from issue to acknowledgement of the referrals acknowledged in the last 7 and
    30 days, from (agency, issued_at, acknowledged_at) rows."""
    week: dict[str, list[timedelta]] = {}
    month: dict[str, list[timedelta]] = {}
    for agency_id, issued_at, acknowledged_at in acknowledged:
        if acknowledged_at < now - timedelta(days=30):
            continue
        span = acknowledged_at - issued_at
        month.setdefault(agency_id, []).append(span)
        if acknowledged_at >= now - timedelta(days=7):
            week.setdefault(agency_id, []).append(span)
    return {agency: (median_span(week.get(agency, ())), median_span(spans)) for agency, spans in month.items()}


# Timeline details an operator does not see: victim references are typed by the police and may carry more than
# a number, rule reasons name victims' circumstances, and notes are free text anybody may have typed a name in.
_HIDDEN_DETAIL = frozenset({"victim_refs", "victim_ref", "reasons", "note", "identity", "victims", "facts"})
_FREE_TEXT_REASONS = frozenset({"held"})
"""Events whose ``reason`` an agency types in its own words, like a note; every other reason is a code or ours."""


def operator_detail(event: str, detail: Mapping[str, Any]) -> dict[str, object]:
    """A timeline entry's detail as an operator sees it: what happened, not whom it is about."""
    hidden = _HIDDEN_DETAIL | {"reason"} if event in _FREE_TEXT_REASONS else _HIDDEN_DETAIL
    shown: dict[str, object] = {}
    for key, value in detail.items():
        if key in hidden:
            if value:
                shown[key] = "(hidden)"
            continue
        shown[key] = value
    return shown
