"""When a deadline falls: clock time runs on, working days skip weekends and public holidays. Pure domain."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from shared.directory import Calendar, Span


class WorkingCalendar:
    @staticmethod
    @lru_cache(maxsize=8)
    def of(calendar: Calendar) -> WorkingCalendar:
        """One per directory calendar: building the public holidays took more CPU than computing a deadline, and
        every referral computes two."""
        return WorkingCalendar(calendar)

    def __init__(self, calendar: Calendar) -> None:
        self._working_weekdays = {day.number for day in calendar.working_days}
        self._extra = set(calendar.extra_holidays)
        # The library extends itself to each year asked about. Its "government" category in Indonesia is the cuti
        # bersama, the joint leave days that close government offices, the agencies' included.
        supported = holidays.country_holidays(calendar.country).supported_categories
        closed = tuple(category for category in ("public", "government") if category in supported)
        self._public = holidays.country_holidays(calendar.country, categories=closed)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self._working_weekdays and day not in self._public and day not in self._extra

    def due(self, start: datetime, span: Span, zone: ZoneInfo) -> datetime:
        """``start`` plus the span; ``N`` working days lands on the N-th working day after ``start``'s local
        date, at the same local time of day (a Friday 10:00 referral with 1wd is due Monday 10:00)."""
        if span.clock is not None:
            return start + span.clock
        local = start.astimezone(zone)
        day, remaining = local.date(), span.working_days
        while remaining:
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return datetime.combine(day, local.time(), zone).astimezone(UTC)
