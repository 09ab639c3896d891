"""The machine's ceiling: one hop of bare aio-pika doing the least a pipeline step can do safely.

Consume from a quorum queue, validate a case-sized pydantic model, publish it confirmed and persistent to a
second quorum queue, then ack. No outbox, idempotency or logging: this is what one hop costs on this broker.
"""

from __future__ import annotations

import asyncio
import json
import time

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts.cases import CaseReport
from tests.builders import a_case_report_body, the_sample_victims

PREFETCH = 32


async def one_hop(amqp_url: str, messages: int) -> dict[str, float]:
    """Preloads ``messages`` case reports, then times one consumer relaying them all (messages/s)."""
    arguments: dict[str, object] = {"x-queue-type": "quorum"}
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        loader = await connection.channel(publisher_confirms=True)
        source = await loader.declare_queue("bench.raw.in", durable=True, arguments=arguments)
        await loader.declare_queue("bench.raw.out", durable=True, arguments=arguments)
        bodies = [json.dumps(a_case_report_body(victims=the_sample_victims())).encode() for _ in range(messages)]
        for start in range(0, messages, 500):
            await asyncio.gather(
                *(
                    loader.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=source.name
                    )
                    for body in bodies[start : start + 500]
                )
            )

        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(source.name)
        relayed = 0
        finished = asyncio.Event()

        async def relay(message: AbstractIncomingMessage) -> None:
            nonlocal relayed
            report = CaseReport.model_validate_json(message.body)
            await channel.default_exchange.publish(
                aio_pika.Message(
                    report.model_dump_json().encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.message_id,
                    content_type="application/json",
                ),
                routing_key="bench.raw.out",
            )
            await message.ack()
            relayed += 1
            if relayed == messages:
                finished.set()

        started = time.monotonic()
        tag = await queue.consume(relay)
        await asyncio.wait_for(finished.wait(), timeout=600)
        elapsed = time.monotonic() - started
        await queue.cancel(tag)
        await loader.queue_delete("bench.raw.in")
        await loader.queue_delete("bench.raw.out")
    return {"messages": messages, "seconds": round(elapsed, 3), "per_second": round(messages / elapsed, 1)}
