"""The broker side of operations: queue figures, and reading, replaying and discarding dead letters.

Browsing a dead-letter queue without losing or wearing out what is in it
-----------------------------------------------------------------------
RabbitMQ has no "peek". The ways to read a queue and leave its messages there all deliver them and hand them
back: ``basic.get`` or a consumer followed by ``nack(requeue=True)``, and the management API's "get messages" with
``ack_requeue_true`` (the same thing inside the broker). On a quorum queue every such return counts a delivery
(``x-delivery-count``), and a queue with an ``x-delivery-limit`` dead-letters or drops a message once it is
reached (FASTSTREAM.md, "Acknowledgement"). Reading one message at a time and requeueing it at once has a second
fault: a requeued message goes back to the front, so the next get hands out the same one again and the listing
never gets past it.

So a browse holds every message it reads: it gets messages one by one on a channel of its own, keeps each one
unacknowledged until the queue answers empty (or the listing limit is reached), describes them from their
headers and properties, and then returns them all with one ``nack(multiple=True, requeue=True)``. Each message is
read exactly once per listing, in queue order, and goes back in that order. It cannot be lost by being looked
at: until the nack it is unacknowledged, and if the process dies or the connection drops the broker requeues
it. The delivery counted does not wear it out either: ``<queue>.dead`` queues are declared without
``x-delivery-limit`` and without a dead-letter exchange of their own (shared/topology.py), so there is no limit
to reach — a broker policy must never give them one. A replay drops the counted deliveries with the other
broker bookkeeping, so the work queue's own limit starts afresh.

Replay and discard look the message up the same way and keep holding the others while they act on it, so
another message is never skipped or reordered. A replay publishes a copy, persistent and publisher-confirmed,
through the default exchange with the work queue's name as routing key — the one queue it died in, never a
topic exchange that would copy it to every bound queue, an agency inbox included — and only then acks the
original. A crash between the two leaves both (the dead letter is seen again); the copy keeps the original
``message_id``, so the consumer's idempotency drops a second one: never lost, never processed twice.

Browses, replays and discards of one queue take turns within this process (a lock per queue), so one listing
does not miss messages another call is holding. Two referral replicas browsing at once may each list fewer
messages than the queue holds for that moment; neither loses any.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from uuid import UUID

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelClosed, ChannelNotFoundEntity

from services.referral.operations.dead_letters import (
    dead_at_of,
    reason_of,
    replay_headers,
    replays_of,
    routing_key_of,
    work_queue_of,
)
from services.referral.operations.views import DeadLetter, QueueFigures, QueueKind, QueueSource
from shared.broker import connection_url, tls_context
from shared.consuming import SEALED_BODY_HEADER, dead_letter_context
from shared.errors import PermanentError
from shared.settings import Settings
from shared.topology import Topology, dead_letter_queue_name

log = structlog.get_logger(__name__)

Held = AbstractIncomingMessage

BROWSE_LIMIT = 1000
"""Dead letters held at once by one listing; a queue deeper than this is listed from its head."""


class ReplayRefusedError(PermanentError):
    """A dead letter that cannot be put back as it is (e.g. its sealed body no longer opens)."""


@dataclass(frozen=True)
class QueueInfo:
    name: str
    owner: str
    kind: QueueKind


def queue_inventory(topology: Topology) -> list[QueueInfo]:
    """Every queue of the deployment with the service (or agency) that consumes it."""
    found: list[QueueInfo] = []
    for spec in topology.specs:
        name = spec.queue.name
        first, _, rest = name.partition(".")
        kind: QueueKind
        if first == "agency":
            owner, kind = f"agency:{rest.rsplit('.', 1)[0]}", "agency"
        elif ".wait." in name:
            owner, kind = first, "wait"
        else:
            owner, kind = first, "work"
        found.append(QueueInfo(name, owner, kind))
        if spec.dead_lettered:
            found.append(QueueInfo(dead_letter_queue_name(name), owner, "dead"))
    return found


def management_base(settings: Settings) -> str:
    """RUJUKAN_MANAGEMENT_URL, or the broker's host on the management plugin's default port."""
    if settings.management_url:
        return settings.management_url.rstrip("/")
    scheme, port = ("https", 15671) if settings.amqp_url.scheme == "amqps" else ("http", 15672)
    return f"{scheme}://{settings.amqp_url.host}:{port}"


def _vhost(settings: Settings) -> str:
    path = urlsplit(str(settings.amqp_url)).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _rate(stats: Any, key: str) -> float | None:
    details = stats.get(f"{key}_details") if isinstance(stats, dict) else None
    return float(details["rate"]) if isinstance(details, dict) and "rate" in details else 0.0


def _with_rates(figures: QueueFigures, queue: dict[str, Any] | None) -> QueueFigures:
    if queue is None:
        return figures
    stats = queue.get("message_stats") or {}
    return figures.model_copy(
        update={
            "publish_rate": _rate(stats, "publish"),
            "deliver_rate": _rate(stats, "deliver_get"),
            "idle_since": _idle_since(queue.get("idle_since")),
        }
    )


def _idle_since(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    for text in (value, value.replace(" ", "T", 1)):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


class BrokerOps:
    """Talks to the broker for operators, on a connection of its own per call (an ops console is not a hot
    path, and a channel error here must never touch the service's consumers)."""

    def __init__(self, settings: Settings, *, open_sealed: Callable[[bytes, bytes], bytes]) -> None:
        self._settings = settings
        self._open_sealed = open_sealed
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AbstractConnection]:
        url = connection_url(str(self._settings.amqp_url), "referral-ops")
        connection = await aio_pika.connect(url, ssl_context=tls_context(self._settings), timeout=10)
        try:
            yield connection
        finally:
            await connection.close()

    # Queue figures

    async def figures(self, inventory: Sequence[QueueInfo]) -> tuple[QueueSource, list[QueueFigures]]:
        """Depth and consumers from passive declares, always: the broker answers them from the queue itself, while
        the management API's figures are samples up to a stats interval (5 s by default) old, and a status check
        must not call a queue unconsumed because its consumer arrived a moment ago. Rates and idle times, which
        only the management API has, are added when it answers for our credentials; ``source`` says whether
        it did."""
        passive = await self._passive(inventory)
        managed = await self._management_queues()
        if managed is None:
            return "passive", passive
        return "management", [_with_rates(figures, managed.get(figures.name)) for figures in passive]

    async def _management_queues(self) -> dict[str, dict[str, Any]] | None:
        # Imported at an operator's first look: the client's 6 MB of modules would otherwise stay in every referral
        # process for its whole life, for a page most never open.
        import aiohttp

        base = urlsplit(management_base(self._settings))
        # Credentials in RUJUKAN_MANAGEMENT_URL win: a service's broker user has no management tag of its own.
        login = base if base.username is not None else urlsplit(str(self._settings.amqp_url))
        header = aiohttp.encode_basic_auth(unquote(login.username or ""), unquote(login.password or ""))
        auth = {"Authorization": header}
        host = base.netloc.rsplit("@", 1)[-1]
        url = f"{base.scheme}://{host}{base.path}/api/queues/{quote(_vhost(self._settings), safe='')}"
        try:
            async with (
                aiohttp.ClientSession(headers=auth, timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(url) as response,
            ):
                if response.status != 200:
                    log.info("management_api_unavailable", status=response.status)
                    return None
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("management_api_unavailable", error=type(exc).__name__)
            return None
        return {queue["name"]: queue for queue in body if isinstance(queue, dict) and "name" in queue}

    async def _passive(self, inventory: Sequence[QueueInfo]) -> list[QueueFigures]:
        figures: list[QueueFigures] = []
        async with self._connection() as connection:
            channel = await connection.channel()
            for info in inventory:
                messages: int | None = None
                consumers: int | None = None
                try:
                    declared = await channel.declare_queue(info.name, passive=True)
                    messages = declared.declaration_result.message_count or 0
                    consumers = declared.declaration_result.consumer_count or 0
                except ChannelClosed:
                    # A missing queue closes the channel (404 NOT_FOUND); the next one needs a new channel.
                    channel = await connection.channel()
                figures.append(
                    QueueFigures(
                        name=info.name, owner=info.owner, kind=info.kind, messages=messages, consumers=consumers
                    )
                )
        return figures

    # Dead letters

    def _lock(self, dead_letter_queue: str) -> asyncio.Lock:
        return self._locks.setdefault(dead_letter_queue, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _holding(self, connection: AbstractConnection, dead_letter_queue: str) -> AsyncIterator[list[Held]]:
        """Every message of the queue (up to the limit), held unacknowledged for the duration; whatever was not
        acked inside goes back, in order, when the block ends, however it ends."""
        async with self._lock(dead_letter_queue):
            channel = await connection.channel()
            held: list[Held] = []
            try:
                queue = await channel.declare_queue(dead_letter_queue, passive=True)
                while len(held) < BROWSE_LIMIT:
                    message = await queue.get(no_ack=False, fail=False, timeout=10)
                    if message is None:
                        break
                    held.append(message)
                yield held
            finally:
                await _give_back(channel, held)

    async def dead_letters(self, dead_letter_queues: Sequence[str], now: datetime) -> list[DeadLetter]:
        """The dead letters of each queue in turn, on one connection."""
        found: list[DeadLetter] = []
        async with self._connection() as connection:
            for dead_letter_queue in dead_letter_queues:
                try:
                    async with self._holding(connection, dead_letter_queue) as held:
                        found.extend(_describe(message, dead_letter_queue, now) for message in held)
                except ChannelNotFoundEntity:
                    # Declared by the service that publishes there: not yet, when that service never ran.
                    continue
        return found

    async def act_on(
        self,
        dead_letter_queue: str,
        message_id: str,
        now: datetime,
        *,
        action: Callable[[AbstractConnection, AbstractIncomingMessage, DeadLetter], Awaitable[None]],
    ) -> DeadLetter | None:
        """Runs ``action`` on the dead letter ``message_id`` while the queue's messages are held; the message is
        acked (removed) only when the action returned. None when the queue holds no such message."""
        async with self._connection() as connection, self._holding(connection, dead_letter_queue) as held:
            found = next((message for message in held if message.message_id == message_id), None)
            if found is None:
                return None
            letter = _describe(found, dead_letter_queue, now)
            await action(connection, found, letter)
            await found.ack()
            held.remove(found)
            return letter

    async def settle(
        self,
        dead_letter_queues: Sequence[str],
        now: datetime,
        *,
        choose: Callable[[str, Sequence[Held]], Awaitable[Sequence[Settlement]]],
        before_removing: Callable[[Settlement, DeadLetter], Awaitable[None]],
    ) -> list[tuple[Settlement, DeadLetter]]:
        """Of each queue's dead letters (up to the listing limit, from its head), settles those ``choose`` picks:
        a replacement, if any, is put into the queue first (confirmed), then ``before_removing`` runs, then the
        original is removed. The others go back in order. A crash between the replacement and the removal leaves
        both; the next settling takes the original again."""
        settled: list[tuple[Settlement, DeadLetter]] = []
        async with self._connection() as connection:
            for dead_letter_queue in dead_letter_queues:
                try:
                    async with self._holding(connection, dead_letter_queue) as held:
                        for settlement in await choose(dead_letter_queue, list(held)):
                            letter = _describe(settlement.message, dead_letter_queue, now)
                            if settlement.replacement is not None:
                                await self._publish_confirmed(
                                    connection, settlement.replacement, into=dead_letter_queue
                                )
                            await before_removing(settlement, letter)
                            await settlement.message.ack()
                            held.remove(settlement.message)
                            settled.append((settlement, letter))
                except ChannelNotFoundEntity:
                    continue
        return settled

    async def replay(
        self, connection: AbstractConnection, message: AbstractIncomingMessage, *, into: str, operator: str
    ) -> None:
        """A copy of ``message`` into ``into``, the one queue it died in, confirmed by the broker."""
        body = message.body
        headers = dict(message.headers or {})
        if headers.get(SEALED_BODY_HEADER):
            try:
                body = self._open_sealed(body, dead_letter_context(message.message_id))
            except PermanentError as exc:
                raise ReplayRefusedError(f"its sealed body does not open: {exc}") from None
        await self._publish_confirmed(
            connection, copy_of(message, body, replay_headers(headers, operator=operator)), into=into
        )

    async def _publish_confirmed(self, connection: AbstractConnection, message: aio_pika.Message, *, into: str) -> None:
        """``message`` into the queue ``into`` through the default exchange, persistent and confirmed."""
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            await channel.default_exchange.publish(
                message, routing_key=into, mandatory=True, timeout=self._settings.publish_timeout_seconds
            )
        finally:
            await channel.close()


@dataclass(frozen=True)
class Settlement:
    """A held dead letter to remove, after putting ``replacement`` (a copy of it) in its place, if given; for the
    case ``case_id``, when it is settled for one."""

    message: Held
    replacement: aio_pika.Message | None = None
    case_id: UUID | None = None


def copy_of(message: AbstractIncomingMessage, body: bytes, headers: dict[str, Any]) -> aio_pika.Message:
    """``message`` with another body and headers, its other properties kept (its ``message_id`` above all: the
    consumer's idempotency knows it by that)."""
    return aio_pika.Message(
        body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        timestamp=message.timestamp,
        app_id=message.app_id,
    )


async def _give_back(channel: AbstractChannel, held: list[AbstractIncomingMessage]) -> None:
    try:
        if held and not channel.is_closed:
            # One nack for all, in delivery order: they return to the queue's head as they were.
            await held[-1].nack(multiple=True, requeue=True)
    finally:
        # Closing requeues whatever is still unacknowledged, should the nack not have gone out.
        with contextlib.suppress(Exception):
            await channel.close()


def _describe(message: AbstractIncomingMessage, dead_letter_queue: str, now: datetime) -> DeadLetter:
    headers = dict(message.headers or {})
    dead_at = dead_at_of(headers, message.timestamp)
    return DeadLetter(
        message_id=message.message_id or "",
        dead_letter_queue=dead_letter_queue,
        queue=work_queue_of(dead_letter_queue),
        reason=reason_of(headers),
        attempts=replays_of(headers) + 1,
        dead_at=dead_at,
        age=max(now - dead_at, timedelta(0)) if dead_at is not None else None,
        routing_key=routing_key_of(headers),
        message_type=message.type,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        size=len(message.body),
        sealed=bool(headers.get(SEALED_BODY_HEADER)),
    )
