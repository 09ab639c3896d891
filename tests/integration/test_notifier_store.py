"""The notifier's store on SQLite (the default) and on PostgreSQL, as a deployment with replicas runs it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.notifier.messages import Notification
from services.notifier.recipients import recipients_for
from services.notifier.store import Claim, NotificationStore, Status
from shared.database import make_engine
from shared.directory import load_directory
from tests.notifying import WEDNESDAY_10_WIB, an_issued_referral
from tests.postgres import fresh_database
from tests.system import CONFIG


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NotificationStore]:
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path}/notifier.db"
        else:
            url = await stack.enter_async_context(fresh_database())
        engine = make_engine(url)
        stack.push_async_callback(engine.dispose)
        store = NotificationStore(engine)
        await store.create_schema()
        await store.create_schema()  # a restart finds its tables there already
        yield store


def notifications_of_a_referral() -> list[Notification]:
    issued = an_issued_referral()
    fanout = recipients_for(issued, load_directory(CONFIG), WEDNESDAY_10_WIB)
    return [Notification.first("event-1", issued, recipient, nobody_on_duty=False) for recipient in fanout.recipients]


LEASE = timedelta(minutes=5)


async def claim(store: NotificationStore, note: Notification, *, round_: int = 0, at: datetime = WEDNESDAY_10_WIB,
                replay: bool = False) -> Claim:  # fmt: skip
    return await store.claim(note, at, round_=round_, lease=LEASE, replay=replay)


async def test_a_notification_is_recorded_once_and_a_copy_sees_how_it_ended(store: NotificationStore) -> None:
    note, _ = notifications_of_a_referral()

    first = await claim(store, note)
    await store.wait(note.notification_id, WEDNESDAY_10_WIB, attempts=2, round_=1)
    retried = await claim(store, note, round_=1)
    await store.end(note.notification_id, WEDNESDAY_10_WIB, status=Status.SENT, attempts=3)
    copy = await claim(store, note, round_=1)

    assert (first.claimed, first.record.attempts, first.record.referral_status) == (True, 0, None)
    assert (retried.claimed, retried.record.attempts, retried.record.round) == (True, 2, 1)
    assert (copy.claimed, copy.record.status, copy.record.attempts) == (False, Status.SENT, 3)
    assert not copy.record.reported


async def test_of_two_copies_claiming_at_once_exactly_one_may_send(store: NotificationStore) -> None:
    note, _ = notifications_of_a_referral()

    claims = await asyncio.gather(*(claim(store, note) for _ in range(5)))

    assert sorted(c.claimed for c in claims) == [False, False, False, False, True]
    assert all(c.record.status is Status.SENDING for c in claims)


async def test_a_claim_whose_holder_crashed_lapses_and_a_copy_then_claims_it(store: NotificationStore) -> None:
    note, _ = notifications_of_a_referral()
    await claim(store, note)

    while_held = await claim(store, note, at=WEDNESDAY_10_WIB + LEASE - timedelta(seconds=1))
    after_lapse = await claim(store, note, at=WEDNESDAY_10_WIB + LEASE + timedelta(seconds=1))

    assert not while_held.claimed
    assert after_lapse.claimed


async def test_a_copy_of_an_earlier_round_never_claims_a_notification_waiting_for_a_later_one(
    store: NotificationStore,
) -> None:
    note, _ = notifications_of_a_referral()
    await claim(store, note)
    await store.wait(note.notification_id, WEDNESDAY_10_WIB, attempts=3, round_=1)

    stale = await claim(store, note, round_=0)

    assert (stale.claimed, stale.record.status, stale.record.round) == (False, Status.PENDING, 1)


async def test_a_replayed_parked_notification_starts_afresh_at_round_0(store: NotificationStore) -> None:
    note, _ = notifications_of_a_referral()
    await claim(store, note, round_=2)
    await store.end(note.notification_id, WEDNESDAY_10_WIB, status=Status.FAILED, attempts=9, history=("gone",))
    await store.reported(note.notification_id)

    replayed = await claim(store, note, replay=True)

    assert (replayed.claimed, replayed.record.round, replayed.record.reported) == (True, 0, False)


async def test_once_a_referral_is_settled_every_notification_of_it_knows_how_far_it_got(
    store: NotificationStore,
) -> None:
    waiting, later = notifications_of_a_referral()
    await claim(store, waiting)

    await store.settle(waiting.event.referral_id, "acknowledged", WEDNESDAY_10_WIB)
    await store.settle(waiting.event.referral_id, "accepted", WEDNESDAY_10_WIB)  # a decision replaces it
    await store.settle(waiting.event.referral_id, "acknowledged", WEDNESDAY_10_WIB)  # a late copy does not

    assert (await claim(store, waiting)).record.referral_status == "accepted"
    assert (await claim(store, later)).record.referral_status == "accepted"
    other, _ = notifications_of_a_referral()
    assert (await claim(store, other)).record.referral_status is None


async def test_a_failed_notification_keeps_the_history_of_why(store: NotificationStore) -> None:
    note, _ = notifications_of_a_referral()
    await claim(store, note)

    await store.end(
        note.notification_id,
        WEDNESDAY_10_WIB,
        status=Status.FAILED,
        attempts=1,
        history=("webhook: gone", "email: 550"),
    )

    record = (await claim(store, note)).record
    assert (record.status, record.history) == (Status.FAILED, ("webhook: gone", "email: 550"))


async def test_a_store_made_before_claims_existed_gains_their_columns_at_start(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/old.db")
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE TABLE notifier_notifications (notification_id VARCHAR(36) PRIMARY KEY, event_id VARCHAR(64) NOT "
            "NULL, referral_id VARCHAR(36) NOT NULL, agency_id VARCHAR(60) NOT NULL, recipient VARCHAR(200) NOT NULL, "
            "channel VARCHAR(20) NOT NULL, level INTEGER NOT NULL, status VARCHAR(10) NOT NULL, attempts INTEGER NOT "
            "NULL, history TEXT NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)"
        )
    old = NotificationStore(engine)

    await old.create_schema()

    note, _ = notifications_of_a_referral()
    assert (await claim(old, note)).claimed
    await engine.dispose()
