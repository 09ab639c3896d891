"""Composition root of the notifier: broker, webhook channel and HTTP health wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import structlog
from fastapi import FastAPI

from services.notifier.channels import CircuitBreakers, WebhookChannel
from services.notifier.dispatch import Notifications
from services.notifier.handlers import build_router
from shared.broker import MessagePublisher, make_broker
from shared.consuming import DeadLetterMiddleware, DeadLetters
from shared.directory import Directory
from shared.http import health_router, install_error_handlers
from shared.observability import broker_checks, instrument, metrics_router
from shared.service import Service
from shared.settings import Settings
from shared.topology import build_topology

log = structlog.get_logger(__name__)


def build_notifier(settings: Settings, directory: Callable[[], Directory]) -> Service:
    broker = make_broker(settings, app_id="rujukan-notifier")
    metrics = instrument(broker, "notifier")
    publisher = MessagePublisher(broker, timeout=settings.publish_timeout_seconds)
    broker.add_middleware(partial(DeadLetterMiddleware, dead_letters=DeadLetters(publisher)))
    topology = build_topology(directory(), settings.retry_schedule)
    channel = WebhookChannel(
        timeout_seconds=settings.webhook_timeout_seconds,
        attempts=settings.webhook_attempts,
        breakers=CircuitBreakers(
            threshold=settings.webhook_circuit_failures, cool_down=settings.webhook_circuit_seconds
        ),
    )
    notifications = Notifications(
        directory,
        channel,
        publisher,
        referral_url=settings.public_referral_url,
        retry_rounds=len(topology.notifier_waits),
    )
    broker.include_router(build_router(notifications, publisher, topology, settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await channel.start()
        await broker.connect()
        await topology.declare(broker)
        await broker.start()
        log.info("service_started", port=settings.notifier_port)
        try:
            yield
        finally:
            await broker.stop()
            await channel.close()

    http = FastAPI(title="Rujukan notifier", version="1", lifespan=lifespan)
    install_error_handlers(http)
    http.include_router(metrics_router(metrics))
    http.include_router(health_router(broker_checks(broker)))
    return Service(name="notifier", port=settings.notifier_port, http=http)
