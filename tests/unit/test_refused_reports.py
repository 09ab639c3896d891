"""What intake reads of a refused AMQP report to answer its sender, and what it does not read."""

from __future__ import annotations

import json

from services.intake.reports import Claimed, claimed_by
from tests.builders import a_case_report_body

LIMIT = 10_000


def test_a_refused_report_names_its_sender_and_number_for_the_rejected_receipt() -> None:
    body = a_case_report_body()

    claimed = claimed_by(json.dumps(body).encode() + b" " * LIMIT, readable_bytes=2 * LIMIT)

    assert claimed == Claimed("polres-bengkayang", body["police_report_number"])


def test_a_body_far_past_the_size_limit_is_not_read_for_its_sender() -> None:
    padded = json.dumps(a_case_report_body()).encode() + b" " * 2 * LIMIT

    assert claimed_by(padded, readable_bytes=2 * LIMIT) == Claimed(None, None)


def test_a_body_nested_deeper_than_the_parser_goes_names_nobody_instead_of_failing() -> None:
    nested = b'{"reporting_agency": "polres-bengkayang", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    assert claimed_by(nested, readable_bytes=len(nested)) == Claimed(None, None)
