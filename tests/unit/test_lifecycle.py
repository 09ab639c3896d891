from __future__ import annotations

import uuid

import pytest

from services.referral.lifecycle import Status, after_delivery_report, move
from shared.errors import IllegalTransitionError

REFERRAL_ID = uuid.UUID("3f1c2a5e-8d4b-4e6f-9a7c-1b2d3e4f5a6b")


def test_referral_moves_from_requested_to_delivered_to_acknowledged() -> None:
    delivered = move(REFERRAL_ID, Status.REQUESTED, Status.DELIVERED)
    acknowledged = move(REFERRAL_ID, delivered, Status.ACKNOWLEDGED)

    assert (delivered, acknowledged) == (Status.DELIVERED, Status.ACKNOWLEDGED)


def test_agency_may_acknowledge_before_delivery_is_confirmed() -> None:
    assert move(REFERRAL_ID, Status.REQUESTED, Status.ACKNOWLEDGED) is Status.ACKNOWLEDGED


def test_agency_may_acknowledge_a_referral_whose_delivery_failed() -> None:
    assert move(REFERRAL_ID, Status.FAILED, Status.ACKNOWLEDGED) is Status.ACKNOWLEDGED


def test_delivery_report_moves_a_requested_referral_to_delivered() -> None:
    assert after_delivery_report(Status.REQUESTED, delivered=True) is Status.DELIVERED


def test_failure_report_moves_a_requested_referral_to_failed() -> None:
    assert after_delivery_report(Status.REQUESTED, delivered=False) is Status.FAILED


def test_late_delivery_after_a_failure_moves_the_referral_to_delivered() -> None:
    assert after_delivery_report(Status.FAILED, delivered=True) is Status.DELIVERED


@pytest.mark.parametrize("delivered", [True, False])
def test_late_delivery_report_after_acknowledgement_moves_nothing(delivered: bool) -> None:
    assert after_delivery_report(Status.ACKNOWLEDGED, delivered=delivered) is None


@pytest.mark.parametrize("current", [Status.ACCEPTED, Status.IN_PROGRESS, Status.COMPLETED, Status.CANCELLED])
def test_delivery_report_on_a_referral_already_in_hand_moves_nothing(current: Status) -> None:
    assert after_delivery_report(current, delivered=True) is None


def test_failure_report_after_delivery_does_not_undo_the_delivery() -> None:
    assert after_delivery_report(Status.DELIVERED, delivered=False) is None


def test_repeated_delivery_report_moves_nothing() -> None:
    assert after_delivery_report(Status.DELIVERED, delivered=True) is None


@pytest.mark.parametrize(
    ("current", "requested"),
    [
        (Status.COMPLETED, Status.ACKNOWLEDGED),
        (Status.ACKNOWLEDGED, Status.ACKNOWLEDGED),
        (Status.ACKNOWLEDGED, Status.DELIVERED),
        (Status.DECLINED, Status.ACCEPTED),
        (Status.REQUESTED, Status.COMPLETED),
        (Status.CANCELLED, Status.REQUESTED),
    ],
)
def test_illegal_move_is_refused_naming_both_states(current: Status, requested: Status) -> None:
    with pytest.raises(IllegalTransitionError) as excinfo:
        move(REFERRAL_ID, current, requested)

    error = excinfo.value
    assert (error.current, error.requested) == (current.value, requested.value)
    assert f"{current.value} -> {requested.value}" in str(error)
    assert str(REFERRAL_ID) in str(error)
