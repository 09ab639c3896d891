"""The control's faulty consumer: takes messages off a queue with automatic acknowledgement, holds each a second
(its "work") and only then puts it back. Killed with messages in hand, it loses them: the checker must see that.

    python -m tests.chaos.autoack amqp://... referral.cases
"""

from __future__ import annotations

import asyncio
import sys

import aio_pika

HOLD_SECONDS = 1.0


async def main(url: str, queue_name: str) -> None:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.get_queue(queue_name, ensure=False)

    async def work(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await asyncio.sleep(HOLD_SECONDS)
        await channel.default_exchange.publish(
            aio_pika.Message(
                message.body,
                message_id=message.message_id,
                type=message.type,
                content_type=message.content_type,
                headers=dict(message.headers),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=queue_name,
        )

    await queue.consume(work, no_ack=True)
    print("consuming", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
