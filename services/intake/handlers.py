"""AMQP entrypoint of intake: case reports published to ``rujukan.intake`` as ``case.report``."""

from __future__ import annotations

import asyncio

import structlog
from faststream.rabbit import RabbitRouter
from faststream.rabbit.annotations import RabbitMessage

from services.intake.metrics import IntakeMetrics, kind_of
from services.intake.reports import Claimed, IntakeUnavailableError, ReportIntake, claimed_by
from shared.broker import consumer_channel
from shared.consuming import (
    UnverifiedSenderError,
    decode,
    earlier_deliveries,
    raw,
    refuse_oversized,
    verify_sender,
    warn_if_senders_unverified,
)
from shared.contracts.cases import CaseAmendment, CaseReport, CaseWithdrawal
from shared.errors import PermanentError
from shared.ids import case_id_for
from shared.settings import Settings
from shared.topology import Topology

CASE_MESSAGES = (CaseReport, CaseAmendment, CaseWithdrawal)
"""What a police system publishes to ``rujukan.intake`` (``case.report|amend|withdraw``)."""

LONGEST_PAUSE_SECONDS = 30.0


def pause_before_retry(earlier: int) -> float:
    """How long a report the broker or database would not take waits before it goes back on the queue: 1 s,
    doubling, at most 30 s, so the queue's ten deliveries outlast a full queue or a restart (about 2.5 minutes)
    instead of being spent within milliseconds."""
    return min(2.0**earlier, LONGEST_PAUSE_SECONDS)


def build_router(intake: ReportIntake, topology: Topology, settings: Settings, metrics: IntakeMetrics) -> RabbitRouter:
    router = RabbitRouter()
    warn_if_senders_unverified(settings)

    @router.subscriber(topology.intake_reports, channel=consumer_channel(settings))
    async def on_case_message(msg: RabbitMessage) -> None:
        """A police system's case report, amendment or withdrawal; refused ones are dead-lettered and
        answered with a receipt."""
        message_id = raw(msg).message_id
        with structlog.contextvars.bound_contextvars(message_id=message_id), metrics.counting(kind_of(raw(msg).type)):
            try:
                refuse_oversized(msg, settings)
                message = decode(msg, *CASE_MESSAGES)
                verify_sender(msg, message.reporting_agency, settings=settings)
                if isinstance(message, CaseAmendment):
                    await intake.amend(message, source_message_id=message_id)
                elif isinstance(message, CaseReport):
                    await intake.accept(message)
                elif isinstance(message, CaseWithdrawal):
                    await intake.withdraw(
                        case_id_for(message.reporting_agency, message.police_report_number),
                        agency_id=message.reporting_agency,
                        reason=message.reason,
                        note=message.note,
                        source_message_id=message_id,
                    )
            except UnverifiedSenderError:
                raise  # dead-lettered without a receipt: the agency it names did not send it
            except IntakeUnavailableError:
                # The police system already holds the broker's confirm: this report must not reach the dead-letter
                # queue merely because downstream was full for a moment. Every other report would fail the same
                # way now, so holding this consumer is the back-pressure intake needs anyway.
                await asyncio.sleep(pause_before_retry(earlier_deliveries(raw(msg))))
                raise
            except PermanentError as exc:
                # A report padded a little past the size limit is still answered; one far past it is not read.
                claimed = claimed_by(msg.body, readable_bytes=2 * settings.max_request_bytes)
                if _sent_by_the_agency_it_names(msg, claimed, settings):
                    await intake.reject(msg.body, claimed, reason=str(exc), source_message_id=message_id)
                raise

    return router


def _sent_by_the_agency_it_names(msg: RabbitMessage, claimed: Claimed, settings: Settings) -> bool:
    """Whether a refused message may be answered to the agency its body names: not when another broker user sent
    it (a receipt would tell that agency of a report it never made)."""
    if claimed.agency_id is None:
        return True
    try:
        verify_sender(msg, claimed.agency_id, settings=settings)
    except UnverifiedSenderError:
        return False
    return True
