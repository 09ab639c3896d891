"""Agency messages prove their sender with ``user_id``: the services run under the broker users of
``rujukan broker setup`` with ``require_user_id`` on, and each agency publishes as its own user."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from pydantic import AmqpDsn
from structlog.testing import capture_logs

from services.cli import build_services
from shared.directory import Directory
from shared.sealing import load_sealer
from shared.settings import Settings
from tests.builders import a_case_report_body
from tests.integration.test_broker_setup import Deployment, deployed
from tests.rabbit import AMQP_BASE, BrokerClient
from tests.system import System, WebhookSink, directory_for, settings_for

pytestmark = pytest.mark.rabbit

REASON = "x-rujukan-reason"


@dataclass
class Secured:
    deployment: Deployment
    systems: list[System]

    async def publish(
        self, agency_id: str, exchange: str, routing_key: str, body: dict[str, Any], *, message_type: str, as_user: bool
    ) -> None:
        """Published over ``agency_id``'s own connection, with its ``user_id`` when ``as_user``."""
        user_id = self.deployment.username(agency_id) if as_user else None
        connection = await aio_pika.connect(self.deployment.url(agency_id))
        try:
            channel = await connection.channel(publisher_confirms=True)
            target = await channel.get_exchange(exchange, ensure=False)
            message = aio_pika.Message(
                json.dumps(body).encode(),
                message_id=str(uuid.uuid4()),
                type=message_type,
                content_type="application/json",
                user_id=user_id,
            )
            await target.publish(message, routing_key=routing_key, mandatory=True, timeout=5)
        finally:
            await connection.close()

    async def take(self, user: str, queue: str, count: int = 1) -> list[aio_pika.abc.AbstractIncomingMessage]:
        client = await BrokerClient.connect(self.deployment.url(user))
        try:
            return await client.take(queue, count, timeout=15)
        finally:
            await client.close()

    async def depth(self, queue: str) -> int:
        client = await BrokerClient.connect(self.deployment.url("intake"))
        try:
            return await client.depth(queue)
        finally:
            await client.close()


def secured_settings(deployment: Deployment, base: Settings, service: str) -> Settings:
    return base.model_copy(update={"amqp_url": AmqpDsn(deployment.url(service))})


@pytest.fixture
async def secured(sink: WebhookSink, tmp_path: Path) -> AsyncIterator[Secured]:
    directory = directory_for(sink)
    sink.directory = directory
    async with deployed(directory, tmp_path) as deployment:
        base = settings_for(AMQP_BASE, tmp_path, require_user_id=True, broker_user_prefix=deployment.prefix)
        # Each service under its own broker user, as a deployment runs them.
        systems = [
            System(secured_settings(deployment, base, name), directory, sink, (name,))
            for name in ("intake", "referral", "notifier")
        ]
        for system in systems:
            await system.start()
        try:
            yield Secured(deployment, systems)
        finally:
            for system in reversed(systems):
                await system.stop()


async def test_a_report_sent_as_its_police_unit_is_referred_by_services_under_their_own_users(
    secured: Secured,
) -> None:
    body = a_case_report_body(reporting_agency="polres-bengkayang")

    await secured.publish(
        "polres-bengkayang", "rujukan.intake", "case.report", body, message_type="case.report.v1", as_user=True
    )

    [receipt] = await secured.take("polres-bengkayang", "agency.polres-bengkayang.receipts")
    assert json.loads(receipt.body)["event"] == "referred"
    [issued] = await secured.take("dinsos-bengkayang", "agency.dinsos-bengkayang.inbox")
    assert issued.type == "referral.issued.v1"


async def test_a_report_claiming_another_police_unit_is_dead_lettered_without_a_receipt(secured: Secured) -> None:
    body = a_case_report_body(reporting_agency="polres-bengkayang")

    await secured.publish(
        "polres-sambas", "rujukan.intake", "case.report", body, message_type="case.report.v1", as_user=True
    )

    [dead] = await secured.take("intake", "intake.reports.dead")
    sambas = secured.deployment.username("polres-sambas")
    assert dead.headers[REASON].startswith(f"user_id {sambas} may not speak for polres-bengkayang")
    assert await secured.depth("agency.polres-bengkayang.receipts") == 0


async def test_a_broken_report_claiming_another_police_unit_is_dead_lettered_without_a_receipt(
    secured: Secured,
) -> None:
    body = {**a_case_report_body(reporting_agency="polres-bengkayang"), "regency_code": "not a regency"}

    await secured.publish(
        "polres-sambas", "rujukan.intake", "case.report", body, message_type="case.report.v1", as_user=True
    )

    [dead] = await secured.take("intake", "intake.reports.dead")
    assert "regency_code" in dead.headers[REASON]
    assert await secured.depth("agency.polres-bengkayang.receipts") == 0


async def test_a_report_without_user_id_is_dead_lettered_when_user_id_is_required(secured: Secured) -> None:
    body = a_case_report_body(reporting_agency="polres-bengkayang")

    await secured.publish(
        "polres-bengkayang", "rujukan.intake", "case.report", body, message_type="case.report.v1", as_user=False
    )

    [dead] = await secured.take("intake", "intake.reports.dead")
    assert dead.headers[REASON].startswith("no user_id: a message from polres-bengkayang must carry user_id")


async def test_a_reply_claiming_another_agency_is_dead_lettered(secured: Secured) -> None:
    # The topic permissions keep dinsos-bengkayang to its own routing keys; the body still names bp3mi-kalbar.
    reply = {"referral_id": str(uuid.uuid4()), "agency_id": "bp3mi-kalbar", "officer": "Rina"}

    await secured.publish(
        "dinsos-bengkayang",
        "rujukan.replies",
        "referral.dinsos-bengkayang.acknowledged",
        reply,
        message_type="referral.acknowledged.v1",
        as_user=True,
    )

    [dead] = await secured.take("referral", "referral.replies.dead")
    dinsos = secured.deployment.username("dinsos-bengkayang")
    assert dead.headers[REASON].startswith(f"user_id {dinsos} may not speak for bp3mi-kalbar")


async def test_a_reply_without_user_id_is_dead_lettered_when_user_id_is_required(secured: Secured) -> None:
    reply = {"referral_id": str(uuid.uuid4()), "agency_id": "dinsos-bengkayang", "officer": "Rina"}

    await secured.publish(
        "dinsos-bengkayang",
        "rujukan.replies",
        "referral.dinsos-bengkayang.acknowledged",
        reply,
        message_type="referral.acknowledged.v1",
        as_user=False,
    )

    [dead] = await secured.take("referral", "referral.replies.dead")
    assert dead.headers[REASON].startswith("no user_id: a message from dinsos-bengkayang must carry user_id")


def warnings_at_start(directory: Directory, settings: Settings) -> list[dict[str, Any]]:
    with capture_logs() as logs:
        build_services(("intake", "referral", "notifier"), settings, directory, load_sealer(settings))
    return [log for log in logs if log["event"] == "agency_messages_without_user_id_accepted"]


def test_the_demo_on_guest_says_at_start_up_that_messages_without_user_id_are_accepted(
    sink: WebhookSink, tmp_path: Path
) -> None:
    directory = directory_for(sink)

    demo = warnings_at_start(directory, settings_for(AMQP_BASE, tmp_path))
    deployment = warnings_at_start(directory, settings_for(AMQP_BASE, tmp_path, require_user_id=True))

    assert [log["log_level"] for log in demo] == ["warning", "warning"]  # intake and referral take agency messages
    assert "RUJUKAN_REQUIRE_USER_ID is off" in demo[0]["reason"]
    assert deployment == []
