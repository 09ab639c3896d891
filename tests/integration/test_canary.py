"""A canary victim sent through a whole case flow — a valid case whose every channel fails and escalates, invalid
reports over HTTP and AMQP — is found nowhere it does not belong: not in the logs, HTTP error bodies, notifications,
messages and dead-letter reasons, nor in the bytes a throwaway RabbitMQ node wrote to disk (FASTSTREAM.md, "Chaos
tests": never the shared broker on 5672)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shared.consuming import REASON_HEADER
from shared.logging import configure_logging
from shared.topology import build_topology, dead_letter_queue_name
from tests.builders import a_case_report_body, a_victim
from tests.rabbit import BrokerClient
from tests.system import GatewaySink, System, WebhookSink, directory_for, settings_for
from tests.throwaway_node import kill_node, throwaway_node

pytestmark = pytest.mark.rabbit

CANARY_NAME, CANARY_NIK = "Kanari Sentinel Wulandari", "6107012345678901"
# An agency that publishes a report over AMQP has itself written its plaintext to the broker's disk (the queue
# intake.reports); that victim is a canary of its own, looked for everywhere but there.
AMQP_CANARY_NAME, AMQP_CANARY_NIK = "Kanari Amqp Pratiwi", "6107019876543210"


def canaries(name: str, nik: str) -> dict[str, bytes]:
    return {"name": name.encode(), "lowercase name": name.lower().encode(), "NIK": nik.encode()}


HTTP_CANARIES = canaries(CANARY_NAME, CANARY_NIK)
EVERY_CANARY = {**HTTP_CANARIES, **{f"AMQP {k}": v for k, v in canaries(AMQP_CANARY_NAME, AMQP_CANARY_NIK).items()}}


def a_canary(**overrides: Any) -> dict[str, Any]:
    return a_victim(**{"sex": "male", "age_years": 40, "full_name": CANARY_NAME, "nik": CANARY_NIK, **overrides})


def canaries_in(data: bytes, looked_for: dict[str, bytes] = EVERY_CANARY) -> list[str]:
    """Which canaries ``data`` holds, by label: the values themselves are never printed."""
    return [label for label, canary in looked_for.items() if canary in data]


def canaries_on_disk(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file() and (labels := canaries_in(path.read_bytes(), HTTP_CANARIES)):
            found[str(path.relative_to(root))] = labels
    return found


@contextmanager
def rendered_logs(path: Path) -> Iterator[Path]:
    """Every log line the services render (the JSON lines an operator would ship), written to ``path``."""
    with path.open("w") as out:
        with redirect_stdout(out):
            configure_logging("DEBUG")
        try:
            yield path
        finally:
            configure_logging("WARNING")  # as tests/conftest.py left it


class RecordingWebhookSink(WebhookSink):
    """Keeps the body of every request, the ones it answers with a failure too."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append(await request.read())
        return await super()._receive(request)


class RecordingGatewaySink(GatewaySink):
    """Keeps the body of every request, the ones it answers with a failure too."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append(await request.read())
        return await super()._receive(request)


def fail_every_channel(system: System) -> None:
    """Every agency's webhook and desk, and every officer's email and phone, refuse for the whole test."""
    for agency in system.directory.agencies:
        if agency.webhook:
            system.sink.fail_next(agency.id, *([503] * 100))
        if agency.email:
            system.smtp.refuse(agency.email)
        for officer in agency.roster.officers if agency.roster else ():
            for channel in officer.channels:
                if channel.kind.value == "email":
                    system.smtp.refuse(channel.to)
                else:
                    system.gateway.fail_next(channel.to, *([503] * 100))


def escalated_after_failing(case: dict[str, Any]) -> bool:
    events = {entry["event"] for entry in case["timeline"]}
    return {"delivery_failed", "escalated"} <= events and all(leg["status"] == "failed" for leg in case["referrals"])


async def test_a_canary_victim_is_found_nowhere_it_does_not_belong(tmp_path: Path) -> None:
    node_home, data_dir = tmp_path / "node", tmp_path / "data"
    node_home.mkdir()
    data_dir.mkdir()
    sink, gateway = RecordingWebhookSink(), RecordingGatewaySink()
    directory = directory_for(sink)
    sink.directory = directory
    # What left the services and is no authorised identity read, by where it was found.
    exposed: dict[str, bytes] = {}

    with throwaway_node(node_home, "canary") as port, rendered_logs(tmp_path / "services.log") as log:
        amqp_url = f"amqp://guest:guest@127.0.0.1:{port}/"
        services = ("intake", "referral", "notifier")
        system = System(settings_for(amqp_url, data_dir), directory, sink, services, gateway=gateway)
        fail_every_channel(system)
        await sink.start()
        await system.start()
        try:
            valid = a_case_report_body(victims=[a_canary()])
            accepted = await system.report(valid)
            assert accepted.status_code == 202
            exposed["202 body"] = accepted.content
            refused = {
                "unknown regency": a_case_report_body(regency_code="99.99", victims=[a_canary()]),
                "unknown field": a_case_report_body(catatan=CANARY_NAME, victims=[a_canary()]),
                "unknown victim field": a_case_report_body(victims=[a_canary(catatan=CANARY_NIK)]),
                "bad age": a_case_report_body(victims=[a_canary(age_years=-3)]),
                "bad NIK": a_case_report_body(victims=[a_canary(nik=f"{CANARY_NIK}x {CANARY_NAME}")]),
            }
            for label, body in refused.items():
                response = await system.report(body)
                assert response.status_code == 422, label
                exposed[f"422 body, {label}"] = response.content

            client = await BrokerClient.connect(amqp_url)
            try:
                amqp_canary = a_canary(full_name=AMQP_CANARY_NAME, nik=AMQP_CANARY_NIK, age_years=-3)
                invalid = a_case_report_body(victims=[amqp_canary])
                message_id = await client.publish(
                    "rujukan.intake", "case.report", invalid, message_type="case.report.v1"
                )
                [dead] = await client.take("intake.reports.dead")
                assert dead.message_id == message_id
                assert "victims.0.age_years" in str(dead.headers[REASON_HEADER])
                exposed["intake dead letter"] = repr(dict(dead.headers)).encode() + dead.body

                case = await system.case_when(accepted.json()["case_id"], escalated_after_failing, timeout=40)
                exposed["the reporter's view of the case"] = json.dumps(case).encode()
                assert await client.depth("notifier.notifications.dead") >= 1
            finally:
                await client.close()
        finally:
            await system.stop()
            await sink.stop()

        assert sink.received, "no webhook was attempted"
        assert gateway.received, "no text was attempted"
        exposed["webhook requests"] = b"\n".join(sink.received)
        exposed["gateway requests"] = b"\n".join(gateway.received)
        exposed["emails"] = "\n".join(system.smtp.bodies()).encode()
        client = await BrokerClient.connect(amqp_url)
        try:
            for spec in build_topology(directory, system.settings.retry_schedule).specs:
                names = [spec.queue.name, *([dead_letter_queue_name(spec.queue.name)] if spec.dead_lettered else [])]
                for name in names:
                    for message in await client.drain(name, at_least=0):
                        exposed[f"{name}: {message.message_id}"] = repr(dict(message.headers)).encode() + message.body
        finally:
            await client.close()
        exposed["logs"] = log.read_bytes()
        kill_node(node_home)

    assert len(exposed["logs"].splitlines()) > 10, "the services logged nothing: the capture is not working"
    assert {name: labels for name, body in exposed.items() if (labels := canaries_in(body))} == {}
    assert canaries_on_disk(node_home) == {}
    # The scan reads the bytes that matter: the case's messages are on the node's disk, and so is the plaintext
    # the agency itself published over AMQP.
    on_disk = b"".join(path.read_bytes() for path in (node_home / "mnesia").rglob("*") if path.is_file())
    assert valid["police_report_number"].encode() in on_disk
    assert {"name", "NIK"} <= set(canaries_in(on_disk, canaries(AMQP_CANARY_NAME, AMQP_CANARY_NIK)))
