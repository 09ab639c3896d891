from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from services.intake.reports import facts_of, identity_of
from services.notifier.templates import referral_notification
from shared.contracts.base import Priority
from shared.contracts.cases import IDENTITY_FIELDS, ExploitationType, SealedBox
from shared.contracts.referrals import ReferralIssued, ReferralReason
from shared.directory import load_directory
from shared.logging import REDACTED, redact_sensitive
from shared.sealing import IdentitySealer, UnsealError
from tests.builders import a_case_report, a_victim, the_sample_victims

DIRECTORY_FILE = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"
CASE_ID = uuid.UUID("6a1f0c9e-2b7d-5e3a-8c4f-0d9e8b7a6c5d")
REPORTED_ON = date(2025, 8, 7)
NAMES = ("Siti Aminah", "Dewi Lestari", "Budi Santoso")
NIK = "6107014508100001"


def a_sealer(key_id: str = "k1") -> IdentitySealer:
    return IdentitySealer({key_id: os.urandom(32)}, key_id)


def an_identified_victim() -> dict[str, object]:
    return a_victim(
        nik=NIK,
        birth_date="2010-08-08",
        passport_number="C1234567",
        phone="+62 812 5555 0101",
        current_location="Rumah aman Dinsos, Bengkayang",
    )


def a_logger() -> structlog.BoundLogger:
    # Unfiltered by level: the suite may configure logging at any level, redaction must hold at all of them.
    return structlog.wrap_logger(None, wrapper_class=structlog.BoundLogger)


def test_log_keeps_the_case_id_but_redacts_name_and_nik() -> None:
    log = a_logger()

    with capture_logs(processors=[redact_sensitive]) as entries:
        log.info("case_accepted", case_id=str(CASE_ID), full_name="Siti Aminah", nik=NIK)

    [entry] = entries
    assert entry["case_id"] == str(CASE_ID)
    assert entry["full_name"] == REDACTED
    assert entry["nik"] == REDACTED
    assert "Siti Aminah" not in str(entries)
    assert NIK not in str(entries)


def test_log_redacts_a_field_nobody_has_shown_to_be_safe() -> None:
    log = a_logger()

    with capture_logs(processors=[redact_sensitive]) as entries:
        log.info("victim_moved", shelter_address="Jl. Gajah Mada 12", agency_id="dinsos-bengkayang")

    [entry] = entries
    assert entry["shelter_address"] == REDACTED
    assert entry["agency_id"] == "dinsos-bengkayang"


def test_sealed_identity_opens_to_the_same_identity() -> None:
    sealer = a_sealer()
    identity = identity_of(a_case_report(victims=the_sample_victims()))

    box = sealer.seal(identity, context=CASE_ID.bytes)

    assert sealer.open(box, context=CASE_ID.bytes) == identity


def test_sealed_identity_does_not_contain_the_names() -> None:
    box = a_sealer().seal(identity_of(a_case_report(victims=the_sample_victims())), context=CASE_ID.bytes)

    ciphertext = base64.b64decode(box.ciphertext)
    for name in NAMES:
        assert name.encode() not in ciphertext
        assert name not in box.model_dump_json()


def test_sealed_identity_cannot_be_moved_to_another_case() -> None:
    sealer = a_sealer()
    box = sealer.seal({"victims": {"V1": {"full_name": "Siti Aminah"}}}, context=CASE_ID.bytes)

    with pytest.raises(UnsealError):
        sealer.open(box, context=uuid.uuid4().bytes)


def test_sealed_identity_cannot_be_opened_with_another_key_of_the_same_name() -> None:
    box = a_sealer("k1").seal({"victims": {}}, context=CASE_ID.bytes)

    with pytest.raises(UnsealError):
        a_sealer("k1").open(box, context=CASE_ID.bytes)


def test_sealed_identity_under_an_unknown_key_is_refused() -> None:
    box = a_sealer("k1").seal({"victims": {}}, context=CASE_ID.bytes)

    with pytest.raises(UnsealError, match="unknown key"):
        a_sealer("k2").open(box, context=CASE_ID.bytes)


def test_tampered_sealed_identity_is_refused() -> None:
    sealer = a_sealer()
    box = sealer.seal({"victims": {"V1": {"full_name": "Siti Aminah"}}}, context=CASE_ID.bytes)
    ciphertext = bytearray(base64.b64decode(box.ciphertext))
    ciphertext[0] ^= 0x01
    tampered = SealedBox(key_id=box.key_id, nonce=box.nonce, ciphertext=base64.b64encode(ciphertext).decode())

    with pytest.raises(UnsealError):
        sealer.open(tampered, context=CASE_ID.bytes)


def test_identity_of_a_report_holds_each_victims_identity() -> None:
    report = a_case_report(victims=[an_identified_victim()], summary="Dijemput di Jagoi Babang.")

    identity = identity_of(report)

    assert identity["victims"] == {
        "V1": {
            "full_name": "Siti Aminah",
            "nik": NIK,
            "birth_date": "2010-08-08",
            "passport_number": "C1234567",
            "phone": "+62 812 5555 0101",
            "current_location": "Rumah aman Dinsos, Bengkayang",
        }
    }
    assert identity["summary"] == "Dijemput di Jagoi Babang."


def test_victim_facts_hold_no_identity() -> None:
    victim = a_case_report(victims=[an_identified_victim()]).victims[0]

    facts = facts_of(victim, REPORTED_ON)

    assert IDENTITY_FIELDS.isdisjoint(facts.model_dump())
    wire = facts.model_dump_json()
    for value in ("Siti Aminah", NIK, "2010-08-08", "C1234567", "5555", "Rumah aman"):
        assert value not in wire


@pytest.mark.parametrize(("reported_on", "age"), [(date(2025, 8, 7), 14), (date(2025, 8, 8), 15)])
def test_victim_age_is_derived_from_the_birth_date_when_not_given(reported_on: date, age: int) -> None:
    victim = a_case_report(victims=[a_victim(age_years=None, birth_date="2010-08-08")]).victims[0]

    assert facts_of(victim, reported_on).age_years == age


def test_given_age_wins_over_the_birth_date() -> None:
    victim = a_case_report(victims=[a_victim(age_years=16, birth_date="2000-01-01")]).victims[0]

    assert facts_of(victim, REPORTED_ON).age_years == 16


def test_victim_with_neither_age_nor_birth_date_has_unknown_age() -> None:
    victim = a_case_report(victims=[a_victim(age_years=None)]).victims[0]

    assert facts_of(victim, REPORTED_ON).age_years is None


def test_referral_notification_names_no_victim() -> None:
    directory = load_directory(DIRECTORY_FILE)
    report = a_case_report(victims=the_sample_victims())
    issued_at = datetime(2025, 8, 7, 2, 30, tzinfo=UTC)
    event = ReferralIssued(
        referral_id=uuid.uuid5(CASE_ID, "uptd-ppa-kalbar"),
        case_id=CASE_ID,
        case_code="KB-25-7QK2M9",
        agency_id="uptd-ppa-kalbar",
        reporting_agency="polres-bengkayang",
        regency_code="61.07",
        priority=Priority.URGENT,
        exploitation_types=(ExploitationType.FORCED_LABOUR,),
        victims=tuple(facts_of(victim, REPORTED_ON) for victim in report.victims),
        reasons=(ReferralReason(rule_id="child-to-child-protection", description="anak", victim_refs=("V1",)),),
        issued_at=issued_at,
        ack_due_at=issued_at + timedelta(hours=1),
    )

    payload = json.dumps(referral_notification(event, directory, "http://localhost:8002"))

    for name in NAMES:
        for part in (name, *name.split()):
            assert part not in payload
    assert "KB-25-7QK2M9" in payload
