"""The notifier's store on SQLite (the default) and on PostgreSQL, as a deployment with replicas runs it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.notifier.messages import Notification
from services.notifier.recipients import recipients_for
from services.notifier.store import NotificationStore, Status
from shared.database import make_engine
from shared.directory import load_directory
from tests.notifying import WEDNESDAY_10_WIB, an_issued_referral
from tests.system import CONFIG

ADMIN_DSN = os.environ.get("RUJUKAN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NotificationStore]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/notifier.db")
        admin = name = None
    else:
        name = f"rujukan_test_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        engine = make_engine(f"{base}/{name}")
    store = NotificationStore(engine)
    await store.create_schema()
    await store.create_schema()  # a restart finds its tables there already
    yield store
    await engine.dispose()
    if admin is not None:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def notifications_of_a_referral() -> list[Notification]:
    issued = an_issued_referral()
    fanout = recipients_for(issued, load_directory(CONFIG), WEDNESDAY_10_WIB)
    return [Notification.first("event-1", issued, recipient, nobody_on_duty=False) for recipient in fanout.recipients]


async def test_a_notification_is_recorded_once_and_a_copy_sees_how_it_ended(store: NotificationStore) -> None:
    note, _ = notifications_of_a_referral()

    first = await store.open(note, WEDNESDAY_10_WIB)
    await store.update(note.notification_id, WEDNESDAY_10_WIB, attempts=2)
    retried = await store.open(note, WEDNESDAY_10_WIB)
    await store.update(note.notification_id, WEDNESDAY_10_WIB, attempts=3, status=Status.SENT)
    copy = await store.open(note, WEDNESDAY_10_WIB)

    assert (first.status, first.attempts, first.referral_status) == (Status.PENDING, 0, None)
    assert (retried.status, retried.attempts) == (Status.PENDING, 2)
    assert (copy.status, copy.attempts) == (Status.SENT, 3)


async def test_once_a_referral_is_settled_every_notification_of_it_knows_how_far_it_got(
    store: NotificationStore,
) -> None:
    waiting, later = notifications_of_a_referral()
    await store.open(waiting, WEDNESDAY_10_WIB)

    await store.settle(waiting.event.referral_id, "acknowledged", WEDNESDAY_10_WIB)
    await store.settle(waiting.event.referral_id, "accepted", WEDNESDAY_10_WIB)  # a decision replaces it
    await store.settle(waiting.event.referral_id, "acknowledged", WEDNESDAY_10_WIB)  # a late copy does not

    assert (await store.open(waiting, WEDNESDAY_10_WIB)).referral_status == "accepted"
    assert (await store.open(later, WEDNESDAY_10_WIB)).referral_status == "accepted"
    other, _ = notifications_of_a_referral()
    assert (await store.open(other, WEDNESDAY_10_WIB)).referral_status is None


async def test_a_failed_notification_keeps_the_history_of_why(store: NotificationStore) -> None:
    note, _ = notifications_of_a_referral()
    await store.open(note, WEDNESDAY_10_WIB)

    await store.update(
        note.notification_id,
        WEDNESDAY_10_WIB,
        attempts=1,
        status=Status.FAILED,
        history=("webhook: gone", "email: 550"),
    )

    record = await store.open(note, WEDNESDAY_10_WIB)
    assert (record.status, record.history) == (Status.FAILED, ("webhook: gone", "email: 550"))
