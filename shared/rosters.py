"""Who is on duty: weekly shifts and dated overrides, in the agency's own time zone. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from shared.directory import Agency, Directory, Officer, Roster, Shift, Weekday

_DAY = 24 * 60
_WEEK = 7 * _DAY


def _minutes(at: time) -> int:
    return at.hour * 60 + at.minute


def _covers(shift: Shift, local: datetime) -> bool:
    """Half-open [start, end); an end at or before the start runs past midnight into the next day."""
    now = _minutes(local.time())
    start, end = _minutes(shift.start), _minutes(shift.end)
    today = local.weekday()
    yesterday = (today - 1) % 7
    days = {day.number for day in shift.days}
    if end > start:
        return today in days and start <= now < end
    return (today in days and now >= start) or (yesterday in days and now < end)


def on_duty(roster: Roster, zone: ZoneInfo, at: datetime) -> tuple[Officer, ...]:
    """The officers on duty at ``at``, in roster order. A dated override wins over the weekly shifts (leave
    takes an officer off, ``on_duty: true`` puts one on, e.g. one half of a swap); of two overrides for the
    same officer at the same instant, the later one in the file wins."""
    local = at.astimezone(zone)
    naive = local.replace(tzinfo=None)
    decided: dict[str, bool] = {}
    for override in roster.overrides:
        if override.starts <= naive < override.ends:
            decided[override.officer] = override.on_duty
    return tuple(
        officer
        for officer in roster.officers
        if decided.get(officer.id, any(_covers(shift, local) for shift in officer.shifts))
    )


@dataclass(frozen=True)
class Gap:
    """An uncovered stretch of a typical week, in the agency's local time."""

    starts: tuple[Weekday, time]
    ends: tuple[Weekday, time]

    def __str__(self) -> str:
        if self.starts == self.ends:
            return "the whole week"
        (start_day, start), (end_day, end) = self.starts, self.ends
        return f"{start_day.value} {start:%H:%M}-{end_day.value} {end:%H:%M}"


def _shift_spans(shift: Shift) -> Iterator[tuple[int, int]]:
    """Minutes of the week (Monday 00:00 is 0) a shift covers; a span past Sunday midnight wraps to Monday."""
    start, end = _minutes(shift.start), _minutes(shift.end)
    length = end - start if end > start else _DAY - start + end
    for day in shift.days:
        begin = day.number * _DAY + start
        if begin + length <= _WEEK:
            yield begin, begin + length
        else:
            yield begin, _WEEK
            yield 0, begin + length - _WEEK


def _at(minute: int) -> tuple[Weekday, time]:
    day, rest = divmod(minute % _WEEK, _DAY)
    return list(Weekday)[day], time(rest // 60, rest % 60)


def roster_gaps(roster: Roster) -> tuple[Gap, ...]:
    """Stretches of a typical week with nobody on duty by shift (overrides are dated, so not counted)."""
    spans = sorted(span for officer in roster.officers for shift in officer.shifts for span in _shift_spans(shift))
    gaps: list[tuple[int, int]] = []
    covered_until = 0
    for start, end in spans:
        if start > covered_until:
            gaps.append((covered_until, start))
        covered_until = max(covered_until, end)
    if covered_until < _WEEK:
        gaps.append((covered_until, _WEEK))
    # A gap running to Sunday midnight and one from Monday 00:00 are one stretch of the week.
    if len(gaps) > 1 and gaps[0][0] == 0 and gaps[-1][1] == _WEEK:
        gaps = [*gaps[1:-1], (gaps[-1][0], gaps[0][1] + _WEEK)]
    return tuple(Gap(_at(start), _at(end)) for start, end in gaps)


def uncovered_agencies(directory: Directory) -> dict[str, str]:
    """Every receiving agency whose roster leaves hours uncovered, or that has none, and what is uncovered:
    the start-up warning, so nobody learns of a gap from an unanswered child referral."""
    found: dict[str, str] = {}
    for agency in directory.receiving_agencies():
        if agency.roster is None:
            found[agency.id] = "no roster"
        elif gaps := roster_gaps(agency.roster):
            found[agency.id] = ", ".join(str(gap) for gap in gaps)
    return found


def duty_officers(directory: Directory, agency: Agency, at: datetime) -> tuple[Officer, ...]:
    if agency.roster is None:
        return ()
    return on_duty(agency.roster, directory.zone_of(agency), at)
