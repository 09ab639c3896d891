from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.notifier.messages import Address, Notification, Recipient
from services.notifier.recipients import recipients_for
from shared.directory import Directory, load_directory
from tests.notifying import WEDNESDAY_10_WIB, a_cancellation, an_escalation, an_issued_referral, without_shifts

DIRECTORY_FILE = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(DIRECTORY_FILE)


def described(recipients: tuple[Recipient, ...]) -> list[tuple[str, str, list[str]]]:
    return [(r.role, r.id, [f"{a.kind}:{a.to}" for a in r.channels]) for r in recipients]


def test_a_new_referral_goes_to_the_agency_system_by_webhook_then_email_and_to_the_officer_on_duty(
    directory: Directory,
) -> None:
    fanout = recipients_for(an_issued_referral(), directory, WEDNESDAY_10_WIB)

    assert described(fanout.recipients) == [
        (
            "system",
            "agency",
            ["webhook:dinsos-bengkayang", "email:meja.dinsos-bengkayang@example.org"],
        ),
        ("officer", "piket-pagi", ["sms:+628125502001", "email:piket-pagi.dinsos-bengkayang@example.org"]),
    ]
    assert not fanout.nobody_on_duty
    assert fanout.recipients[1].officer_id == "piket-pagi"


def test_with_nobody_on_duty_the_backup_is_told_and_the_fanout_says_so(directory: Directory) -> None:
    fanout = recipients_for(an_issued_referral(), without_shifts(directory, "dinsos-bengkayang"), WEDNESDAY_10_WIB)

    assert [r.id for r in fanout.recipients] == ["agency", "cadangan"]
    assert fanout.nobody_on_duty


def test_level_1_reaches_the_officer_on_duty_and_the_backup(directory: Directory) -> None:
    level_1 = an_escalation(an_issued_referral(), 1)

    fanout = recipients_for(level_1, directory, WEDNESDAY_10_WIB + timedelta(hours=5))

    assert [r.id for r in fanout.recipients] == ["piket-sore", "cadangan"]


def test_level_2_reaches_the_supervisor_only(directory: Directory) -> None:
    fanout = recipients_for(an_escalation(an_issued_referral(), 2), directory, WEDNESDAY_10_WIB)

    assert described(fanout.recipients) == [
        ("officer", "kepala-bidang", ["sms:+628125502201", "email:kepala-bidang.dinsos-bengkayang@example.org"])
    ]


def test_level_3_of_a_district_unit_reaches_the_provincial_units_system_and_its_officer_on_duty(
    directory: Directory,
) -> None:
    level_3 = an_escalation(an_issued_referral(), 3, escalated_to="dinsos-kalbar")

    fanout = recipients_for(level_3, directory, WEDNESDAY_10_WIB)

    assert [(r.role, r.id, r.agency_id, r.officer_id) for r in fanout.recipients] == [
        ("system", "dinsos-kalbar", "dinsos-kalbar", None),
        ("officer", "dinsos-kalbar/piket-pagi", "dinsos-kalbar", None),
    ]


def test_level_3_of_a_provincial_unit_reaches_the_coordinator(directory: Directory) -> None:
    level_3 = an_escalation(an_issued_referral("uptd-ppa-kalbar"), 3, escalated_to=None)

    fanout = recipients_for(level_3, directory, WEDNESDAY_10_WIB)

    assert described(fanout.recipients) == [
        (
            "contact",
            "gugus-tugas-tppo-kalbar",
            ["email:sekretariat.gugus-tugas-tppo@example.org", "sms:+6281255009001"],
        )
    ]


def test_a_cancellation_tells_the_agency_system_and_the_officer_on_duty_never_the_backup(
    directory: Directory,
) -> None:
    cancelled = a_cancellation(an_issued_referral())

    assert [r.id for r in recipients_for(cancelled, directory, WEDNESDAY_10_WIB).recipients] == ["agency", "piket-pagi"]
    unmanned = without_shifts(directory, "dinsos-bengkayang")
    assert [r.id for r in recipients_for(cancelled, unmanned, WEDNESDAY_10_WIB).recipients] == ["agency"]


def test_an_agency_without_a_roster_has_its_system_as_its_only_desk(directory: Directory) -> None:
    agencies = tuple(a.model_copy(update={"roster": None}) for a in directory.agencies)
    no_rosters = directory.model_copy(update={"agencies": agencies})
    issued = an_issued_referral()

    assert [r.id for r in recipients_for(issued, no_rosters, WEDNESDAY_10_WIB).recipients] == ["agency"]
    assert not recipients_for(issued, no_rosters, WEDNESDAY_10_WIB).nobody_on_duty
    assert [r.id for r in recipients_for(an_escalation(issued, 2), no_rosters, WEDNESDAY_10_WIB).recipients] == [
        "agency"
    ]


def test_one_notification_id_per_event_recipient_and_channel_whatever_the_redeliveries(directory: Directory) -> None:
    issued = an_issued_referral()
    [system, officer] = recipients_for(issued, directory, WEDNESDAY_10_WIB).recipients

    first = Notification.first("event-1", issued, officer, nobody_on_duty=False)
    again = Notification.first("event-1", issued, officer, nobody_on_duty=False)
    by_email = first.next_channel(history=("sms: gateway answered HTTP 400",), attempts=1)

    assert first.notification_id == again.notification_id
    assert first.notification_id != Notification.first("event-1", issued, system, nobody_on_duty=False).notification_id
    assert first.notification_id != Notification.first("event-2", issued, officer, nobody_on_duty=False).notification_id
    assert by_email is not None
    assert by_email.address.kind == "email"
    assert by_email.notification_id not in (first.notification_id, None)
    assert by_email.next_channel(history=(), attempts=2) is None


def test_a_notification_survives_the_wire_as_the_event_it_carries() -> None:
    recipient = Recipient(
        role="system", id="agency", agency_id="dinsos-bengkayang", channels=(Address(kind="webhook", to="x"),)
    )
    for event in (an_issued_referral(), an_escalation(an_issued_referral(), 2), a_cancellation(an_issued_referral())):
        sent = Notification.first("event-1", event, recipient, nobody_on_duty=True)

        received = Notification.model_validate_json(sent.model_dump_json())

        assert type(received.event) is type(event)
        assert received == sent


def test_with_nobody_on_duty_level_1_also_reaches_the_supervisor(directory: Directory) -> None:
    nobody = without_shifts(directory, "dinsos-bengkayang")

    fanout = recipients_for(an_escalation(an_issued_referral(), 1), nobody, WEDNESDAY_10_WIB)

    assert [r.id for r in fanout.recipients] == ["cadangan", "kepala-bidang"]


def test_an_escalation_for_an_agency_the_directory_no_longer_knows_reaches_the_coordinator(
    directory: Directory,
) -> None:
    fanout = recipients_for(an_escalation(an_issued_referral("dinsos-gone"), 3), directory, WEDNESDAY_10_WIB)

    assert [r.id for r in fanout.recipients] == ["gugus-tugas-tppo-kalbar"]
