"""The RabbitBroker factory with safe defaults, and the one way the services publish."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from aiormq.exceptions import DeliveryError
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange
from faststream.rabbit.message import RabbitMessage
from faststream.security import BaseSecurity

from shared.amqp_decoding import tolerate_undecodable_values
from shared.contracts.base import Contract
from shared.settings import Settings


def connection_url(amqp_url: str, name: str) -> str:
    """Adds ``?name=`` so operators see which service holds a connection (client_properties does not)."""
    parts = urlsplit(amqp_url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("name", name)
    return urlunsplit(parts._replace(query=urlencode(query)))


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The client side of TLS to the broker: verifies the broker against ``amqp_ca_file`` (or the system's CAs)
    and its host name, and presents our certificate when one is configured; None for a plain ``amqp://`` URL."""
    if settings.amqp_url.scheme != "amqps":
        return None
    context = ssl.create_default_context(cafile=settings.amqp_ca_file)
    if settings.amqp_cert_file is not None:
        context.load_cert_chain(settings.amqp_cert_file, settings.amqp_key_file)
    return context


CONSUMER_GRACE_SECONDS = 15.0
"""How long a stopping service waits for the messages its handlers are processing (FastStream's
``graceful_timeout``), after its HTTP grace (``shared.service.HTTP_GRACE_SECONDS``)."""


def make_broker(settings: Settings, *, app_id: str) -> RabbitBroker:
    tolerate_undecodable_values()
    context = tls_context(settings)
    return RabbitBroker(
        connection_url(str(settings.amqp_url), app_id),
        security=BaseSecurity(ssl_context=context) if context is not None else None,
        app_id=app_id,
        # An unroutable mandatory publish must raise, not vanish (FASTSTREAM.md, "Defaults that lose messages").
        default_channel=Channel(on_return_raises=True, publisher_confirms=True),
        # Unexpected errors are requeued and counted against x-delivery-limit; the dead-letter middleware
        # turns permanent ones into a dead letter with our reason before this policy ever sees them.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        logger=structlog.get_logger("faststream"),
        # FastStream's own line for each message received and processed (its context redacted anyway) is debug:
        # at INFO it was two lines per message, most of the service's log. Failures still log as errors.
        log_level=logging.DEBUG,
        graceful_timeout=CONSUMER_GRACE_SECONDS,
        # A handler takes the message itself and decodes its body with the contract its type names (shared/
        # consuming.py). FastStream's dependency injection, which resolved that parameter on a worker thread, and
        # its JSON parse of every body, which nothing read, cost about a tenth of each consumer's CPU.
        apply_types=False,
        decoder=_the_message_itself,
    )


async def _the_message_itself(message: RabbitMessage) -> RabbitMessage:
    return message


def consumer_channel(settings: Settings) -> Channel:
    """Each subscriber gets its own channel with bounded prefetch: one channel error stops one consumer."""
    return Channel(prefetch_count=settings.prefetch, on_return_raises=True)


@dataclass(frozen=True)
class Envelope:
    """A message ready to publish: body bytes plus the transport metadata of DESIGN.md, "Messages"."""

    exchange: str
    routing_key: str
    message_id: str
    message_type: str
    correlation_id: str | None
    body: bytes
    causation_id: str | None = None

    @classmethod
    def of(
        cls,
        contract: Contract,
        *,
        exchange: RabbitExchange | str,
        routing_key: str,
        message_id: str,
        correlation_id: str | None,
        causation_id: str | None = None,
    ) -> Envelope:
        return cls(
            exchange=exchange.name if isinstance(exchange, RabbitExchange) else exchange,
            routing_key=routing_key,
            message_id=message_id,
            message_type=contract.TYPE,
            correlation_id=correlation_id,
            body=contract.model_dump_json().encode(),
            causation_id=causation_id,
        )


def certainly_refused(error: BaseException) -> bool:
    """Whether a failed publish certainly left nothing with the broker: it returned the message as unroutable or
    nacked it. Any other failure (the connection lost before the confirm arrived, a timeout) may come after the
    broker took the message (FASTSTREAM.md, "Defaults that lose messages")."""
    return isinstance(error, DeliveryError)


class MessagePublisher:
    """Publishes persistent, mandatory, publisher-confirmed messages; returns only once the broker confirmed."""

    def __init__(self, broker: RabbitBroker, *, timeout: float) -> None:
        self._broker = broker
        self._timeout = timeout

    async def publish(self, envelope: Envelope, *, headers: Mapping[str, Any] | None = None) -> None:
        all_headers: dict[str, Any] = dict(headers or {})
        if envelope.causation_id:
            all_headers["causation_id"] = envelope.causation_id
        # The outer bound matters: while a robust connection is re-connecting, aio-pika waits for it
        # before its own publish timeout starts, and a caller waiting for 202 must hear 503 instead. A timeout
        # scope, not wait_for, which made every publish a task of its own (3-4 % of the referral service's CPU).
        async with asyncio.timeout(self._timeout):
            await self._publish(envelope, all_headers)

    async def _publish(self, envelope: Envelope, headers: dict[str, Any]) -> None:
        await self._broker.publish(
            envelope.body,
            exchange=envelope.exchange or None,
            routing_key=envelope.routing_key,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            message_type=envelope.message_type,
            content_type="application/json",
            timestamp=datetime.now(UTC),
            headers=headers,
            persist=True,
            mandatory=True,
            timeout=self._timeout,
        )

    async def publish_to_queue(
        self, queue: str, *, body: bytes, properties: Mapping[str, Any], headers: Mapping[str, Any]
    ) -> None:
        """Through the default exchange to exactly one queue (dead letters, wait queues, replays)."""
        async with asyncio.timeout(self._timeout):
            await self._broker.publish(
                body,
                routing_key=queue,
                headers=dict(headers),
                persist=True,
                mandatory=True,
                timeout=self._timeout,
                **properties,
            )
