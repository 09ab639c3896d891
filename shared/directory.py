"""The agency directory and routing rules: models, and the YAML loader that validates them at start-up."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.contracts.base import AgencyId, Priority, RegencyCode
from shared.contracts.cases import MigrantWorkerStatus, Sex
from shared.errors import ConfigurationError
from shared.settings import parse_duration


class AgencyKind(StrEnum):
    POLICE = "police"
    SOCIAL_SERVICES = "social_services"
    MIGRANT_WORKER_PROTECTION = "migrant_worker_protection"
    CHILD_PROTECTION = "child_protection"


def _duration(value: object) -> object:
    # People write "1h" or "30m"; anything else (ISO 8601 "PT1H", seconds) is left to pydantic.
    if isinstance(value, str):
        try:
            return timedelta(seconds=parse_duration(value))
        except ValueError:
            return value
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Province(_Config):
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{2}$")]
    name: str
    case_code_prefix: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,4}$")]
    timezone: str
    regencies: dict[RegencyCode, str] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
        return name

    @model_validator(mode="after")
    def _regencies_in_province(self) -> Province:
        strays = [code for code in self.regencies if not code.startswith(f"{self.code}.")]
        if strays:
            raise ValueError(f"regencies {strays} are not in province {self.code}")
        return self


class Jurisdiction(_Config):
    province: Annotated[str, StringConstraints(pattern=r"^[0-9]{2}$")]
    regencies: tuple[RegencyCode, ...] = Field(
        default=(), description="Empty for a provincial unit, which covers the whole province."
    )

    @property
    def is_provincial(self) -> bool:
        return not self.regencies


class Webhook(_Config):
    url: HttpUrl
    secret: Annotated[str, StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/=]{16,}$")]


class AckDeadlines(_Config):
    urgent: Duration = timedelta(hours=1)
    normal: Duration = timedelta(hours=24)

    def for_priority(self, priority: Priority) -> timedelta:
        return self.urgent if priority is Priority.URGENT else self.normal


class Agency(_Config):
    id: AgencyId
    name: str
    kind: AgencyKind
    jurisdiction: Jurisdiction
    api_token_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    webhook: Webhook | None = None
    inbox: bool = Field(default=True, description="False for an agency with no AMQP consumer of its inbox.")
    ack_deadline: AckDeadlines = AckDeadlines()

    @property
    def receives_referrals(self) -> bool:
        return self.kind is not AgencyKind.POLICE


class VictimCondition(_Config):
    """Every condition given must hold; an empty condition matches every victim."""

    sex: Sex | None = None
    min_age: int | None = Field(default=None, ge=0)
    max_age: int | None = Field(default=None, ge=0)
    unknown_age_matches: bool = Field(
        default=False, description="Whether a victim of unknown age satisfies min_age/max_age."
    )
    migrant_worker_status: tuple[MigrantWorkerStatus, ...] = ()
    destination_abroad: bool | None = None


class Rule(_Config):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
    description: str
    agency_kind: AgencyKind
    priority: Priority = Priority.NORMAL
    when: VictimCondition = VictimCondition()

    @field_validator("agency_kind")
    @classmethod
    def _receiving_kind(cls, kind: AgencyKind) -> AgencyKind:
        if kind is AgencyKind.POLICE:
            raise ValueError("rules refer cases to receiving agencies, not to police")
        return kind


class Directory(_Config):
    province: Province
    agencies: tuple[Agency, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Directory:
        if not (info.context or {}).get("defer_consistency"):
            problems = consistency_problems(self)
            if problems:
                raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems))
        return self

    def agency(self, agency_id: str) -> Agency | None:
        return next((a for a in self.agencies if a.id == agency_id), None)

    def agency_for_token(self, token: str) -> Agency | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return next((a for a in self.agencies if a.api_token_sha256 == digest), None)

    def resolve(self, kind: AgencyKind, regency_code: str) -> Agency:
        """The unit of ``kind`` covering the regency, else the provincial unit (always there: validated)."""
        units = [a for a in self.agencies if a.kind is kind]
        local = next((a for a in units if regency_code in a.jurisdiction.regencies), None)
        return local or next(a for a in units if a.jurisdiction.is_provincial)

    def receiving_agencies(self) -> Iterator[Agency]:
        return (a for a in self.agencies if a.receives_referrals)

    def police_units(self) -> Iterator[Agency]:
        return (a for a in self.agencies if a.kind is AgencyKind.POLICE)

    def regency_name(self, code: str) -> str | None:
        return self.province.regencies.get(code)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.province.timezone)


def consistency_problems(directory: Directory) -> list[tuple[tuple[str | int, ...], str]]:
    """What no single entry can know: duplicates, regencies outside the province, missing fallbacks."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    province = directory.province
    for index, agency in enumerate(directory.agencies):
        if agency.id in seen:
            problems.append((("agencies", index, "id"), f"agency id {agency.id!r} appears twice"))
        seen.add(agency.id)
        if agency.jurisdiction.province != province.code:
            problems.append(
                (("agencies", index, "jurisdiction", "province"), f"is not the directory's province {province.code}")
            )
        for position, code in enumerate(agency.jurisdiction.regencies):
            if code not in province.regencies:
                problems.append((("agencies", index, "jurisdiction", "regencies", position), f"unknown regency {code}"))
        if agency.receives_referrals and agency.webhook is None:
            problems.append((("agencies", index, "webhook"), "a receiving agency needs a webhook"))
    for index, rule in enumerate(directory.rules):
        if not any(a.kind is rule.agency_kind and a.jurisdiction.is_provincial for a in directory.agencies):
            problems.append((("rules", index, "agency_kind"), f"no provincial {rule.agency_kind} unit to fall back to"))
    return problems


def load_directory(path: Path) -> Directory:
    """Read and validate the directory; a bad file raises naming the file, line, entry and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the directory: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from exc
    try:
        directory = Directory.model_validate(raw, context={"defer_consistency": True})
    except ValidationError as exc:
        problems = [_describe(path, text, raw, error["loc"], error["msg"]) for error in exc.errors(include_input=False)]
        raise ConfigurationError("invalid directory:\n  " + "\n  ".join(problems)) from None
    if found := consistency_problems(directory):
        problems = [_describe(path, text, raw, loc, message) for loc, message in found]
        raise ConfigurationError("invalid directory:\n  " + "\n  ".join(problems))
    return directory


def _describe(path: Path, text: str, raw: Any, loc: Sequence[int | str], message: str) -> str:
    entry = ""
    if len(loc) >= 2 and loc[0] in ("agencies", "rules") and isinstance(raw, dict):
        try:
            entry_id = raw[loc[0]][loc[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            entry_id = None
        entry = f" ({loc[0][:-1] if loc[0] == 'rules' else 'agency'} {entry_id!r})" if entry_id else ""
    field = ".".join(str(part) for part in loc) or "(top level)"
    line = _line_of(text, loc)
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {field}{entry}: {message}"


def _line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` (pydantic knows fields, YAML knows lines)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line
