"""Overdue legs, acknowledgement medians and what an operator sees of a timeline, without a ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.referral.lifecycle import Status
from services.referral.operations.figures import (
    OpenLeg,
    ack_medians,
    awaited,
    last_traffic,
    median_span,
    operator_detail,
)
from services.referral.operations.views import QueueFigures
from shared.contracts.referrals import DeadlineKind

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def a_leg(status: Status, *, ack_due: timedelta, accept_due: timedelta | None = None) -> OpenLeg:
    return OpenLeg(
        referral_id=uuid4(),
        case_id=uuid4(),
        case_code="KB-0001",
        agency_id="dinsos-bengkayang",
        status=status,
        priority="urgent",
        issued_at=NOW - timedelta(days=1),
        ack_due_at=NOW + ack_due,
        accept_due_at=NOW + accept_due if accept_due is not None else None,
        escalation_level=0,
    )


def test_a_leg_not_acknowledged_by_its_deadline_awaits_acknowledgement() -> None:
    leg = a_leg(Status.DELIVERED, ack_due=-timedelta(hours=2))

    assert awaited(leg, NOW) == (DeadlineKind.ACKNOWLEDGE, leg.ack_due_at)


def test_an_acknowledged_leg_past_its_acceptance_deadline_awaits_acceptance() -> None:
    leg = a_leg(Status.ACKNOWLEDGED, ack_due=-timedelta(days=2), accept_due=-timedelta(hours=1))

    assert awaited(leg, NOW) == (DeadlineKind.ACCEPT, leg.accept_due_at)


def test_a_leg_within_its_deadlines_is_not_overdue() -> None:
    assert awaited(a_leg(Status.REQUESTED, ack_due=timedelta(minutes=5)), NOW) is None
    assert awaited(a_leg(Status.ACKNOWLEDGED, ack_due=-timedelta(hours=1), accept_due=timedelta(hours=1)), NOW) is None


def test_ack_medians_count_the_last_7_and_30_days_apart() -> None:
    rows = [
        ("a", NOW - timedelta(days=2, minutes=10), NOW - timedelta(days=2)),  # 10 min, this week
        ("a", NOW - timedelta(days=3, minutes=30), NOW - timedelta(days=3)),  # 30 min, this week
        ("a", NOW - timedelta(days=20, hours=2), NOW - timedelta(days=20)),  # 2 h, this month
        ("a", NOW - timedelta(days=40, hours=9), NOW - timedelta(days=40)),  # too old
        ("b", NOW - timedelta(days=10, hours=1), NOW - timedelta(days=10)),  # 1 h, this month only
    ]

    medians = ack_medians(rows, NOW)

    assert medians["a"] == (timedelta(minutes=20), timedelta(minutes=30))
    assert medians["b"] == (None, timedelta(hours=1))
    assert median_span([]) is None


def test_an_operator_sees_what_happened_on_a_timeline_not_whom_it_is_about() -> None:
    detail = {"victim_refs": ["V1 Siti"], "note": "Siti Aminah di rumah paman", "officer": "ani", "reasons": []}

    assert operator_detail("accepted", detail) == {"victim_refs": "(hidden)", "note": "(hidden)", "officer": "ani"}


def test_an_operator_sees_why_a_referral_was_declined_but_not_an_agency_s_own_words_on_why_it_is_held() -> None:
    """Found by review: a hold's reason is free text an agency types, and it reached the ops page as typed."""
    held = operator_detail("held", {"reason": "korban Siti Aminah dirawat di RS", "via": "http"})
    declined = operator_detail("declined", {"reason": "not_in_jurisdiction", "via": "http"})

    assert held == {"reason": "(hidden)", "via": "http"}
    assert declined == {"reason": "not_in_jurisdiction", "via": "http"}


def a_work_queue(*, idle_since: datetime | None = None, deliver_rate: float | None = 0.0) -> QueueFigures:
    return QueueFigures(
        name="intake.reports",
        owner="intake",
        kind="work",
        messages=0,
        consumers=1,
        publish_rate=0.0,
        deliver_rate=deliver_rate,
        idle_since=idle_since,
    )


def test_a_quorum_queue_without_idle_since_or_deliveries_leaves_its_last_traffic_unknown() -> None:
    """RabbitMQ 3.10 never reports ``idle_since`` for a quorum queue: its absence does not mean busy now."""
    assert last_traffic([a_work_queue(), a_work_queue(deliver_rate=None)], NOW) is None


def test_a_queue_delivering_messages_had_traffic_now() -> None:
    assert last_traffic([a_work_queue(), a_work_queue(deliver_rate=2.5)], NOW) == NOW


def test_a_queue_idle_since_a_moment_last_had_traffic_then() -> None:
    quiet = NOW - timedelta(hours=3)

    assert last_traffic([a_work_queue(), a_work_queue(idle_since=quiet)], NOW) == quiet
