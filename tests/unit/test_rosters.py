from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from services.notifier.app import warn_of_roster_gaps
from shared.directory import Directory, Roster, Weekday, load_directory
from shared.rosters import on_duty, roster_gaps, uncovered_agencies

DIRECTORY_FILE = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"
WIB = ZoneInfo("Asia/Pontianak")
WITA = ZoneInfo("Asia/Makassar")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def an_officer(officer_id: str, *shifts: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": officer_id,
        "name": officer_id,
        "channels": [{"kind": "sms", "to": "+628125550100"}],
        "shifts": shifts,
    }


def a_shift(start: str, end: str, days: list[str] = EVERY_DAY) -> dict[str, Any]:
    return {"days": days, "start": start, "end": end}


def a_roster(*officers: dict[str, Any], overrides: tuple[dict[str, Any], ...] = ()) -> Roster:
    people = [*officers, an_officer("cadangan"), an_officer("kepala-bidang")]
    for index, person in enumerate(people):
        person["channels"] = [{"kind": "sms", "to": f"+62812555{index:04d}"}]
    return Roster.model_validate(
        {"officers": people, "backup": "cadangan", "supervisor": "kepala-bidang", "overrides": overrides}
    )


THREE_SHIFTS = a_roster(
    an_officer("piket-pagi", a_shift("07:00", "15:00")),
    an_officer("piket-sore", a_shift("15:00", "23:00")),
    an_officer("piket-malam", a_shift("23:00", "07:00")),
)


def wib(day: int, hour: int, minute: int = 0) -> datetime:
    """A day of November 2026 (Monday the 23rd .. Sunday the 29th), in WIB."""
    return datetime(2026, 11, day, hour, minute, tzinfo=WIB)


def ids(roster: Roster, at: datetime, zone: ZoneInfo = WIB) -> list[str]:
    return [officer.id for officer in on_duty(roster, zone, at)]


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(DIRECTORY_FILE)


def test_at_06_59_wib_the_night_shift_is_still_on_duty_and_at_07_00_the_morning_shift_takes_over() -> None:
    assert ids(THREE_SHIFTS, wib(25, 6, 59)) == ["piket-malam"]
    assert ids(THREE_SHIFTS, wib(25, 7, 0)) == ["piket-pagi"]


def test_the_instant_is_read_in_the_agencys_zone_whatever_zone_it_arrives_in() -> None:
    six_fifty_nine_wib = datetime(2026, 11, 24, 23, 59, tzinfo=UTC)
    seven_wib = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)

    assert ids(THREE_SHIFTS, six_fifty_nine_wib) == ["piket-malam"]
    assert ids(THREE_SHIFTS, seven_wib) == ["piket-pagi"]
    assert ids(THREE_SHIFTS, seven_wib, WITA) == ["piket-pagi"]  # 08:00 WITA


def test_a_tuesday_night_shift_covers_wednesday_03_00_but_not_wednesday_23_30() -> None:
    roster = a_roster(an_officer("malam-selasa", a_shift("23:00", "07:00", ["tue"])))

    assert ids(roster, wib(24, 23, 0)) == ["malam-selasa"]
    assert ids(roster, wib(25, 3, 0)) == ["malam-selasa"]
    assert ids(roster, wib(25, 7, 0)) == []
    assert ids(roster, wib(25, 23, 30)) == []
    assert ids(roster, wib(24, 3, 0)) == []  # Tuesday 03:00 belongs to Monday night, not rostered


def test_an_officer_on_leave_is_not_on_duty_during_the_leave_only() -> None:
    leave = {"officer": "piket-pagi", "starts": "2026-11-25", "ends": "2026-11-26", "on_duty": False}
    roster = a_roster(*THREE_SHIFTS.model_dump()["officers"][:3], overrides=(leave,))

    assert ids(roster, wib(25, 10)) == []
    assert ids(roster, wib(26, 10)) == ["piket-pagi"]


def test_a_shift_swap_puts_the_covering_officer_on_and_the_swapped_officer_off() -> None:
    swap = (
        {"officer": "piket-pagi", "starts": "2026-11-25T07:00", "ends": "2026-11-25T15:00", "on_duty": False},
        {"officer": "piket-sore", "starts": "2026-11-25T07:00", "ends": "2026-11-25T15:00", "on_duty": True},
    )
    roster = a_roster(*THREE_SHIFTS.model_dump()["officers"][:3], overrides=swap)

    assert ids(roster, wib(25, 6, 59)) == ["piket-malam"]
    assert ids(roster, wib(25, 7, 0)) == ["piket-sore"]
    assert ids(roster, wib(25, 15, 0)) == ["piket-sore"]
    assert ids(roster, wib(26, 7, 0)) == ["piket-pagi"]


def test_the_shipped_demo_rosters_cover_every_hour_of_the_week(directory: Directory) -> None:
    assert uncovered_agencies(directory) == {}
    for agency in directory.receiving_agencies():
        assert agency.roster is not None
        assert roster_gaps(agency.roster) == ()


def test_gaps_are_the_uncovered_stretches_of_a_typical_week() -> None:
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    roster = a_roster(
        an_officer("kantor", a_shift("08:00", "16:00", weekdays)),
        an_officer("malam", a_shift("22:00", "06:00", EVERY_DAY)),
    )

    gaps = roster_gaps(roster)

    assert [str(gap) for gap in gaps[:3]] == ["mon 06:00-mon 08:00", "mon 16:00-mon 22:00", "tue 06:00-tue 08:00"]
    assert str(gaps[-1]) == "sun 06:00-sun 22:00"
    assert gaps[-2].starts == (Weekday.SAT, time(6))
    assert gaps[-2].ends == (Weekday.SAT, time(22))


def test_a_roster_without_shifts_is_uncovered_the_whole_week() -> None:
    assert [str(gap) for gap in roster_gaps(a_roster())] == ["the whole week"]


def test_start_up_warning_names_every_agency_with_gaps_or_no_roster(directory: Directory) -> None:
    days_only = a_roster(an_officer("siang", a_shift("07:00", "19:00")))
    agencies = tuple(
        agency.model_copy(update={"roster": days_only})
        if agency.id == "dinsos-sambas"
        else agency.model_copy(update={"roster": None})
        if agency.id == "bp3mi-kalbar"
        else agency
        for agency in directory.agencies
    )

    with capture_logs() as logs:
        warn_of_roster_gaps(directory.model_copy(update={"agencies": agencies}))

    [warning] = logs
    assert warning["event"] == "roster_gaps"
    assert warning["log_level"] == "warning"
    assert warning["gaps"] == {
        "dinsos-sambas": ", ".join(
            f"{day} 19:00-{after} 07:00" for day, after in zip(EVERY_DAY, [*EVERY_DAY[1:], "mon"], strict=True)
        ),
        "bp3mi-kalbar": "no roster",
    }


def test_no_warning_when_every_roster_covers_the_week(directory: Directory) -> None:
    with capture_logs() as logs:
        warn_of_roster_gaps(directory)

    assert logs == []
