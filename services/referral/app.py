"""Composition root of the referral service: ledger, outbox relay, broker and HTTP app wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial

import structlog
from fastapi import Depends, FastAPI

from services.referral.api import ERROR_ANSWERS, build_api
from services.referral.audit import AuditKeys
from services.referral.deadlines import DeadlineSweeper
from services.referral.handlers import CASE_EVENTS, DELIVERY_REPORTS, build_router
from services.referral.ledger import Ledger
from services.referral.metrics import ReferralMetrics, ledger_gauges, retention_gauges
from services.referral.officer_desk import OfficerDesk
from services.referral.officer_page import build_officer_page
from services.referral.operations import Operations
from services.referral.ops_api import OPS_ERROR_ANSWERS, build_ops_api
from services.referral.ops_page import build_ops_page
from services.referral.outbox import OutboxRelay
from services.referral.privacy import Privacy
from services.referral.referrals import Referrals
from services.referral.sms_replies import build_sms_replies
from services.referral.statistics_api import build_statistics_api
from shared.asyncapi import Send, asyncapi_document, register_sends, serve_asyncapi
from shared.broker import MessagePublisher, make_broker
from shared.clock import utcnow
from shared.consuming import DeadLetterMiddleware, DeadLetters
from shared.contracts.referrals import (
    REPLIES,
    CaseReceipt,
    ReferralCancelled,
    ReferralEscalated,
    ReferralIssued,
    ReferralTaken,
)
from shared.database import make_engine, ping
from shared.directory import Directory
from shared.http import BodyLimit, agency_auth, health_router, install_error_handlers
from shared.observability import broker_checks, instrument, metrics_router
from shared.sealing import IdentitySealer, load_audit_keys, load_link_key
from shared.service import Service, stop_background
from shared.settings import Settings
from shared.topology import EVENTS, build_topology

log = structlog.get_logger(__name__)


SENDS = (
    Send(
        EVENTS,
        "referral.<agency>.issued",
        (ReferralIssued,),
        "A new referral for one agency: its inbox `agency.<id>.inbox` and the notifier get it.",
    ),
    Send(
        EVENTS,
        "referral.<agency>.escalated",
        (ReferralEscalated,),
        "A deadline passed with nobody acting (level 1-3): the agency's inbox and the notifier get it.",
    ),
    Send(
        EVENTS,
        "referral.<agency>.cancelled",
        (ReferralCancelled,),
        "A referral withdrawn with its case or entered in error: the agency should stand down.",
    ),
    Send(EVENTS, "referral.<agency>.taken", (ReferralTaken,), "A referral was taken: the notifier stops reminding."),
    Send(
        EVENTS,
        "case.<agency>.receipt",
        (CaseReceipt,),
        "What became of a police unit's case (queue `agency.<id>.receipts`): referred, acknowledged, progress.",
    ),
)


def build_referral(
    settings: Settings,
    directory: Callable[[], Directory],
    sealer: IdentitySealer,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Service:
    """``clock`` is the time deadlines are set and swept by; tests move it instead of waiting."""
    broker = make_broker(settings, app_id="rujukan-referral")
    metrics = instrument(broker, "referral")
    recorded = ReferralMetrics(metrics.registry)
    publisher = MessagePublisher(broker, timeout=settings.publish_timeout_seconds)
    broker.add_middleware(partial(DeadLetterMiddleware, dead_letters=DeadLetters(publisher)))
    topology = build_topology(directory(), settings.retry_schedule)
    engine = make_engine(settings.database_url)
    metrics.add(ledger_gauges(engine, clock))
    metrics.add(retention_gauges(engine, directory, clock))
    ledger = Ledger(engine, audit_keys=AuditKeys(settings.audit_key_id, load_audit_keys(settings)))
    relay = OutboxRelay(engine, publisher, poll_seconds=settings.outbox_poll_seconds)
    sweeper = DeadlineSweeper(
        ledger,
        directory,
        interval_seconds=settings.deadline_sweep_seconds,
        on_commit=relay.wake,
        on_escalated=recorded.escalated,
        clock=clock,
    )
    referrals = Referrals(
        ledger,
        directory,
        sealer,
        on_commit=relay.wake,
        on_deadline_due=sweeper.wake,
        on_acknowledged=recorded.acknowledged,
        clock=clock,
    )
    broker.include_router(build_router(referrals, topology, settings))
    register_sends(broker, SENDS)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ledger.migrate()
        await broker.connect()
        await topology.part("referral").declare_for(broker, settings)
        relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
        await broker.start()
        tasks = [
            relay_task,
            asyncio.create_task(sweeper.run(), name="deadline-sweeper"),
            asyncio.create_task(privacy.run(interval_seconds=settings.retention_sweep_seconds), name="retention"),
        ]
        log.info("service_started", port=settings.referral_port)
        try:
            yield
        finally:
            log.info("service_stopping")
            await broker.stop()
            await stop_background(tasks)
            await engine.dispose()
            log.info("service_stopped")

    async def relay_alive() -> bool:
        return relay.healthy()

    async def sweeper_alive() -> bool:
        return sweeper.healthy()

    # No /docs: FastAPI's Swagger page loads its scripts from a CDN; /openapi.json and /asyncapi.json stay.
    http = FastAPI(title="Rujukan referral", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(http, {**ERROR_ANSWERS, **OPS_ERROR_ANSWERS})
    http.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    http.include_router(metrics_router(metrics))
    http.include_router(
        health_router(
            {
                **broker_checks(broker),
                "database": partial(ping, engine),
                "outbox_relay": relay_alive,
                "deadline_sweeper": sweeper_alive,
            }
        )
    )
    authenticate = Depends(agency_auth(directory))
    http.include_router(build_api(referrals, authenticate))
    http.include_router(build_statistics_api(ledger, directory, authenticate))
    operations = Operations(ledger, directory, settings, sealer, clock=clock)
    http.include_router(build_ops_api(operations, authenticate))
    http.include_router(
        build_ops_page(
            operations,
            directory,
            load_link_key(settings),
            secure_cookie=settings.public_referral_url.startswith("https://"),
        )
    )
    serve_asyncapi(
        http,
        lambda: asyncapi_document(
            broker,
            title="Rujukan referral",
            description="Routes each case to the agencies that must act, keeps the ledger of referrals and"
            " their deadlines, and takes the agencies' replies over AMQP (and HTTP, see its OpenAPI document).",
            topology=topology,
            receives={
                topology.referral_cases.name: CASE_EVENTS,
                topology.referral_deliveries.name: DELIVERY_REPORTS,
                topology.referral_replies.name: REPLIES,
            },
        ),
    )
    privacy = Privacy(ledger, directory, dead_letters=operations, clock=clock)
    desk = OfficerDesk(
        ledger,
        referrals,
        directory,
        load_link_key(settings),
        pin_attempts=settings.pin_attempts,
        pin_lockout=timedelta(minutes=settings.pin_lockout_minutes),
        clock=clock,
    )
    http.include_router(
        build_officer_page(desk, directory, secure_cookie=settings.public_referral_url.startswith("https://"))
    )
    http.include_router(build_sms_replies(desk, settings.inbound_gateway_token))
    return Service(name="referral", port=settings.referral_port, http=http)
