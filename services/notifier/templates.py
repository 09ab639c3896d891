"""What a notification says: victim-safe, readable on a lock screen, in Bahasa Indonesia."""

from __future__ import annotations

from typing import Any

from shared.contracts.base import Priority
from shared.contracts.referrals import ReferralCancelled, ReferralIssued
from shared.directory import Directory

_NEED_WORDS = {
    "shelter": "rumah aman",
    "medical": "medis",
    "psychosocial": "psikososial",
    "legal_aid": "bantuan hukum",
    "repatriation": "pemulangan",
    "family_tracing": "penelusuran keluarga",
    "reintegration": "reintegrasi",
    "restitution": "restitusi",
}


def referral_notification(event: ReferralIssued, directory: Directory, referral_url: str) -> dict[str, Any]:
    """Case code, urgency, regency, counts and a link: nothing that identifies a victim."""
    regency = directory.regency_name(event.regency_code) or event.regency_code
    urgent = event.priority is Priority.URGENT
    due_local = event.ack_due_at.astimezone(directory.timezone)
    needs = sorted({need.value for victim in event.victims for need in victim.needs})
    ages = [victim.age_years for victim in event.victims]
    link = f"{referral_url.rstrip('/')}/v1/referrals/{event.referral_id}"
    text = (
        f"Rujukan TPPO baru {event.case_code}{' (MENDESAK)' if urgent else ''}: "
        f"{len(event.victims)} korban, {regency}. "
        f"Mohon konfirmasi sebelum {due_local:%d-%m-%Y %H:%M} {due_local.tzname()}. {link}"
    )
    return {
        "type": "referral.issued",
        "referral_id": str(event.referral_id),
        "case_code": event.case_code,
        "agency_id": event.agency_id,
        "priority": event.priority.value,
        "regency_code": event.regency_code,
        "regency": regency,
        "victim_count": len(event.victims),
        "victim_ages": ages,
        "children": sum(1 for age in ages if age is None or age < 18),
        "needs": needs,
        "needs_text": ", ".join(_NEED_WORDS[need] for need in needs),
        "ack_due_at": event.ack_due_at.isoformat(),
        "link": link,
        "text": text,
    }


def cancellation_notification(event: ReferralCancelled, directory: Directory) -> dict[str, Any]:
    """The referral is no longer needed: the agency stands down. Case code and regency only."""
    regency = directory.regency_name(event.regency_code) or event.regency_code
    return {
        "type": "referral.cancelled",
        "referral_id": str(event.referral_id),
        "case_code": event.case_code,
        "agency_id": event.agency_id,
        "regency_code": event.regency_code,
        "regency": regency,
        "reason": event.reason,
        "text": f"Rujukan TPPO {event.case_code} ({regency}) DIBATALKAN: kasus ditarik oleh pelapor. "
        "Tidak perlu tindak lanjut.",
    }
