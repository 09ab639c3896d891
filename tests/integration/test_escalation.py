"""Overdue referrals escalate level by level, once each, and stop the moment someone takes them.

The referral service's parts (Referrals, the deadline sweeper, the outbox relay) run in-process against a fresh
vhost of the real broker; the clock is the test's, so an hour passes without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import update
from structlog.testing import capture_logs

from services.intake.reports import ReportIntake, fingerprint_of
from services.referral.api import ERROR_ANSWERS, build_api
from services.referral.audit import AuditKeys
from services.referral.deadlines import DeadlineSweeper
from services.referral.ledger import Ledger, Referral, TimelineEntry, cases
from services.referral.lifecycle import Reply, Status
from services.referral.outbox import OutboxRelay
from services.referral.referrals import Referrals, ReplyCommand
from shared.broker import MessagePublisher, make_broker
from shared.contracts.cases import CaseAmended, CaseReport, CaseReported, CaseWithdrawn, WithdrawalReason
from shared.contracts.referrals import ReferralDelivered, ReferralDeliveryFailed
from shared.database import make_engine
from shared.directory import Directory, load_directory
from shared.http import agency_auth, install_error_handlers
from shared.ids import case_id_for
from shared.sealing import IdentitySealer
from shared.topology import build_topology
from tests.builders import a_case_report, a_victim
from tests.rabbit import BrokerClient
from tests.system import CONFIG, eventually, settings_for

pytestmark = pytest.mark.rabbit

START = datetime(2026, 9, 2, 10, 0, tzinfo=UTC) - timedelta(hours=7)  # Wednesday 10:00 WIB
A_GIRL = a_victim(sex="female", age_years=15)
AN_ADULT_MAN = a_victim(sex="male", age_years=40, full_name="Andi Wijaya")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, **since_start: float) -> datetime:
        self.now = START + timedelta(**since_start)
        return self.now


@dataclass
class ReferralService:
    referrals: Referrals
    sweeper: DeadlineSweeper
    relay: OutboxRelay
    ledger: Ledger
    directory: Directory
    clock: Clock
    intake: ReportIntake

    def another_sweeper(self) -> DeadlineSweeper:
        """A sweeper as a restarted service (or a second replica) builds it: nothing but the ledger in common."""
        return DeadlineSweeper(self.ledger, lambda: self.directory, interval_seconds=60, clock=self.clock)

    async def open(self, *victims: dict[str, Any]) -> CaseReported:
        event = self._reported(a_case_report(victims=list(victims)))
        await self.referrals.open_case(event, message_id=f"reported:{event.case_id}")
        return event

    async def amend(self, case: CaseReported, *victims: dict[str, Any]) -> None:
        """The case as it now is: the same report, with these victims."""
        amended = self._reported(a_case_report(police_report_number=case.police_report_number, victims=list(victims)))
        await self.referrals.amend_case(
            CaseAmended(**amended.model_dump()), message_id=f"amended:{amended.fingerprint}"
        )

    def _reported(self, report: CaseReport) -> CaseReported:
        case_id = case_id_for(report.reporting_agency, report.police_report_number)
        return self.intake._case_reported(report, case_id, fingerprint_of(report))

    async def withdraw(self, case: CaseReported, reason: WithdrawalReason) -> None:
        """The reporter withdraws the case ten minutes after the start."""
        withdrawal = CaseWithdrawn(
            case_id=case.case_id,
            reporting_agency=case.reporting_agency,
            reason=reason,
            withdrawn_at=self.clock.at(minutes=10),
        )
        await self.referrals.withdraw_case(withdrawal, message_id=f"withdrawn:{case.case_id}")

    async def leg(self, case: CaseReported, agency_id: str) -> Referral:
        view = await self.referrals.case_view(case.case_id, agency_id=case.reporting_agency)
        [referral] = [r for r in view.referrals if r.agency_id == agency_id]
        return referral

    async def escalations(self, case: CaseReported, referral_id: UUID) -> list[TimelineEntry]:
        view = await self.referrals.case_view(case.case_id, agency_id=case.reporting_agency)
        return [e for e in view.timeline if e.event == "escalated" and e.referral_id == referral_id]

    async def acknowledge(self, referral: Referral, reply: Reply = Reply.ACKNOWLEDGED) -> None:
        await self.referrals.reply(
            ReplyCommand(referral_id=referral.referral_id, agency_id=referral.agency_id, reply=reply, via="http")
        )

    async def publish_outbox(self) -> None:
        while await self.relay.relay_once():
            pass


@pytest.fixture
async def service(amqp_url: str, tmp_path: Path) -> AsyncIterator[ReferralService]:
    settings = settings_for(amqp_url, tmp_path)
    directory = load_directory(CONFIG)
    broker = make_broker(settings, app_id="rujukan-referral")
    await broker.connect()
    await build_topology(directory, settings.retry_schedule).declare(broker)
    engine = make_engine(settings.database_url)
    ledger = Ledger(engine, audit_keys=AuditKeys("a1", {"a1": os.urandom(32)}))
    await ledger.migrate()
    clock = Clock(START)
    relay = OutboxRelay(engine, MessagePublisher(broker, timeout=5), poll_seconds=60)
    sweeper = DeadlineSweeper(ledger, lambda: directory, interval_seconds=60, on_commit=relay.wake, clock=clock)
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    referrals = Referrals(
        ledger, lambda: directory, sealer, on_commit=relay.wake, on_deadline_due=sweeper.wake, clock=clock
    )
    intake = ReportIntake(lambda: directory, sealer, None, None)  # type: ignore[arg-type]
    yield ReferralService(referrals, sweeper, relay, ledger, directory, clock, intake)
    await broker.stop()
    await engine.dispose()


@contextlib.asynccontextmanager
async def running(part: DeadlineSweeper | OutboxRelay) -> AsyncIterator[None]:
    """The sweeper's or the relay's own loop, as the service runs it (their intervals here are long: only a wake
    makes them work)."""
    task = asyncio.create_task(part.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def escalated_messages(broker: BrokerClient, agency_id: str, count: int) -> list[dict[str, Any]]:
    inbox = await broker.drain(f"agency.{agency_id}.inbox", at_least=count + 1)
    escalated = [json.loads(m.body) for m in inbox if m.type == "referral.escalated.v1"]
    assert len(escalated) == count
    return escalated


async def test_an_unacknowledged_urgent_child_referral_escalates_through_levels_1_2_3_once_each(
    service: ReferralService, broker: BrokerClient
) -> None:
    case = await service.open(A_GIRL)
    child = await service.leg(case, "uptd-ppa-kalbar")

    fired = []
    for minutes in (59, 61, 62, 91, 92, 121, 122, 150):
        now = service.clock.at(minutes=minutes)
        # The running sweeper, and one as after a restart, sweep each moment.
        fired.append(await service.sweeper.sweep(now) + await service.another_sweeper().sweep(now))
    await service.publish_outbox()

    assert fired == [0, 1, 0, 1, 0, 1, 0, 0]
    entries = await service.escalations(case, child.referral_id)
    assert [(e.detail["level"], e.detail["deadline"], e.actor) for e in entries] == [
        (1, "acknowledge", "rujukan"),
        (2, "acknowledge", "rujukan"),
        (3, "acknowledge", "rujukan"),
    ]
    messages = await escalated_messages(broker, "uptd-ppa-kalbar", 3)
    assert [(m["level"], m["escalated_to"]) for m in messages] == [(1, None), (2, None), (3, None)]
    assert {m["ack_code"] for m in messages} == {child.ack_code}
    assert {datetime.fromisoformat(m["due_at"]) for m in messages} == {child.ack_due_at}
    assert (await service.leg(case, "uptd-ppa-kalbar")).escalation_level == 3


async def test_levels_missed_while_down_fire_an_interval_apart_and_level_3_names_the_provincial_unit(
    service: ReferralService, broker: BrokerClient
) -> None:
    case = await service.open(AN_ADULT_MAN)
    social = await service.leg(case, "dinsos-bengkayang")

    # Thursday 18:01 WIB, long past the deadline, swept only now (the service was down): the missed levels
    # do not all fire at once; each next one still gets its four hours to be answered.
    sweeper = service.another_sweeper()
    fired = [await sweeper.sweep(service.clock.at(days=1, hours=hours, minutes=1)) for hours in (8, 8, 11, 12, 16)]
    await service.publish_outbox()

    assert fired == [1, 0, 0, 1, 1]
    messages = await escalated_messages(broker, "dinsos-bengkayang", 3)
    assert [(m["level"], m["escalated_to"]) for m in messages] == [(1, None), (2, None), (3, "dinsos-kalbar")]
    entries = await service.escalations(case, social.referral_id)
    assert entries[-1].detail["escalated_to"] == "dinsos-kalbar"


async def test_an_acknowledgement_between_level_1_and_level_2_stops_the_rest(
    service: ReferralService, broker: BrokerClient
) -> None:
    case = await service.open(A_GIRL)
    child = await service.leg(case, "uptd-ppa-kalbar")
    await service.sweeper.sweep(service.clock.at(minutes=61))

    service.clock.at(minutes=75)
    await service.acknowledge(child)
    later = [await service.sweeper.sweep(service.clock.at(minutes=m)) for m in (91, 121, 180)]
    await service.sweeper.sweep(service.clock.at(days=30))  # every other deadline of the case is long past
    await service.publish_outbox()

    assert later == [0, 0, 0]
    entries = await service.escalations(case, child.referral_id)
    assert [e.detail["level"] for e in entries if e.detail["deadline"] == "acknowledge"] == [1]
    to_notifier = await broker.drain("notifier.referrals", at_least=3)
    taken = [json.loads(m.body) for m in to_notifier if m.type == "referral.taken.v1"]
    assert [(t["referral_id"], t["status"]) for t in taken] == [(str(child.referral_id), "acknowledged")]


async def test_overdue_acceptance_escalates_until_the_agency_accepts(
    service: ReferralService, broker: BrokerClient
) -> None:
    case = await service.open(A_GIRL)
    child = await service.leg(case, "uptd-ppa-kalbar")
    service.clock.at(minutes=10)
    await service.acknowledge(child)

    fired_early = await service.sweeper.sweep(service.clock.at(hours=23, minutes=59))
    await service.sweeper.sweep(service.clock.at(hours=24, minutes=1))
    await service.acknowledge(child, Reply.ACCEPTED)
    await service.sweeper.sweep(service.clock.at(days=30))
    await service.publish_outbox()

    assert fired_early == 0
    entries = await service.escalations(case, child.referral_id)
    assert [(e.detail["level"], e.detail["deadline"]) for e in entries] == [(1, "accept")]
    [message] = await escalated_messages(broker, "uptd-ppa-kalbar", 1)
    assert message["deadline"] == "accept"
    assert message["reason"] == "not accepted in time"
    assert child.accept_due_at == START + timedelta(hours=24)


def delivered(referral: Referral, *, level: int = 0, nobody_on_duty: bool = False) -> ReferralDelivered:
    return ReferralDelivered(
        referral_id=referral.referral_id,
        case_id=referral.case_id,
        agency_id=referral.agency_id,
        channel="webhook",
        notification_id=f"n-{level}",
        attempts=1,
        delivered_at=START,
        recipient="agency" if level == 0 else "cadangan",
        level=level,
        nobody_on_duty=nobody_on_duty,
    )


async def test_nobody_on_duty_escalates_to_level_1_at_once_and_only_once(
    service: ReferralService, broker: BrokerClient
) -> None:
    case = await service.open(A_GIRL)
    child = await service.leg(case, "uptd-ppa-kalbar")

    async with running(service.sweeper):
        await service.referrals.record_delivery(delivered(child, nobody_on_duty=True), message_id="d-1")
        await eventually(lambda: _escalated(service, case, child, 1), timeout=10)
        await service.referrals.record_delivery(delivered(child, nobody_on_duty=True), message_id="d-2")
    fired_again = await service.sweeper.sweep(service.clock.at(minutes=5))
    next_level = await service.sweeper.sweep(service.clock.at(minutes=30))
    await service.publish_outbox()

    assert (fired_again, next_level) == (0, 1)
    [first, _] = await escalated_messages(broker, "uptd-ppa-kalbar", 2)
    assert (first["level"], first["reason"]) == (1, "nobody on duty")


async def test_a_failed_delivery_escalates_to_level_1_at_once(service: ReferralService, broker: BrokerClient) -> None:
    case = await service.open(A_GIRL)
    child = await service.leg(case, "uptd-ppa-kalbar")
    failed = ReferralDeliveryFailed(
        referral_id=child.referral_id,
        case_id=child.case_id,
        agency_id=child.agency_id,
        channel="webhook",
        notification_id="n-0",
        attempts=5,
        reason="HTTP 410",
        failed_at=START,
        history=("webhook: HTTP 410",),
    )

    async with running(service.sweeper):
        await service.referrals.record_delivery(failed, message_id="f-1")
        await eventually(lambda: _escalated(service, case, child, 1), timeout=10)
    # The backup officer got the escalation: that is no delivery of the referral to the agency.
    await service.referrals.record_delivery(delivered(child, level=1), message_id="d-1")
    await service.publish_outbox()

    assert (await service.leg(case, "uptd-ppa-kalbar")).status is Status.FAILED
    [message] = await escalated_messages(broker, "uptd-ppa-kalbar", 1)
    assert (message["level"], message["reason"]) == (1, "delivery failed: HTTP 410")


async def test_the_case_and_referral_views_show_the_escalation_level_and_what_is_overdue(
    service: ReferralService,
) -> None:
    case = await service.open(A_GIRL)
    child = await service.leg(case, "uptd-ppa-kalbar")
    await service.sweeper.sweep(service.clock.at(minutes=61))
    http = FastAPI()
    install_error_handlers(http, ERROR_ANSWERS)
    http.include_router(build_api(service.referrals, Depends(agency_auth(lambda: service.directory))))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=http), base_url="http://referral") as client:
        as_police = {"Authorization": "Bearer dev-polres-bengkayang"}
        as_uptd = {"Authorization": "Bearer dev-uptd-ppa-kalbar"}
        legs = {
            r["agency_id"]: r
            for r in (await client.get(f"/v1/cases/{case.case_id}", headers=as_police)).json()["referrals"]
        }
        referral = (await client.get(f"/v1/referrals/{child.referral_id}", headers=as_uptd)).json()

    assert {key: referral[key] for key in ("escalation_level", "ack_overdue", "accept_overdue")} == {
        "escalation_level": 1,
        "ack_overdue": True,
        "accept_overdue": False,
    }
    assert datetime.fromisoformat(referral["ack_due_at"]) == START + timedelta(hours=1)
    assert datetime.fromisoformat(referral["accept_due_at"]) == START + timedelta(hours=24)
    assert legs["uptd-ppa-kalbar"]["escalation_level"] == 1
    assert (legs["dinsos-bengkayang"]["escalation_level"], legs["dinsos-bengkayang"]["ack_overdue"]) == (0, False)


async def test_a_leg_widened_to_urgent_escalates_by_the_urgent_deadline(service: ReferralService) -> None:
    a_woman = a_victim(victim_ref="V1", sex="female", age_years=30)
    case = await service.open(a_woman)
    service.clock.at(hours=2)
    await service.amend(case, a_woman, a_victim(victim_ref="V2", sex="female", age_years=15))

    before = await service.sweeper.sweep(service.clock.at(hours=2, minutes=59))
    after = await service.sweeper.sweep(service.clock.at(hours=3, minutes=1))

    widened = await service.leg(case, "uptd-ppa-kalbar")
    assert widened.ack_due_at == START + timedelta(hours=3)
    assert widened.accept_due_at == START + timedelta(hours=26)
    assert (before, after) == (0, 1)
    [entry] = await service.escalations(case, widened.referral_id)
    assert entry.detail["level"] == 1


async def test_a_withdrawn_case_never_escalates(service: ReferralService) -> None:
    case = await service.open(A_GIRL)
    await service.withdraw(case, WithdrawalReason.REPORTED_IN_ERROR)

    assert await service.sweeper.sweep(service.clock.at(days=30)) == 0


async def test_the_reporter_hears_at_once_that_an_amendment_after_the_withdrawal_was_refused(
    service: ReferralService, broker: BrokerClient
) -> None:
    receipts = "agency.polres-bengkayang.receipts"
    # The relay polls only once a minute here: what leaves sooner leaves because a commit woke it.
    async with running(service.relay):
        case = await service.open(AN_ADULT_MAN)
        await service.withdraw(case, WithdrawalReason.NO_LONGER_NEEDED)
        await broker.drain(receipts, at_least=2, timeout=10)

        await service.amend(case, AN_ADULT_MAN, a_victim(victim_ref="V2", migrant_worker_status="returned"))
        [receipt] = await broker.take(receipts, timeout=10)

    assert json.loads(receipt.body)["event"] == "rejected"


async def test_an_ack_code_is_never_given_again_while_awaited_or_within_a_week_of_its_issue(
    service: ReferralService, broker: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = iter([482193, 482193, 123456, 482193, 555555, 482193])
    monkeypatch.setattr("services.referral.ack_codes.secrets.randbelow", lambda _: next(draws))

    first = await service.leg(await service.open(AN_ADULT_MAN), "dinsos-bengkayang")
    second = await service.leg(await service.open(AN_ADULT_MAN), "dinsos-bengkayang")
    await service.acknowledge(first)
    # A late `TERIMA 482193` about the first referral must not land on a new one.
    third = await service.leg(await service.open(AN_ADULT_MAN), "dinsos-bengkayang")
    service.clock.at(days=8)
    fourth = await service.leg(await service.open(AN_ADULT_MAN), "dinsos-bengkayang")
    await service.publish_outbox()

    codes = (first.ack_code, second.ack_code, third.ack_code, fourth.ack_code)
    assert codes == ("482193", "123456", "555555", "482193")
    issued = [json.loads(m.body) for m in await broker.take("agency.dinsos-bengkayang.inbox", 4)]
    assert [m["ack_code"] for m in issued] == list(codes)


async def test_an_ack_code_answered_late_is_not_given_again_within_a_week_of_its_acknowledgement(
    service: ReferralService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: a code was held while awaited or for a week from its issue, so a referral acknowledged by
    link after eight days freed its code at once, and a backup officer's late `TERIMA` for it landed on the next."""
    draws = iter([482193, 482193, 123456])
    monkeypatch.setattr("services.referral.ack_codes.secrets.randbelow", lambda _: next(draws))

    first = await service.leg(await service.open(AN_ADULT_MAN), "dinsos-bengkayang")
    service.clock.at(days=8)
    await service.acknowledge(first)
    second = await service.leg(await service.open(AN_ADULT_MAN), "dinsos-bengkayang")

    assert (first.ack_code, second.ack_code) == ("482193", "123456")


async def _escalated(service: ReferralService, case: CaseReported, referral: Referral, count: int) -> bool:
    return len(await service.escalations(case, referral.referral_id)) == count


async def test_a_leg_whose_victims_an_amendment_removed_still_escalates_and_holds_up_no_other(
    service: ReferralService,
) -> None:
    first = await service.open(A_GIRL)
    await service.amend(first, a_victim(victim_ref="V2", sex="male", age_years=40, full_name="Andi Wijaya"))
    other = await service.open(A_GIRL)

    await service.sweeper.sweep(service.clock.at(minutes=61))

    for case in (first, other):
        child = await service.leg(case, "uptd-ppa-kalbar")
        assert [e.detail["level"] for e in await service.escalations(case, child.referral_id)] == [1]


@pytest.mark.parametrize(
    ("column", "stored", "error", "fields"),
    [
        ("exploitation_types", ["kerja paksa oleh Siti Aminah"], "ValueError", []),
        ("victims", [{"victim_ref": "V1", "sex": "female", "age_years": "lima belas, Siti Aminah"}], "ValidationError",
         ["age_years"]),
    ],
    ids=["unknown value", "invalid victim facts"],
)  # fmt: skip
async def test_an_escalation_that_fails_logs_the_error_type_and_field_paths_never_the_values(
    service: ReferralService, column: str, stored: list[Any], error: str, fields: list[str]
) -> None:
    """An error's text quotes the value it refused: stored victim facts, or what a police unit typed."""
    case = await service.open(A_GIRL)
    async with service.ledger.engine.begin() as connection:
        await connection.execute(update(cases).where(cases.c.case_id == str(case.case_id)).values({column: stored}))

    with capture_logs() as logs:
        await service.sweeper.sweep(service.clock.at(minutes=61))

    [failed] = [entry for entry in logs if entry["event"] == "escalation_failed"]
    assert "Siti" not in repr(failed)
    assert (failed["error"], failed["fields"]) == (error, fields)
