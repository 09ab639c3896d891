"""AMQP entrypoints of the referral service: case events, delivery reports, agency replies."""

from __future__ import annotations

import structlog
from faststream.rabbit import RabbitRouter
from faststream.rabbit.annotations import RabbitMessage

from services.referral.lifecycle import Reply
from services.referral.referrals import Referrals, ReplyCommand
from shared.broker import consumer_channel
from shared.consuming import (
    decode,
    message_id_of,
    origin,
    raw,
    refuse_oversized,
    verify_sender,
    warn_if_senders_unverified,
)
from shared.contracts.cases import CaseAmended, CaseReported, CaseWithdrawn, CaseWithdrawnV1
from shared.contracts.referrals import REPLIES, ReferralDelivered, ReferralDeliveryFailed
from shared.errors import PermanentError
from shared.settings import Settings
from shared.topology import Topology

CASE_EVENTS = (CaseReported, CaseAmended, CaseWithdrawn, CaseWithdrawnV1)
"""What intake publishes about a case, on ``referral.cases``."""
DELIVERY_REPORTS = (ReferralDelivered, ReferralDeliveryFailed)
"""What the notifier reports about a referral's notification, on ``referral.deliveries``."""


def build_router(referrals: Referrals, topology: Topology, settings: Settings) -> RabbitRouter:
    router = RabbitRouter()
    warn_if_senders_unverified(settings)

    @router.subscriber(topology.referral_cases, channel=consumer_channel(settings))
    async def on_case_event(msg: RabbitMessage) -> None:
        """``case.reported``: route the case and issue its referrals; ``case.amended``: refer what is new;
        ``case.withdrawn``: cancel the open legs."""
        event = decode(msg, *CASE_EVENTS)
        message_id = message_id_of(msg)
        with structlog.contextvars.bound_contextvars(case_id=str(event.case_id), message_id=message_id):
            if isinstance(event, CaseAmended):
                await referrals.amend_case(event, message_id=message_id)
            elif isinstance(event, CaseReported):
                await referrals.open_case(event, message_id=message_id)
            elif isinstance(event, CaseWithdrawn | CaseWithdrawnV1):
                await referrals.withdraw_case(event, message_id=message_id)

    @router.subscriber(topology.referral_deliveries, channel=consumer_channel(settings))
    async def on_delivery_report(msg: RabbitMessage) -> None:
        """``referral.<agency>.delivered`` / ``.delivery_failed`` from the notifier."""
        report = decode(msg, *DELIVERY_REPORTS)
        with structlog.contextvars.bound_contextvars(
            referral_id=str(report.referral_id), message_id=message_id_of(msg)
        ):
            await referrals.record_delivery(report, message_id=message_id_of(msg))

    @router.subscriber(topology.referral_replies, channel=consumer_channel(settings))
    async def on_agency_reply(msg: RabbitMessage) -> None:
        """``referral.<agency>.<event>`` from a receiving agency's system: acknowledged, accepted, declined, …"""
        refuse_oversized(msg, settings)
        reply = decode(msg, *REPLIES)
        verify_sender(msg, reply.agency_id, settings=settings)
        expected_key = f"referral.{reply.agency_id}.{reply.EVENT}"
        routing_key = origin(raw(msg)).routing_key
        if routing_key != expected_key:
            raise PermanentError(f"routing key {routing_key} does not match {expected_key}")
        with structlog.contextvars.bound_contextvars(referral_id=str(reply.referral_id), message_id=message_id_of(msg)):
            await referrals.reply(
                ReplyCommand(
                    referral_id=reply.referral_id,
                    agency_id=reply.agency_id,
                    reply=Reply(reply.EVENT),
                    via="amqp",
                    officer=reply.officer,
                    note=reply.note,
                    detail=reply.model_dump(mode="json", exclude=_COMMON_REPLY_FIELDS),
                    message_id=message_id_of(msg),
                    claimed_at=getattr(reply, "acknowledged_at", None),
                )
            )

    return router


_COMMON_REPLY_FIELDS = {"referral_id", "agency_id", "officer", "note", "acknowledged_at"}
