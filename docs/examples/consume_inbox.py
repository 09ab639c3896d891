"""A receiving agency's system takes its referrals from its inbox queue and acknowledges each one over AMQP.

    pip install aio-pika
    RUJUKAN_AMQP_URL=amqps://rujukan-dinsos-bengkayang:...@broker.example:5671/rujukan \
    RUJUKAN_AGENCY=dinsos-bengkayang RUJUKAN_BROKER_USER=rujukan-dinsos-bengkayang \
    python consume_inbox.py            # runs until stopped; --count N stops after N new referrals

The inbox ``agency.<your id>.inbox`` gets ``referral.issued.v1`` (a new referral), ``referral.escalated.v1``
(a deadline passed, levels 1-3) and ``referral.cancelled.v1`` (stand down); schemas in docs/asyncapi/referral.json.
They carry victim references, sex, age and needs, never a name: read the identity with
``GET /v1/referrals/{id}`` (see read_referral.sh). The acknowledgement goes to the exchange ``rujukan.replies``
as ``referral.<your id>.acknowledged`` (type ``referral.acknowledged.v1``); accept, decline and the other moves
work the same way (docs/asyncapi/referral.json, channel ``referral.replies``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import aio_pika

AMQP_URL = os.environ.get("RUJUKAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
AGENCY = os.environ.get("RUJUKAN_AGENCY", "dinsos-bengkayang")
BROKER_USER = os.environ.get("RUJUKAN_BROKER_USER")  # your broker user: proves the reply is yours
OFFICER = os.environ.get("RUJUKAN_OFFICER", "Sistem kasus Dinas Sosial")


async def acknowledge(replies: aio_pika.abc.AbstractExchange, referral_id: str) -> None:
    # The same message id for the same acknowledgement: sent twice (after a crash), Rujukan takes it once.
    await replies.publish(
        aio_pika.Message(
            body=json.dumps({"referral_id": referral_id, "agency_id": AGENCY, "officer": OFFICER}).encode(),
            content_type="application/json",
            type="referral.acknowledged.v1",
            message_id=f"{AGENCY}:{referral_id}:acknowledged",
            user_id=BROKER_USER,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=f"referral.{AGENCY}.acknowledged",
        mandatory=True,
    )


async def main(count: int | None) -> int:
    connection = await aio_pika.connect_robust(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        inbox = await channel.get_queue(f"agency.{AGENCY}.inbox", ensure=False)
        replies = await channel.get_exchange("rujukan.replies", ensure=False)
        print(f"waiting for referrals on agency.{AGENCY}.inbox", flush=True)
        taken = 0
        async with inbox.iterator() as messages:
            async for message in messages:
                # Acked only after the block: if storing or replying fails, the broker hands it over again.
                async with message.process(requeue=True):
                    event = json.loads(message.body)
                    victims = ", ".join(
                        f"{v['victim_ref']} ({v['sex']}, {v.get('age_years')})" for v in event["victims"]
                    )
                    print(
                        f"{message.type}: {event['case_code']} referral {event['referral_id']} [{victims}]", flush=True
                    )
                    # Store the referral in your case system here, keyed by referral_id (a redelivery is
                    # possible: storing it twice must change nothing).
                    if message.type == "referral.issued.v1":
                        await acknowledge(replies, event["referral_id"])
                        print(f"acknowledged referral {event['referral_id']}", flush=True)
                        taken += 1
                if count is not None and taken >= count:
                    return 0
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, help="stop after acknowledging this many new referrals")
    sys.exit(asyncio.run(main(parser.parse_args().count)))
