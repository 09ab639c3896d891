"""The ledger on PostgreSQL, as deployments with several referral replicas run it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.intake.reports import ReportIntake, fingerprint_of
from services.referral.ledger import Ledger
from services.referral.lifecycle import Reply
from services.referral.outbox import OutboxRelay
from services.referral.referrals import Referrals, ReplyCommand
from shared.broker import Envelope
from shared.database import make_engine
from shared.directory import load_directory
from shared.ids import case_id_for
from shared.sealing import IdentitySealer
from tests.builders import a_case_report, the_sample_victims
from tests.system import CONFIG

ADMIN_DSN = os.environ.get("RUJUKAN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


class RecordingPublisher:
    """Stands in for the broker: remembers every message id it was asked to publish."""

    def __init__(self) -> None:
        self.published: Counter[str] = Counter()

    async def publish(self, envelope: Envelope) -> None:
        await asyncio.sleep(0.01)
        self.published[envelope.message_id] += 1


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    name = f"rujukan_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    engine = make_engine(database_url)
    ledger = Ledger(engine)
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
