"""Case reports from police units and the events intake publishes about them."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints, ValidationInfo, field_validator

from shared.contracts.base import AgencyId, Contract, CountryCode, RegencyCode


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"


class MigrantWorkerStatus(StrEnum):
    NONE = "none"
    PROSPECTIVE = "prospective"
    PLACED = "placed"
    RETURNED = "returned"
    DEPORTED = "deported"


class Need(StrEnum):
    SHELTER = "shelter"
    MEDICAL = "medical"
    PSYCHOSOCIAL = "psychosocial"
    LEGAL_AID = "legal_aid"
    REPATRIATION = "repatriation"
    FAMILY_TRACING = "family_tracing"
    REINTEGRATION = "reintegration"
    RESTITUTION = "restitution"


class ExploitationType(StrEnum):
    FORCED_LABOUR = "forced_labour"
    SEXUAL_EXPLOITATION = "sexual_exploitation"
    DOMESTIC_SERVITUDE = "domestic_servitude"
    FORCED_MARRIAGE = "forced_marriage"
    ONLINE_SCAM = "online_scam"
    ORGAN_REMOVAL = "organ_removal"
    OTHER = "other"


VictimRef = Annotated[str, StringConstraints(min_length=1, max_length=20)]
Text = Annotated[str, StringConstraints(max_length=200)]

IDENTITY_FIELDS: frozenset[str] = frozenset(
    {"full_name", "nik", "birth_date", "passport_number", "phone", "current_location"}
)
"""Victim fields that identify a person: sealed on the broker, encrypted at rest, never logged."""


class ContactOfficer(Contract):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    rank: Text | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()-]{6,20}$")] | None = None


class VictimReport(Contract):
    """One victim as the police unit reports them, identity included."""

    victim_ref: VictimRef
    full_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    sex: Sex
    # Strict: true, 15.0 or "15" are mistakes in an age, not an age.
    age_years: Annotated[int, Field(ge=0, le=120, strict=True)] | None = None
    nationality: CountryCode = "ID"
    migrant_worker_status: MigrantWorkerStatus = MigrantWorkerStatus.NONE
    needs: list[Need] = Field(default_factory=list)
    nik: Annotated[str, StringConstraints(pattern=r"^[0-9]{16}$")] | None = None
    birth_date: date | None = None
    passport_number: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{5,20}$")] | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()-]{6,20}$")] | None = None
    current_location: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    destination_country: CountryCode | None = None


class CaseReport(Contract):
    """A police unit reports a TPPO case; sent to intake over HTTP or on ``rujukan.intake``."""

    TYPE: ClassVar[str] = "case.report.v1"

    police_report_number: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    reporting_agency: AgencyId
    regency_code: RegencyCode
    reported_at: AwareDatetime
    exploitation_types: list[ExploitationType] = Field(default_factory=list)
    summary: Annotated[str, StringConstraints(max_length=4000)] = ""
    victims: list[VictimReport] = Field(min_length=1, max_length=500)
    contact_officer: ContactOfficer | None = None

    @field_validator("police_report_number")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("victims")
    @classmethod
    def _refs_unique(cls, victims: list[VictimReport], info: ValidationInfo) -> list[VictimReport]:
        refs = [victim.victim_ref for victim in victims]
        if len(set(refs)) != len(refs):
            raise ValueError("victim_ref must be unique within the case")
        reported_at = info.data.get("reported_at")
        if reported_at is not None:
            late = [i for i, v in enumerate(victims) if v.birth_date and v.birth_date > reported_at.date()]
            if late:
                raise ValueError(f"birth_date of victims {late} is after reported_at")
        return victims


class VictimFacts(Contract):
    """What agencies may know of a victim without knowing who they are."""

    victim_ref: VictimRef
    sex: Sex
    age_years: int | None = Field(
        default=None, description="Absent when unknown; routing then treats the victim as a possible child."
    )
    nationality: CountryCode = "ID"
    migrant_worker_status: MigrantWorkerStatus = MigrantWorkerStatus.NONE
    needs: tuple[Need, ...] = ()
    destination_country: CountryCode | None = None


class SealedBox(Contract):
    """Authenticated ciphertext (AES-256-GCM) of identity; ``key_id`` names the key so keys can rotate."""

    key_id: str
    nonce: str
    ciphertext: str


class CaseReported(Contract):
    """A police unit opened a TPPO case; published by intake after validation."""

    TYPE: ClassVar[str] = "case.reported.v1"

    case_id: UUID
    case_code: str
    fingerprint: str = Field(description="SHA-256 of the report as received; equal reports, equal case.")
    police_report_number: str
    reporting_agency: AgencyId
    regency_code: RegencyCode
    reported_at: AwareDatetime
    exploitation_types: tuple[ExploitationType, ...]
    victims: tuple[VictimFacts, ...] = Field(min_length=1)
    identity: SealedBox = Field(
        description="Victim identity, summary and contact officer, sealed so they are never plaintext on the broker."
    )


class CaseAmendment(CaseReport):
    """A police unit amends a reported case, sending the whole case as it now is (``case.amend``)."""

    TYPE: ClassVar[str] = "case.amend.v1"


class CaseAmended(CaseReported):
    """A reported case changed (e.g. a victim was added); published by intake with the whole case as it now
    is. Referral routes it again and refers only newly needed agencies or victims."""

    TYPE: ClassVar[str] = "case.amended.v1"


class WithdrawalReason(StrEnum):
    REPORTED_IN_ERROR = "reported_in_error"
    DUPLICATE = "duplicate"
    NO_LONGER_NEEDED = "no_longer_needed"
    OTHER = "other"


class CaseWithdrawal(Contract):
    """A police unit withdraws a case it reported; sent to intake on ``rujukan.intake`` as ``case.withdraw``
    (over HTTP: ``POST /v1/cases/{case_id}/withdraw`` with ``reason`` and ``note``)."""

    TYPE: ClassVar[str] = "case.withdraw.v1"

    police_report_number: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    reporting_agency: AgencyId
    reason: WithdrawalReason
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


class CaseWithdrawn(Contract):
    """A reported case was withdrawn; published by intake. Every open referral leg is cancelled."""

    TYPE: ClassVar[str] = "case.withdrawn.v2"

    case_id: UUID
    reporting_agency: AgencyId
    reason: WithdrawalReason
    note: SealedBox | None = Field(
        default=None,
        description='The police unit\'s note (``{"note": ...}``), sealed as the identity is: free text may name '
        "a victim, so it is never plaintext on the broker.",
    )
    withdrawn_at: AwareDatetime


class CaseWithdrawnV1(Contract):
    """``case.withdrawn`` as intake published it before v2, its note in plaintext. Referral still accepts it: a
    withdrawal an older intake left on the queue during an upgrade is carried out, not dead-lettered."""

    TYPE: ClassVar[str] = "case.withdrawn.v1"

    case_id: UUID
    reporting_agency: AgencyId
    reason: WithdrawalReason
    note: str | None = None
    withdrawn_at: AwareDatetime
