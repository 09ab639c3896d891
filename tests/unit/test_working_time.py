"""When deadlines fall: working days skip weekends and Indonesian holidays, clock time does not."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter

from services.referral.working_time import WorkingCalendar
from shared.directory import Calendar, Span

WIB = ZoneInfo("Asia/Pontianak")
WITA = ZoneInfo("Asia/Makassar")
ONE_WORKING_DAY = TypeAdapter(Span).validate_python("1wd")
ONE_HOUR = TypeAdapter(Span).validate_python("1h")


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def test_a_working_day_deadline_falling_on_independence_day_moves_to_the_next_working_day() -> None:
    friday = at(WIB, 2026, 8, 14, 10, 0)  # 17 August 2026 is a Monday

    due = WorkingCalendar(Calendar()).due(friday, ONE_WORKING_DAY, WIB)

    assert due == at(WIB, 2026, 8, 18, 10, 0)


def test_a_working_day_deadline_falling_on_a_sunday_moves_to_monday() -> None:
    saturday = at(WIB, 2026, 9, 5, 10, 0)

    due = WorkingCalendar(Calendar()).due(saturday, ONE_WORKING_DAY, WIB)

    assert due == at(WIB, 2026, 9, 7, 10, 0)


def test_an_extra_holiday_from_the_directory_is_skipped() -> None:
    wednesday = at(WIB, 2026, 9, 9, 10, 0)  # then Thursday 10th, a regional holiday the directory adds
    with_regional_holiday = Calendar(extra_holidays=(date(2026, 9, 10),))

    without = WorkingCalendar(Calendar()).due(wednesday, ONE_WORKING_DAY, WIB)
    due = WorkingCalendar(with_regional_holiday).due(wednesday, ONE_WORKING_DAY, WIB)

    assert without == at(WIB, 2026, 9, 10, 10, 0)
    assert due == at(WIB, 2026, 9, 11, 10, 0)


def test_collective_leave_closes_the_agencies_as_a_public_holiday_does() -> None:
    """Found by review: only public holidays counted, and most cuti bersama days (on which government offices are
    closed) were working days unless the directory listed each."""
    wednesday = at(WIB, 2026, 12, 23, 10, 0)  # then Thursday 24th (cuti bersama), Friday 25th (Christmas)
    before_lebaran = at(WIB, 2026, 3, 19, 10, 0)  # Thursday; Friday 20th, Monday 23rd and Tuesday 24th are leave

    assert WorkingCalendar(Calendar()).due(wednesday, ONE_WORKING_DAY, WIB) == at(WIB, 2026, 12, 28, 10, 0)
    assert WorkingCalendar(Calendar()).due(before_lebaran, ONE_WORKING_DAY, WIB) == at(WIB, 2026, 3, 25, 10, 0)


def test_an_urgent_clock_time_deadline_runs_through_the_weekend_and_holidays() -> None:
    saturday_night = at(WIB, 2026, 8, 16, 23, 30)  # into Sunday, and Independence Day after it

    due = WorkingCalendar(Calendar()).due(saturday_night, ONE_HOUR, WIB)

    assert due == saturday_night + timedelta(hours=1)
    assert due.astimezone(WIB).date() == date(2026, 8, 17)


def test_an_agency_in_wita_keeps_its_local_time_of_day() -> None:
    friday_morning = at(WITA, 2026, 9, 4, 9, 0)

    due = WorkingCalendar(Calendar()).due(friday_morning.astimezone(UTC), ONE_WORKING_DAY, WITA)

    assert due.astimezone(WITA) == at(WITA, 2026, 9, 7, 9, 0)
    assert due == datetime(2026, 9, 7, 1, 0, tzinfo=UTC)


def test_a_late_evening_referral_in_wita_counts_from_its_local_date_not_the_utc_one() -> None:
    # 07:30 WITA on Monday is still Sunday 23:30 UTC: counted from the UTC date it would be due Monday.
    monday_early = at(WITA, 2026, 9, 7, 7, 30)

    due = WorkingCalendar(Calendar()).due(monday_early.astimezone(UTC), ONE_WORKING_DAY, WITA)

    assert due.astimezone(WITA) == at(WITA, 2026, 9, 8, 7, 30)
