"""What intake answers when the broker fails in its two ways: certainly not sent, or sent but unconfirmed."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiormq.exceptions import AMQPConnectionError, DeliveryError
from pamqp.commands import Basic
from sqlalchemy import event
from sqlalchemy.util import await_

from services.intake.registry import Claim, ReportRegistry
from services.intake.reports import IntakeUnavailableError, ReportIntake, UncertainReportError
from shared.broker import Envelope
from shared.contracts.cases import CaseReport
from shared.database import make_engine
from shared.directory import load_directory
from shared.errors import ReportConflictError
from shared.sealing import IdentitySealer
from tests.builders import a_case_report_body, a_victim
from tests.postgres import fresh_database
from tests.system import CONFIG


class FlakyBroker:
    """Fails the next publishes as told (an exception instance each), then confirms."""

    def __init__(self) -> None:
        self.failures: list[Exception] = []
        self.confirmed: list[Envelope] = []

    async def publish(self, envelope: Envelope) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.confirmed.append(envelope)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/intake.db"
        return
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[tuple[ReportIntake, FlakyBroker]]:
    engine = make_engine(database_url)
    registry = ReportRegistry(engine)
    await registry.create_schema()
    directory = load_directory(CONFIG)
    broker = FlakyBroker()
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    yield ReportIntake(lambda: directory, sealer, registry, broker), broker  # type: ignore[arg-type]
    await engine.dispose()


def reports() -> tuple[CaseReport, CaseReport]:
    body = a_case_report_body()
    corrected = {**body, "victims": [a_victim(age_years=16)]}
    return CaseReport.model_validate(body), CaseReport.model_validate(corrected)


async def test_a_corrected_report_is_accepted_after_the_broker_certainly_refused_the_first(
    intake: tuple[ReportIntake, FlakyBroker],
) -> None:
    service, broker = intake
    first, corrected = reports()
    broker.failures = [DeliveryError(None, Basic.Nack(delivery_tag=1))]

    with pytest.raises(IntakeUnavailableError):
        await service.accept(first)
    accepted = await service.accept(corrected)

    assert accepted.new
    assert len(broker.confirmed) == 1


@pytest.mark.parametrize(
    "unconfirmed",
    [TimeoutError(), AMQPConnectionError("connection lost before the confirm")],
    ids=["timed out", "connection lost"],
)
async def test_after_an_unconfirmed_publish_only_the_same_report_is_accepted(
    intake: tuple[ReportIntake, FlakyBroker], unconfirmed: Exception
) -> None:
    service, broker = intake
    first, corrected = reports()
    broker.failures = [unconfirmed]

    with pytest.raises(IntakeUnavailableError):
        await service.accept(first)
    with pytest.raises(UncertainReportError):
        await service.accept(corrected)
    again = await service.accept(first)

    assert not again.new
    assert len(broker.confirmed) == 1
    with pytest.raises(ReportConflictError):
        await service.accept(corrected)


async def test_the_same_report_twice_is_published_under_one_message_id(
    intake: tuple[ReportIntake, FlakyBroker],
) -> None:
    service, broker = intake
    first, _ = reports()

    one = await service.accept(first)
    two = await service.accept(first)

    assert one.case_id == two.case_id
    assert len({envelope.message_id for envelope in broker.confirmed}) == 1


async def test_of_two_different_reports_of_one_new_case_at_once_only_one_is_accepted(
    intake: tuple[ReportIntake, FlakyBroker],
) -> None:
    service, broker = intake
    first, corrected = reports()

    outcomes = await asyncio.gather(service.accept(first), service.accept(corrected), return_exceptions=True)

    # Refused as a conflict, or as uncertain while the first one's publish is not yet confirmed.
    refused = [outcome for outcome in outcomes if isinstance(outcome, ReportConflictError | UncertainReportError)]
    assert len(refused) == 1
    assert len(broker.confirmed) == 1


async def test_a_claim_released_between_the_insert_and_the_read_of_a_new_report_leaves_the_case_to_it() -> None:
    # Only PostgreSQL lets another connection write between the two statements: SQLite's claim holds the write lock.
    async with fresh_database() as url:
        engine, other = make_engine(url), make_engine(url)
        try:
            registry, earlier = ReportRegistry(engine), ReportRegistry(other)
            await registry.create_schema()
            case_id = uuid.uuid4()
            await earlier.claim(case_id, "first", reporting_agency="polda-kalbar")

            released: list[bool] = []

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def release_the_earlier_claim(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
                # The earlier report's publish certainly failed, just after this claim's insert found its row.
                if statement.startswith("SELECT intake_claims.fingerprint") and not released:
                    released.append(True)
                    await_(earlier.release(case_id, "first"))

            claim = await registry.claim(case_id, "second", reporting_agency="polda-kalbar")
        finally:
            await engine.dispose()
            await other.dispose()

    assert released
    assert claim is Claim.NEW


async def test_a_report_the_broker_confirmed_keeps_its_case_though_a_refused_copy_let_it_go(
    intake: tuple[ReportIntake, FlakyBroker],
) -> None:
    """Two copies of one report at once: the broker refuses one, which releases the claim, and confirms the other,
    which must own the case again, or a corrected report would be taken as a new case the broker already has."""
    service, broker = intake
    first, corrected = reports()
    broker.failures = [DeliveryError(None, Basic.Nack(delivery_tag=1))]

    outcomes = await asyncio.gather(service.accept(first), service.accept(first), return_exceptions=True)

    assert sum(isinstance(outcome, IntakeUnavailableError) for outcome in outcomes) == 1
    assert len(broker.confirmed) == 1
    with pytest.raises(ReportConflictError):
        await service.accept(corrected)


async def test_an_intake_database_from_before_numbered_amendments_gains_the_column_at_start(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/old.db")
    case_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE TABLE intake_claims (case_id VARCHAR(36) PRIMARY KEY, reporting_agency VARCHAR(60) NOT NULL, "
            "fingerprint VARCHAR(64) NOT NULL, confirmed BOOLEAN NOT NULL, claimed_at DATETIME NOT NULL)"
        )
        await connection.exec_driver_sql(
            "INSERT INTO intake_claims VALUES (?, 'polres-bengkayang', 'f1', 1, '2026-11-30 01:00:00')", (str(case_id),)
        )
    registry = ReportRegistry(engine)

    await registry.create_schema()

    owner = await registry.owner(case_id)
    await engine.dispose()
    assert owner is not None
    assert (owner.fingerprint, owner.amendments) == ("f1", 0)


async def test_amendments_confirmed_out_of_order_never_take_the_case_s_number_back(database_url: str) -> None:
    engine = make_engine(database_url)
    registry = ReportRegistry(engine)
    await registry.create_schema()
    case_id = uuid.uuid4()
    await registry.claim(case_id, "report", reporting_agency="polres-bengkayang")
    await registry.confirm(case_id, "report", reporting_agency="polres-bengkayang")

    await registry.amend(case_id, "second", number=2)
    await registry.amend(case_id, "first", number=1)

    owner = await registry.owner(case_id)
    await engine.dispose()
    assert owner is not None
    assert (owner.fingerprint, owner.amendments) == ("first", 2)
