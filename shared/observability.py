"""Prometheus metrics and readiness probes every service shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Response
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def instrument(broker: RabbitBroker, service: str) -> CollectorRegistry:
    """FastStream's received/processed/published counters and durations, in a registry of this service's own."""
    registry = CollectorRegistry()
    broker.add_middleware(RabbitPrometheusMiddleware(registry=registry, app_name=f"rujukan-{service}"))
    return registry


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def broker_checks(broker: RabbitBroker) -> dict[str, Callable[[], Awaitable[bool]]]:
    """The connection answers, and every subscriber is still consuming (a ping alone misses a dead consumer)."""

    async def connected() -> bool:
        return await broker.ping(timeout=3)

    async def consuming() -> bool:
        subscribers = broker.subscribers
        return bool(subscribers) and all(_consuming(subscriber) for subscriber in subscribers)

    return {"broker": connected, "consumers": consuming}


def _consuming(subscriber: Any) -> bool:
    # FastStream's `running` flag stays up when the broker cancels a consumer or its channel closes
    # (ag2ai/faststream#2758); the consumer tag and the channel say whether messages can still arrive.
    queue = getattr(subscriber, "_queue_obj", None)
    return bool(
        subscriber.running
        and getattr(subscriber, "_consumer_tag", None)
        and queue is not None
        and not queue.channel.is_closed
    )
