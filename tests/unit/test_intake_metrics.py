"""Intake counts refusals by a fixed reason class: never the error's text, which may quote a report."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prometheus_client import CollectorRegistry

from services.intake.metrics import IntakeMetrics, Kind, kind_of, reason_class
from services.intake.reports import IntakeUnavailableError, InvalidReportError, UncertainReportError
from shared.consuming import UnverifiedSenderError
from shared.contracts.cases import CaseWithdrawal
from shared.errors import NotPermittedError


def test_each_refusal_is_counted_under_a_fixed_reason_class() -> None:
    errors = {
        InvalidReportError([{"field": "regency_code", "message": "Siti's regency"}]): "invalid",
        UncertainReportError(uuid4()): "uncertain",
        NotPermittedError("agency x cannot"): "not_permitted",
        UnverifiedSenderError("user y"): "unverified_sender",
        IntakeUnavailableError("the broker did not confirm in time"): "unavailable",
        RuntimeError("Siti"): "error",
    }

    assert [reason_class(error) for error in errors] == list(errors.values())


def test_a_message_kind_comes_from_its_contract_type_and_anything_else_is_unknown() -> None:
    assert (kind_of(CaseWithdrawal.TYPE), kind_of("case.report.v9"), kind_of(None)) == (
        Kind.WITHDRAWAL,
        Kind.UNKNOWN,
        Kind.UNKNOWN,
    )


def test_a_block_that_returns_is_accepted_and_one_that_raises_is_refused_and_still_raises() -> None:
    registry = CollectorRegistry()
    metrics = IntakeMetrics(registry)

    with metrics.counting(Kind.REPORT):
        pass
    with pytest.raises(NotPermittedError), metrics.counting(Kind.AMENDMENT):
        raise NotPermittedError("agency x cannot amend")

    assert registry.get_sample_value("rujukan_reports_accepted_total", {"kind": "report"}) == 1
    refused = {"kind": "amendment", "reason": "not_permitted"}
    assert registry.get_sample_value("rujukan_reports_refused_total", refused) == 1
