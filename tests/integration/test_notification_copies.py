"""Copies of one notification (a redelivered fan-out, a second replica, an operator's replay) send it at most
once; a copy finds out what its original did and finishes only what was left undone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from services.notifier.app import claim_lease
from services.notifier.messages import Notification
from services.notifier.recipients import recipients_for
from services.notifier.store import NotificationStore, Status, notifications
from services.referral.operations.dead_letters import replay_headers
from shared.consuming import REASON_HEADER
from shared.contracts.referrals import ReferralDelivered, ReferralDeliveryFailed
from shared.database import make_engine
from shared.directory import Directory
from tests.notifying import WEDNESDAY_10_WIB, Clock, NotifierRig, an_issued_referral
from tests.system import eventually

pytestmark = pytest.mark.rabbit

PIKET_PAGI = "+628125502001"


@pytest.fixture
async def rig(amqp_url: str, tmp_path: Path) -> AsyncIterator[NotifierRig]:
    running = NotifierRig(amqp_url, tmp_path, clock=Clock(WEDNESDAY_10_WIB), retry_schedule=(2.0,))
    await running.start()
    yield running
    await running.stop()


async def test_a_redelivered_fan_out_while_the_original_waits_in_a_wait_queue_starts_no_second_send(
    rig: NotifierRig,
) -> None:
    rig.gateway.fail_next(PIKET_PAGI, 503, 503, 503)
    issued = an_issued_referral()
    event_id = await rig.publish(issued)
    await rig.reports(1)  # the agency system's
    await eventually(lambda: rig.gateway.requests[PIKET_PAGI] == 3)  # quick retries spent: now it waits
    handled = await rig.events_acked("referral.dinsos-bengkayang.issued")

    await rig.publish(issued, message_id=event_id)

    async def copy_handled() -> bool:
        return await rig.events_acked("referral.dinsos-bengkayang.issued") == handled + 1

    await eventually(copy_handled, timeout=5)
    assert rig.gateway.requests[PIKET_PAGI] == 3  # the copy of round 0 was dropped, not sent
    [report] = await rig.reports(1)
    assert (report.recipient, report.attempts) == ("piket-pagi", 4)
    assert len(rig.gateway.to(PIKET_PAGI)) == 1


async def test_a_copy_of_a_notification_sent_but_never_reported_reports_it_without_sending_again(
    rig: NotifierRig,
) -> None:
    issued = an_issued_referral()
    event_id = "issued-event-1"
    [agency, officer] = recipients_for(issued, rig.directory, WEDNESDAY_10_WIB).recipients
    note = Notification.first(event_id, issued, officer, nobody_on_duty=False)
    engine = make_engine(rig.settings.notifier_database_url)
    store = NotificationStore(engine)
    # The original sent the text, recorded it, and lost its report to a broker hiccup.
    await store.claim(note, WEDNESDAY_10_WIB, round_=0, lease=timedelta(minutes=5))
    await store.end(note.notification_id, WEDNESDAY_10_WIB, status=Status.SENT, attempts=2)

    await rig.publish(issued, message_id=event_id)

    reports = {report.recipient: report for report in await rig.reports(2)}
    assert set(reports) == {agency.id, "piket-pagi"}
    assert (reports["piket-pagi"].notification_id, reports["piket-pagi"].attempts) == (note.notification_id, 2)
    assert rig.gateway.requests[PIKET_PAGI] == 0
    claim = await store.claim(note, WEDNESDAY_10_WIB, round_=0, lease=timedelta(minutes=5))
    await engine.dispose()
    assert claim.record.reported


async def test_a_notification_whose_holder_was_killed_mid_send_is_sent_once_its_short_lease_lapses(
    rig: NotifierRig,
) -> None:
    # Found by the chaos harness: a notifier killed mid-send held its notifications for a five-minute lease.
    issued = an_issued_referral()
    event_id = "issued-event-killed-holder"
    [_, officer] = recipients_for(issued, rig.directory, WEDNESDAY_10_WIB).recipients
    note = Notification.first(event_id, issued, officer, nobody_on_duty=False)
    engine = make_engine(rig.settings.notifier_database_url)
    store = NotificationStore(engine)
    lease = claim_lease(rig.settings)
    await store.claim(note, WEDNESDAY_10_WIB - lease - timedelta(seconds=1), round_=0, lease=lease)
    await engine.dispose()
    # Well inside the 30 s in which the service must recover from a fault.
    assert lease.total_seconds() <= 15

    await rig.publish(issued, message_id=event_id)

    reports = {report.recipient: report for report in await rig.reports(2)}
    assert reports["piket-pagi"].notification_id == note.notification_id
    assert [text.id for text in rig.gateway.to(PIKET_PAGI)] == [note.notification_id]


async def test_a_send_that_outlasts_the_claims_lease_keeps_its_claim_so_a_copy_meanwhile_sends_nothing(
    amqp_url: str, tmp_path: Path
) -> None:
    clock = Clock(WEDNESDAY_10_WIB)
    rig = NotifierRig(amqp_url, tmp_path, clock=clock, retry_schedule=(1.0,), notification_claim_seconds=0.6)
    await rig.start()
    try:
        rig.gateway.answer_late(PIKET_PAGI, 2.0)
        issued = an_issued_referral()
        event_id = await rig.publish(issued)
        await eventually(lambda: rig.gateway.requests[PIKET_PAGI] == 1)
        # The send is still waiting on the gateway, long past the claim it took; its holder extends it.
        clock.now += timedelta(minutes=1)
        await asyncio.sleep(0.5)

        await rig.publish(issued, message_id=event_id)

        reports = {report.recipient: report for report in await rig.reports(2)}
        await asyncio.sleep(1.5)  # the copy is back from its wait queue and finds the send ended
        assert reports["piket-pagi"].attempts == 1
        assert rig.gateway.requests[PIKET_PAGI] == 1
        assert len(rig.gateway.to(PIKET_PAGI)) == 1
    finally:
        await rig.stop()


async def test_a_send_whose_end_is_recorded_after_the_lease_keeps_its_claim_so_a_copy_meanwhile_sends_nothing(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_end = NotificationStore.end

    async def slow_to_record_end(store: NotificationStore, *args: object, **kwargs: object) -> None:
        await asyncio.sleep(2.0)  # a busy disk or a slow broker: the writes after a send outlast the lease
        await record_end(store, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(NotificationStore, "end", slow_to_record_end)
    clock = Clock(WEDNESDAY_10_WIB)
    rig = NotifierRig(amqp_url, tmp_path, clock=clock, retry_schedule=(1.0,), notification_claim_seconds=0.6)
    await rig.start()
    try:
        issued = an_issued_referral()
        event_id = await rig.publish(issued)
        await rig.reports(2)  # sent and reported; the ends are still being recorded
        clock.now += timedelta(minutes=1)
        await asyncio.sleep(0.5)

        await rig.publish(issued, message_id=event_id)

        await asyncio.sleep(3.0)  # the ends are recorded, and the copy is back from its wait queue and dropped
        assert rig.gateway.requests[PIKET_PAGI] == 1
        assert len(rig.sink.deliveries) == 1
    finally:
        await rig.stop()


async def test_a_notification_the_store_cannot_record_on_its_first_try_is_sent_once_when_it_can(
    rig: NotifierRig,
) -> None:
    engine = make_engine(rig.settings.notifier_database_url)
    # The table out of the way: every claim fails, as it would with the store's disk gone.
    async with engine.begin() as connection:
        await connection.execute(text(f"ALTER TABLE {notifications.name} RENAME TO away"))
    issued = an_issued_referral()
    await rig.publish(issued)

    async def event_handed_on() -> bool:
        return await rig.events_acked("referral.dinsos-bengkayang.issued") == 1

    await eventually(event_handed_on)
    assert rig.sink.deliveries == []
    async with engine.begin() as connection:
        await connection.execute(text(f"ALTER TABLE away RENAME TO {notifications.name}"))
    await engine.dispose()

    reports = {report.recipient: report for report in await rig.reports(2, timeout=15)}
    assert set(reports) == {"agency", "piket-pagi"}
    assert len(rig.sink.deliveries) == 1
    assert len(rig.gateway.to(PIKET_PAGI)) == 1


def _reached_by_text_only(directory: Directory) -> Directory:
    """Every officer with one channel: the first, a text message."""
    agencies = []
    for agency in directory.agencies:
        if agency.roster is not None:
            officers = tuple(
                officer.model_copy(update={"channels": officer.channels[:1]}) for officer in agency.roster.officers
            )
            agency = agency.model_copy(update={"roster": agency.roster.model_copy(update={"officers": officers})})
        agencies.append(agency)
    return directory.model_copy(update={"agencies": tuple(agencies)})


async def test_an_officer_whose_only_channel_refuses_the_first_try_is_reported_failed_and_parked_for_operators(
    amqp_url: str, tmp_path: Path
) -> None:
    rig = NotifierRig(amqp_url, tmp_path, clock=Clock(WEDNESDAY_10_WIB), adjust=_reached_by_text_only)
    await rig.start()
    try:
        rig.gateway.fail_next(PIKET_PAGI, 400)
        await rig.publish(an_issued_referral())

        reports = {report.recipient: report for report in await rig.reports(2)}
        assert rig.broker is not None
        [parked] = await rig.broker.take("notifier.notifications.dead", 1)
    finally:
        await rig.stop()

    failed = reports["piket-pagi"]
    assert isinstance(failed, ReferralDeliveryFailed)
    assert parked.headers[REASON_HEADER] == failed.reason
    note = Notification.model_validate_json(parked.body)
    assert (parked.message_id, note.recipient.id, note.address.kind) == (failed.notification_id, "piket-pagi", "sms")


async def test_an_operator_s_replay_that_meets_a_store_error_is_still_a_replay_when_it_comes_back(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: the store's failure rolled back the replay's reset of the record, and the copy that came back
    after the wait was no longer marked a replay, so it found the record failed and dropped it: nothing sent."""
    rig = NotifierRig(
        amqp_url, tmp_path, clock=Clock(WEDNESDAY_10_WIB), adjust=_reached_by_text_only, retry_schedule=(0.5,)
    )
    await rig.start()
    try:
        rig.gateway.fail_next(PIKET_PAGI, 400)
        await rig.publish(an_issued_referral())
        await rig.reports(2)
        assert rig.broker is not None
        [parked] = await rig.broker.take("notifier.notifications.dead", 1)
        claim, failures = NotificationStore.claim, []

        async def locked_once(store: NotificationStore, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("replay") and not failures:
                failures.append(kwargs)
                raise OperationalError("UPDATE notifier_notifications", {}, Exception("database is locked"))
            return await claim(store, *args, **kwargs)

        monkeypatch.setattr(NotificationStore, "claim", locked_once)
        await rig.broker.publish(
            "",
            "notifier.notifications",
            parked.body,
            message_type=parked.type,
            message_id=parked.message_id,
            headers=replay_headers(dict(parked.headers), operator="ops-rujukan"),
        )

        [report] = await rig.reports(1)
    finally:
        await rig.stop()

    assert failures
    assert isinstance(report, ReferralDelivered)
    assert (report.recipient, report.notification_id) == ("piket-pagi", parked.message_id)
    assert len(rig.gateway.to(PIKET_PAGI)) == 1


async def test_a_notification_naming_a_channel_its_recipient_does_not_have_is_dead_lettered_at_once(
    rig: NotifierRig,
) -> None:
    """Found by review: the index failed only at the send, as an error to retry, so such a message went round ten
    times before the delivery limit parked it, with no reason of its own."""
    issued = an_issued_referral()
    [agency, _] = recipients_for(issued, rig.directory, WEDNESDAY_10_WIB).recipients
    note = Notification.first("event-1", issued, agency, nobody_on_duty=False)
    body = note.model_dump(mode="json") | {"channel": len(agency.channels)}
    assert rig.broker is not None

    message_id = await rig.broker.publish("", "notifier.notifications", body, message_type=Notification.TYPE)

    [dead] = await rig.broker.take("notifier.notifications.dead")
    assert dead.message_id == message_id
    assert dead.headers["x-delivery-count"] == 0
    assert "is not one of the recipient's" in dead.headers[REASON_HEADER]
