"""A police unit's system reports a case over AMQP, then waits for the receipt that says what became of it.

    pip install aio-pika
    RUJUKAN_AMQP_URL=amqps://rujukan-polres-bengkayang:...@broker.example:5671/rujukan \
    RUJUKAN_AGENCY=polres-bengkayang RUJUKAN_BROKER_USER=rujukan-polres-bengkayang \
    python publish_case_report.py "LP/B/123/XI/2026/SPKT/POLRES BENGKAYANG"

The case is published to the exchange ``rujukan.intake`` with routing key ``case.report`` and AMQP ``type``
``case.report.v1`` (schema: docs/asyncapi/intake.json, message ``case.report.v1``). The receipt arrives on your
queue ``agency.<your id>.receipts``: ``referred`` once the case is referred, ``rejected`` (with the reason) if the
report could not be accepted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime

import aio_pika

AMQP_URL = os.environ.get("RUJUKAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
AGENCY = os.environ.get("RUJUKAN_AGENCY", "polres-bengkayang")
# Your broker user (from `rujukan broker setup`): RabbitMQ checks that user_id is the connection's own user, so
# Rujukan knows the report really comes from you. Leave unset only against the demo broker (guest).
BROKER_USER = os.environ.get("RUJUKAN_BROKER_USER")
TIMEOUT_SECONDS = float(os.environ.get("RUJUKAN_RECEIPT_TIMEOUT", "60"))

# The case id is derived from your agency and the report number, so you know it before any answer (README,
# "Using it from an agency's system"): the same report sent twice is the same case.
CASE_NAMESPACE = uuid.UUID("5b0c7a3e-3f0e-5d1a-9c1e-6a7e2f4d8b10")


def case_id_for(agency: str, report_number: str) -> str:
    return str(uuid.uuid5(CASE_NAMESPACE, f"{agency}:{' '.join(report_number.split()).upper()}"))


def sample_report(report_number: str) -> dict[str, object]:
    return {
        "police_report_number": report_number,
        "reporting_agency": AGENCY,
        "regency_code": "61.07",
        "reported_at": datetime.now(UTC).isoformat(),
        "exploitation_types": ["forced_labour"],
        "summary": "Dua korban dipulangkan dari Malaysia melalui PLBN Jagoi Babang.",
        "victims": [
            {
                "victim_ref": "V1",
                "full_name": "Contoh Korban Satu",
                "sex": "female",
                "age_years": 24,
                "migrant_worker_status": "returned",
                "destination_country": "MY",
                "needs": ["medical", "shelter"],
            },
            {"victim_ref": "V2", "full_name": "Contoh Korban Dua", "sex": "female", "age_years": 15},
        ],
        "contact_officer": {"name": "Bripka Contoh", "phone": "+62 812 0000 0000"},
    }


async def main(report_number: str) -> int:
    case_id = case_id_for(AGENCY, report_number)
    connection = await aio_pika.connect_robust(AMQP_URL)
    async with connection:
        # Publisher confirms are on by default: publish() returns once the broker has the message on disk.
        channel = await connection.channel()
        intake = await channel.get_exchange("rujukan.intake", ensure=False)
        receipts = await channel.get_queue(f"agency.{AGENCY}.receipts", ensure=False)
        # Keep the message id with the report: if you are not sure it went through, send it again with the
        # same id and the same content (a repeat is recognised, never a second case).
        message_id = str(uuid.uuid4())
        await intake.publish(
            aio_pika.Message(
                body=json.dumps(sample_report(report_number)).encode(),
                content_type="application/json",
                type="case.report.v1",
                message_id=message_id,
                user_id=BROKER_USER,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="case.report",
            mandatory=True,  # raises if nothing is bound: a wrong exchange or vhost never passes silently
        )
        print(f"published {report_number} (message {message_id}); case id {case_id}", flush=True)
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS), receipts.iterator() as messages:
                async for message in messages:
                    async with message.process():  # acknowledged when the block ends without an error
                        receipt = json.loads(message.body)
                        print(f"receipt {receipt['event']} for case {receipt.get('case_code')}", flush=True)
                        if receipt.get("case_id") == case_id and receipt["event"] in ("referred", "rejected"):
                            for leg in receipt.get("legs", []):
                                print(f"  referred to {leg['agency_id']}: {leg['status']}", flush=True)
                            if receipt["event"] == "rejected":
                                print(f"  rejected: {receipt.get('reason')}", flush=True)
                            return 0 if receipt["event"] == "referred" else 1
        except TimeoutError:
            print(f"no receipt for case {case_id} within {TIMEOUT_SECONDS:.0f} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} <police report number>")
    sys.exit(asyncio.run(main(sys.argv[1])))
