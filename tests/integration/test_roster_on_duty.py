"""Through the running notifier: whoever the roster has on duty at that moment, in the agency's time zone, is the
one told, at a shift boundary and under a dated override."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from shared.directory import Directory, Override
from tests.notifying import WIB, Clock, NotifierRig, an_issued_referral

pytestmark = pytest.mark.rabbit

AGENCY = "dinsos-bengkayang"
PAGI, SORE, MALAM = "+628125502001", "+628125502002", "+628125502003"
"""dinsos-bengkayang's morning (07-15), afternoon (15-23) and night (23-07) duty officers, in WIB."""


def with_overrides(*overrides: Override) -> Callable[[Directory], Directory]:
    def adjust(directory: Directory) -> Directory:
        agency = directory.agency(AGENCY)
        assert agency is not None
        assert agency.roster is not None
        roster = agency.roster.model_copy(update={"overrides": overrides})
        agencies = tuple(a.model_copy(update={"roster": roster}) if a.id == AGENCY else a for a in directory.agencies)
        return directory.model_copy(update={"agencies": agencies})

    return adjust


async def officers_texted(rig: NotifierRig, at: datetime) -> set[str]:
    """Whose phones got the referral issued at ``at`` (the agency's system is told too: two reports)."""
    rig.clock.now = at
    before = {text.to for text in rig.gateway.texts}
    issued = an_issued_referral(AGENCY, issued_at=at)
    await rig.publish(issued)
    await rig.reports(2)
    return {text.to for text in rig.gateway.texts if issued.case_code in text.text} - before


async def test_at_the_07_00_wib_shift_change_the_night_officer_is_told_until_06_59_and_the_morning_one_after(
    amqp_url: str, tmp_path: Path
) -> None:
    rig = NotifierRig(amqp_url, tmp_path, clock=Clock(datetime(2026, 11, 25, 6, 59, tzinfo=WIB)))
    await rig.start()
    try:
        before_change = await officers_texted(rig, datetime(2026, 11, 25, 6, 59, 59, tzinfo=WIB))
        at_change = await officers_texted(rig, datetime(2026, 11, 25, 7, 0, tzinfo=WIB))
    finally:
        await rig.stop()

    assert before_change == {MALAM}
    assert at_change == {PAGI}


async def test_an_officer_on_leave_is_passed_over_and_a_swapped_shift_is_honoured(
    amqp_url: str, tmp_path: Path
) -> None:
    leave = Override(officer="piket-pagi", starts=datetime(2026, 11, 25), ends=datetime(2026, 11, 26), on_duty=False)
    swap = Override(
        officer="piket-sore", starts=datetime(2026, 11, 25, 7), ends=datetime(2026, 11, 25, 15), on_duty=True
    )
    rig = NotifierRig(
        amqp_url,
        tmp_path,
        clock=Clock(datetime(2026, 11, 25, 10, tzinfo=WIB)),
        adjust=with_overrides(leave, swap),
    )
    await rig.start()
    try:
        during_swap = await officers_texted(rig, datetime(2026, 11, 25, 10, tzinfo=WIB))
        next_morning = await officers_texted(rig, datetime(2026, 11, 26, 10, tzinfo=WIB))
    finally:
        await rig.stop()

    assert during_swap == {SORE}
    assert next_morning == {PAGI}
