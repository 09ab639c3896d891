"""The ledger on PostgreSQL, as deployments with several referral replicas run it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.intake.reports import ReportIntake, fingerprint_of
from services.referral.audit import AuditKeys
from services.referral.deadlines import DeadlineSweeper
from services.referral.ledger import Ledger, outbox, timeline
from services.referral.lifecycle import Reply
from services.referral.outbox import OutboxRelay
from services.referral.referrals import Referrals, ReplyCommand
from shared.broker import Envelope
from shared.database import make_engine
from shared.directory import load_directory
from shared.ids import case_id_for
from shared.sealing import IdentitySealer
from tests.builders import a_case_report, the_sample_victims
from tests.postgres import fresh_database
from tests.system import CONFIG


class RecordingPublisher:
    """Stands in for the broker: remembers every message id it was asked to publish."""

    def __init__(self) -> None:
        self.published: Counter[str] = Counter()

    async def publish(self, envelope: Envelope) -> None:
        await asyncio.sleep(0.01)
        self.published[envelope.message_id] += 1


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    engine = make_engine(database_url)
    ledger = Ledger(engine, audit_keys=AuditKeys("a1", {"a1": os.urandom(32)}))
    await ledger.migrate()
    yield ledger
    await engine.dispose()


async def test_replicas_starting_together_migrate_one_after_another(database_url: str) -> None:
    ledgers = [Ledger(make_engine(database_url)) for _ in range(3)]
    try:
        await asyncio.wait_for(asyncio.gather(*(ledger.migrate() for ledger in ledgers)), timeout=60)
    finally:
        for ledger in ledgers:
            await ledger.engine.dispose()


def _case_reported(sealer: IdentitySealer):  # type: ignore[no-untyped-def]
    directory = load_directory(CONFIG)
    report = a_case_report(victims=the_sample_victims())
    intake = ReportIntake(lambda: directory, sealer, None, None)  # type: ignore[arg-type]
    case_id = case_id_for(report.reporting_agency, report.police_report_number)
    return intake._case_reported(report, case_id, fingerprint_of(report)), directory


async def test_a_case_is_opened_once_and_two_relays_publish_each_message_once(ledger: Ledger) -> None:
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    event, directory = _case_reported(sealer)
    referrals = Referrals(ledger, lambda: directory, sealer)

    await referrals.open_case(event, message_id="m-1")
    await referrals.open_case(event, message_id="m-1")
    await referrals.open_case(event, message_id="m-2")
    publisher = RecordingPublisher()
    relays = [OutboxRelay(ledger.engine, publisher, poll_seconds=1, batch=2) for _ in range(2)]  # type: ignore[arg-type]
    while sum(await asyncio.gather(*(relay.relay_once() for relay in relays))):
        pass

    view = await referrals.case_view(event.case_id, agency_id="polres-bengkayang")
    assert {r.agency_id for r in view.referrals} == {"dinsos-bengkayang", "uptd-ppa-kalbar", "bp3mi-kalbar"}
    assert len(publisher.published) == 4
    assert set(publisher.published.values()) == {1}


async def test_acknowledgement_and_identity_read_work_on_postgres(ledger: Ledger) -> None:
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    event, directory = _case_reported(sealer)
    referrals = Referrals(ledger, lambda: directory, sealer)
    await referrals.open_case(event, message_id="m-1")
    view = await referrals.case_view(event.case_id, agency_id="polres-bengkayang")
    [bp3mi] = [r for r in view.referrals if r.agency_id == "bp3mi-kalbar"]

    acknowledged = await referrals.reply(
        ReplyCommand(
            referral_id=bp3mi.referral_id,
            agency_id="bp3mi-kalbar",
            reply=Reply.ACKNOWLEDGED,
            via="amqp",
            officer="Agus",
            message_id="x" * 255,
        )
    )
    read = await referrals.referral_view(bp3mi.referral_id, agency_id="bp3mi-kalbar")

    assert acknowledged.status.value == "acknowledged"
    assert [read.identity[ref]["full_name"] for ref in read.referral.victim_refs] == ["Dewi Lestari", "Budi Santoso"]


async def test_two_replicas_sweeping_together_fire_every_escalation_level_exactly_once(database_url: str) -> None:
    """Two referral replicas, each with its own engine and sweeper, sweep the same overdue referrals at the same
    moments: SKIP LOCKED shares the rows out, and no level of any deadline fires twice or is left out."""
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    start = datetime(2026, 9, 2, 3, 0, tzinfo=UTC)
    ledgers = [Ledger(make_engine(database_url)) for _ in range(2)]
    try:
        await ledgers[0].migrate()
        referrals = Referrals(ledgers[0], lambda: directory, sealer, clock=lambda: start)
        for n in range(20):
            event, _ = _case_reported(sealer)
            await referrals.open_case(event, message_id=f"m-{n}")
        sweepers = [DeadlineSweeper(ledger, lambda: directory, interval_seconds=1, batch=4) for ledger in ledgers]

        fired: list[int] = [0, 0]
        # Urgent levels fall after 1h, 1h30 and 2h; working-day ones a day or three later, then every 4 hours
        # (30 minutes for urgent ones) from when the one before fired: many due at each sweep.
        for hours in (1.01, 1.6, 2.1, *(24 + 4.5 * step for step in range(30))):
            now = start + timedelta(hours=hours)
            counts = await asyncio.gather(*(sweeper.sweep(now) for sweeper in sweepers))
            fired = [total + count for total, count in zip(fired, counts, strict=True)]

        async with ledgers[0].engine.connect() as connection:
            entries = (await connection.execute(select(timeline).where(timeline.c.event == "escalated"))).all()
            messages = (
                await connection.execute(select(outbox).where(outbox.c.message_type == "referral.escalated.v1"))
            ).all()
    finally:
        for ledger in ledgers:
            await ledger.engine.dispose()

    levels = Counter((e.referral_id, e.detail["deadline"], e.detail["level"]) for e in entries)
    expected = 60 * 2 * 3  # 20 cases x 3 referrals, each missing both deadlines, each deadline three levels
    assert len(levels) == expected
    assert set(levels.values()) == {1}
    assert len(messages) == expected
    assert sum(fired) == expected
    assert all(fired), f"both replicas should have fired some levels: {fired}"


async def test_an_acknowledgement_racing_a_sweep_on_another_replica_is_never_followed_by_an_escalation(
    database_url: str,
) -> None:
    """A duty officer acknowledges on one replica while the other sweeps the same overdue referrals: a level may
    fire before the acknowledgement, never after it."""
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    start = datetime(2026, 9, 2, 3, 0, tzinfo=UTC)
    overdue = start + timedelta(hours=1, minutes=1)
    ledgers = [Ledger(make_engine(database_url)) for _ in range(2)]
    try:
        await ledgers[0].migrate()
        opening = Referrals(ledgers[0], lambda: directory, sealer, clock=lambda: start)
        for n in range(20):
            event, _ = _case_reported(sealer)
            await opening.open_case(event, message_id=f"m-{n}")
        acknowledging = Referrals(ledgers[1], lambda: directory, sealer, clock=lambda: overdue)
        sweeper = DeadlineSweeper(ledgers[0], lambda: directory, interval_seconds=1, batch=2)
        async with ledgers[0].engine.connect() as connection:
            urgent = (
                await connection.execute(
                    select(timeline.c.referral_id).where(
                        timeline.c.event == "referral_issued", timeline.c.detail["priority"].as_string() == "urgent"
                    )
                )
            ).scalars()
            legs = [(uuid.UUID(referral_id), "uptd-ppa-kalbar") for referral_id in urgent]

        async def acknowledge_all() -> None:
            for referral_id, agency_id in legs:
                command = ReplyCommand(referral_id, agency_id, Reply.ACKNOWLEDGED, via="http")
                await acknowledging.reply(command)

        await asyncio.gather(acknowledge_all(), sweeper.sweep(overdue))
        for later in (2, 3, 30):  # every further level of every acknowledge deadline is long past
            await sweeper.sweep(start + timedelta(hours=later))
        async with ledgers[0].engine.connect() as connection:
            entries = (await connection.execute(select(timeline).order_by(timeline.c.id))).all()
    finally:
        for ledger in ledgers:
            await ledger.engine.dispose()

    assert len(legs) == 20
    for referral_id, _ in legs:
        events = [
            (e.event, e.detail.get("deadline"))
            for e in entries
            if e.referral_id == str(referral_id) and e.event in ("acknowledged", "escalated")
        ]
        acknowledged_at = events.index(("acknowledged", None))
        assert ("escalated", "acknowledge") not in events[acknowledged_at:], events
        assert events.count(("escalated", "acknowledge")) <= 1
