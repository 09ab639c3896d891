"""What other AMQP clients put in a message that pamqp or FastStream would choke on; found by the queue fuzzer
(tests/fuzz/test_queues.py), which shows each end to end on the real broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pamqp.decode
import pamqp.encode
import pytest
from pydantic import ValidationError

from services.cli import build_services
from shared.consuming import DROPPED_HEADERS_HEADER, SENDER_HEADERS_BUDGET, encodable, field_errors, fitting
from shared.contracts.cases import CaseReport
from shared.directory import load_directory
from shared.sealing import load_sealer
from tests.builders import a_case_report_body, a_victim
from tests.system import CONFIG, settings_for


def written_and_read(headers: dict[str, Any]) -> dict[str, Any]:
    _, table = pamqp.decode.field_table(pamqp.encode.field_table(headers))
    return table


def test_a_header_that_is_not_utf8_is_written_back_byte_for_byte() -> None:
    read = b"\xfd\x00nama"  # how pamqp reads a long string that is not UTF-8

    assert bytes(written_and_read({"h": encodable(read)})["h"]) == read


def test_a_double_beyond_single_precision_is_written_back_as_its_text() -> None:
    assert written_and_read({"h": encodable(-4.9e173)}) == {"h": "-4.9e+173"}


def test_headers_inside_tables_and_arrays_are_made_writable_too() -> None:
    written = written_and_read({"t": encodable({"a": [b"\xff", 1e300, 1.5]})})

    assert written == {"t": {"a": [bytearray(b"\xff"), "1e+300", 1.5]}}


def test_a_field_not_in_the_contract_is_named_without_repeating_its_name() -> None:
    body = a_case_report_body(victims=[{**a_victim(), "Siti Aminah binti Ahmad": {"umur": 15}}])

    with pytest.raises(ValidationError) as refused:
        CaseReport.model_validate(body)

    assert field_errors(refused.value) == [
        {"field": "victims.0.(a field not in the contract)", "message": "Extra inputs are not permitted"}
    ]


async def test_an_http_error_body_names_a_field_not_in_the_contract_without_repeating_its_name(
    tmp_path: Path,
) -> None:
    settings = settings_for("amqp://guest:guest@127.0.0.1:5672/unused", tmp_path)
    [intake] = build_services(("intake",), settings, load_directory(CONFIG), load_sealer(settings))
    body = a_case_report_body(victims=[{**a_victim(), "Siti Aminah binti Ahmad": {"umur": 15}}])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(intake.http), base_url="http://intake") as client:
        answer = await client.post("/v1/cases", json=body, headers={"Authorization": "Bearer dev-polres-bengkayang"})

    assert answer.status_code == 422
    assert "Siti" not in answer.text
    assert answer.json()["errors"] == [
        {"field": "victims.0.(a field not in the contract)", "message": "Extra inputs are not permitted"}
    ]


def test_a_sender_s_headers_too_large_to_send_on_with_a_reason_lose_their_largest_first() -> None:
    headers = {"small": "s", "large": "l" * 70_000, "medium": "m" * 30_000}

    kept = fitting(headers)

    assert kept == {"small": "s", "medium": "m" * 30_000, DROPPED_HEADERS_HEADER: "large"}
    assert len(pamqp.encode.field_table(kept)) <= SENDER_HEADERS_BUDGET


def test_headers_that_fit_are_kept_as_they_are() -> None:
    headers = {"causation_id": "abc", "x-rujukan-retry-round": 2}

    assert fitting(headers) is headers
