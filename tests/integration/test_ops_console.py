"""`rujukan ops` against the running services: status and overdue exit codes a cron job can use, a case found by
its police report number; and the ops API's overview, overdue list and case view behind them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from services.cli import main
from services.referral.ledger import Ledger
from services.referral.operations import Operations
from shared.clock import utcnow
from shared.database import make_engine
from shared.sealing import load_sealer
from tests.builders import a_case_report_body
from tests.integration.test_ops_dead_letters import ops
from tests.system import System, WebhookSink, delivered_everywhere, directory_for, settings_for

pytestmark = pytest.mark.rabbit


class MovableClock:
    """The referral service's clock: real time plus however far the test moved it."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.ahead


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


async def start(amqp_url: str, sink: WebhookSink, tmp_path: Path, *names: str, **kwargs: Any) -> System:
    directory = directory_for(sink)
    sink.directory = directory
    system = System(settings_for(amqp_url, tmp_path), directory, sink, names, **kwargs)
    await system.start()
    return system


@pytest.fixture
async def system(amqp_url: str, sink: WebhookSink, tmp_path: Path, clock: MovableClock) -> AsyncIterator[System]:
    running = await start(amqp_url, sink, tmp_path, "intake", "referral", "notifier", clock=clock)
    yield running
    await running.stop()


async def rujukan_ops(
    system: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """`rujukan ops ...` as an operator's cron job runs it (in a thread: the services share this event loop)."""
    monkeypatch.setenv("RUJUKAN_OPS_URL", system.url("referral", ""))
    monkeypatch.setenv("RUJUKAN_OPS_TOKEN", "dev-ops-rujukan")
    monkeypatch.setenv("COLUMNS", "250")
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["ops", *args])
    return code, capsys.readouterr().out


async def a_delivered_case(system: System) -> tuple[dict[str, Any], dict[str, Any]]:
    report = a_case_report_body()
    accepted = await system.report(report)
    assert accepted.status_code == 202, accepted.text
    return report, await system.case_when(accepted.json()["case_id"], delivered_everywhere)


async def test_status_exits_zero_when_every_service_queue_has_a_consumer(
    system: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = await rujukan_ops(system, monkeypatch, capsys, "status")
    json_code, json_output = await rujukan_ops(system, monkeypatch, capsys, "--json", "status")

    assert code == 0, output
    assert "queue figures from management" in output
    assert json_code == 0
    overview = json.loads(json_output)
    assert {service["name"]: service["consuming"] for service in overview["services"]} == {
        "intake": True,
        "referral": True,
        "notifier": True,
    }
    assert not [queue for queue in overview["queues"] if queue["stalled"]]


async def test_status_shows_a_service_s_last_message_as_unknown_when_nothing_tells_it(
    system: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Quorum queues report no ``idle_since`` on RabbitMQ 3.10: a service that took no message is not shown as
    having seen one just now."""
    code, output = await rujukan_ops(system, monkeypatch, capsys, "--json", "status")
    _, table = await rujukan_ops(system, monkeypatch, capsys, "status")

    assert code == 0, output
    seen = {service["name"]: service["last_message_seen"] for service in json.loads(output)["services"]}
    assert seen == {"intake": None, "referral": None, "notifier": None}
    assert table.count("unknown") == 3, table


async def test_status_exits_non_zero_naming_the_queues_nobody_consumes(
    amqp_url: str,
    sink: WebhookSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    without_notifier = await start(amqp_url, sink, tmp_path, "intake", "referral")
    try:
        code, output = await rujukan_ops(without_notifier, monkeypatch, capsys, "status")
        _, json_output = await rujukan_ops(without_notifier, monkeypatch, capsys, "status", "--json")
    finally:
        await without_notifier.stop()

    assert code == 1, output
    assert "no consumer on: notifier.referrals, notifier.notifications" in output
    overview = json.loads(json_output)
    assert {service["name"]: service["consuming"] for service in overview["services"]} == {
        "intake": True,
        "referral": True,
        "notifier": False,
    }


async def test_without_the_management_api_queue_figures_come_from_passive_declares(system: System) -> None:
    settings = system.settings.model_copy(update={"management_url": "http://127.0.0.1:9"})
    engine = make_engine(settings.database_url)
    operations = Operations(Ledger(engine), lambda: system.directory, settings, load_sealer(settings))
    try:
        overview = await operations.overview()
    finally:
        await engine.dispose()

    assert overview.source == "passive"
    cases = next(queue for queue in overview.queues if queue.name == "referral.cases")
    assert cases.consumers == 1
    assert cases.messages == 0
    assert cases.publish_rate is None
    assert all(service.consuming for service in overview.services)
    assert {service.name: service.last_message_seen for service in overview.services}["intake"] is None


async def test_overdue_lists_a_referral_past_its_deadline_the_latest_first(
    system: System, clock: MovableClock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, case = await a_delivered_case(system)
    nothing_yet, _ = await rujukan_ops(system, monkeypatch, capsys, "overdue")

    clock.ahead = timedelta(days=10)
    overdue = (await ops(system, "GET", "/overdue")).json()
    late, output = await rujukan_ops(system, monkeypatch, capsys, "overdue", "--late-by", "2h")
    not_that_late, _ = await rujukan_ops(system, monkeypatch, capsys, "overdue", "--late-by", "30d")

    assert nothing_yet == 0
    assert {item["referral_id"] for item in overdue} == {leg["referral_id"] for leg in case["referrals"]}
    assert all(item["awaited"] == "acknowledge" for item in overdue)
    lateness = [TypeAdapter(timedelta).validate_python(item["late_by"]) for item in overdue]
    assert lateness == sorted(lateness, reverse=True)
    assert min(lateness) > timedelta(days=5)
    assert late == 1
    assert case["case_code"] in output
    assert not_that_late == 0
    overview = (await ops(system, "GET", "/overview")).json()
    late_agencies = {agency["agency_id"]: agency["overdue"] for agency in overview["agencies"] if agency["overdue"]}
    assert late_agencies == {leg["agency_id"]: 1 for leg in case["referrals"]}


async def test_an_acknowledged_referral_counts_towards_the_median_time_to_acknowledge(system: System) -> None:
    _, case = await a_delivered_case(system)
    leg = case["referrals"][0]

    acknowledged = await system.acknowledge(leg["referral_id"], leg["agency_id"])
    overview = (await ops(system, "GET", "/overview")).json()

    assert acknowledged.status_code == 200, acknowledged.text
    [agency] = [agency for agency in overview["agencies"] if agency["agency_id"] == leg["agency_id"]]
    assert agency["by_status"] == {"acknowledged": 1}
    assert agency["median_ack_7d"] is not None
    assert agency["median_ack_30d"] == agency["median_ack_7d"]


async def test_case_finds_a_case_by_police_report_number_without_identity(
    system: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report, case = await a_delivered_case(system)

    code, output = await rujukan_ops(system, monkeypatch, capsys, "case", report["police_report_number"])
    found = await ops(system, "GET", f"/cases/{report['police_report_number']}")
    missing, _ = await rujukan_ops(system, monkeypatch, capsys, "case", "LP/B/0/I/2099/NOPE")

    assert code == 0, output
    assert case["case_code"] in output
    assert found.status_code == 200
    view = found.json()
    assert view["case_id"] == case["case_id"]
    assert {leg["agency_id"] for leg in view["legs"]} == {leg["agency_id"] for leg in case["referrals"]}
    assert "case_reported" in {entry["event"] for entry in view["timeline"]}
    for victim in report["victims"]:
        assert victim["full_name"] not in found.text
        assert victim["full_name"] not in output
        assert f'"{victim["victim_ref"]}"' not in found.text
    assert missing == 4
