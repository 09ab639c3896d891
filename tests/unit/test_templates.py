from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from services.intake.reports import facts_of
from services.notifier.templates import Reader, email_message, reader_for, short_message, webhook_payload
from shared.contracts.cases import IDENTITY_FIELDS
from shared.contracts.referrals import DeadlineKind
from shared.directory import Directory, Language, load_directory
from tests.builders import a_case_report, a_victim, the_sample_victims
from tests.notifying import a_cancellation, an_escalation, an_issued_referral

DIRECTORY_FILE = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"
LINK = "http://127.0.0.1:8002/o/token"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(DIRECTORY_FILE)


def an_officer_of(directory: Directory, agency_id: str = "dinsos-bengkayang", **codes: str) -> Reader:
    return reader_for(directory, agency_id, LINK, codes.get("reply_code"))


def with_agency(directory: Directory, agency_id: str, **changes: object) -> Directory:
    agencies = tuple(a.model_copy(update=changes) if a.id == agency_id else a for a in directory.agencies)
    return directory.model_copy(update={"agencies": agencies})


def test_an_officers_sms_is_in_bahasa_indonesia_with_the_deadline_in_wib_the_link_and_the_reply_code(
    directory: Directory,
) -> None:
    text = short_message(an_issued_referral(), directory, an_officer_of(directory, reply_code="482193"))

    assert text == (
        "Rujukan TPPO baru KB-26-7QK2M9 (MENDESAK): 2 korban (umur 15, 24), Bengkayang. "
        "Kebutuhan: medis, psikososial, rumah aman. Mohon konfirmasi sebelum 25-11-2026 11:00 WIB. "
        f"{LINK} Balas TERIMA 482193 untuk konfirmasi."
    )


def test_an_agency_that_reads_english_gets_english(directory: Directory) -> None:
    english = with_agency(directory, "dinsos-bengkayang", language=Language.ENGLISH)

    text = short_message(an_issued_referral(), english, an_officer_of(english, reply_code="482193"))

    assert text == (
        "New TPPO referral KB-26-7QK2M9 (URGENT): 2 victims (ages 15, 24), Bengkayang. "
        "Needs: medical care, psychosocial support, shelter. Please acknowledge by 25-11-2026 11:00 WIB. "
        f"{LINK} Reply TERIMA 482193 to acknowledge."
    )


def test_the_deadline_is_told_in_the_readers_own_zone(directory: Directory) -> None:
    in_makassar = with_agency(directory, "dinsos-bengkayang", timezone="Asia/Makassar")

    text = short_message(an_issued_referral(), in_makassar, an_officer_of(in_makassar))

    assert "sebelum 25-11-2026 12:00 WITA." in text


def test_an_escalation_warns_by_level_and_says_what_was_missed(directory: Directory) -> None:
    issued = an_issued_referral()
    reader = an_officer_of(directory)

    level_2 = short_message(an_escalation(issued, 2), directory, reader)
    accept = short_message(an_escalation(issued, 1, deadline=DeadlineKind.ACCEPT), directory, reader)

    assert level_2.startswith(
        "PERINGATAN level 2: rujukan TPPO KB-26-7QK2M9 (MENDESAK) untuk Dinas Sosial Kabupaten Bengkayang "
        "belum dikonfirmasi: 2 korban"
    )
    assert "Batas waktu 25-11-2026 11:00 WIB terlewati." in level_2
    assert "belum diterima" in accept


def test_a_cancellation_stands_the_reader_down_without_link_or_code(directory: Directory) -> None:
    text = short_message(a_cancellation(an_issued_referral()), directory, reader_for(directory, "dinsos-bengkayang"))

    assert text == (
        "Rujukan TPPO KB-26-7QK2M9 (Bengkayang) DIBATALKAN: kasus ditarik oleh pelapor. Tidak perlu tindak lanjut."
    )


def test_a_referral_sent_by_mistake_is_cancelled_as_such_not_as_a_withdrawn_case(directory: Directory) -> None:
    mistake = a_cancellation(an_issued_referral()).model_copy(update={"reason": "entered_in_error"})

    text = short_message(mistake, directory, reader_for(directory, "dinsos-bengkayang"))

    assert text == (
        "Rujukan TPPO KB-26-7QK2M9 (Bengkayang) DIBATALKAN: rujukan ini terkirim karena kesalahan. "
        "Tidak perlu tindak lanjut."
    )


def test_someone_who_only_needs_to_know_gets_no_link(directory: Directory) -> None:
    text = short_message(an_escalation(an_issued_referral(), 3), directory, reader_for(directory, None))

    assert "http" not in text
    assert "TERIMA" not in text


def test_an_email_has_a_subject_and_a_plain_body_with_the_facts(directory: Directory) -> None:
    subject, body = email_message(an_issued_referral(), directory, an_officer_of(directory, reply_code="482193"))

    assert subject == "[Rujukan TPPO] Rujukan baru KB-26-7QK2M9 (MENDESAK) - Bengkayang"
    assert body.splitlines() == [
        "Rujukan TPPO baru KB-26-7QK2M9 (MENDESAK).",
        "",
        "Kode kasus: KB-26-7QK2M9",
        "Instansi: Dinas Sosial Kabupaten Bengkayang",
        "Kabupaten/kota: Bengkayang",
        "Korban: 2 korban (umur 15, 24)",
        "Kebutuhan: medis, psikososial, rumah aman",
        "Batas waktu: 25-11-2026 11:00 WIB",
        f"Buka dan konfirmasi: {LINK}",
        "",
        "Pesan ini tidak memuat identitas korban.",
    ]


def test_an_escalation_email_names_its_level_in_the_subject(directory: Directory) -> None:
    subject, body = email_message(an_escalation(an_issued_referral(), 3), directory, reader_for(directory, None))

    assert subject == "[Rujukan TPPO] PERINGATAN level 3: KB-26-7QK2M9 (MENDESAK) - Bengkayang"
    assert "Batas waktu 25-11-2026 11:00 WIB terlewati." in body
    assert "Buka dan konfirmasi" not in body


def test_the_webhook_payload_carries_the_facts_an_agency_system_reads(directory: Directory) -> None:
    issued = an_issued_referral()

    payload = webhook_payload(issued, directory, reader_for(directory, "dinsos-bengkayang", LINK), own=True)
    escalated = webhook_payload(
        an_escalation(issued, 3, escalated_to="dinsos-kalbar"),
        directory,
        reader_for(directory, "dinsos-kalbar", LINK),
        own=False,
    )

    assert payload["type"] == "referral.issued"
    assert payload["level"] == 0
    assert payload["victim_ages"] == [15, 24]
    assert payload["children"] == 1
    assert payload["ack_code"] == "482193"
    assert payload["link"] == LINK
    assert escalated["type"] == "referral.escalated"
    assert escalated["level"] == 3
    assert escalated["escalated_to"] == "dinsos-kalbar"
    assert escalated["ack_code"] is None  # the unit above acts through its own agency, never on this one's behalf


def test_no_channel_ever_carries_victim_identity(directory: Directory) -> None:
    report = a_case_report(victims=[*the_sample_victims(), a_victim(victim_ref="V4", nik="6107014508100001")])
    victims = tuple(facts_of(victim, date(2026, 11, 25)) for victim in report.victims)
    issued = an_issued_referral(victims=victims)
    events = (issued, an_escalation(issued, 1), an_escalation(issued, 3), a_cancellation(issued))
    reader = an_officer_of(directory, reply_code="482193")

    texts = [
        text
        for event in events
        for text in (
            short_message(event, directory, reader),
            *email_message(event, directory, reader),
            json.dumps(webhook_payload(event, directory, reader, own=True)),
        )
    ]

    identity = [
        str(value)
        for victim in report.victims
        for field, value in victim.model_dump().items()
        if field in IDENTITY_FIELDS and value
    ]
    names = [part for victim in report.victims for part in victim.full_name.split()]
    assert identity
    assert not [value for value in (*identity, *names) for text in texts if value in text]
