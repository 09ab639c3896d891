"""Builders that make tests read like sentences: ``a_case_report(victims=[a_victim(age_years=15)])``."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.contracts.cases import CaseReport, VictimFacts

WIB = timezone(timedelta(hours=7))
_numbers = itertools.count(1)


def a_report_number() -> str:
    """Unique per call and per test run, so cases never collide across runs on one ledger."""
    return f"LP/B/{next(_numbers)}-{uuid.uuid4().hex[:8]}/VIII/2025/SPKT/POLRES BENGKAYANG"


def a_victim(**overrides: Any) -> dict[str, Any]:
    victim: dict[str, Any] = {
        "victim_ref": "V1",
        "full_name": "Siti Aminah",
        "sex": "female",
        "age_years": 15,
        "nationality": "ID",
        "migrant_worker_status": "none",
        "needs": ["shelter"],
    }
    victim.update(overrides)
    return {key: value for key, value in victim.items() if value is not None}


def a_case_report_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "police_report_number": a_report_number(),
        "reporting_agency": "polres-bengkayang",
        "regency_code": "61.07",
        "reported_at": datetime(2025, 8, 7, 9, 30, tzinfo=WIB).isoformat(),
        "exploitation_types": ["forced_labour"],
        "summary": "Korban direkrut untuk bekerja di Malaysia.",
        "victims": [a_victim()],
    }
    body.update(overrides)
    return body


def the_sample_victims() -> list[dict[str, Any]]:
    """The demo's case: a 15-year-old girl, a woman of 24 returned from Malaysia, a man of 30 about to leave."""
    return [
        a_victim(victim_ref="V1", full_name="Siti Aminah", sex="female", age_years=15, needs=["shelter"]),
        a_victim(
            victim_ref="V2",
            full_name="Dewi Lestari",
            sex="female",
            age_years=24,
            migrant_worker_status="returned",
            destination_country="MY",
            needs=["medical", "reintegration"],
        ),
        a_victim(
            victim_ref="V3",
            full_name="Budi Santoso",
            sex="male",
            age_years=30,
            migrant_worker_status="prospective",
            destination_country="MY",
            needs=["legal_aid"],
        ),
    ]


def a_case_report(**overrides: Any) -> CaseReport:
    return CaseReport.model_validate(a_case_report_body(**overrides))


def victim_facts(**overrides: Any) -> VictimFacts:
    facts: dict[str, Any] = {"victim_ref": "V1", "sex": "female", "age_years": 30}
    facts.update(overrides)
    return VictimFacts.model_validate(facts)
