"""A flaky endpoint still delivers each referral once; a dead one falls back to email; when every channel is
spent the failure is reported with its whole history and the notification is parked for operators."""

from __future__ import annotations

import binascii
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.notifier.channels.webhook import WebhookChannel
from services.notifier.messages import Notification
from shared.consuming import REASON_HEADER
from tests.builders import a_case_report_body, a_victim
from tests.rabbit import BrokerClient
from tests.system import System, WebhookSink, agency_deliveries, delivered_everywhere, directory_for, settings_for

pytestmark = pytest.mark.rabbit

AN_ADULT_MAN = a_victim(sex="male", age_years=40, full_name="Andi Wijaya")
DESK = "meja.dinsos-bengkayang@example.org"


@pytest.fixture
async def patient_system(amqp_url: str, sink: WebhookSink, tmp_path: Path) -> AsyncIterator[System]:
    """Six short wait rounds and no circuit breaker: a coin-flip endpoint gets 21 tries before any fallback."""
    directory = directory_for(sink)
    sink.directory = directory
    settings = settings_for(amqp_url, tmp_path, retry_schedule=(0.3,) * 6, webhook_circuit_failures=1000)
    running = System(settings, directory, sink, ("intake", "referral", "notifier"))
    await running.start()
    yield running
    await running.stop()


def failed_for_the_agency(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in case["timeline"] if e["event"] == "delivery_failed" and e["detail"]["recipient"] == "agency"]


async def test_a_webhook_failing_half_the_time_ends_with_every_referral_delivered_once(patient_system: System) -> None:
    system = patient_system
    system.sink.failure_rate = 0.5
    case_ids = [(await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))).json()["case_id"] for _ in range(12)]

    cases = [await system.case_when(case_id, delivered_everywhere, timeout=60) for case_id in case_ids]

    ids_per_referral: dict[str, set[str]] = defaultdict(set)
    for delivery in system.sink.deliveries:
        ids_per_referral[delivery.payload["referral_id"]].add(delivery.webhook_id)
    assert len(ids_per_referral) == 12
    assert all(len(ids) == 1 for ids in ids_per_referral.values())
    assert len(system.sink.deliveries) == 12  # accepted once each: no copy was sent after a success
    assert system.sink.requests["dinsos-bengkayang"] > 12  # and the coin did fail on the way
    for case in cases:
        [delivered] = agency_deliveries(case)
        [referral_id] = [leg["referral_id"] for leg in case["referrals"]]
        assert ids_per_referral[referral_id] == {delivered["detail"]["notification_id"]}
        assert delivered["detail"]["channel"] == "webhook"


async def test_an_agency_system_whose_webhook_always_fails_is_reached_by_email(system: System) -> None:
    system.sink.fail_next("dinsos-bengkayang", *([503] * 100))
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    case = await system.case_when(response.json()["case_id"], lambda c: bool(agency_deliveries(c)), timeout=25)

    [delivered] = agency_deliveries(case)
    assert delivered["detail"]["channel"] == "email"
    [mail] = system.smtp.to(DESK)
    assert mail.message_id.startswith(f"<{delivered['detail']['notification_id']}@")
    assert mail.subject == f"[Rujukan TPPO] Rujukan baru {case['case_code']} - Bengkayang"
    assert f"Kode kasus: {case['case_code']}" in mail.body
    assert f"/v1/referrals/{delivered['referral_id']}" in mail.body


async def test_an_agency_whose_webhook_cannot_even_be_sent_is_reached_by_email(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: an error that was neither a transient nor a permanent channel failure (a key the signer could
    not decode) sent the notification round the notifier's wait queue forever; the agency heard nothing."""

    def cannot_sign(*_: Any) -> None:
        raise binascii.Error("Incorrect padding")

    monkeypatch.setattr(WebhookChannel, "_signer", cannot_sign)
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    case = await system.case_when(response.json()["case_id"], lambda c: bool(agency_deliveries(c)), timeout=25)

    [delivered] = agency_deliveries(case)
    assert delivered["detail"]["channel"] == "email"
    assert len(system.smtp.to(DESK)) == 1
    assert system.sink.requests["dinsos-bengkayang"] == 0


async def test_a_webhook_send_cut_off_by_the_network_once_is_retried_on_the_webhook(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network failing under a send is no defect of the notification: it waits and is sent again on the same
    channel, not moved to the next one as a send that cannot be made at all is."""
    signer, failures = WebhookChannel._signer, []

    def cut_off_once(channel: WebhookChannel, secret: str) -> Any:
        if not failures:
            failures.append(secret)
            raise ConnectionResetError("connection reset by peer")
        return signer(channel, secret)

    monkeypatch.setattr(WebhookChannel, "_signer", cut_off_once)
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    case = await system.case_when(response.json()["case_id"], lambda c: bool(agency_deliveries(c)), timeout=25)

    [delivered] = agency_deliveries(case)
    assert failures
    assert delivered["detail"]["channel"] == "webhook"
    assert system.smtp.to(DESK) == []


async def test_when_email_fails_too_delivery_is_reported_failed_with_its_history_and_parked(
    system: System, broker: BrokerClient
) -> None:
    system.sink.fail_next("dinsos-bengkayang", *([503] * 100))
    system.smtp.refuse(DESK)
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    case = await system.case_when(response.json()["case_id"], lambda c: bool(failed_for_the_agency(c)), timeout=25)

    [failed] = failed_for_the_agency(case)
    history = failed["detail"]["reason"].split("; ")
    assert [entry.split(":")[0] for entry in history] == ["webhook", "email"]
    # The webhook's circuit opens after five failures in a row: the desk's email is tried without waiting more.
    assert re.match(r"webhook: circuit open, next channel after \d+ attempts: ", history[0]), history[0]
    assert history[1] == "email: email recipient refused (SMTP 550)"
    [parked] = await broker.take("notifier.notifications.dead", 1)
    assert parked.headers[REASON_HEADER] == failed["detail"]["reason"]
    note = Notification.model_validate_json(parked.body)
    assert (note.recipient.id, note.address.kind, note.history) == ("agency", "email", (history[0],))
    assert "Andi" not in parked.body.decode()
    assert system.smtp.mails == []


async def test_when_every_channel_of_everyone_fails_the_referral_is_failed_escalated_and_its_history_kept(
    system: System, broker: BrokerClient
) -> None:
    agency = system.directory.agency("dinsos-bengkayang")
    assert agency is not None
    assert agency.roster is not None
    system.sink.fail_next(agency.id, *([503] * 100))
    system.smtp.refuse(DESK)
    for officer in agency.roster.officers:
        for channel in officer.channels:
            if channel.kind.value == "email":
                system.smtp.refuse(channel.to)
            else:
                system.gateway.fail_next(channel.to, *([503] * 100))
    response = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    def failed_and_escalated(case: dict[str, Any]) -> bool:
        escalated = any(e["event"] == "escalated" for e in case["timeline"])
        return case["referrals"][0]["status"] == "failed" and escalated and bool(failed_for_the_agency(case))

    case = await system.case_when(response.json()["case_id"], failed_and_escalated, timeout=40)

    [failed] = failed_for_the_agency(case)
    assert [entry.split(":")[0] for entry in failed["detail"]["reason"].split("; ")] == ["webhook", "email"]
    [escalated] = [e for e in case["timeline"] if e["event"] == "escalated"]
    assert escalated["detail"]["level"] == 1
    assert escalated["detail"]["reason"].startswith("delivery failed")
    assert await broker.depth("notifier.notifications.dead") >= 1
    assert system.smtp.mails == []
