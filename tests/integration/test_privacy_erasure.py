"""Victim identity is erased on request and after the retention period; the case's facts and timeline stay,
and each erasure is on the audit trail."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.util import await_

from services.intake.reports import ReportIntake, fingerprint_of
from services.referral.audit import AuditKeys
from services.referral.ledger import Ledger, LedgerTx
from services.referral.lifecycle import Reply
from services.referral.metrics import retention_gauges
from services.referral.operations import Operations
from services.referral.privacy import Privacy
from services.referral.referrals import Referrals, ReplyCommand
from shared.contracts.cases import CaseAmended, CaseReport, CaseReported, CaseWithdrawn, WithdrawalReason
from shared.database import make_engine
from shared.directory import Directory, Retention, load_directory
from shared.ids import case_id_for
from shared.observability import Metrics
from shared.sealing import IdentitySealer, load_audit_keys, load_sealer
from shared.settings import Settings
from tests.builders import a_case_report, a_case_report_body, a_victim
from tests.integration.test_audit_trail import (
    A_GIRL,
    A_WOMAN_BACK_FROM_MALAYSIA,
    audit_rows,
    case_reported,
    intact,
    postgres_database,
    read_referral,
    referred_case,
    rujukan,
)
from tests.integration.test_ops_dead_letters import an_invalid_report, listed
from tests.rabbit import BrokerClient
from tests.system import CONFIG, System, WebhookSink, delivered_everywhere, directory_for, eventually, settings_for

pytestmark = pytest.mark.rabbit

ON_REQUEST = ("--reason", "permintaan korban", "--by", "ops-rina")
AN_ADULT_MAN = a_victim(victim_ref="V2", sex="male", age_years=40, full_name="Andi Wijaya")
AUDIT_KEYS = AuditKeys("a1", {"a1": os.urandom(32)})


def case_reported_of(
    sealer: IdentitySealer, directory: Directory, victims: list[dict[str, Any]], *, like: CaseReported | None = None
) -> CaseReported:
    """A case of these victims; ``like`` an earlier report of it, for the case as an amendment makes it now."""
    numbered = {"police_report_number": like.police_report_number} if like else {}
    report = a_case_report(victims=victims, **numbered)
    intake = ReportIntake(lambda: directory, sealer, None, None)  # type: ignore[arg-type]
    return intake._case_reported(report, case_id_for(report.reporting_agency, report.police_report_number),
                                 fingerprint_of(report))  # fmt: skip


def said(output: str) -> str:
    """What the command printed for the operator, without its log lines."""
    return "".join(line for line in output.splitlines(keepends=True) if not line.startswith("{"))


def erased(referral: dict[str, Any]) -> bool:
    return all(set(victim["identity"]) == {"erased_at"} for victim in referral["victims"])


async def test_an_erased_case_still_answers_with_its_facts_and_identity_marked_erased(system: System) -> None:
    case_id, legs = await referred_case(system, [A_GIRL, A_WOMAN_BACK_FROM_MALAYSIA])
    await read_referral(system, legs["bp3mi-kalbar"], "bp3mi-kalbar")
    url = system.settings.database_url

    amqp_url = str(system.settings.amqp_url)
    done = await rujukan("privacy", "erase", case_id, *ON_REQUEST, database_url=url, amqp_url=amqp_url)
    again = await rujukan("privacy", "erase", case_id, *ON_REQUEST, database_url=url, amqp_url=amqp_url)

    assert done == (0, f"case {case_id}: identity erased\ndead letters cleared of an erased identity: 0\n")
    assert again == (
        0,
        f"case {case_id}: identity was already erased\ndead letters cleared of an erased identity: 0\n",
    )
    after = await read_referral(system, legs["bp3mi-kalbar"], "bp3mi-kalbar")
    assert erased(after)
    assert [(v["victim_ref"], v["destination_country"]) for v in after["victims"]] == [("V2", "MY")]
    timeline = (await system.case(case_id)).json()["timeline"]
    [erasure] = [e for e in timeline if e["event"] == "identity_erased"]
    assert erasure["detail"] == {"reason": "permintaan korban", "by": "ops-rina"}
    assert any(e["event"] == "case_reported" for e in timeline)
    rows = await audit_rows(url)
    assert [(r.entry.action, r.entry.actor, r.entry.officer) for r in rows[1:]] == [
        ("case_erased", "operator", "ops-rina")
    ]
    assert intact(rows, load_audit_keys(system.settings))
    with sqlite3.connect(url.removeprefix("sqlite+aiosqlite:///")) as db:
        [(identity,)] = db.execute("SELECT identity FROM cases WHERE case_id = ?", (case_id,)).fetchall()
    assert identity == '{"erased": true}'


# Dead letters that still hold an erased identity.


async def a_reported_case(system: System) -> tuple[str, dict[str, Any]]:
    body = a_case_report_body(victims=[A_GIRL])
    response = await system.report(body)
    assert response.status_code == 202
    return (await system.case_when(response.json()["case_id"], delivered_everywhere))["case_id"], body


async def a_refused_correction(broker: BrokerClient, body: dict[str, Any]) -> str:
    """Intake refuses it (an impossible age) and keeps it, sealed, in intake.reports.dead: the victim's name and
    NIK with it."""
    wrong = {**body, "victims": [{**A_GIRL, "age_years": -3}]}
    return await broker.publish("rujukan.intake", "case.report", wrong, message_type="case.report.v1")


async def a_refused_amendment(system: System, broker: BrokerClient, body: dict[str, Any]) -> str:
    """An amendment adding a woman back from Malaysia, which intake accepted and the referral service refused (a
    major version it does not know): kept as it came, the sealed identity inside, in referral.cases.dead."""
    report = CaseReport.model_validate({**body, "victims": [A_GIRL, A_WOMAN_BACK_FROM_MALAYSIA]})
    intake = ReportIntake(lambda: system.directory, load_sealer(system.settings), None, None)  # type: ignore[arg-type]
    case_id = case_id_for(report.reporting_agency, report.police_report_number)
    event = CaseAmended(**intake._case_reported(report, case_id, fingerprint_of(report)).model_dump())
    return await broker.publish(
        "", "referral.cases", event.model_dump(mode="json"), message_type="case.amended.v9", correlation_id=str(case_id)
    )


async def test_erasing_a_case_removes_its_refused_reports_and_keeps_its_events_without_identity(
    system: System, broker: BrokerClient
) -> None:
    case_id, body = await a_reported_case(system)
    correction = await a_refused_correction(broker, body)
    amendment = await a_refused_amendment(system, broker, body)
    another_case = await an_invalid_report(broker)
    await listed(system, "intake.reports", 2)
    await listed(system, "referral.cases", 1)
    url = system.settings.database_url

    code, output = await rujukan(
        "privacy", "erase", case_id, *ON_REQUEST, database_url=url, amqp_url=str(system.settings.amqp_url)
    )

    assert (code, said(output)) == (
        0,
        f"case {case_id}: identity erased\ndead letters cleared of an erased identity: 2\n",
    )
    assert [letter["message_id"] for letter in await listed(system, "intake.reports", 0)] == [another_case]
    [kept] = await broker.take("referral.cases.dead")
    assert (kept.message_id, kept.type) == (amendment, "case.amended.v9")
    amended = CaseAmended.model_validate_json(kept.body)
    nothing = {"victims": {}, "summary": "", "contact_officer": None}
    assert load_sealer(system.settings).open(amended.identity, context=amended.case_id.bytes) == nothing
    assert [victim.victim_ref for victim in amended.victims] == ["V1", "V2"]
    settled = [row.entry for row in await audit_rows(url) if row.entry.action.startswith("dlq_")]
    assert sorted((e.action, str(e.case_id), e.actor, e.fields[1]) for e in settled) == [
        ("dlq_erased", case_id, "ops-rina", f"message_id:{correction}"),
        ("dlq_identity_removed", case_id, "ops-rina", f"message_id:{amendment}"),
    ]
    assert intact(await audit_rows(url), load_audit_keys(system.settings))


async def test_a_dead_letter_holding_an_identity_erased_before_it_died_goes_at_the_next_sweep(
    system: System, broker: BrokerClient
) -> None:
    case_id, body = await a_reported_case(system)
    amqp_url = str(system.settings.amqp_url)
    erased = await rujukan("privacy", "erase", case_id, *ON_REQUEST, database_url=system.settings.database_url,
                           amqp_url=amqp_url)  # fmt: skip
    assert erased == (0, f"case {case_id}: identity erased\ndead letters cleared of an erased identity: 0\n")
    late = await a_refused_correction(broker, body)
    [letter] = await listed(system, "intake.reports", 1)
    assert letter["message_id"] == late

    code, output = await rujukan("privacy", "sweep", database_url=system.settings.database_url, amqp_url=amqp_url)

    assert (code, said(output)) == (
        0,
        "cases past the retention period erased: 0\ndead letters cleared of an erased identity: 1\n",
    )
    assert await listed(system, "intake.reports", 0) == []


async def test_erasing_a_case_not_in_the_ledger_says_so(system: System) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"

    code, output = await rujukan("privacy", "erase", unknown, *ON_REQUEST, database_url=system.settings.database_url)

    assert code == 1
    assert "no case 00000000-0000-0000-0000-000000000000" in output


def a_directory_keeping_identity_one_second(tmp_path: Path) -> Path:
    """The shipped directory with a retention period a test can wait out."""
    raw = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    raw["retention"] = {"identity_after_closed": "1s"}
    config = tmp_path / "retention.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return config


async def test_the_retention_sweep_erases_a_withdrawn_case_and_spares_an_open_one(
    system: System, tmp_path: Path
) -> None:
    config = a_directory_keeping_identity_one_second(tmp_path)
    closed_id, closed_legs = await referred_case(system, [A_GIRL])
    _, open_legs = await referred_case(system, [A_GIRL])
    withdrawn = await system.http.post(
        system.url("intake", f"/v1/cases/{closed_id}/withdraw"),
        json={"reason": "reported_in_error"},
        headers=system.token("polres-bengkayang"),
    )
    assert withdrawn.status_code == 202
    await system.case_when(closed_id, lambda case: all(leg["status"] == "cancelled" for leg in case["referrals"]))
    await asyncio.sleep(1.1)

    code, output = await rujukan(
        "privacy", "sweep", database_url=system.settings.database_url, config=config,
        amqp_url=str(system.settings.amqp_url),
    )  # fmt: skip

    assert (code, output) == (
        0,
        "cases past the retention period erased: 1\ndead letters cleared of an erased identity: 0\n",
    )
    assert erased(await read_referral(system, closed_legs["dinsos-bengkayang"], "dinsos-bengkayang"))
    still = await read_referral(system, open_legs["dinsos-bengkayang"], "dinsos-bengkayang")
    assert still["victims"][0]["identity"]["full_name"] == "Siti Aminah"
    [erasure] = [r for r in await audit_rows(system.settings.database_url) if r.entry.action == "identity_erased"]
    assert (str(erasure.entry.case_id), erasure.entry.actor) == (closed_id, "rujukan")


async def test_operators_can_list_whom_to_ask_about_each_case_a_referral_left_open_keeps_past_retention(
    system: System, tmp_path: Path
) -> None:
    config = a_directory_keeping_identity_one_second(tmp_path)
    case_id, legs = await referred_case(system, [A_GIRL])
    await asyncio.sleep(1.1)

    code, output = await rujukan("privacy", "held", database_url=system.settings.database_url, config=config)

    case = (await system.case(case_id)).json()
    heading, *rows = said(output).splitlines()
    assert (code, heading) == (0, "cases keeping identity past the retention period because a referral is open: 1")
    [row] = rows
    assert row.split()[:2] == [case["case_code"], case_id]
    assert row.split("open: ")[1] == ", ".join(f"{agency} delivered" for agency in sorted(legs))


# The period itself, with the ledger's clock moved instead of waiting a year.

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path}/rujukan.db"
        else:
            url = await stack.enter_async_context(contextlib.asynccontextmanager(postgres_database)())
        engine = make_engine(url)
        stack.push_async_callback(engine.dispose)
        ledger = Ledger(engine, audit_keys=AUDIT_KEYS)
        await ledger.migrate()
        yield ledger


async def withdrawn_case(referrals: Referrals, sealer: IdentitySealer, directory: Directory) -> CaseReported:
    event = case_reported(sealer, directory)
    await referrals.open_case(event, message_id=f"open-{event.case_id}")
    withdrawal = CaseWithdrawn(
        case_id=event.case_id,
        reporting_agency=event.reporting_agency,
        reason=WithdrawalReason.DUPLICATE,
        withdrawn_at=referrals.now(),
    )
    await referrals.withdraw_case(withdrawal, message_id=f"withdraw-{event.case_id}")
    return event


async def test_identity_is_kept_for_the_period_after_the_last_leg_closed_and_erased_after(ledger: Ledger) -> None:
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    clock = Clock()
    referrals = Referrals(ledger, lambda: directory, sealer, clock=clock)
    privacy = Privacy(ledger, lambda: directory, clock=clock)
    old = await withdrawn_case(referrals, sealer, directory)
    clock.now = T0 + timedelta(days=30)
    recent = await withdrawn_case(referrals, sealer, directory)
    still_open = case_reported(sealer, directory)
    await referrals.open_case(still_open, message_id="open-still")
    never_referred = case_reported(sealer, directory)
    await ledger.run(LedgerTx.add_case, never_referred, T0)

    clock.now = T0 + timedelta(days=365, minutes=-1)
    before = await privacy.sweep()
    clock.now = T0 + timedelta(days=365, minutes=1)
    after = await privacy.sweep(batch=1)
    clock.now = T0 + timedelta(days=3650)
    much_later = await privacy.sweep()

    assert (before, after, much_later) == (0, 2, 1)
    cases = [await ledger.run(LedgerTx.case, event.case_id) for event in (old, recent, still_open, never_referred)]
    assert [case is not None and case.identity is None for case in cases] == [True, True, False, True]
    rows = [row async for row in ledger.audit_rows()]
    assert sorted((r.entry.action, r.entry.case_id) for r in rows[:2]) == sorted(
        [("identity_erased", old.case_id), ("identity_erased", never_referred.case_id)]
    )
    assert (rows[2].entry.action, rows[2].entry.case_id) == ("identity_erased", recent.case_id)
    assert len(rows) == 3
    assert intact(rows, AUDIT_KEYS.keys)


async def test_a_case_left_open_loses_its_identity_once_nothing_happened_on_it_for_the_idle_period(
    ledger: Ledger,
) -> None:
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    shipped = load_directory(CONFIG)
    retention = Retention(identity_after_closed=timedelta(days=365), identity_after_idle=timedelta(days=730))
    directory = shipped.model_copy(update={"retention": retention})
    clock = Clock()
    referrals = Referrals(ledger, lambda: directory, sealer, clock=clock)
    privacy = Privacy(ledger, lambda: directory, clock=clock)
    quiet, busy = case_reported(sealer, directory), case_reported(sealer, directory)
    for event in (quiet, busy):
        await referrals.open_case(event, message_id=f"open-{event.case_id}")
    clock.now = T0 + timedelta(days=400)
    leg = (await referrals.case_view(busy.case_id, agency_id=busy.reporting_agency)).referrals[0]
    await referrals.reply(ReplyCommand(leg.referral_id, leg.agency_id, Reply.ACKNOWLEDGED, via="http"))

    clock.now = T0 + timedelta(days=730, minutes=-1)
    before = await privacy.sweep()
    clock.now = T0 + timedelta(days=730, minutes=1)
    after_the_quiet_one = await privacy.sweep()
    clock.now = T0 + timedelta(days=400 + 730, minutes=1)
    after_the_busy_one = await privacy.sweep()

    assert (before, after_the_quiet_one, after_the_busy_one) == (0, 1, 1)
    for event in (quiet, busy):
        case = await ledger.run(LedgerTx.case, event.case_id)
        assert case is not None
        assert case.identity is None
    [erasure, *_] = [e for e in await ledger.run(LedgerTx.timeline_of, quiet.case_id) if e.event == "identity_erased"]
    assert erasure.detail["reason"] == "retention period without activity, a referral still open"


async def test_operators_are_shown_how_many_cases_a_referral_left_open_keeps_past_the_retention_period(
    ledger: Ledger,
) -> None:
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    clock = Clock()
    referrals = Referrals(ledger, lambda: directory, sealer, clock=clock)
    left_open, erased_on_request = case_reported(sealer, directory), case_reported(sealer, directory)
    for event in (left_open, erased_on_request):
        await referrals.open_case(event, message_id=f"open-{event.case_id}")
    await withdrawn_case(referrals, sealer, directory)
    await Privacy(ledger, lambda: directory, clock=clock).erase(erased_on_request.case_id, operator="op", reason="r")

    bounded = directory.model_copy(
        update={
            "retention": Retention(identity_after_closed=timedelta(days=365), identity_after_idle=timedelta(days=730))
        }
    )

    async def held_open(days: int, directory: Directory = directory) -> float:
        clock.now = T0 + timedelta(days=days)
        metrics = Metrics(CollectorRegistry())
        metrics.add(retention_gauges(ledger.engine, lambda: directory, clock))
        [family] = text_string_to_metric_families((await metrics.exposition()).decode())
        [sample] = family.samples
        return sample.value

    assert (await held_open(364), await held_open(366)) == (0, 1)
    # Where the directory bounds such cases, only one the sweep has not erased by that bound counts.
    assert (await held_open(729, bounded), await held_open(731, bounded)) == (0, 1)


async def test_the_running_referral_service_erases_a_closed_case_past_its_retention_by_itself(
    amqp_url: str, sink: WebhookSink, tmp_path: Path
) -> None:
    directory = directory_for(sink)
    sink.directory = directory
    directory = directory.model_copy(update={"retention": Retention.model_validate({"identity_after_closed": "1s"})})
    settings = settings_for(amqp_url, tmp_path, retention_sweep_seconds=0.3)
    system = System(settings, directory, sink, ("intake", "referral", "notifier"))
    await system.start()
    try:
        case_id, legs = await referred_case(system, [A_GIRL])
        withdrawn = await system.http.post(
            system.url("intake", f"/v1/cases/{case_id}/withdraw"),
            json={"reason": "reported_in_error"},
            headers=system.token("polres-bengkayang"),
        )
        assert withdrawn.status_code == 202

        async def identity_gone() -> bool:
            return erased(await read_referral(system, legs["dinsos-bengkayang"], "dinsos-bengkayang"))

        await eventually(identity_gone, timeout=15)
    finally:
        await system.stop()


async def test_an_amendment_sent_after_an_erasure_does_not_bring_the_identity_back(ledger: Ledger) -> None:
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    referrals = Referrals(ledger, lambda: directory, sealer, clock=Clock())
    event = case_reported(sealer, directory)
    await referrals.open_case(event, message_id="open")
    await Privacy(ledger, lambda: directory, clock=Clock()).erase(event.case_id, operator="ops", reason="permintaan")
    amended = event.model_copy(update={"fingerprint": "f" * 64, "regency_code": "61.01"})

    await referrals.amend_case(CaseAmended(**amended.model_dump()), message_id="amended")

    case = await ledger.run(LedgerTx.case, event.case_id)
    assert case is not None
    assert case.regency_code == "61.01"  # the facts were amended
    assert case.identity is None
    assert case.identity_erased_at is not None


async def test_a_closed_case_an_amendment_reopens_while_the_sweep_looks_keeps_its_identity() -> None:
    """Found by review: on PostgreSQL the sweep decided a case was closed without its lock, then erased it under the
    lock; an amendment committed in between, opening a leg to a new agency, left that agency reading 'erased' for
    victims it had never seen. SQLite runs one transaction at a time, so only PostgreSQL can interleave them."""
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    clock = Clock()
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(contextlib.asynccontextmanager(postgres_database)())
        sweeping, amending = make_engine(url), make_engine(url)
        for engine in (sweeping, amending):
            stack.push_async_callback(engine.dispose)
        ledger = Ledger(sweeping, audit_keys=AUDIT_KEYS)
        await ledger.migrate()
        referrals = Referrals(ledger, lambda: directory, sealer, clock=clock)
        elsewhere = Referrals(Ledger(amending, audit_keys=AUDIT_KEYS), lambda: directory, sealer, clock=clock)
        event = case_reported_of(sealer, directory, [AN_ADULT_MAN])
        await referrals.open_case(event, message_id="open")
        [leg] = (await referrals.case_view(event.case_id, agency_id=event.reporting_agency)).referrals
        await referrals.reply(
            ReplyCommand(leg.referral_id, leg.agency_id, Reply.DECLINED, via="http", detail={"reason": "not_eligible"})
        )
        clock.now = T0 + timedelta(days=400)
        amended = case_reported_of(sealer, directory, [AN_ADULT_MAN, A_GIRL], like=event)
        reopened: list[bool] = []

        @sqlalchemy_event.listens_for(sweeping.sync_engine, "before_cursor_execute")
        def amend_before_the_case_is_locked(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "FROM cases" in statement and "FOR NO KEY UPDATE" in statement and not reopened:
                reopened.append(True)
                await_(elsewhere.amend_case(CaseAmended(**amended.model_dump()), message_id="amended"))

        erased_count = await Privacy(ledger, lambda: directory, clock=clock).sweep()

        case = await ledger.run(LedgerTx.case, event.case_id)
    assert reopened
    assert erased_count == 0
    assert case is not None
    assert case.identity is not None


async def test_erasure_blanks_the_notes_and_free_text_reasons_the_police_and_operators_read_on_the_timeline(
    ledger: Ledger, tmp_path: Path
) -> None:
    """People type names into notes: once the identity is erased, no note of the case may still name the victim."""
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    directory = load_directory(CONFIG)
    referrals = Referrals(ledger, lambda: directory, sealer, clock=Clock())
    event = case_reported(sealer, directory)
    await referrals.open_case(event, message_id="open")
    legs = (await referrals.case_view(event.case_id, agency_id=event.reporting_agency)).referrals
    taken, declined, mistaken = legs[0], legs[1], legs[2]
    for reply, note, detail in [
        (Reply.ACCEPTED, "Siti Aminah dijemput di terminal", {}),
        (Reply.HELD, None, {"reason": "Siti Aminah dirawat di RS Bengkayang"}),
    ]:
        command = ReplyCommand(taken.referral_id, taken.agency_id, reply, via="http", officer="ani", note=note,
                               detail=detail)  # fmt: skip
        await referrals.reply(command)
    await referrals.reply(
        ReplyCommand(declined.referral_id, declined.agency_id, Reply.DECLINED, via="http",
                     note="Siti Aminah sudah ditangani keluarga", detail={"reason": "not_eligible"})
    )  # fmt: skip
    await referrals.enter_in_error(mistaken.referral_id, agency_id=event.reporting_agency, note="Siti Aminah dewasa")
    withdrawal = CaseWithdrawn(case_id=event.case_id, reporting_agency=event.reporting_agency,
                               reason=WithdrawalReason.DUPLICATE,
                               note=sealer.seal({"note": "laporan ganda Siti Aminah"}, context=event.case_id.bytes),
                               withdrawn_at=referrals.now())  # fmt: skip
    await referrals.withdraw_case(withdrawal, message_id="withdraw")
    before = (await referrals.case_view(event.case_id, agency_id=event.reporting_agency)).timeline

    await Privacy(ledger, lambda: directory, clock=Clock()).erase(event.case_id, operator="ops", reason="permintaan")

    police = (await referrals.case_view(event.case_id, agency_id=event.reporting_agency)).timeline
    operations = Operations(ledger, lambda: directory, Settings(data_dir=tmp_path), sealer)
    operator = await operations.find_case(str(event.case_id))
    assert operator is not None
    assert "Siti" not in repr(police)
    assert "Siti" not in repr(operator.timeline)
    details = {(entry.event, entry.referral_id): entry.detail for entry in police}
    assert details["accepted", taken.referral_id] == {"officer": "ani", "note": "(erased)", "via": "http",
                                                      "on_time": True}  # fmt: skip
    assert details["held", taken.referral_id]["reason"] == "(erased)"
    assert details["declined", declined.referral_id]["reason"] == "not_eligible"  # a code stays
    assert details["entered_in_error", mistaken.referral_id] == {"note": "(erased)", "was": "requested"}
    assert details["case_withdrawn", None] == {"reason": "duplicate", "note": "(erased)"}
    assert details["identity_erased", None] == {"reason": "permintaan", "by": "ops"}
    # Every entry stays, with what happened, when, to which leg and by whom; the erasure is the last.
    assert [(e.event, e.at, e.referral_id, e.actor) for e in police[:-1]] == [
        (e.event, e.at, e.referral_id, e.actor) for e in before
    ]
    assert police[-1].event == "identity_erased"
