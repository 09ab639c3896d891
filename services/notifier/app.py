"""Composition root of the notifier: broker, store, channels (webhook, email, SMS/WhatsApp gateway) and HTTP
health wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial

import structlog
from aiohttp.abc import AbstractResolver
from fastapi import FastAPI

from services.notifier.channels import Channel, CircuitBreakers, QuickRetries
from services.notifier.channels.email import EmailChannel
from services.notifier.channels.gateway import GatewayChannel
from services.notifier.channels.targets import GuardedResolver
from services.notifier.channels.webhook import WebhookChannel
from services.notifier.dispatch import Notifier
from services.notifier.handlers import REFERRAL_EVENTS, build_router
from services.notifier.messages import Notification
from services.notifier.metrics import NotifierMetrics, store_gauges
from services.notifier.store import NotificationStore
from shared.addresses import Network
from shared.asyncapi import Send, asyncapi_document, register_sends, serve_asyncapi
from shared.broker import MessagePublisher, make_broker
from shared.consuming import DeadLetterMiddleware, DeadLetters
from shared.contracts.referrals import ReferralDelivered, ReferralDeliveryFailed
from shared.database import make_engine, ping
from shared.directory import Directory
from shared.http import health_router, install_error_handlers
from shared.links import LinkSigner
from shared.observability import broker_checks, instrument, metrics_router
from shared.rosters import uncovered_agencies
from shared.sealing import load_link_key
from shared.service import Service
from shared.settings import Settings
from shared.topology import EVENTS, build_topology

log = structlog.get_logger(__name__)


SENDS = (
    Send(
        EVENTS,
        "referral.<agency>.delivered",
        (ReferralDelivered,),
        "A notification of a referral reached its recipient (the referral service records it).",
    ),
    Send(
        EVENTS,
        "referral.<agency>.delivery_failed",
        (ReferralDeliveryFailed,),
        "Every channel of a recipient failed (the referral service escalates).",
    ),
    Send(
        "",
        "notifier.notifications",
        (Notification,),
        "Internal: a notification that waits for its next try, moves to the recipient's next channel, or whose"
        " first try the store or the broker failed.",
    ),
)


def build_channels(
    settings: Settings, directory: Callable[[], Directory], *, resolver: AbstractResolver | None = None
) -> list[Channel]:
    """``resolver`` looks names up behind the channels' address guard (default: aiohttp's; tests stand in for DNS)."""
    # One breaker set for every endpoint: a dead agency webhook, SMTP server or gateway is left alone for a
    # while instead of holding the prefetch slots that every other notification needs.
    retries = QuickRetries(
        attempts=settings.webhook_attempts,
        breakers=CircuitBreakers(
            threshold=settings.webhook_circuit_failures, cool_down=settings.webhook_circuit_seconds
        ),
    )

    def allowed() -> Sequence[Network]:
        return directory().private_webhook_networks

    return [
        WebhookChannel(
            timeout_seconds=settings.webhook_timeout_seconds,
            retries=retries,
            resolver=GuardedResolver(allowed, what="webhook", inner=resolver),
        ),
        EmailChannel(settings, retries=retries),
        GatewayChannel(
            url=settings.sms_gateway_url,
            token=settings.sms_gateway_token,
            timeout_seconds=settings.webhook_timeout_seconds,
            retries=retries,
            resolver=GuardedResolver(allowed, what="gateway", inner=resolver),
        ),
    ]


def claim_lease(settings: Settings) -> timedelta:
    """How long one consumer holds a notification it is sending unless it extends the claim, which it does until
    the send and what follows it are recorded. A holder killed mid-send is relieved once it lapses (found by the
    chaos harness); one that is merely stalled past it sends again under the same notification id, which receivers
    drop."""
    return timedelta(seconds=settings.notification_claim_seconds)


def warn_of_roster_gaps(directory: Directory) -> None:
    """One warning naming every agency whose roster leaves hours of the week uncovered, or that has none."""
    if gaps := uncovered_agencies(directory):
        log.warning("roster_gaps", gaps=gaps)


def build_notifier(
    settings: Settings,
    directory: Callable[[], Directory],
    *,
    clock: Callable[[], datetime] | None = None,
    resolver: AbstractResolver | None = None,
) -> Service:
    broker = make_broker(settings, app_id="rujukan-notifier")
    metrics = instrument(broker, "notifier")
    publisher = MessagePublisher(broker, timeout=settings.publish_timeout_seconds)
    dead_letters = DeadLetters(publisher)
    broker.add_middleware(partial(DeadLetterMiddleware, dead_letters=dead_letters))
    topology = build_topology(directory(), settings.retry_schedule)
    # The store dedups and drops reminders; losing its last writes to a machine crash costs at most a resend
    # under the same notification id, which receivers drop. Not worth an fsync per notification.
    engine = make_engine(settings.notifier_database_url, survive_power_loss=False)
    store = NotificationStore(engine)
    channels = build_channels(settings, directory, resolver=resolver)
    metrics.add(store_gauges(engine, (kind for channel in channels for kind in channel.kinds)))
    notifier = Notifier(
        directory,
        channels,
        publisher,
        store,
        LinkSigner(load_link_key(settings)),
        notifications_queue=topology.notifier_notifications.name,
        referral_url=settings.public_referral_url,
        link_ttl=timedelta(hours=settings.link_ttl_hours),
        retry_rounds=len(topology.notifier_waits),
        metrics=NotifierMetrics(metrics.registry),
        lease=claim_lease(settings),
        clock=clock,
    )
    broker.include_router(build_router(notifier, publisher, dead_letters, topology, settings))
    register_sends(broker, SENDS)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        warn_of_roster_gaps(directory())
        await store.create_schema()
        for channel in channels:
            await channel.start()
        await broker.connect()
        await topology.part("notifier").declare_for(broker, settings)
        await broker.start()
        log.info("service_started", port=settings.notifier_port)
        try:
            yield
        finally:
            log.info("service_stopping")
            await broker.stop()
            for channel in channels:
                await channel.close()
            await engine.dispose()
            log.info("service_stopped")

    # No /docs: FastAPI's Swagger page loads its scripts from a CDN; /openapi.json and /asyncapi.json stay.
    http = FastAPI(title="Rujukan notifier", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(http)
    http.include_router(metrics_router(metrics))
    http.include_router(health_router({**broker_checks(broker), "database": partial(ping, engine)}))
    serve_asyncapi(
        http,
        lambda: asyncapi_document(
            broker,
            title="Rujukan notifier",
            description="Tells agency systems (webhook) and duty officers (email, SMS, WhatsApp) of referrals"
            " and escalations, retries, and reports each notification's fate to the referral service.",
            topology=topology,
            receives={
                topology.notifier_referrals.name: REFERRAL_EVENTS,
                topology.notifier_notifications.name: (Notification,),
            },
        ),
    )
    return Service(name="notifier", port=settings.notifier_port, http=http)
