"""Months as ``rujukan report --from/--to`` and the statistics API read them (year 0000 reached a 500 through the
API: found by schemathesis)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from services.referral.reporting.statistics import Month, month

WIB = ZoneInfo("Asia/Pontianak")


@pytest.mark.parametrize("text", ["0000-01", "9999-12", "2026-13", "26-03"])
def test_a_month_without_a_start_or_an_end_in_the_calendar_is_no_month(text: str) -> None:
    with pytest.raises(ValueError, match="is not a month such as 2026-03"):
        month(text)


@pytest.mark.parametrize("text", ["0001-01", "2026-03", "9998-12"])
def test_every_month_read_has_a_start_and_a_next_month_with_one(text: str) -> None:
    read = month(text)

    assert read.start(WIB) < read.next().start(WIB)
    assert isinstance(read, Month)
