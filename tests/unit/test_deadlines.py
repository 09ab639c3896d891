"""Which deadlines a referral has met, and which delivery reports move it: the rules the sweeper relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.referral.lifecycle import Status, after_delivery_report, deadline_met, deadlines_met_by, overdue
from shared.contracts.referrals import DeadlineKind

ACK, ACCEPT = DeadlineKind.ACKNOWLEDGE, DeadlineKind.ACCEPT
NOW = datetime(2026, 9, 2, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [Status.REQUESTED, Status.DELIVERED, Status.FAILED])
def test_a_referral_nobody_took_has_met_no_deadline(status: Status) -> None:
    assert deadlines_met_by(status) == frozenset()


def test_an_acknowledgement_meets_the_acknowledgement_deadline_but_not_the_acceptance_one() -> None:
    assert deadlines_met_by(Status.ACKNOWLEDGED) == {ACK}


@pytest.mark.parametrize(
    "status",
    [Status.ACCEPTED, Status.DECLINED, Status.REFERRED_ONWARD, Status.CANCELLED, Status.ENTERED_IN_ERROR,
     Status.IN_PROGRESS, Status.ON_HOLD, Status.COMPLETED],
)  # fmt: skip
def test_a_decided_or_closed_referral_has_met_both_deadlines(status: Status) -> None:
    assert deadlines_met_by(status) == {ACK, ACCEPT}


def test_a_cancelled_referral_never_escalates_even_though_nobody_acknowledged_it() -> None:
    assert deadline_met(ACK, Status.CANCELLED)


def test_an_unmet_deadline_is_overdue_only_once_it_has_passed() -> None:
    assert not overdue(ACK, Status.DELIVERED, NOW + timedelta(minutes=1), NOW)
    assert overdue(ACK, Status.DELIVERED, NOW - timedelta(minutes=1), NOW)
    assert not overdue(ACK, Status.ACKNOWLEDGED, NOW - timedelta(minutes=1), NOW)
    assert overdue(ACCEPT, Status.ACKNOWLEDGED, NOW - timedelta(minutes=1), NOW)
    assert not overdue(ACCEPT, Status.DELIVERED, None, NOW)


@pytest.mark.parametrize("delivered", [True, False])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_a_report_about_an_escalation_never_moves_the_referral(delivered: bool, level: int) -> None:
    assert after_delivery_report(Status.REQUESTED, delivered=delivered, level=level) is None
