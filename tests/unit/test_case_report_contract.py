from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.consuming import field_errors
from shared.contracts.cases import CaseReport
from tests.builders import a_case_report, a_case_report_body, a_victim


def refusal_of(body: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as excinfo:
        CaseReport.model_validate(body)
    return field_errors(excinfo.value)


def refused_fields(body: dict[str, Any]) -> set[str]:
    return {item["field"] for item in refusal_of(body)}


def test_a_well_formed_report_is_accepted() -> None:
    report = a_case_report(victims=[a_victim(nik="6107014508100001")])

    assert report.victims[0].nik == "6107014508100001"


def test_report_with_an_unknown_top_level_field_is_refused() -> None:
    body = a_case_report_body(reporter_name="Bripka Andi")

    assert refused_fields(body) == {"reporter_name"}


def test_victim_with_an_unknown_field_is_refused() -> None:
    body = a_case_report_body(victims=[a_victim(religion="Islam")])

    assert refused_fields(body) == {"victims.0.religion"}


@pytest.mark.parametrize("age", [0, 120])
def test_victim_age_at_the_bounds_is_accepted(age: int) -> None:
    report = a_case_report(victims=[a_victim(age_years=age)])

    assert report.victims[0].age_years == age


@pytest.mark.parametrize("age", [-1, 121])
def test_victim_age_outside_0_to_120_is_refused(age: int) -> None:
    body = a_case_report_body(victims=[a_victim(age_years=age)])

    assert refused_fields(body) == {"victims.0.age_years"}


@pytest.mark.parametrize(
    "nik",
    ["12345", "610701450810000", "61070145081000011", "61070145081000AB", "6107-0145-0810-0001"],
)
def test_nik_that_is_not_16_digits_is_refused(nik: str) -> None:
    body = a_case_report_body(victims=[a_victim(nik=nik)])

    assert refused_fields(body) == {"victims.0.nik"}


def test_report_without_victims_is_refused() -> None:
    body = a_case_report_body(victims=[])

    assert refused_fields(body) == {"victims"}


def test_report_with_500_victims_is_accepted() -> None:
    victims = [a_victim(victim_ref=f"V{n}") for n in range(1, 501)]

    report = a_case_report(victims=victims)

    assert len(report.victims) == 500


def test_report_with_more_than_500_victims_is_refused() -> None:
    victims = [a_victim(victim_ref=f"V{n}") for n in range(1, 502)]

    assert refused_fields(a_case_report_body(victims=victims)) == {"victims"}


def test_two_victims_with_the_same_reference_are_refused() -> None:
    body = a_case_report_body(victims=[a_victim(victim_ref="V1"), a_victim(victim_ref="V1", full_name="Dewi")])

    errors = refusal_of(body)

    assert [item["field"] for item in errors] == ["victims"]
    assert "unique" in errors[0]["message"]


@pytest.mark.parametrize(
    ("victim", "field"),
    [
        (a_victim(sex="unknown"), "victims.0.sex"),
        (a_victim(migrant_worker_status="tourist"), "victims.0.migrant_worker_status"),
        (a_victim(needs=["shelter", "money"]), "victims.0.needs.1"),
    ],
)
def test_values_outside_the_known_lists_are_refused(victim: dict[str, Any], field: str) -> None:
    assert refused_fields(a_case_report_body(victims=[victim])) == {field}


@pytest.mark.parametrize("number", ["L", "L" * 100])
def test_police_report_number_of_1_to_100_characters_is_accepted(number: str) -> None:
    report = a_case_report(police_report_number=number)

    assert report.police_report_number == number


@pytest.mark.parametrize("number", ["", "L" * 101, "   ", "\t\n"])
def test_empty_blank_or_too_long_police_report_number_is_refused(number: str) -> None:
    assert refused_fields(a_case_report_body(police_report_number=number)) == {"police_report_number"}


def test_reported_at_with_an_offset_is_accepted() -> None:
    report = a_case_report(reported_at="2025-08-07T09:30:00+07:00")

    assert report.reported_at.utcoffset() is not None


@pytest.mark.parametrize("reported_at", ["2025-08-07T09:30:00", "2025-08-07 09:30"])
def test_reported_at_without_an_offset_is_refused(reported_at: str) -> None:
    assert refused_fields(a_case_report_body(reported_at=reported_at)) == {"reported_at"}


@pytest.mark.parametrize(
    ("victim", "rejected_value"),
    [
        (a_victim(nik="12345"), "12345"),
        (a_victim(nik="61070145081000AB"), "61070145081000AB"),
        (a_victim(phone="call-me-at-siti"), "call-me-at-siti"),
        (a_victim(passport_number="C-9981!"), "C-9981!"),
        (a_victim(full_name="Siti Aminah", age_years=999), "999"),
        (a_victim(sex="Perempuan Siti"), "Perempuan Siti"),
        (a_victim(birth_date="Siti-lahir-2010"), "Siti-lahir-2010"),
        (a_victim(home_village="Desa Sungai Betung"), "Sungai Betung"),
    ],
)
def test_refusal_never_repeats_the_rejected_value(victim: dict[str, Any], rejected_value: str) -> None:
    errors = refusal_of(a_case_report_body(victims=[victim]))

    assert errors
    assert rejected_value not in str(errors)


def test_a_refused_report_s_error_never_quotes_the_values_it_refused() -> None:
    body = a_case_report_body(victims=[a_victim(full_name="Siti Aminah", nik="61070123XX")])

    with pytest.raises(ValidationError) as refused:
        CaseReport.model_validate(body)

    assert "nik" in str(refused.value)
    assert "61070123XX" not in str(refused.value)
    assert "Siti Aminah" not in str(refused.value)
