from __future__ import annotations

import re
import uuid
from datetime import datetime

import pytest

from shared.ids import case_code_for, case_id_for
from tests.builders import WIB

NUMBER = "LP/B/123/VIII/2025/SPKT/POLRES BENGKAYANG"


@pytest.mark.parametrize(
    "typed",
    [
        "lp/b/123/viii/2025/spkt/polres bengkayang",
        "  LP/B/123/VIII/2025/SPKT/POLRES   BENGKAYANG  ",
        "LP/B/123/VIII/2025/SPKT/POLRES\tBENGKAYANG\n",
        "Lp/B/123/viii/2025/Spkt/Polres  Bengkayang",
    ],
)
def test_same_report_number_typed_differently_gives_the_same_case(typed: str) -> None:
    assert case_id_for("polres-bengkayang", typed) == case_id_for("polres-bengkayang", NUMBER)


def test_different_report_numbers_give_different_cases() -> None:
    other = NUMBER.replace("123", "124")

    assert case_id_for("polres-bengkayang", other) != case_id_for("polres-bengkayang", NUMBER)


def test_same_report_number_from_different_agencies_gives_different_cases() -> None:
    assert case_id_for("polres-sambas", NUMBER) != case_id_for("polres-bengkayang", NUMBER)


def test_case_id_is_stable_across_runs() -> None:
    expected = uuid.uuid5(uuid.UUID("5b0c7a3e-3f0e-5d1a-9c1e-6a7e2f4d8b10"), f"polres-bengkayang:{NUMBER}")

    assert case_id_for("polres-bengkayang", NUMBER) == expected


def test_case_code_is_province_year_and_six_readable_characters() -> None:
    case_id = case_id_for("polres-bengkayang", NUMBER)

    code = case_code_for(case_id, prefix="KB", reported_at=datetime(2025, 8, 7, 9, 30, tzinfo=WIB))

    assert re.fullmatch(r"KB-25-[0-9A-HJKMNP-TV-Z]{6}", code)


def test_different_cases_get_different_case_codes() -> None:
    reported_at = datetime(2025, 8, 7, 9, 30, tzinfo=WIB)
    codes = {
        case_code_for(case_id_for("polres-bengkayang", f"LP/B/{n}/VIII/2025"), prefix="KB", reported_at=reported_at)
        for n in range(200)
    }

    assert len(codes) == 200
