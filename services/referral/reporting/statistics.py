"""The statistics of ``rujukan report``: one row per month, agency and regency, computed from identity-free facts
about each referral. Pure domain: no database, no files, no HTML."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.contracts.referrals import DeclineReason

ESCALATION_LEVELS = (1, 2, 3)
DECLINE_REASONS = tuple(DeclineReason)

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def start(self, zone: ZoneInfo) -> datetime:
        """Its first instant in ``zone`` (the province's time: a month is the one its officers live in)."""
        return datetime(self.year, self.month, 1, tzinfo=zone)

    @classmethod
    def of(cls, moment: datetime, zone: ZoneInfo) -> Month:
        local = moment.astimezone(zone)
        return cls(local.year, local.month)


def month(text: str) -> Month:
    """``"2026-03"`` -> ``Month(2026, 3)``; the argument type of ``--from`` and ``--to``."""
    match = _MONTH.match(text.strip())
    # Year 0 has no datetime, and December 9999 no month after it (the end of a period is the next one's start).
    if not match or not 1 <= int(match[1]) < 9999:
        raise ValueError(f"{text!r} is not a month such as 2026-03")
    return Month(int(match[1]), int(match[2]))


def months(first: Month, last: Month) -> list[Month]:
    result = []
    current = first
    while current <= last:
        result.append(current)
        current = current.next()
    return result


@dataclass(frozen=True)
class ReferralFacts:
    """What the report needs of one referral: where it went and when things happened. No identity, and the
    referral's own id stays in the query that built this."""

    agency_id: str
    regency_code: str
    urgent: bool
    issued_at: datetime
    ack_due_at: datetime
    acknowledged_at: datetime | None
    accepted_at: datetime | None = None
    declined_reason: str | None = None
    escalation_levels: tuple[int, ...] = ()
    """One entry per escalation fired (a level can fire for the acknowledgement and again for the acceptance)."""


@dataclass(frozen=True)
class Row:
    """One month, agency and regency. Every figure is about the referrals *issued* that month (a cohort): their
    acknowledgements, acceptances, declines and escalations count there, whenever they happened."""

    month: Month
    agency_id: str
    agency_name: str
    regency_code: str
    regency_name: str
    referrals: int
    urgent: int
    acknowledged: int
    acknowledged_on_time: int
    ack_median_minutes: float | None
    ack_p90_minutes: float | None
    accepted: int
    accept_median_minutes: float | None
    accept_p90_minutes: float | None
    declined: dict[str, int] = field(default_factory=dict)
    """Per decline reason (every reason of ``DeclineReason``, zero included)."""
    escalations: dict[int, int] = field(default_factory=dict)
    """Escalations fired per level 1-3."""

    @property
    def declined_total(self) -> int:
        return sum(self.declined.values())


@dataclass(frozen=True)
class Report:
    first: Month
    last: Month
    timezone: str
    rows: tuple[Row, ...]

    @property
    def months(self) -> list[Month]:
        return months(self.first, self.last)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks (``fraction`` 0.5 is the usual median); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def build_report(
    facts: Iterable[ReferralFacts],
    *,
    first: Month,
    last: Month,
    zone: ZoneInfo,
    agency_name: Callable[[str], str] = lambda _: "",
    regency_name: Callable[[str], str] = lambda _: "",
) -> Report:
    """Rows sorted by month, agency and regency; a month, agency and regency without referrals has no row."""
    groups: dict[tuple[Month, str, str], list[ReferralFacts]] = defaultdict(list)
    for fact in facts:
        issued = Month.of(fact.issued_at, zone)
        if first <= issued <= last:
            groups[(issued, fact.agency_id, fact.regency_code)].append(fact)
    rows = tuple(
        _row(key, groups[key], agency_name=agency_name(key[1]), regency_name=regency_name(key[2]))
        for key in sorted(groups)
    )
    return Report(first=first, last=last, timezone=zone.key, rows=rows)


def _row(key: tuple[Month, str, str], facts: list[ReferralFacts], *, agency_name: str, regency_name: str) -> Row:
    month_, agency_id, regency_code = key
    ack = [_minutes(f.acknowledged_at - f.issued_at) for f in facts if f.acknowledged_at is not None]
    accept = [_minutes(f.accepted_at - f.issued_at) for f in facts if f.accepted_at is not None]
    declined = Counter(f.declined_reason for f in facts if f.declined_reason is not None)
    escalations = Counter(level for f in facts for level in f.escalation_levels)
    return Row(
        month=month_,
        agency_id=agency_id,
        agency_name=agency_name,
        regency_code=regency_code,
        regency_name=regency_name,
        referrals=len(facts),
        urgent=sum(f.urgent for f in facts),
        acknowledged=len(ack),
        acknowledged_on_time=sum(
            1 for f in facts if f.acknowledged_at is not None and f.acknowledged_at <= f.ack_due_at
        ),
        ack_median_minutes=_rounded(percentile(ack, 0.5)),
        ack_p90_minutes=_rounded(percentile(ack, 0.9)),
        accepted=len(accept),
        accept_median_minutes=_rounded(percentile(accept, 0.5)),
        accept_p90_minutes=_rounded(percentile(accept, 0.9)),
        declined={reason.value: declined.get(reason.value, 0) for reason in DECLINE_REASONS},
        escalations={level: escalations.get(level, 0) for level in ESCALATION_LEVELS},
    )


def _minutes(duration: timedelta) -> float:
    return duration.total_seconds() / 60


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass(frozen=True)
class Totals:
    """Rows summed over agencies and regencies (per month, per agency); durations are not summable and the
    per-row medians cannot be combined, so totals carry counts only."""

    referrals: int = 0
    acknowledged: int = 0
    acknowledged_on_time: int = 0
    accepted: int = 0
    declined: int = 0
    escalations: tuple[int, ...] = (0, 0, 0)

    def plus(self, row: Row) -> Totals:
        return Totals(
            referrals=self.referrals + row.referrals,
            acknowledged=self.acknowledged + row.acknowledged,
            acknowledged_on_time=self.acknowledged_on_time + row.acknowledged_on_time,
            accepted=self.accepted + row.accepted,
            declined=self.declined + row.declined_total,
            escalations=tuple(
                a + row.escalations.get(level, 0) for a, level in zip(self.escalations, ESCALATION_LEVELS, strict=True)
            ),
        )


def totals_by(report: Report, key: Callable[[Row], str]) -> dict[str, Totals]:
    result: dict[str, Totals] = {}
    for row in report.rows:
        result[key(row)] = result.get(key(row), Totals()).plus(row)
    return result
