"""AMQP entrypoints of the referral service: case events, delivery reports, agency replies."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from faststream.rabbit import RabbitRouter
from faststream.rabbit.annotations import RabbitMessage

from services.referral.referrals import Acknowledgement, Referrals
from shared.broker import consumer_channel
from shared.consuming import decode, message_id_of, raw
from shared.contracts.cases import CaseReported
from shared.contracts.referrals import ReferralAcknowledged, ReferralDelivered, ReferralDeliveryFailed
from shared.errors import PermanentError
from shared.settings import Settings
from shared.topology import Topology


def build_router(referrals: Referrals, topology: Topology, settings: Settings) -> RabbitRouter:
    router = RabbitRouter()

    @router.subscriber(topology.referral_cases, channel=consumer_channel(settings))
    async def on_case_reported(msg: RabbitMessage) -> None:
        """``case.reported``: route the case and issue its referrals."""
        event = decode(msg, CaseReported)
        with structlog.contextvars.bound_contextvars(case_id=str(event.case_id), message_id=message_id_of(msg)):
            await referrals.open_case(event, message_id=message_id_of(msg))

    @router.subscriber(topology.referral_deliveries, channel=consumer_channel(settings))
    async def on_delivery_report(msg: RabbitMessage) -> None:
        """``referral.<agency>.delivered`` / ``.delivery_failed`` from the notifier."""
        report = decode(msg, ReferralDelivered, ReferralDeliveryFailed)
        with structlog.contextvars.bound_contextvars(
            referral_id=str(report.referral_id), message_id=message_id_of(msg)
        ):
            await referrals.record_delivery(report, message_id=message_id_of(msg))

    @router.subscriber(topology.referral_replies, channel=consumer_channel(settings))
    async def on_agency_reply(msg: RabbitMessage) -> None:
        """``referral.<agency>.acknowledged`` from a receiving agency's system."""
        reply = decode(msg, ReferralAcknowledged)
        expected_key = f"referral.{reply.agency_id}.acknowledged"
        if raw(msg).routing_key != expected_key:
            raise PermanentError(f"routing key {raw(msg).routing_key} does not match {expected_key}")
        with structlog.contextvars.bound_contextvars(referral_id=str(reply.referral_id), message_id=message_id_of(msg)):
            await referrals.acknowledge(
                Acknowledgement(
                    referral_id=reply.referral_id,
                    agency_id=reply.agency_id,
                    officer=reply.officer,
                    note=reply.note,
                    at=reply.acknowledged_at or datetime.now(UTC),
                    via="amqp",
                    message_id=message_id_of(msg),
                )
            )

    return router
