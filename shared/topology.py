"""The broker topology: exchanges, quorum queues, bindings, dead letters. Each service declares its own part at
start (``Topology.part``), so its broker user needs rights on that part only; ``rujukan broker setup`` declares
every part up front, so no publish finds a consumer's queue missing.

Names here are the public contract agency systems bind to (DESIGN.md, "Messages").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

from shared.broker import make_broker
from shared.directory import Directory

if TYPE_CHECKING:
    from faststream.rabbit import RabbitBroker

    from shared.settings import Settings

INTAKE = RabbitExchange("rujukan.intake", type=ExchangeType.TOPIC, durable=True)
EVENTS = RabbitExchange("rujukan.events", type=ExchangeType.TOPIC, durable=True)
REPLIES = RabbitExchange("rujukan.replies", type=ExchangeType.TOPIC, durable=True)
DLX = RabbitExchange("rujukan.dlx", type=ExchangeType.DIRECT, durable=True)

# The broker's backstop for crashes and bugs. Part of the queue arguments, so changing it means a new
# queue name or a broker policy (RabbitMQ refuses to re-declare a queue with other arguments).
DELIVERY_LIMIT = 10


def dead_letter_queue_name(queue: str) -> str:
    return f"{queue}.dead"


def format_delay(seconds: float) -> str:
    """Names a wait queue by its delay, so a changed schedule declares new queues instead of failing."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def _work_queue(name: str) -> RabbitQueue:
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments={
            "x-dead-letter-exchange": DLX.name,
            "x-dead-letter-routing-key": name,
            # Quorum dead-lettering is at-most-once unless both of these are set.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": DELIVERY_LIMIT,
        },
    )


def _wait_queue(work_queue: str, delay_seconds: float) -> RabbitQueue:
    # Expired messages go back through the default exchange to the one work queue that failed, never
    # through a topic exchange (every bound queue, an agency inbox included, would get a copy).
    return RabbitQueue(
        f"{work_queue}.wait.{format_delay(delay_seconds)}",
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments={
            "x-message-ttl": int(delay_seconds * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": work_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


@dataclass(frozen=True)
class Binding:
    exchange: RabbitExchange
    routing_key: str


@dataclass(frozen=True)
class QueueSpec:
    queue: RabbitQueue
    bindings: tuple[Binding, ...] = ()
    dead_lettered: bool = True


@dataclass(frozen=True)
class Part:
    """What one service declares at start: the queues it consumes with their dead-letter and wait queues, the
    agency queues only it publishes to, and the exchanges it publishes to or binds from."""

    service: str
    specs: tuple[QueueSpec, ...]
    publishes_to: tuple[RabbitExchange, ...]

    @property
    def bound_from(self) -> tuple[RabbitExchange, ...]:
        """The exchanges its queues are bound to, the DLX among them when a queue dead-letters."""
        wanted: dict[str, RabbitExchange] = {}
        for spec in self.specs:
            wanted.update({binding.exchange.name: binding.exchange for binding in spec.bindings})
            if spec.dead_lettered:
                wanted[DLX.name] = DLX
        return tuple(wanted.values())

    @property
    def exchanges(self) -> tuple[RabbitExchange, ...]:
        """Declared before its queues: the exchanges it publishes to or binds from."""
        return tuple({e.name: e for e in (*self.publishes_to, *self.bound_from)}.values())

    @property
    def queue_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for spec in self.specs:
            names.append(spec.queue.name)
            if spec.dead_lettered:
                names.append(dead_letter_queue_name(spec.queue.name))
        return tuple(names)

    async def declare(self, broker: RabbitBroker) -> None:
        exchanges: dict[str, Any] = {}
        for exchange in self.exchanges:
            exchanges[exchange.name] = await broker.declare_exchange(exchange)
        for spec in self.specs:
            declared = await broker.declare_queue(spec.queue)
            for binding in spec.bindings:
                await declared.bind(exchanges[binding.exchange.name], routing_key=binding.routing_key)
            if spec.dead_lettered:
                dead = await broker.declare_queue(
                    RabbitQueue(dead_letter_queue_name(spec.queue.name), queue_type=QueueType.QUORUM, durable=True)
                )
                await dead.bind(exchanges[DLX.name], routing_key=spec.queue.name)

    async def declare_for(self, broker: RabbitBroker, settings: Settings) -> None:
        """Declares the part for a service whose ``broker`` is connected but not started: the exchanges through
        that broker (its publishers then find them declared, and start without a declaration on the channel its
        handlers publish on), the queues and bindings on a connection of its own, closed after. FastStream (0.7)
        keeps each queue its broker declared and hands that object, channel and all, to the queue's subscriber,
        which would then consume on the declaring channel, with no prefetch limit, instead of on its own channel
        with RUJUKAN_PREFETCH (found by the chaos harness: a notifier held a thousand messages and its publishes
        timed out behind them)."""
        for exchange in self.exchanges:
            await broker.declare_exchange(exchange)
        apart = make_broker(settings, app_id=f"rujukan-{self.service}-declare")
        await apart.connect()
        try:
            await self.declare(apart)
        finally:
            await apart.stop()


@dataclass(frozen=True)
class Topology:
    """All queues of one deployment, derived from the directory and the retry schedule."""

    intake_reports: RabbitQueue
    referral_cases: RabbitQueue
    referral_deliveries: RabbitQueue
    referral_replies: RabbitQueue
    notifier_referrals: RabbitQueue
    notifier_notifications: RabbitQueue
    notifier_waits: tuple[RabbitQueue, ...]
    parts: Mapping[str, Part] = field(repr=False)
    """By service name: ``intake``, ``referral``, ``notifier``."""

    @property
    def specs(self) -> tuple[QueueSpec, ...]:
        """Each queue once, though two parts may declare it."""
        return tuple({spec.queue.name: spec for part in self.parts.values() for spec in part.specs}.values())

    def part(self, service: str) -> Part:
        return self.parts[service]

    async def declare(self, broker: RabbitBroker) -> None:
        """Every part, with one broker user allowed all of it (the demo on guest, tests)."""
        for part in self.parts.values():
            await part.declare(broker)


def build_topology(directory: Directory, retry_schedule: tuple[float, ...]) -> Topology:
    intake_reports = _work_queue("intake.reports")
    referral_cases = _work_queue("referral.cases")
    referral_deliveries = _work_queue("referral.deliveries")
    referral_replies = _work_queue("referral.replies")
    notifier_referrals = _work_queue("notifier.referrals")
    # One message per (event, recipient, channel): published by the notifier itself through the default
    # exchange, retried through its own wait queues.
    notifier_notifications = _work_queue("notifier.notifications")
    waits = tuple(_wait_queue(notifier_notifications.name, delay) for delay in retry_schedule)

    # Queues two services' events meet in are declared by both: a referral is routed to an agency's inbox and to
    # the notifier's queue, and with one of them missing (services started one by one on a broker nobody set up)
    # the publish is confirmed all the same and the missing queue never gets it. So the referral service declares
    # the inboxes it alone publishes to, and the notifier's queue as well as the notifier does.
    notifier_events = QueueSpec(
        notifier_referrals,
        tuple(Binding(EVENTS, f"referral.*.{key}") for key in ("issued", "escalated", "cancelled", "taken")),
    )
    inboxes = [
        QueueSpec(
            _work_queue(f"agency.{agency.id}.inbox"),
            tuple(Binding(EVENTS, f"referral.{agency.id}.{key}") for key in ("issued", "escalated", "cancelled")),
        )
        for agency in directory.receiving_agencies()
        if agency.inbox
    ]
    receipts = [
        QueueSpec(_work_queue(f"agency.{police.id}.receipts"), (Binding(EVENTS, f"case.{police.id}.receipt"),))
        for police in directory.police_units()
    ]
    parts = {
        "intake": Part(
            "intake",
            (
                QueueSpec(
                    intake_reports, tuple(Binding(INTAKE, f"case.{key}") for key in ("report", "amend", "withdraw"))
                ),
                *receipts,
            ),
            publishes_to=(EVENTS,),
        ),
        "referral": Part(
            "referral",
            (
                QueueSpec(
                    referral_cases,
                    tuple(Binding(EVENTS, f"case.{key}") for key in ("reported", "amended", "withdrawn")),
                ),
                QueueSpec(
                    referral_deliveries,
                    (Binding(EVENTS, "referral.*.delivered"), Binding(EVENTS, "referral.*.delivery_failed")),
                ),
                QueueSpec(referral_replies, (Binding(REPLIES, "referral.*.*"),)),
                *inboxes,
                notifier_events,
            ),
            publishes_to=(EVENTS,),
        ),
        "notifier": Part(
            "notifier",
            (
                notifier_events,
                QueueSpec(notifier_notifications),
                *(QueueSpec(wait, dead_lettered=False) for wait in waits),
            ),
            publishes_to=(EVENTS,),
        ),
    }
    return Topology(
        intake_reports=intake_reports,
        referral_cases=referral_cases,
        referral_deliveries=referral_deliveries,
        referral_replies=referral_replies,
        notifier_referrals=notifier_referrals,
        notifier_notifications=notifier_notifications,
        notifier_waits=waits,
        parts=parts,
    )
