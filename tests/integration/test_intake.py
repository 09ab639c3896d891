"""Intake answers every reporter clearly: 202 only when the broker confirmed, or the error and its fields."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pamqp.encode
import pytest
from pamqp.commands import Basic

from shared.consuming import dead_letter_context
from shared.ids import case_id_for
from shared.sealing import load_sealer
from tests.builders import a_case_report_body, a_victim
from tests.chaos.proxy import TcpProxy
from tests.fuzz.messages import RawTimestamp, encoding_foreign_values, encoding_raw_timestamps
from tests.rabbit import BrokerClient, delete_vhost_of, limit_queue
from tests.system import (
    System,
    WebhookSink,
    declare_topology,
    delivered_everywhere,
    directory_for,
    eventually,
    settings_for,
)

pytestmark = pytest.mark.rabbit


async def test_report_without_a_token_or_with_an_unknown_one_gets_401(system: System) -> None:
    url = system.url("intake", "/v1/cases")

    missing = await system.http.post(url, json=a_case_report_body())
    unknown = await system.http.post(url, json=a_case_report_body(), headers={"Authorization": "Bearer nope"})

    assert missing.status_code == 401
    assert unknown.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"


async def test_only_the_reporting_police_unit_may_report_its_case(system: System) -> None:
    body = a_case_report_body(reporting_agency="polres-bengkayang")

    other_police = await system.report(body, agency_id="polres-sambas")
    not_police = await system.report(body, agency_id="dinsos-bengkayang")

    assert other_police.status_code == 403
    assert not_police.status_code == 403


async def test_invalid_report_gets_422_naming_the_fields_without_echoing_identity(system: System) -> None:
    body = a_case_report_body(
        victims=[a_victim(age_years=200, nik="12345", full_name="Siti Aminah")], regency_code="62.01"
    )
    body["favourite_colour"] = "blue"

    response = await system.report(body)

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert {"victims.0.age_years", "victims.0.nik", "favourite_colour"} <= fields
    assert "12345" not in response.text
    assert "Siti" not in response.text


async def test_report_for_a_regency_outside_the_directory_gets_422(system: System) -> None:
    response = await system.report(a_case_report_body(regency_code="64.01"))

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["regency_code"]


async def test_changed_report_under_the_same_number_gets_409_pointing_to_amendment(system: System) -> None:
    body = a_case_report_body()
    first = await system.report(body)

    changed = await system.report({**body, "victims": [a_victim(age_years=16)]})

    assert first.status_code == 202
    assert changed.status_code == 409
    assert changed.json()["case_id"] == first.json()["case_id"]
    assert "amend" in changed.json()["detail"]


async def test_body_that_is_not_json_or_too_large_is_refused(system: System) -> None:
    url = system.url("intake", "/v1/cases")
    headers = system.token("polres-bengkayang")

    not_json = await system.http.post(url, content=b"<xml/>", headers={**headers, "content-type": "application/xml"})
    too_large = await system.http.post(
        url, content=b"[" + b"1," * 600_000 + b"1]", headers={**headers, "content-type": "application/json"}
    )

    assert not_json.status_code in (415, 422)
    assert too_large.status_code == 413


async def test_report_is_answered_503_not_202_when_the_broker_is_gone(system: System) -> None:
    await delete_vhost_of(str(system.settings.amqp_url))

    response = await system.report(a_case_report_body())

    assert response.status_code == 503


async def test_invalid_amqp_report_is_dead_lettered_with_its_reason_and_answered_with_a_receipt(
    system: System, broker: BrokerClient
) -> None:
    body = a_case_report_body(victims=[a_victim(age_years=-3, full_name="Siti Aminah")])

    message_id = await broker.publish("rujukan.intake", "case.report", body, message_type="case.report.v1")

    [dead] = await broker.take("intake.reports.dead")
    assert dead.message_id == message_id
    assert "victims.0.age_years" in dead.headers["x-rujukan-reason"]
    assert "Siti" not in dead.headers["x-rujukan-reason"]
    assert b"Siti" not in dead.body
    sealer = load_sealer(system.settings)
    assert json.loads(sealer.open_bytes(dead.body, context=dead_letter_context(message_id))) == body
    [receipt] = await broker.take("agency.polres-bengkayang.receipts")
    answer = json.loads(receipt.body)
    assert answer["event"] == "rejected"
    assert answer["source_message_id"] == message_id
    assert "victims.0.age_years" in answer["reason"]


async def test_amqp_report_over_the_size_limit_is_dead_lettered_as_http_refuses_it(
    system: System, broker: BrokerClient
) -> None:
    """Found by the chaos harness: a valid report padded past the limit, refused 413 over HTTP, was accepted over
    AMQP."""
    padded = json.dumps(a_case_report_body()).encode() + b" " * system.settings.max_request_bytes

    message_id = await broker.publish("rujukan.intake", "case.report", padded, message_type="case.report.v1")

    [dead] = await broker.take("intake.reports.dead")
    assert dead.message_id == message_id
    assert dead.headers["x-rujukan-reason"] == (
        f"body of {len(padded)} bytes is over the limit of {system.settings.max_request_bytes} bytes"
    )
    [receipt] = await broker.take("agency.polres-bengkayang.receipts")
    assert json.loads(receipt.body)["event"] == "rejected"


async def test_amqp_report_that_is_not_json_is_dead_lettered_at_once_without_its_bytes(
    system: System, broker: BrokerClient
) -> None:
    """The handler decodes the body with the contract its type names; bytes that are not UTF-8 JSON fail that on
    every delivery, so the first is the last."""
    message_id = await broker.publish("rujukan.intake", "case.report", b"\xfd{Siti", message_type="case.report.v1")

    [dead] = await broker.take("intake.reports.dead")
    assert dead.message_id == message_id
    assert dead.headers["x-rujukan-reason"].startswith("invalid case.report.v1: ")
    assert "Invalid JSON" in dead.headers["x-rujukan-reason"]
    assert "Siti" not in dead.headers["x-rujukan-reason"]
    assert dead.headers["x-delivery-count"] == 0


async def test_amqp_report_nested_deeper_than_json_parsers_go_is_dead_lettered_at_once(
    system: System, broker: BrokerClient
) -> None:
    """Found by review: reading the refused body for its sender raised RecursionError, which took the place of the
    refusal, so the report was requeued nine times and dead-lettered as "gave up after 10 deliveries"."""
    nested = b'{"reporting_agency": "polres-bengkayang", "victims": ' + b"[" * 3000 + b"]" * 3000 + b"}"

    message_id = await broker.publish("rujukan.intake", "case.report", nested, message_type="case.report.v1")

    [dead] = await broker.take("intake.reports.dead")
    assert dead.message_id == message_id
    assert dead.headers["x-rujukan-reason"].startswith("invalid case.report.v1: ")
    assert dead.headers["x-delivery-count"] == 0


async def test_unknown_contract_version_is_dead_lettered_with_its_reason(system: System, broker: BrokerClient) -> None:
    await broker.publish("rujukan.intake", "case.report", a_case_report_body(), message_type="case.report.v9")

    [dead] = await broker.take("intake.reports.dead")

    assert dead.headers["x-rujukan-reason"] == "unknown contract case.report.v9"


async def test_valid_amqp_report_is_referred_like_an_http_one(system: System, broker: BrokerClient) -> None:
    body = a_case_report_body()

    await broker.publish("rujukan.intake", "case.report", body, message_type="case.report.v1")

    [referred] = await broker.take("agency.polres-bengkayang.receipts")
    case_id = json.loads(referred.body)["case_id"]
    case = await system.case_when(case_id, delivered_everywhere)
    assert {leg["agency_id"] for leg in case["referrals"]} == {"dinsos-bengkayang", "uptd-ppa-kalbar"}


async def test_readiness_reports_broker_consumers_and_database(system: System) -> None:
    intake = await system.http.get(system.url("intake", "/readyz"))
    referral = await system.http.get(system.url("referral", "/readyz"))

    assert intake.status_code == 200
    assert intake.json()["checks"] == {"broker": True, "consumers": True, "database": True}
    assert referral.json()["checks"] == {
        "broker": True,
        "consumers": True,
        "database": True,
        "outbox_relay": True,
        "deadline_sweeper": True,
    }


async def test_metrics_count_the_messages_each_service_handled(system: System) -> None:
    response = await system.report(a_case_report_body())
    await system.case_when(response.json()["case_id"], delivered_everywhere)

    intake = await system.http.get(system.url("intake", "/metrics"))
    referral = await system.http.get(system.url("referral", "/metrics"))

    assert 'faststream_published_messages_total{app_name="rujukan-intake"' in intake.text
    assert 'faststream_received_messages_total{app_name="rujukan-referral"' in referral.text


async def test_readiness_fails_soon_after_the_broker_is_gone(system: System) -> None:
    async def not_ready() -> bool:
        return (await system.http.get(system.url("intake", "/readyz"))).status_code == 503

    await delete_vhost_of(str(system.settings.amqp_url))

    # The broker closes the vhost's connections asynchronously: readiness follows within moments.
    await eventually(not_ready, timeout=10)


async def test_an_amqp_report_confirmed_while_referral_cases_is_full_waits_instead_of_being_dead_lettered(
    amqp_url: str, sink: WebhookSink, tmp_path: Path, broker: BrokerClient
) -> None:
    # Found by the chaos harness (queue-length scenario): intake requeued at once, the queue's ten deliveries
    # went by in milliseconds, and a report the police system held a confirm for ended up dead-lettered.
    directory = directory_for(sink)
    sink.directory = directory
    intake_only = System(settings_for(amqp_url, tmp_path), directory, sink, ("intake",))
    await intake_only.start()
    try:
        await limit_queue(amqp_url, "referral.cases", 1)
        statuses: list[int] = []

        async def full() -> bool:
            statuses.append((await intake_only.report(a_case_report_body())).status_code)
            return statuses[-1] == 503

        await eventually(full)
        body = a_case_report_body()
        await broker.publish("rujukan.intake", "case.report", body, message_type="case.report.v1")
        await asyncio.sleep(1.5)  # the refused report's deliveries would all be spent by now without the pause
        assert await broker.depth("intake.reports.dead") == 0

        await broker.drain("referral.cases", at_least=1)
        case_id = str(case_id_for(body["reporting_agency"], body["police_report_number"]))
        [taken] = await broker.take("referral.cases", timeout=30)
        assert taken.correlation_id == case_id
    finally:
        await intake_only.stop()


async def test_a_report_whose_confirm_was_lost_with_the_connection_keeps_the_case_for_its_own_content(
    amqp_url: str, sink: WebhookSink, tmp_path: Path, broker: BrokerClient
) -> None:
    """Found by review: the connection dropped after the broker took the report but before its confirm arrived,
    intake answered 503 and let the case go, and a corrected report got 202: two versions of one case went to the
    referral service under two message ids."""
    directory = directory_for(sink)
    sink.directory = directory
    await declare_topology(settings_for(amqp_url, tmp_path), directory)
    proxy = TcpProxy(urlsplit(amqp_url).port or 5672)
    await proxy.start()
    through_proxy = urlsplit(amqp_url)._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}").geturl()
    intake_only = System(settings_for(through_proxy, tmp_path), directory, sink, ("intake",))
    await intake_only.start()
    try:
        first = a_case_report_body()
        corrected = {**first, "victims": [a_victim(age_years=16)]}
        proxy.hold_answers()
        asyncio.get_running_loop().call_later(0.5, proxy.cut)

        lost_confirm = await intake_only.report(first)
        corrected_meanwhile = await intake_only.report(corrected)

        async def accepted_when_sent_again() -> bool:
            return (await intake_only.report(first)).status_code == 202

        await eventually(accepted_when_sent_again, timeout=30)
    finally:
        await intake_only.stop()
        await proxy.stop()

    assert lost_confirm.status_code == 503
    assert corrected_meanwhile.status_code == 409
    published = await broker.drain("referral.cases", at_least=2)
    assert {message.message_id for message in published} == {published[0].message_id}


async def test_a_report_with_a_timestamp_header_past_the_year_9999_closes_no_connection(
    system: System, broker: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: such a header (a microsecond epoch, say) failed to decode in the AMQP client's frame reader,
    which closed intake's connection at every delivery; the broker finally dead-lettered the report, and the valid
    ones behind it, unread, unsealed and without a reason."""
    monkeypatch.setattr(pamqp.encode, "encode_table_value", encoding_foreign_values(pamqp.encode.encode_table_value))
    stamped, plain = a_case_report_body(), a_case_report_body()
    invalid = a_case_report_body(victims=[a_victim(age_years=-3)])

    await broker.publish("rujukan.intake", "case.report", stamped, message_type="case.report.v1",
                         headers={"sent-at": RawTimestamp(1_780_000_000_000_000)})  # fmt: skip
    refused = await broker.publish("rujukan.intake", "case.report", invalid, message_type="case.report.v1",
                                   headers={"sent-at": RawTimestamp(2**64 - 1)})  # fmt: skip
    await broker.publish("rujukan.intake", "case.report", plain, message_type="case.report.v1")

    for body in (stamped, plain):
        await system.case_when(
            str(case_id_for(body["reporting_agency"], body["police_report_number"])), delivered_everywhere
        )
    [dead] = await broker.take("intake.reports.dead")
    assert dead.message_id == refused
    assert dead.headers["x-rujukan-reason"].startswith("invalid case.report.v1: ")
    assert dead.headers["x-delivery-count"] == 0


async def test_a_report_whose_timestamp_property_is_past_the_year_9999_is_taken_as_if_it_had_none(
    system: System, broker: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review of the fix above: decoded as its number, the property failed aio-pika's own check in the
    client's consumer task, so the report was never acked nor refused, and held a prefetch slot for good."""
    monkeypatch.setitem(pamqp.encode.METHODS, "timestamp", encoding_raw_timestamps(pamqp.encode.METHODS["timestamp"]))
    body = a_case_report_body()
    channel = await (await broker.channel()).get_underlay_channel()

    await channel.basic_publish(
        json.dumps(body).encode(),
        exchange="rujukan.intake",
        routing_key="case.report",
        properties=Basic.Properties(
            message_id=str(uuid.uuid4()),
            message_type="case.report.v1",
            content_type="application/json",
            delivery_mode=2,
            timestamp=RawTimestamp(1_780_000_000_000_000),
        ),
    )

    case_id = case_id_for(body["reporting_agency"], body["police_report_number"])
    await system.case_when(str(case_id), delivered_everywhere)
