"""The agency directory and routing rules: models, and the YAML loader that validates them at start-up."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    IPvAnyNetwork,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.addresses import Network, address_allowed
from shared.contracts.base import AgencyId, Priority, RegencyCode
from shared.contracts.cases import IDENTITY_FIELDS, MigrantWorkerStatus, Sex
from shared.errors import ConfigurationError
from shared.settings import parse_duration
from shared.tokens import ApiToken, Scope, find_token, token_sha256


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


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


TimeZoneName = Annotated[str, AfterValidator(_zone)]


class Province(_Config):
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{2}$")]
    name: str
    case_code_prefix: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,4}$")]
    timezone: TimeZoneName
    regencies: dict[RegencyCode, str] = Field(min_length=1)

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

    def covers(self, regency_code: str) -> bool:
        return regency_code.startswith(f"{self.province}.") and (self.is_provincial or regency_code in self.regencies)


class Webhook(_Config):
    url: HttpUrl
    secret: Annotated[str, StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/=]{16,}$")]

    @field_validator("secret")
    @classmethod
    def _decodes(cls, value: str) -> str:
        # Decoded as the signer decodes it, here rather than at the first send: a key that does not decode fails
        # every signature, and the agency would never hear of its referrals.
        try:
            base64.b64decode(value.removeprefix("whsec_") + "==")
        except binascii.Error:
            raise ValueError("is not base64 after whsec_: it has one character too many or too few") from None
        return value


_WORKING_DAYS = re.compile(r"^\s*(\d+)\s*wd\s*$")


def _span(value: object) -> object:
    # "1h" is clock time; "1wd" is working days (weekends and Indonesian public holidays skipped).
    if isinstance(value, str):
        if match := _WORKING_DAYS.match(value):
            return {"working_days": int(match[1])}
        return {"clock": _duration(value)}
    return value


class _Span(_Config):
    clock: timedelta | None = None
    working_days: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_kind(self) -> _Span:
        if (self.clock is None) == (self.working_days == 0):
            raise ValueError("a deadline is clock time (e.g. 1h) or working days (e.g. 1wd), not both or neither")
        return self

    def __str__(self) -> str:
        return f"{self.working_days}wd" if self.clock is None else str(self.clock)


Span = Annotated[_Span, BeforeValidator(_span)]
"""A deadline's length: clock time (``1h``: urgent work does not wait for Monday) or working days (``1wd``)."""


class PrioritySpans(_Config):
    urgent: Span
    normal: Span

    def for_priority(self, priority: Priority) -> _Span:
        return self.urgent if priority is Priority.URGENT else self.normal


class Deadlines(_Config):
    """How long an agency has, by priority; DESIGN.md "Referral lifecycle"."""

    acknowledge: PrioritySpans = PrioritySpans.model_validate({"urgent": "1h", "normal": "1wd"})
    accept: PrioritySpans = PrioritySpans.model_validate({"urgent": "24h", "normal": "3wd"})
    escalate_every: PrioritySpans = Field(
        default=PrioritySpans.model_validate({"urgent": "30m", "normal": "4h"}),
        description="After a missed deadline, the time between escalation levels 1, 2 and 3.",
    )


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday 0 .. Sunday 6, as ``datetime.weekday()``."""
        return list(Weekday).index(self)


class ChannelKind(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    EMAIL = "email"


_PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ContactChannel(_Config):
    """One way to reach a person; a person's channels are tried in the order given."""

    kind: ChannelKind
    to: Annotated[str, StringConstraints(max_length=254)]

    @model_validator(mode="after")
    def _address_fits_kind(self) -> ContactChannel:
        pattern = _EMAIL if self.kind is ChannelKind.EMAIL else _PHONE
        if not pattern.match(self.to):
            expected = "an email address" if self.kind is ChannelKind.EMAIL else "a phone number such as +628125550100"
            raise ValueError(f"{self.kind.value} needs {expected}")
        return self


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=60)]


class Contact(_Config):
    id: Slug
    name: str
    channels: tuple[ContactChannel, ...] = Field(min_length=1)

    def phones(self) -> Iterator[str]:
        return (c.to for c in self.channels if c.kind is not ChannelKind.EMAIL)


class Shift(_Config):
    """A weekly time window in the agency's time zone; ``end`` at or before ``start`` runs past midnight."""

    days: tuple[Weekday, ...] = Field(min_length=1)
    start: time
    end: time


_PIN_HASH = re.compile(r"^pbkdf2_sha256\$[0-9]+\$[0-9a-f]{32}\$[0-9a-f]{64}$")
PIN_ITERATIONS = 200_000


def hash_pin(pin: str, *, salt: bytes | None = None, iterations: int = PIN_ITERATIONS) -> str:
    """The form a PIN takes in the directory: PBKDF2-SHA256, salted, so a leaked file does not give PINs away."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


class Officer(Contact):
    shifts: tuple[Shift, ...] = ()
    pin_hash: Annotated[str | None, Field(description="hash_pin() of the officer's PIN for the officer page.")] = None

    @field_validator("pin_hash")
    @classmethod
    def _pin_hash_form(cls, value: str | None) -> str | None:
        if value is not None and not _PIN_HASH.match(value):
            raise ValueError("pin_hash must be pbkdf2_sha256$<iterations>$<salt hex>$<hash hex> (see hash_pin)")
        return value

    def pin_matches(self, pin: str) -> bool:
        if self.pin_hash is None:
            return False
        _, iterations, salt, expected = self.pin_hash.split("$")
        candidate = hash_pin(pin, salt=bytes.fromhex(salt), iterations=int(iterations))
        return hmac.compare_digest(candidate.rsplit("$", 1)[1], expected)


class Override(_Config):
    """A dated change to the weekly roster, in the agency's local time: leave (``on_duty: false``) or cover,
    e.g. one half of a shift swap (``on_duty: true``)."""

    officer: Slug
    starts: datetime
    ends: datetime
    on_duty: bool
    note: str | None = None

    @field_validator("starts", "ends", mode="before")
    @classmethod
    def _whole_days(cls, value: object) -> object:
        # A leave written as a date starts at that day's midnight.
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time())
        return value

    @field_validator("starts", "ends")
    @classmethod
    def _local_time(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError("write local time without an offset: the agency's time zone applies")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        return self


class Roster(_Config):
    """Who takes referrals: duty officers by shift, a backup (escalation level 1), a supervisor (level 2)."""

    officers: tuple[Officer, ...] = Field(min_length=1)
    backup: Slug
    supervisor: Slug
    overrides: tuple[Override, ...] = ()

    @model_validator(mode="after")
    def _known_people(self) -> Roster:
        ids = [o.id for o in self.officers]
        if len(ids) != len(set(ids)):
            raise ValueError("officer ids must be unique within an agency")
        for role, officer_id in (("backup", self.backup), ("supervisor", self.supervisor)):
            if officer_id not in ids:
                raise ValueError(f"{role} {officer_id!r} is not one of the agency's officers")
        for override in self.overrides:
            if override.officer not in ids:
                raise ValueError(f"override for unknown officer {override.officer!r}")
        return self

    def officer(self, officer_id: str) -> Officer | None:
        return next((o for o in self.officers if o.id == officer_id), None)


class Language(StrEnum):
    INDONESIAN = "id"
    ENGLISH = "en"


def _identity_field(name: str) -> str:
    if name not in IDENTITY_FIELDS:
        raise ValueError(f"{name!r} is not a victim identity field (one of {', '.join(sorted(IDENTITY_FIELDS))})")
    return name


class SharingProfile(_Config):
    """The victim identity fields an agency may see (DESIGN.md, "Victim privacy"). Facts that identify nobody
    (sex, age, nationality, destination country, needs) travel with every referral anyway."""

    identity_fields: tuple[Annotated[str, AfterValidator(_identity_field)], ...]


DEFAULT_SHARING: dict[AgencyKind, SharingProfile] = {
    # Who the person is, how old, and where to find them: a shelter and a social worker need no more.
    AgencyKind.SOCIAL_SERVICES: SharingProfile(identity_fields=("full_name", "birth_date", "current_location")),
    # The passport is what repatriation and the placement record turn on.
    AgencyKind.MIGRANT_WORKER_PROTECTION: SharingProfile(identity_fields=("full_name", "passport_number")),
    # The contract has no guardian field: the phone given for the victim, and where the child is now.
    AgencyKind.CHILD_PROTECTION: SharingProfile(identity_fields=("full_name", "phone", "current_location")),
}
"""An agency's profile when the directory names none; police units read no referral, so see nothing."""


class Agency(_Config):
    id: AgencyId
    name: str
    kind: AgencyKind
    jurisdiction: Jurisdiction
    api_tokens: tuple[ApiToken, ...] = Field(min_length=1, description="More than one while a token is rotated.")
    webhook: Webhook | None = Field(default=None, description="The agency system's channel.")
    email: Annotated[str | None, Field(description="The agency desk's address; the webhook's fallback.")] = None
    inbox: bool = Field(default=True, description="False for an agency with no AMQP consumer of its inbox.")
    timezone: TimeZoneName | None = Field(default=None, description="Default: the province's (WIB, WITA or WIT).")
    language: Language = Language.INDONESIAN
    deadlines: Deadlines = Deadlines()
    roster: Roster | None = None
    sharing: SharingProfile | None = Field(default=None, description="Default: its kind's (DEFAULT_SHARING).")

    @field_validator("email")
    @classmethod
    def _email_form(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("not an email address")
        return value

    @model_validator(mode="before")
    @classmethod
    def _single_token(cls, data: Any) -> Any:
        # Directories from before scoped tokens name one hash; it keeps the one thing its agency's kind did.
        if isinstance(data, dict) and "api_token_sha256" in data:
            if "api_tokens" in data:
                raise ValueError("api_token_sha256 and api_tokens: keep api_tokens only")
            data = dict(data)
            scope = Scope.REPORT if data.get("kind") == AgencyKind.POLICE else Scope.RECEIVE
            data["api_tokens"] = [{"sha256": data.pop("api_token_sha256"), "scopes": [scope]}]
        return data

    @model_validator(mode="after")
    def _scopes_fit_kind(self) -> Agency:
        wrong = {Scope.OPERATE, Scope.RECEIVE if self.kind is AgencyKind.POLICE else Scope.REPORT}
        for token in self.api_tokens:
            if found := wrong.intersection(token.scopes):
                raise ValueError(f"a {self.kind} agency's token cannot have scope {sorted(found)[0]}")
        return self

    @property
    def receives_referrals(self) -> bool:
        return self.kind is not AgencyKind.POLICE

    def identity_fields(self) -> frozenset[str]:
        """The victim identity fields this agency may see."""
        profile = self.sharing or DEFAULT_SHARING.get(self.kind)
        return frozenset(profile.identity_fields) if profile else frozenset()


class Operator(_Config):
    """A person or team running Rujukan: tokens with the ``operate`` scope, no agency, no victim identity."""

    id: Slug
    name: str
    api_tokens: tuple[ApiToken, ...] = Field(min_length=1)

    @field_validator("api_tokens")
    @classmethod
    def _operate_only(cls, tokens: tuple[ApiToken, ...]) -> tuple[ApiToken, ...]:
        if any(scope is not Scope.OPERATE for token in tokens for scope in token.scopes):
            raise ValueError("an operator's token has the operate scope only")
        return tokens


def _days(value: object) -> object:
    # Retention is counted in days ("365d"); shorter units go through the usual durations.
    if isinstance(value, str) and (match := re.match(r"^\s*(\d+)\s*d\s*$", value)):
        return timedelta(days=int(match[1]))
    return _duration(value)


class Retention(_Config):
    identity_after_closed: Annotated[timedelta, BeforeValidator(_days)] = Field(
        default=timedelta(days=365),
        description="How long a closed case keeps its victims' identity (e.g. 365d); then it is erased.",
    )
    identity_after_idle: Annotated[timedelta | None, BeforeValidator(_days)] = Field(
        default=None,
        description=(
            "How long a case with a referral still open keeps its victims' identity after the last thing on its"
            " timeline (e.g. 1095d); then it is erased. Unset: until every referral has closed."
        ),
    )

    @field_validator("identity_after_closed", "identity_after_idle")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value

    @property
    def identity_held_open(self) -> timedelta:
        """How long a case left open may be quiet before it counts as keeping its identity past retention: until
        ``identity_after_idle`` where set (the sweep erases it then), else as long as a closed case."""
        return self.identity_after_idle or self.identity_after_closed

    @model_validator(mode="after")
    def _idle_not_before_closed(self) -> Retention:
        # A case left open must not lose its identity sooner than one its agencies closed.
        if self.identity_after_idle is not None and self.identity_after_idle < self.identity_after_closed:
            raise ValueError("identity_after_idle must not be shorter than identity_after_closed")
        return self


class Calendar(_Config):
    """Working days for working-time deadlines: Indonesian public holidays (the ``holidays`` library) plus
    what the library cannot know, e.g. a collective leave day (cuti bersama) decreed for the year."""

    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = "ID"
    working_days: tuple[Weekday, ...] = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)
    extra_holidays: tuple[date, ...] = ()


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
    coordinator: Contact | None = Field(
        default=None, description="The Gugus Tugas TPPO secretariat: escalation level 3 above a provincial unit."
    )
    calendar: Calendar = Calendar()
    retention: Retention = Retention()
    operators: tuple[Operator, ...] = ()
    private_webhook_networks: tuple[IPvAnyNetwork, ...] = Field(
        default=(),
        description="Networks outside the public internet that agency webhooks and the SMS gateway may reach, in"
        " CIDR form (the local demo: its own endpoints on 127.0.0.1/32). Loopback, private and link-local"
        " addresses are refused unless listed here.",
    )

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Directory:
        if not (info.context or {}).get("defer_consistency"):
            problems = consistency_problems(self)
            if problems:
                raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems))
        return self

    def agency(self, agency_id: str) -> Agency | None:
        return next((a for a in self.agencies if a.id == agency_id), None)

    def token_holder(self, token: str) -> tuple[Agency | Operator, ApiToken] | None:
        """Whose token this is (an agency or an operator), and its entry; expired or not."""
        holders: list[Agency | Operator] = [*self.agencies, *self.operators]
        return find_token(((holder, entry) for holder in holders for entry in holder.api_tokens), token)

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

    def zone_of(self, agency: Agency) -> ZoneInfo:
        return ZoneInfo(agency.timezone or self.province.timezone)

    def unit_above(self, agency: Agency) -> Agency | None:
        """The next institution up: a district unit's provincial unit; None above a provincial unit (the
        coordinator's turn)."""
        if agency.jurisdiction.is_provincial:
            return None
        return next(
            (a for a in self.agencies if a.kind is agency.kind and a.jurisdiction.is_provincial and a.id != agency.id),
            None,
        )

    def officer_by_phone(self, phone: str) -> tuple[Agency, Officer] | None:
        """The agency and duty officer a phone number is registered to (an SMS reply's sender)."""
        for agency in self.receiving_agencies():
            for officer in agency.roster.officers if agency.roster else ():
                if phone in officer.phones():
                    return agency, officer
        return None


SERVICE_NAMES = frozenset({"intake", "referral", "notifier"})


def _private_webhook(webhook: Webhook, allowed: Sequence[Network]) -> str | None:
    """A webhook written as an IP address outside the public internet and the allowed networks; a name is checked
    when the notifier connects (services/notifier/channels/targets.py), since what it resolves to may change."""
    try:
        ip = ipaddress.ip_address((webhook.url.host or "").strip("[]"))
    except ValueError:
        return None
    if address_allowed(ip, allowed):
        return None
    return f"webhook address {ip} is not public and not in private_webhook_networks"


def consistency_problems(directory: Directory) -> list[tuple[tuple[str | int, ...], str]]:
    """What no single entry can know: duplicates, regencies outside the province, missing fallbacks."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    province = directory.province
    for index, agency in enumerate(directory.agencies):
        if agency.id in seen:
            problems.append((("agencies", index, "id"), f"agency id {agency.id!r} appears twice"))
        if agency.id in SERVICE_NAMES:
            # Broker users are named after services and agencies alike: the two must never share one.
            problems.append((("agencies", index, "id"), f"agency id {agency.id!r} is the name of a service"))
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
        if agency.webhook and (problem := _private_webhook(agency.webhook, directory.private_webhook_networks)):
            problems.append((("agencies", index, "webhook", "url"), problem))
        if agency.receives_referrals and agency.jurisdiction.is_provincial and directory.coordinator is None:
            problems.append(
                (("agencies", index, "jurisdiction"), "a provincial unit escalates to the coordinator: add one")
            )
    # A token names one holder: a hash shared by two would let one act as the other.
    hashes: dict[str, str] = {}
    entries: list[tuple[str, int, Agency | Operator]] = [
        *(("agencies", index, agency) for index, agency in enumerate(directory.agencies)),
        *(("operators", index, operator) for index, operator in enumerate(directory.operators)),
    ]
    for section, index, token_holder in entries:
        for position, token in enumerate(token_holder.api_tokens):
            if token.sha256 in hashes:
                problems.append(
                    ((section, index, "api_tokens", position, "sha256"), f"is also {hashes[token.sha256]}'s token")
                )
            hashes.setdefault(token.sha256, token_holder.id)
    # An SMS reply is recognised by its sender's number, so one number is one officer.
    phones: dict[str, str] = {}
    for index, agency in enumerate(directory.agencies):
        for officer in agency.roster.officers if agency.roster else ():
            for phone in set(officer.phones()):
                holder = phones.setdefault(phone, f"{agency.id}/{officer.id}")
                if holder != f"{agency.id}/{officer.id}":
                    problems.append((("agencies", index, "roster"), f"phone {phone} is also {holder}'s"))
    for index, rule in enumerate(directory.rules):
        if not any(a.kind is rule.agency_kind and a.jurisdiction.is_provincial for a in directory.agencies):
            problems.append((("rules", index, "agency_kind"), f"no provincial {rule.agency_kind} unit to fall back to"))
    return problems


# The hash config/kalbar.yaml gives every demo officer: the PIN 1234 under one fixed salt (README, "Demo credentials").
DEMO_PIN_HASH = (
    "pbkdf2_sha256$200000$52755275527552755275527552755275$"
    "e39be06f3e5fa262e58a03d65470ca2692f6768f33755346acd309fd8a675934"
)


def demo_credentials(directory: Directory) -> list[str]:
    """Who in ``directory`` holds a credential the README publishes: an API token ``dev-<holder id>``, or the demo
    officers' PIN hash. Anyone who has read the README can act as them."""
    holders: list[Agency | Operator] = [*directory.agencies, *directory.operators]
    found = [
        f"{holder.id} (API token dev-{holder.id})"
        for holder in holders
        if any(token.sha256 == token_sha256(f"dev-{holder.id}") for token in holder.api_tokens)
    ]
    found += [
        f"{agency.id}/{officer.id} (PIN 1234)"
        for agency in directory.agencies
        for officer in (agency.roster.officers if agency.roster else ())
        if officer.pin_hash == DEMO_PIN_HASH
    ]
    return found


def load_directory(path: Path, *, production: bool = False) -> Directory:
    """Read and validate the directory; a bad file raises naming the file, line, entry and field. ``production``
    also refuses a directory holding the demo's published credentials."""
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
    if production and (demo := demo_credentials(directory)):
        raise ConfigurationError(
            f"{path} holds the demo's published credentials, which RUJUKAN_ENVIRONMENT=production refuses: "
            f"{', '.join(demo)}. Give each holder a token of its own (`rujukan token`) and each officer a PIN of "
            "their own (hash_pin), and point RUJUKAN_CONFIG at that directory"
        )
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
