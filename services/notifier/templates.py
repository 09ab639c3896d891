"""What a notification says, per channel: victim-safe, readable on a lock screen, in Bahasa Indonesia unless the
agency reads English. Case code, urgency, regency, victim count and ages, needs, the deadline in the reader's
local time, a link: nothing that identifies a victim (the events carry no identity to begin with)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.notifier.messages import Event
from shared.contracts.base import Priority
from shared.contracts.cases import VictimFacts
from shared.contracts.referrals import DeadlineKind, ReferralCancelled, ReferralEscalated, ReferralIssued
from shared.directory import Directory, Language

_NEEDS = {  # (Bahasa Indonesia, English)
    "shelter": ("rumah aman", "shelter"),
    "medical": ("medis", "medical care"),
    "psychosocial": ("psikososial", "psychosocial support"),
    "legal_aid": ("bantuan hukum", "legal aid"),
    "repatriation": ("pemulangan", "repatriation"),
    "family_tracing": ("penelusuran keluarga", "family tracing"),
    "reintegration": ("reintegrasi", "reintegration"),
    "restitution": ("restitusi", "restitution"),
}


@dataclass(frozen=True)
class Reader:
    """Who reads the notification: their language and time zone, their link, and the code they may text back."""

    language: Language
    zone: ZoneInfo
    link: str | None = None
    """The officer's one-click link, or the API link for an agency system; none for who only needs to know."""
    reply_code: str | None = None

    @property
    def english(self) -> bool:
        return self.language is Language.ENGLISH

    def time(self, at: datetime) -> str:
        """``28-11-2026 05:12 WIB``: the zone's abbreviation (WIB, WITA, WIT) says whose clock it is."""
        local = at.astimezone(self.zone)
        return f"{local:%d-%m-%Y %H:%M} {local.tzname()}"


def reader_for(
    directory: Directory, agency_id: str | None, link: str | None = None, reply_code: str | None = None
) -> Reader:
    """An agency's language and zone; the coordinator (no agency) reads the province's, in Bahasa Indonesia."""
    agency = directory.agency(agency_id) if agency_id else None
    if agency is None:
        return Reader(Language.INDONESIAN, directory.timezone, link, reply_code)
    return Reader(agency.language, directory.zone_of(agency), link, reply_code)


def api_link(referral_url: str, event: Event) -> str:
    """Where an agency system reads the referral (identity only with its token, and audited)."""
    return f"{referral_url.rstrip('/')}/v1/referrals/{event.referral_id}"


def _victims(victims: tuple[VictimFacts, ...], reader: Reader) -> str:
    ages = ", ".join("?" if v.age_years is None else str(v.age_years) for v in victims)
    if reader.english:
        noun = "victim" if len(victims) == 1 else "victims"
        return f"{len(victims)} {noun} ({'age' if len(victims) == 1 else 'ages'} {ages})"
    return f"{len(victims)} korban (umur {ages})"


def _needs(victims: tuple[VictimFacts, ...], reader: Reader) -> str:
    needs = sorted({need.value for victim in victims for need in victim.needs})
    return ", ".join(_NEEDS[need][1 if reader.english else 0] for need in needs) or "-"


def _urgent(priority: Priority, reader: Reader) -> str:
    if priority is not Priority.URGENT:
        return ""
    return " (URGENT)" if reader.english else " (MENDESAK)"


def _regency(event: Event, directory: Directory) -> str:
    return directory.regency_name(event.regency_code) or event.regency_code


def _agency_name(event: Event, directory: Directory) -> str:
    agency = directory.agency(event.agency_id)
    return agency.name if agency else event.agency_id


def headline(event: Event, directory: Directory, reader: Reader) -> str:
    code, regency = event.case_code, _regency(event, directory)
    if isinstance(event, ReferralCancelled):
        sent_by_mistake = event.reason == "entered_in_error"
        if reader.english:
            why = "it was sent by mistake" if sent_by_mistake else "the case was withdrawn by the reporting unit"
            return f"TPPO referral {code} ({regency}) CANCELLED: {why}"
        why = "rujukan ini terkirim karena kesalahan" if sent_by_mistake else "kasus ditarik oleh pelapor"
        return f"Rujukan TPPO {code} ({regency}) DIBATALKAN: {why}"
    urgent = _urgent(event.priority, reader)
    if isinstance(event, ReferralIssued):
        return f"New TPPO referral {code}{urgent}" if reader.english else f"Rujukan TPPO baru {code}{urgent}"
    agency = _agency_name(event, directory)
    accept = event.deadline is DeadlineKind.ACCEPT
    if reader.english:
        missing = "not accepted" if accept else "not acknowledged"
        return f"WARNING level {event.level}: TPPO referral {code}{urgent} to {agency} {missing}"
    missing = "belum diterima" if accept else "belum dikonfirmasi"
    return f"PERINGATAN level {event.level}: rujukan TPPO {code}{urgent} untuk {agency} {missing}"


def _deadline(event: ReferralIssued | ReferralEscalated, reader: Reader) -> str:
    if isinstance(event, ReferralIssued):
        due = reader.time(event.ack_due_at)
        return f"Please acknowledge by {due}" if reader.english else f"Mohon konfirmasi sebelum {due}"
    due = reader.time(event.due_at)
    return f"Deadline {due} has passed" if reader.english else f"Batas waktu {due} terlewati"


def _reply(reader: Reader) -> str:
    if reader.reply_code is None:
        return ""
    if reader.english:
        return f" Reply TERIMA {reader.reply_code} to acknowledge."
    return f" Balas TERIMA {reader.reply_code} untuk konfirmasi."


def short_message(event: Event, directory: Directory, reader: Reader) -> str:
    """SMS and WhatsApp: one short paragraph that fits a lock screen."""
    if isinstance(event, ReferralCancelled):
        stand_down = "No action needed." if reader.english else "Tidak perlu tindak lanjut."
        return f"{headline(event, directory, reader)}. {stand_down}"
    needs = f"{'Needs' if reader.english else 'Kebutuhan'}: {_needs(event.victims, reader)}"
    return (
        f"{headline(event, directory, reader)}: {_victims(event.victims, reader)}, {_regency(event, directory)}. "
        f"{needs}. {_deadline(event, reader)}.{f' {reader.link}' if reader.link else ''}{_reply(reader)}"
    )


_EMAIL_LABELS = {
    False: ("Kode kasus", "Instansi", "Kabupaten/kota", "Korban", "Kebutuhan", "Batas waktu", "Buka dan konfirmasi"),
    True: ("Case code", "Agency", "Regency/city", "Victims", "Needs", "Deadline", "Open and acknowledge"),
}


def email_message(event: Event, directory: Directory, reader: Reader) -> tuple[str, str]:
    """Subject and plain-text body."""
    english = reader.english
    code, regency = event.case_code, _regency(event, directory)
    lines = [f"{headline(event, directory, reader)}.", ""]
    if isinstance(event, ReferralCancelled):
        subject = f"[Rujukan TPPO] {'Cancelled' if english else 'Dibatalkan'}: {code} - {regency}"
        lines.append("No action needed." if english else "Tidak perlu tindak lanjut.")
    else:
        if isinstance(event, ReferralIssued):
            kind = f"New referral {code}" if english else f"Rujukan baru {code}"
        else:
            kind = f"{'WARNING' if english else 'PERINGATAN'} level {event.level}: {code}"
        subject = f"[Rujukan TPPO] {kind}{_urgent(event.priority, reader)} - {regency}"
        due = event.ack_due_at if isinstance(event, ReferralIssued) else event.due_at
        values = (
            code,
            _agency_name(event, directory),
            regency,
            _victims(event.victims, reader),
            _needs(event.victims, reader),
            reader.time(due),
            reader.link,
        )
        lines += [f"{label}: {value}" for label, value in zip(_EMAIL_LABELS[english], values, strict=True) if value]
        if isinstance(event, ReferralEscalated):
            lines += ["", f"{_deadline(event, reader)}."]
    lines += ["", "This message carries no victim identity." if english else "Pesan ini tidak memuat identitas korban."]
    return subject, "\n".join(lines) + "\n"


def _facts(event: ReferralIssued | ReferralEscalated, directory: Directory) -> dict[str, Any]:
    ages = [victim.age_years for victim in event.victims]
    needs = sorted({need.value for victim in event.victims for need in victim.needs})
    return {
        "referral_id": str(event.referral_id),
        "case_code": event.case_code,
        "agency_id": event.agency_id,
        "priority": event.priority.value,
        "regency_code": event.regency_code,
        "regency": _regency(event, directory),
        "victim_count": len(event.victims),
        "victim_ages": ages,
        "children": sum(1 for age in ages if age is None or age < 18),
        "needs": needs,
        "needs_text": ", ".join(_NEEDS[need][0] for need in needs),
    }


def webhook_payload(event: Event, directory: Directory, reader: Reader, *, own: bool) -> dict[str, Any]:
    """The JSON an agency system receives (level 3 of an escalation reaches the unit above's system). Only the
    referral's ``own`` agency gets the acknowledgement code: whoever holds it can acknowledge for the agency."""
    if isinstance(event, ReferralCancelled):
        return {
            "type": "referral.cancelled",
            "referral_id": str(event.referral_id),
            "case_code": event.case_code,
            "agency_id": event.agency_id,
            "regency_code": event.regency_code,
            "regency": _regency(event, directory),
            "reason": event.reason,
            "level": 0,
            "text": short_message(event, directory, reader),
        }
    if isinstance(event, ReferralIssued):
        timing: dict[str, Any] = {"level": 0, "ack_due_at": event.ack_due_at.isoformat()}
    else:
        timing = {
            "level": event.level,
            "deadline": event.deadline.value,
            "due_at": event.due_at.isoformat(),
            "escalated_to": event.escalated_to,
        }
    return {
        "type": "referral.issued" if isinstance(event, ReferralIssued) else "referral.escalated",
        **_facts(event, directory),
        **timing,
        "ack_code": event.ack_code if own else None,
        "link": reader.link,
        "text": short_message(event, directory, reader),
    }


def referral_notification(event: ReferralIssued, directory: Directory, referral_url: str) -> dict[str, Any]:
    """The webhook payload of a new referral, as the referred agency's system receives it."""
    return webhook_payload(
        event, directory, reader_for(directory, event.agency_id, api_link(referral_url, event)), own=True
    )
