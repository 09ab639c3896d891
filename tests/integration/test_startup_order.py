"""Services started one by one on a broker nobody set up (no `rujukan broker setup`): whichever comes first, no
message reaches one of its queues and misses another."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.builders import a_case_report_body, the_sample_victims
from tests.system import (
    GatewaySink,
    ServiceProcess,
    SmtpSink,
    System,
    WebhookSink,
    directory_for,
    eventually,
    settings_for,
    with_sinks,
)

pytestmark = pytest.mark.rabbit


async def test_a_case_referred_before_the_notifier_ever_started_is_notified_once_it_starts(
    amqp_url: str, sink: WebhookSink, tmp_path: Path
) -> None:
    """Found by review: the referral service declares the agencies' inboxes, the notifier its own queue; a referral
    published in between went to the inbox alone, confirmed, and the notifier never heard of it."""
    directory = directory_for(sink)
    sink.directory = directory
    smtp, gateway = SmtpSink(), GatewaySink()
    await smtp.start()
    await gateway.start()
    settings = with_sinks(settings_for(amqp_url, tmp_path), smtp, gateway)
    intake, referral = (
        ServiceProcess("intake", settings, directory, tmp_path),
        ServiceProcess("referral", settings, directory, tmp_path),
    )
    notifier = ServiceProcess("notifier", settings, directory, tmp_path)
    try:
        await intake.start()
        await referral.start()
        async with httpx.AsyncClient() as client:
            body = a_case_report_body(victims=the_sample_victims())
            reported = await client.post(
                f"http://127.0.0.1:{settings.intake_port}/v1/cases",
                json=body,
                headers=System.token(body["reporting_agency"]),
            )
        assert reported.status_code == 202

        await notifier.start()

        async def every_agency_told() -> bool:
            return {d.agency_id for d in sink.deliveries} == {"dinsos-bengkayang", "uptd-ppa-kalbar", "bp3mi-kalbar"}

        await eventually(every_agency_told, timeout=30)
    finally:
        for service in (notifier, referral, intake):
            await service.stop()
        await smtp.stop()
        await gateway.stop()
