"""The notifier on its own: referral events as the referral service publishes them, and a rig that runs the
notifier against a fresh vhost with the test's clock, its sinks, and its reports left in a queue to read."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiohttp.abc import AbstractResolver

from services.notifier.app import build_notifier
from shared.contracts.base import Contract, Priority
from shared.contracts.cases import ExploitationType
from shared.contracts.referrals import (
    DeadlineKind,
    ReferralCancelled,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralEscalated,
    ReferralIssued,
    ReferralReason,
    ReferralTaken,
)
from shared.directory import Directory
from shared.service import Running
from tests.builders import victim_facts
from tests.rabbit import BrokerClient
from tests.system import (
    GatewaySink,
    Identities,
    SmtpSink,
    WebhookSink,
    declare_topology,
    directory_for,
    settings_for,
    with_sinks,
)

WIB = ZoneInfo("Asia/Pontianak")
WEDNESDAY_10_WIB = datetime(2026, 11, 25, 10, 0, tzinfo=WIB)
"""Mid-morning: the demo rosters' ``piket-pagi`` (07:00-15:00) is on duty."""

A_CHILD_AND_A_WOMAN = (
    victim_facts(victim_ref="V1", sex="female", age_years=15, needs=("shelter", "psychosocial")),
    victim_facts(victim_ref="V2", sex="female", age_years=24, needs=("medical",)),
)


def an_issued_referral(agency_id: str = "dinsos-bengkayang", **overrides: Any) -> ReferralIssued:
    case_id = uuid.uuid4()
    values: dict[str, Any] = {
        "referral_id": uuid.uuid5(case_id, agency_id),
        "case_id": case_id,
        "case_code": "KB-26-7QK2M9",
        "agency_id": agency_id,
        "reporting_agency": "polres-bengkayang",
        "regency_code": "61.07",
        "priority": Priority.URGENT,
        "exploitation_types": (ExploitationType.FORCED_LABOUR,),
        "victims": A_CHILD_AND_A_WOMAN,
        "reasons": (ReferralReason(rule_id="child-to-child-protection", description="anak", victim_refs=("V1",)),),
        "issued_at": WEDNESDAY_10_WIB,
        "ack_due_at": WEDNESDAY_10_WIB + timedelta(hours=1),
        "ack_code": "482193",
    }
    values.update(overrides)
    return ReferralIssued(**values)


def an_escalation(issued: ReferralIssued, level: int, **overrides: Any) -> ReferralEscalated:
    values: dict[str, Any] = {
        "referral_id": issued.referral_id,
        "case_id": issued.case_id,
        "case_code": issued.case_code,
        "agency_id": issued.agency_id,
        "regency_code": issued.regency_code,
        "priority": issued.priority,
        "victims": issued.victims,
        "level": level,
        "deadline": DeadlineKind.ACKNOWLEDGE,
        "due_at": issued.ack_due_at,
        "reason": "the acknowledgement deadline passed",
        "ack_code": issued.ack_code,
        "escalated_at": issued.ack_due_at + timedelta(minutes=30 * (level - 1)),
    }
    values.update(overrides)
    return ReferralEscalated(**values)


def a_cancellation(issued: ReferralIssued) -> ReferralCancelled:
    return ReferralCancelled(
        referral_id=issued.referral_id,
        case_id=issued.case_id,
        case_code=issued.case_code,
        agency_id=issued.agency_id,
        regency_code=issued.regency_code,
        reason="duplicate",
        cancelled_at=issued.issued_at + timedelta(minutes=5),
    )


def a_taking(issued: ReferralIssued) -> ReferralTaken:
    return ReferralTaken(
        referral_id=issued.referral_id,
        case_id=issued.case_id,
        agency_id=issued.agency_id,
        status="acknowledged",
        taken_at=issued.issued_at + timedelta(minutes=5),
    )


def without_shifts(directory: Directory, agency_id: str) -> Directory:
    """The directory with nobody on the agency's roster ever on duty by shift."""
    agency = directory.agency(agency_id)
    assert agency is not None
    assert agency.roster is not None
    officers = tuple(officer.model_copy(update={"shifts": ()}) for officer in agency.roster.officers)
    roster = agency.roster.model_copy(update={"officers": officers})
    agencies = tuple(a.model_copy(update={"roster": roster}) if a.id == agency_id else a for a in directory.agencies)
    return directory.model_copy(update={"agencies": agencies})


_ROUTING: dict[type[Contract], str] = {
    ReferralIssued: "issued",
    ReferralEscalated: "escalated",
    ReferralCancelled: "cancelled",
    ReferralTaken: "taken",
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


Report = ReferralDelivered | ReferralDeliveryFailed
RoutedEvent = ReferralIssued | ReferralEscalated | ReferralCancelled | ReferralTaken


class NotifierRig:
    """The notifier alone, told of referral events the way the referral service tells it. Its reports wait in
    ``referral.deliveries`` (nobody else consumes it here); once stopped it fails the test if any victim
    identity reached a webhook, an email or a text."""

    def __init__(
        self,
        amqp_url: str,
        data_dir: Path,
        *,
        clock: Clock,
        adjust: Callable[[Directory], Directory] = lambda directory: directory,
        resolver: AbstractResolver | None = None,
        **settings: Any,
    ) -> None:
        self.sink = WebhookSink()
        self.smtp = SmtpSink()
        self.gateway = GatewaySink()
        self.directory = adjust(directory_for(self.sink))
        self.sink.directory = self.directory
        self.settings = with_sinks(settings_for(amqp_url, data_dir, **settings), self.smtp, self.gateway)
        self.clock = clock
        self._amqp_url = amqp_url
        self._running = Running(
            [build_notifier(self.settings, lambda: self.directory, clock=clock, resolver=resolver)], "127.0.0.1"
        )
        self.broker: BrokerClient | None = None

    async def start(self) -> None:
        await self.sink.start()
        await self.smtp.start()
        await self.gateway.start()
        # Its reports go to referral.deliveries, which the notifier does not declare.
        await declare_topology(self.settings, self.directory)
        await self._running.start()
        self.broker = await BrokerClient.connect(self._amqp_url)

    async def stop(self) -> None:
        await self._running.stop()
        if self.broker:
            await self.broker.close()
        for sink in (self.sink, self.smtp, self.gateway):
            await sink.stop()
        bodies = [*self.sink.bodies(), *self.smtp.bodies(), *self.gateway.bodies()]
        leaks = Identities().leaks(bodies)
        assert not leaks, f"victim identity reached a notification: {sorted(set(leaks))}"

    async def publish(self, event: RoutedEvent, *, message_id: str | None = None) -> str:
        """As the referral service's outbox publishes it: ``referral.<agency>.<event>`` on ``rujukan.events``."""
        assert self.broker is not None
        routing_key = f"referral.{event.agency_id}.{_ROUTING[type(event)]}"
        body = event.model_dump(mode="json")
        return await self.broker.publish(
            "rujukan.events", routing_key, body, message_type=event.TYPE, message_id=message_id
        )

    async def acked(self, queue: str) -> int:
        """Messages of ``queue`` the notifier has handled and acked so far (its Prometheus counter)."""
        return await self._acked(f"default.{queue}")

    async def events_acked(self, routing_key: str) -> int:
        """Events of ``routing_key`` on ``rujukan.events`` the notifier has handled and acked so far."""
        return await self._acked(f"rujukan.events.{routing_key}")

    async def _acked(self, handler: str) -> int:
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{self.settings.notifier_port}/metrics")).text
        labels = rf'handler="{re.escape(handler)}",status="acked"'
        found = re.search(
            rf"^faststream_received_processed_messages_total{{[^}}]*{labels}}} (\S+)$", metrics, re.MULTILINE
        )
        return int(float(found[1])) if found else 0

    async def reports(self, count: int, *, timeout: float = 10) -> list[Report]:
        """The next ``count`` delivery reports, in the order they were published."""
        assert self.broker is not None
        taken = await self.broker.take("referral.deliveries", count, timeout=timeout)
        return [
            ReferralDelivered.model_validate_json(m.body)
            if m.type == ReferralDelivered.TYPE
            else ReferralDeliveryFailed.model_validate_json(m.body)
            for m in taken
        ]
