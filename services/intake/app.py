"""Composition root of intake: broker, topology, registry and HTTP app wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import structlog
from fastapi import Depends, FastAPI

from services.intake.api import ERROR_ANSWERS, build_api
from services.intake.handlers import CASE_MESSAGES, build_router
from services.intake.metrics import IntakeMetrics
from services.intake.registry import ReportRegistry
from services.intake.reports import ReportIntake
from shared.asyncapi import Send, asyncapi_document, register_sends, serve_asyncapi
from shared.broker import MessagePublisher, make_broker
from shared.consuming import DeadLetterMiddleware, DeadLetters
from shared.contracts.cases import CaseAmended, CaseReported, CaseWithdrawn
from shared.contracts.referrals import CaseReceipt
from shared.database import make_engine, ping
from shared.directory import Directory
from shared.http import BodyLimit, agency_auth, health_router, install_error_handlers
from shared.observability import broker_checks, instrument, metrics_router
from shared.sealing import IdentitySealer
from shared.service import Service
from shared.settings import Settings
from shared.topology import EVENTS, build_topology

log = structlog.get_logger(__name__)


SENDS = (
    Send(EVENTS, "case.reported", (CaseReported,), "A new case, identity sealed, for the referral service."),
    Send(EVENTS, "case.amended", (CaseAmended,), "A case as its police unit amended it."),
    Send(EVENTS, "case.withdrawn", (CaseWithdrawn,), "A case its police unit withdrew."),
    Send(
        EVENTS,
        "case.<agency>.receipt",
        (CaseReceipt,),
        "A `rejected` receipt to the police unit whose AMQP report was refused (its queue `agency.<id>.receipts`).",
    ),
)


def build_intake(settings: Settings, directory: Callable[[], Directory], sealer: IdentitySealer) -> Service:
    broker = make_broker(settings, app_id="rujukan-intake")
    metrics = instrument(broker, "intake")
    publisher = MessagePublisher(broker, timeout=settings.publish_timeout_seconds)
    dead_letters = DeadLetters(publisher, seal=lambda body, context: sealer.seal_bytes(body, context=context))
    broker.add_middleware(partial(DeadLetterMiddleware, dead_letters=dead_letters))
    topology = build_topology(directory(), settings.retry_schedule)
    engine = make_engine(settings.intake_database_url)
    registry = ReportRegistry(engine)
    intake = ReportIntake(directory, sealer, registry, publisher)
    counted = IntakeMetrics(metrics.registry)
    broker.include_router(build_router(intake, topology, settings, counted))
    register_sends(broker, SENDS)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await registry.create_schema()
        await broker.connect()
        await topology.part("intake").declare_for(broker, settings)
        await broker.start()
        log.info("service_started", port=settings.intake_port)
        try:
            yield
        finally:
            log.info("service_stopping")
            await broker.stop()
            await engine.dispose()
            log.info("service_stopped")

    # No /docs: FastAPI's Swagger page loads its scripts from a CDN; /openapi.json and /asyncapi.json stay.
    http = FastAPI(title="Rujukan intake", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(http, ERROR_ANSWERS)
    http.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    http.include_router(metrics_router(metrics))
    http.include_router(health_router({**broker_checks(broker), "database": partial(ping, engine)}))
    http.include_router(build_api(intake, Depends(agency_auth(directory)), counted))
    serve_asyncapi(
        http,
        lambda: asyncapi_document(
            broker,
            title="Rujukan intake",
            description="Takes case reports from police systems over AMQP (and HTTP, see its OpenAPI document),"
            " seals victim identity and publishes the case for the referral service.",
            topology=topology,
            receives={topology.intake_reports.name: CASE_MESSAGES},
        ),
    )
    return Service(name="intake", port=settings.intake_port, http=http)
