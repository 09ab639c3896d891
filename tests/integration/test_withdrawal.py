"""A police unit withdraws a case: every open leg is cancelled and each agency is told."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.intake.registry import ReportRegistry
from services.intake.reports import ReportIntake
from services.referral.ledger import Ledger
from services.referral.referrals import Referrals
from shared.broker import Envelope
from shared.contracts.cases import CaseReport, CaseReported, CaseWithdrawn, WithdrawalReason
from shared.database import make_engine
from shared.directory import load_directory
from shared.sealing import IdentitySealer
from tests.builders import a_case_report_body, a_victim, the_sample_victims
from tests.rabbit import BrokerClient
from tests.system import CONFIG, System, agency_deliveries, delivered_everywhere

pytestmark = pytest.mark.rabbit


async def withdraw(system: System, case_id: str, by: str = "polres-bengkayang", **body: Any) -> Any:
    return await system.http.post(
        system.url("intake", f"/v1/cases/{case_id}/withdraw"),
        json=body or {"reason": "reported_in_error"},
        headers=system.token(by),
    )


def cancelled_everywhere(case: dict[str, Any]) -> bool:
    return all(leg["status"] in ("cancelled", "completed") for leg in case["referrals"])


async def test_withdrawal_cancels_open_legs_tells_each_agency_and_spares_completed_ones(
    system: System, broker: BrokerClient
) -> None:
    body = a_case_report_body(victims=the_sample_victims())
    case_id = (await system.report(body)).json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    [bp3mi] = [leg["referral_id"] for leg in case["referrals"] if leg["agency_id"] == "bp3mi-kalbar"]
    for action, extra in (("accept", None), ("complete", {"outcome": "successful"})):
        url = system.url("referral", f"/v1/referrals/{bp3mi}/{action}")
        await system.http.post(url, json=extra, headers=system.token("bp3mi-kalbar"))

    response = await withdraw(system, case_id, reason="duplicate", note="dilaporkan dua kali")

    assert response.status_code == 202
    case = await system.case_when(case_id, cancelled_everywhere)
    statuses = {leg["agency_id"]: leg["status"] for leg in case["referrals"]}
    assert statuses == {"dinsos-bengkayang": "cancelled", "uptd-ppa-kalbar": "cancelled", "bp3mi-kalbar": "completed"}
    for agency_id in ("dinsos-bengkayang", "uptd-ppa-kalbar"):
        issued, cancelled = await broker.take(f"agency.{agency_id}.inbox", 2)
        assert (issued.type, cancelled.type) == ("referral.issued.v1", "referral.cancelled.v1")
    assert await broker.depth("agency.bp3mi-kalbar.inbox") == 1
    await system.case_when(case_id, lambda c: len(agency_deliveries(c)) == 5)
    told = {d.agency_id for d in system.sink.deliveries if d.payload["type"] == "referral.cancelled"}
    assert told == {"dinsos-bengkayang", "uptd-ppa-kalbar"}


async def test_only_the_reporting_police_unit_may_withdraw_and_another_unit_learns_nothing_of_the_case(
    system: System,
) -> None:
    case_id = (await system.report(a_case_report_body())).json()["case_id"]

    by_other = await withdraw(system, case_id, by="polres-sambas")
    unknown = await withdraw(system, str(uuid.uuid4()))
    read_by_other = await system.case(case_id, agency_id="polres-sambas")

    assert by_other.status_code == unknown.status_code == read_by_other.status_code == 404
    assert (await system.case(case_id)).status_code == 200


async def test_a_withdrawn_referral_cannot_be_accepted_any_more(system: System) -> None:
    case_id = (await system.report(a_case_report_body())).json()["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    await withdraw(system, case_id)
    await system.case_when(case_id, cancelled_everywhere)
    [social] = [leg["referral_id"] for leg in case["referrals"] if leg["agency_id"] == "dinsos-bengkayang"]

    response = await system.http.post(
        system.url("referral", f"/v1/referrals/{social}/accept"), headers=system.token("dinsos-bengkayang")
    )

    assert response.status_code == 409
    assert response.json()["status"] == "cancelled"


async def test_withdrawal_over_amqp_cancels_the_case(system: System, broker: BrokerClient) -> None:
    body = a_case_report_body()
    case_id = (await system.report(body)).json()["case_id"]
    await system.case_when(case_id, delivered_everywhere)

    await broker.publish(
        "rujukan.intake",
        "case.withdraw",
        {"police_report_number": body["police_report_number"], "reporting_agency": "polres-bengkayang",
         "reason": "no_longer_needed"},
        message_type="case.withdraw.v1",
    )  # fmt: skip

    case = await system.case_when(case_id, cancelled_everywhere)
    [withdrawn] = [e for e in case["timeline"] if e["event"] == "case_withdrawn"]
    assert withdrawn["detail"]["reason"] == "no_longer_needed"
    receipts = [json.loads(m.body) for m in await broker.take("agency.polres-bengkayang.receipts", 2)]
    assert {leg["status"] for leg in receipts[-1]["legs"]} == {"cancelled"}


async def test_an_amendment_after_the_withdrawal_refers_no_one_and_the_reporter_is_told(
    system: System, broker: BrokerClient
) -> None:
    body = a_case_report_body(victims=[a_victim(sex="male", age_years=40, full_name="Andi Wijaya")])
    case_id = (await system.report(body)).json()["case_id"]
    await system.case_when(case_id, delivered_everywhere)
    assert (await withdraw(system, case_id)).status_code == 202
    await system.case_when(case_id, cancelled_everywhere)

    a_returned_worker = a_victim(victim_ref="V2", age_years=30, migrant_worker_status="returned")
    amended = await system.http.post(
        system.url("intake", f"/v1/cases/{case_id}/amend"),
        json={**body, "victims": [*body["victims"], a_returned_worker]},
        headers=system.token("polres-bengkayang"),
    )

    assert amended.status_code == 202
    case = await system.case_when(case_id, lambda c: any(e["event"] == "amendment_refused" for e in c["timeline"]))
    assert [leg["agency_id"] for leg in case["referrals"]] == ["dinsos-bengkayang"]
    receipts = [json.loads(m.body) for m in await broker.drain("agency.polres-bengkayang.receipts", at_least=3)]
    assert [r["reason"] for r in receipts if r["event"] == "rejected"] == [
        f"case {case_id} was withdrawn; report it again to reopen it"
    ]


class RecordingPublisher:
    """Stands in for the broker: confirms every message and keeps it, as it would sit on the broker's disk."""

    def __init__(self) -> None:
        self.published: list[Envelope] = []

    async def publish(self, envelope: Envelope) -> None:
        self.published.append(envelope)


async def test_the_withdrawal_note_crosses_the_broker_sealed_and_reaches_the_timeline_opened(tmp_path: Path) -> None:
    """The note is free text that may name a victim: sealed like the case's identity and summary."""
    directory = load_directory(CONFIG)
    sealer = IdentitySealer({"k": os.urandom(32)}, "k")
    intake_engine, ledger_engine = (make_engine(f"sqlite+aiosqlite:///{tmp_path}/{n}.db") for n in ("in", "ref"))
    registry = ReportRegistry(intake_engine)
    await registry.create_schema()
    broker = RecordingPublisher()
    intake = ReportIntake(lambda: directory, sealer, registry, broker)  # type: ignore[arg-type]
    ledger = Ledger(ledger_engine)
    await ledger.migrate()
    referrals = Referrals(ledger, lambda: directory, sealer)
    try:
        accepted = await intake.accept(CaseReport.model_validate(a_case_report_body()))
        await intake.withdraw(accepted.case_id, agency_id="polres-bengkayang", reason=WithdrawalReason.DUPLICATE,
                              note="laporan ganda Siti Aminah")  # fmt: skip

        reported, withdrawn = broker.published
        assert b"Siti" not in withdrawn.body
        assert (withdrawn.message_type, withdrawn.routing_key) == ("case.withdrawn.v2", "case.withdrawn")
        await referrals.open_case(CaseReported.model_validate_json(reported.body), message_id=reported.message_id)
        await referrals.withdraw_case(CaseWithdrawn.model_validate_json(withdrawn.body), message_id="withdrawn")
        timeline = (await referrals.case_view(accepted.case_id, agency_id="polres-bengkayang")).timeline
    finally:
        await intake_engine.dispose()
        await ledger_engine.dispose()
    [entry] = [e for e in timeline if e.event == "case_withdrawn"]
    assert entry.detail == {"reason": "duplicate", "note": "laporan ganda Siti Aminah"}


async def test_a_withdrawal_an_older_intake_sent_as_v1_still_cancels_the_case(
    system: System, broker: BrokerClient
) -> None:
    """Rolling upgrade: a ``case.withdrawn.v1`` left on ``referral.cases`` by the intake before is carried out."""
    case_id = (await system.report(a_case_report_body())).json()["case_id"]
    await system.case_when(case_id, delivered_everywhere)

    await broker.publish(
        "rujukan.events",
        "case.withdrawn",
        {"case_id": case_id, "reporting_agency": "polres-bengkayang", "reason": "duplicate",
         "note": "dilaporkan dua kali", "withdrawn_at": "2026-01-05T03:00:00+00:00"},
        message_type="case.withdrawn.v1",
    )  # fmt: skip

    case = await system.case_when(case_id, cancelled_everywhere)
    [withdrawn] = [e for e in case["timeline"] if e["event"] == "case_withdrawn"]
    assert withdrawn["detail"] == {"reason": "duplicate", "note": "dilaporkan dua kali"}
