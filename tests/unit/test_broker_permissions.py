"""The permission model of ``rujukan broker setup``: RabbitMQ matches each pattern with an unanchored search, so
these tests use ``re.search`` exactly as the broker would."""

from __future__ import annotations

import re

from shared.broker_setup import NOTHING, SERVICES, BrokerUser, broker_users, exactly
from shared.directory import Directory, load_directory
from shared.topology import build_topology
from tests.system import CONFIG


def with_longer_namesake() -> Directory:
    """The shipped directory plus ``dinsos-kalbar-utara``, whose id starts with ``dinsos-kalbar``'s."""
    directory = load_directory(CONFIG)
    original = directory.agency("dinsos-kalbar")
    assert original is not None
    return directory.model_copy(
        update={"agencies": (*directory.agencies, original.model_copy(update={"id": "dinsos-kalbar-utara"}))}
    )


def users_of(directory: Directory) -> dict[str, BrokerUser]:
    return {user.name: user for user in broker_users(directory, build_topology(directory, (30.0,)))}


def allows(pattern: str, name: str) -> bool:
    return re.search(pattern, name) is not None


def topic_write(user: BrokerUser, exchange: str) -> str:
    [topic] = [topic for topic in user.topic_permissions if topic.exchange == exchange]
    return topic.write


def test_a_pattern_names_whole_resources_with_their_dots_escaped() -> None:
    pattern = exactly(["agency.bp3mi-kalbar.inbox"])

    assert allows(pattern, "agency.bp3mi-kalbar.inbox")
    assert not allows(pattern, "agencyXbp3mi-kalbar.inbox")
    assert not allows(pattern, "agency.bp3mi-kalbar.inbox.dead")
    assert not allows(pattern, "x.agency.bp3mi-kalbar.inbox")


def test_no_names_is_no_access() -> None:
    assert exactly([]) == NOTHING
    assert not allows(NOTHING, "rujukan.intake")


def test_an_agency_whose_id_is_a_prefix_of_another_gets_nothing_of_the_longer_ones() -> None:
    users = users_of(with_longer_namesake())
    shorter = users["dinsos-kalbar"]

    assert allows(shorter.read, "agency.dinsos-kalbar.inbox")
    assert not allows(shorter.read, "agency.dinsos-kalbar-utara.inbox")
    replies = topic_write(shorter, "rujukan.replies")
    assert allows(replies, "referral.dinsos-kalbar.acknowledged")
    assert not allows(replies, "referral.dinsos-kalbar-utara.acknowledged")


def test_a_receiving_agency_replies_only_under_its_own_id_and_reads_only_its_inbox() -> None:
    dinsos = users_of(load_directory(CONFIG))["dinsos-bengkayang"]
    replies = topic_write(dinsos, "rujukan.replies")

    assert dinsos.write == exactly(["rujukan.replies"])
    assert dinsos.configure == NOTHING
    for event in ("acknowledged", "accepted", "declined", "started", "held", "resumed", "completed"):
        assert allows(replies, f"referral.dinsos-bengkayang.{event}")
    assert not allows(replies, "referral.bp3mi-kalbar.acknowledged")
    assert not allows(replies, "referral.dinsos-bengkayang.issued")
    assert not allows(dinsos.read, "agency.bp3mi-kalbar.inbox")
    assert not allows(dinsos.read, "agency.dinsos-bengkayang.inbox.dead")


def test_a_police_unit_publishes_only_case_keys_to_intake_and_reads_only_its_receipts() -> None:
    police = users_of(load_directory(CONFIG))["polres-bengkayang"]
    keys = topic_write(police, "rujukan.intake")

    assert police.write == exactly(["rujukan.intake"])
    assert [key for key in ("case.report", "case.amend", "case.withdraw") if allows(keys, key)] == [
        "case.report",
        "case.amend",
        "case.withdraw",
    ]
    assert not allows(keys, "case.reported")
    assert not allows(keys, "case.report.extra")
    assert allows(police.read, "agency.polres-bengkayang.receipts")
    assert not allows(police.read, "agency.polres-sambas.receipts")
    assert not allows(police.read, "intake.reports")


def test_each_service_may_touch_its_own_part_of_the_topology_and_nothing_else() -> None:
    users = users_of(load_directory(CONFIG))
    intake, referral, notifier = users["intake"], users["referral"], users["notifier"]

    assert allows(intake.read, "intake.reports")
    assert allows(intake.configure, "agency.polres-bengkayang.receipts")
    assert allows(intake.write, "rujukan.events")
    assert not allows(intake.write, "rujukan.intake")
    for queue in ("referral.cases", "referral.replies", "notifier.referrals", "notifier.notifications.wait.30s"):
        assert not allows(intake.read, queue), queue
        assert not allows(intake.configure, queue), queue
    assert allows(referral.read, "referral.replies")
    assert allows(referral.configure, "agency.dinsos-bengkayang.inbox")
    assert not allows(referral.read, "intake.reports")
    assert not allows(referral.read, "notifier.notifications")
    # Its operator console lists and replays every dead letter.
    assert allows(referral.read, "intake.reports.dead")
    assert allows(referral.read, "notifier.notifications.dead")
    assert allows(notifier.read, "notifier.notifications")
    assert allows(notifier.configure, "notifier.notifications.wait.30s")
    assert not allows(notifier.write, "rujukan.intake")
    assert not allows(notifier.read, "rujukan.replies")
    for queue in ("intake.reports", "intake.reports.dead", "agency.dinsos-bengkayang.inbox",
                  "agency.polres-bengkayang.receipts", "referral.cases"):  # fmt: skip
        assert not allows(notifier.read, queue), queue
        assert not allows(notifier.configure, queue), queue
    for user in (intake, referral, notifier):
        assert not allows(user.configure, "another-app.jobs")
        assert not allows(user.read, "another-app.jobs")


def test_every_service_police_unit_and_receiving_agency_gets_an_identity_and_none_is_guest() -> None:
    directory = load_directory(CONFIG)
    names = set(users_of(directory))

    expected = {*SERVICES, *(a.id for a in directory.police_units()), *(a.id for a in directory.receiving_agencies())}
    assert names == expected
    assert "guest" not in names
