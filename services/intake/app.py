"""Composition root of intake: broker, topology, registry and HTTP app wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import structlog
from fastapi import Depends, FastAPI

from services.intake.api import ERROR_ANSWERS, build_api
from services.intake.handlers import build_router
from services.intake.registry import ReportRegistry
from services.intake.reports import ReportIntake
from shared.broker import MessagePublisher, make_broker
from shared.consuming import DeadLetterMiddleware, DeadLetters
from shared.database import make_engine, ping
from shared.directory import Directory
from shared.http import BodyLimit, agency_auth, health_router, install_error_handlers
from shared.observability import broker_checks, instrument, metrics_router
from shared.sealing import IdentitySealer
from shared.service import Service
from shared.settings import Settings
from shared.topology import build_topology

log = structlog.get_logger(__name__)


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
    broker.include_router(build_router(intake, topology, settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await registry.create_schema()
        await broker.connect()
        await topology.part("intake").declare(broker)
        await broker.start()
        log.info("service_started", port=settings.intake_port)
        try:
            yield
        finally:
            await broker.stop()
            await engine.dispose()

    http = FastAPI(title="Rujukan intake", version="1", lifespan=lifespan)
    install_error_handlers(http, ERROR_ANSWERS)
    http.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    http.include_router(metrics_router(metrics))
    http.include_router(health_router({**broker_checks(broker), "database": partial(ping, engine)}))
    http.include_router(build_api(intake, Depends(agency_auth(directory))))
    return Service(name="intake", port=settings.intake_port, http=http)
