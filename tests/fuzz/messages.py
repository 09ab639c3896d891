"""Hypothesis strategies for what may arrive on a queue: case reports valid and near-valid (from the contract in
shared/contracts), agency replies and delivery reports about a real referral, and arbitrary bytes, content types,
content encodings and header values."""

from __future__ import annotations

import itertools
import json
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from pydantic import ValidationError

from services.notifier.messages import SYSTEM, Address, Notification, Recipient
from shared.contracts.cases import (
    CaseAmended,
    CaseAmendment,
    CaseReport,
    CaseReported,
    CaseWithdrawal,
    CaseWithdrawn,
    CaseWithdrawnV1,
    ExploitationType,
    MigrantWorkerStatus,
    Need,
    Sex,
)
from shared.contracts.referrals import (
    REPLIES,
    DeclineReason,
    Outcome,
    ReferralCancelled,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralEscalated,
    ReferralIssued,
    ReferralTaken,
)
from shared.topology import INTAKE
from shared.topology import REPLIES as REPLIES_EXCHANGE
from tests.notifying import an_issued_referral

CONTRACTS = [
    CaseReport, CaseAmendment, CaseWithdrawal, CaseReported, CaseAmended, CaseWithdrawn, CaseWithdrawnV1,
    ReferralIssued, ReferralEscalated, ReferralCancelled, ReferralTaken, ReferralDelivered, ReferralDeliveryFailed,
    Notification,
    *REPLIES,
]  # fmt: skip
QUEUES = ["intake.reports", "referral.cases", "referral.deliveries", "referral.replies", "notifier.referrals",
          "notifier.notifications"]  # fmt: skip
SPECIAL_HEADERS = ["x-delivery-count", "x-rujukan-retry-round", "x-rujukan-replay", "x-rujukan-reason",
                   "x-rujukan-sealed-body", "x-rujukan-queue", "x-rujukan-dead-at", "causation_id"]  # fmt: skip
"""Headers the services read or write. The broker's own ``x-death`` is left out: RabbitMQ parses it when it
dead-letters, and a malformed one is the broker's problem, not ours."""


KINDS = {
    "intake.reports": ["report", "report", "report", "near report", "near report"],
    "referral.replies": ["reply", "reply"],
    "referral.deliveries": ["delivery", "delivery"],
    "notifier.referrals": ["event", "event"],
    "notifier.notifications": ["notification", "notification"],
}
"""What else a queue gets besides any JSON and any bytes; the others get bodies of a contract's field names."""


@dataclass
class Fuzzed:
    """One message as it is published, and what is known of it beforehand."""

    queue: str
    """The queue it lands in: whose consumer it tests."""
    exchange: str
    routing_key: str
    body: bytes
    message_type: str | None
    message_id: str | None
    content_type: str | None
    content_encoding: str | None
    user_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)
    fill_frame: bool = False
    """Headers padded to just under the broker's frame limit when it is published."""
    tidy: bool = False
    """Sent as its sender's system would send it: JSON in UTF-8, a message id of its own, no user_id."""
    case_report: dict[str, Any] | None = None
    """A valid case report published as its police unit would: it must become a case."""
    report: dict[str, Any] | None = None
    """The valid case report the body was made from, if any: its identity may be quoted nowhere."""


@dataclass(frozen=True)
class World:
    """What exists when the messages are drawn: police units, regencies, and one referral leg by agency."""

    police: list[str]
    regencies: list[str]
    legs: dict[str, str]
    case_id: str


texts = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
)  # names in any script, control characters, RTL marks, emoji
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
WIB = timezone(timedelta(hours=7))
REPEATED_IDS = [uuid.UUID(int=n) for n in range(1, 4)]
_serial = itertools.count(1)
"""Report numbers never repeat within a run: a number reported again with other content is a conflict."""


identity_text = st.text(st.characters(categories=["L"]), min_size=5, max_size=60).map(lambda text: f"Ẓ{text}")
"""Names and places in any script, marked so that finding one anywhere is a leak, not a chance: hypothesis also
draws words from the code under test ("rujukan"), which the services' own texts contain."""


@st.composite
def victims(draw: st.DrawFn, ref: str) -> dict[str, Any]:
    victim: dict[str, Any] = {
        "victim_ref": ref,
        "full_name": draw(identity_text),
        "sex": draw(st.sampled_from(Sex)).value,
        "migrant_worker_status": draw(st.sampled_from(MigrantWorkerStatus)).value,
        "needs": [need.value for need in draw(st.lists(st.sampled_from(Need), max_size=3, unique=True))],
    }  # fmt: skip
    optional: dict[str, st.SearchStrategy[Any]] = {
        "age_years": st.integers(min_value=0, max_value=120),
        "nik": st.from_regex(r"\A[0-9]{16}\Z"),
        "phone": st.from_regex(r"\A\+62[0-9]{9,11}\Z"),
        "passport_number": st.from_regex(r"\A[A-Z][0-9]{7}\Z"),
        "birth_date": st.dates(date(1950, 1, 1), date(2024, 12, 31)).map(date.isoformat),
        "destination_country": st.sampled_from(["MY", "SA", "HK", "TW"]),
        "current_location": identity_text,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            victim[key] = draw(strategy)
    return victim


@st.composite
def case_reports(draw: st.DrawFn, world: World) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=4))
    report = {
        "police_report_number": f"LP/FUZZ/{next(_serial)}/{draw(texts.filter(str.strip))}"[:100],
        "reporting_agency": draw(st.sampled_from(world.police)),
        "regency_code": draw(st.sampled_from(world.regencies)),
        "reported_at": datetime(2025, 8, 7, 9, 30, tzinfo=WIB).isoformat(),
        "exploitation_types": [t.value for t in draw(st.lists(st.sampled_from(ExploitationType), max_size=2,
                                                              unique=True))],
        "summary": draw(texts),
        "victims": [draw(victims(f"V{i + 1}")) for i in range(count)],
    }  # fmt: skip
    try:
        CaseReport.model_validate(report)
    except ValidationError:
        st.assume(False)  # the strategy means valid: a draw that is not is discarded
    return report


def acceptable(body: Any, world: World) -> bool:
    """Whether intake must take ``body`` as a new case: valid by the contract, from a police unit, in a regency,
    under a report number of its own (the same number with other content would be a conflict)."""
    try:
        report = CaseReport.model_validate(body)
    except ValidationError:
        return False
    return (
        report.reporting_agency in world.police
        and report.regency_code in world.regencies
        and report.police_report_number.startswith("LP/FUZZ/")
    )


@st.composite
def near(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with one thing wrong: a key missing, a value of another type or out of range, a key too many."""
    body = json.loads(json.dumps(valid))
    target = body["victims"][0] if "victims" in body and draw(st.booleans()) else body
    key = draw(st.sampled_from(sorted(target)))
    mutation = draw(st.sampled_from(["drop", "replace", "extra", "age"]))
    if mutation == "drop":
        del target[key]
    elif mutation == "replace":
        target[key] = draw(json_values)
    elif mutation == "extra":
        target[draw(texts.filter(lambda k: k not in target))] = draw(json_values)
    else:
        target["age_years"] = draw(st.sampled_from([-1, 121, 15.0, "15", True, None, 10**30]))
    return body


def replies(world: World) -> st.SearchStrategy[tuple[str, dict[str, Any], str]]:
    """An agency's reply about its own leg of the seeded case: (routing key, body, type)."""

    @st.composite
    def reply(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
        contract = draw(st.sampled_from(REPLIES))
        agency = draw(st.sampled_from(sorted(world.legs)))
        body: dict[str, Any] = {"referral_id": world.legs[agency], "agency_id": agency}
        if draw(st.booleans()):
            body["officer"] = draw(st.text(min_size=1, max_size=30))
        if "reason" in contract.model_fields:
            body["reason"] = draw(st.sampled_from(DeclineReason)).value
            body["note"] = "alasan lain"
        if "outcome" in contract.model_fields:
            body["outcome"] = draw(st.sampled_from(Outcome)).value
        if "to_agency_id" in contract.model_fields:
            body["to_agency_id"] = draw(st.sampled_from(sorted(world.legs)))
        return f"referral.{agency}.{contract.EVENT}", body, contract.TYPE

    return reply()


def delivery_reports(world: World) -> st.SearchStrategy[dict[str, Any]]:
    agency = st.sampled_from(sorted(world.legs))
    return agency.flatmap(
        lambda a: st.fixed_dictionaries(
            {
                "referral_id": st.just(world.legs[a]),
                "case_id": st.just(world.case_id),
                "agency_id": st.just(a),
                "channel": st.sampled_from(["webhook", "email", "sms"]),
                "notification_id": st.uuids().map(str),
                "attempts": st.integers(min_value=1, max_value=5),
                "delivered_at": st.just(datetime.now(UTC).isoformat()),
                "level": st.integers(min_value=0, max_value=3),
            }
        )
    )


class RawLongString(bytes):
    """A long-string header value as another client may send it: bytes that need not be UTF-8."""


class Double(float):
    """A double-precision header value (``d``), as Java or Go clients send a float."""


class RawTimestamp(int):
    """A timestamp header value (``T``) as the protocol carries it: any 64-bit number, a millisecond or microsecond
    epoch too, which pamqp never writes past the year 9999."""


def encoding_foreign_values(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """pamqp's table encoder, also writing what pamqp itself never writes (``RawLongString``, ``Double``,
    ``RawTimestamp``); a consumer reads them back as plain ``bytes``, ``float`` and a datetime or the number."""

    def encode_table_value(value: Any) -> bytes:
        if isinstance(value, RawLongString):
            return b"S" + struct.pack(">I", len(value)) + bytes(value)
        if isinstance(value, Double):
            return b"d" + struct.pack(">d", value)
        if isinstance(value, RawTimestamp):
            return b"T" + struct.pack(">Q", value)
        return encode(value)

    return encode_table_value


def encoding_raw_timestamps(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """pamqp's encoder of the ``timestamp`` property, also writing a ``RawTimestamp``."""

    def encode_timestamp(value: Any) -> bytes:
        if isinstance(value, RawTimestamp):
            return struct.pack(">Q", value)
        return encode(value)

    return encode_timestamp


def issued(world: World) -> st.SearchStrategy[ReferralIssued]:
    """The seeded case's referral to one of its agencies, issued again (as a redelivery would bring it)."""
    return st.sampled_from(sorted(world.legs)).map(
        lambda agency: an_issued_referral(agency, referral_id=uuid.UUID(world.legs[agency]), case_id=world.case_id)
    )


def notifications(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """The notifier's own message telling an agency's system of the seeded referral."""
    return st.builds(
        lambda event, notification_id, event_id: Notification(
            notification_id=str(notification_id),
            event_id=str(event_id),
            event=event,
            recipient=Recipient(
                role="system",
                id=SYSTEM,
                agency_id=event.agency_id,
                channels=(Address(kind="webhook", to=event.agency_id),),
            ),
        ).model_dump(mode="json"),
        issued(world),
        st.uuids(),
        st.uuids(),
    )


header_values = (
    texts
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.binary(max_size=40).map(bytearray)
    | st.binary(max_size=40).map(RawLongString)  # not UTF-8, as often as not
    | st.floats(width=32, allow_nan=False, allow_infinity=False)  # RabbitMQ closes a connection sending infinity
    | st.floats(allow_nan=False, allow_infinity=False).map(Double)
    | st.integers(min_value=0, max_value=2**64 - 1).map(RawTimestamp)  # mostly past the year 9999
    | st.none()
    | st.lists(texts, max_size=3)
    | st.dictionaries(st.text(min_size=1, max_size=10), texts, max_size=3)
    | st.integers(min_value=10_000, max_value=60_000).map(lambda n: "h" * n)  # a huge header
)
header_names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@st.composite
def messages(draw: st.DrawFn, world: World, queue: str) -> Fuzzed:
    """A message for ``queue``: what its consumer is meant to get (with something wrong, or not), or anything."""
    kind = draw(st.sampled_from(["json", "bytes", *KINDS.get(queue, ["typed"])]))
    message_type: str | None = draw(st.sampled_from([c.TYPE for c in CONTRACTS]) | st.none() | texts)
    exchange, routing_key = "", queue
    report: dict[str, Any] | None = None
    body_value: Any = None
    if kind in ("report", "near report"):
        queue, exchange, routing_key, message_type = "intake.reports", INTAKE.name, "case.report", CaseReport.TYPE
        report = draw(case_reports(world))
        body_value = report if kind == "report" else draw(near(report))
    elif kind == "reply":
        queue, exchange = "referral.replies", REPLIES_EXCHANGE.name
        routing_key, body_value, message_type = draw(replies(world))
    elif kind == "delivery":
        queue, message_type = "referral.deliveries", ReferralDelivered.TYPE
        routing_key, body_value = queue, draw(delivery_reports(world))
    elif kind == "event":
        body_value, message_type = draw(issued(world)).model_dump(mode="json"), ReferralIssued.TYPE
    elif kind == "notification":
        body_value, message_type = draw(notifications(world)), Notification.TYPE
    elif kind == "typed":
        contract = draw(st.sampled_from(CONTRACTS))
        message_type = contract.TYPE
        body_value = {name: draw(json_values) for name in contract.model_fields if draw(st.booleans())}
    elif kind == "json":
        body_value = draw(json_values)
    # Half the messages are sent as a police or agency system would send them; the other half anyhow.
    tidy = draw(st.booleans())
    encoding = "utf-8" if tidy else draw(st.sampled_from(["utf-8", "utf-16"]))
    body = draw(st.binary(max_size=3000)) if kind == "bytes" else json.dumps(body_value).encode(encoding)
    # Few distinct ids come up, so ids repeat across messages as a resend's would.
    fresh_ids = st.uuids().map(str)
    repeated_ids = st.sampled_from([str(uuid) for uuid in REPEATED_IDS])
    # A tidy message's id is its own, given when it is published (hypothesis draws the same uuid again and again).
    message_id = None if tidy else draw(repeated_ids | fresh_ids | st.sampled_from([None, ""]))
    content_type = "application/json" if tidy else draw(st.sampled_from(["application/json", "text/plain"]) | texts)
    content_encoding = None if tidy else draw(st.sampled_from([None, "gzip", "utf-8", "identity"]) | texts)
    user_id = None if tidy else draw(st.sampled_from([None, "guest"]))
    headers = draw(st.dictionaries(header_names, header_values, max_size=3))
    headers.update(draw(st.fixed_dictionaries({}, optional=dict.fromkeys(SPECIAL_HEADERS, header_values))))
    # Drawn as valid, or made near-valid and valid all the same (an optional field dropped, say).
    clean = tidy and kind in ("report", "near report") and acceptable(body_value, world)
    return Fuzzed(
        queue=queue,
        exchange=exchange,
        routing_key=routing_key,
        body=body,
        message_type=message_type,
        message_id=message_id,
        content_type=content_type,
        content_encoding=content_encoding,
        user_id=user_id,
        headers=headers,
        tidy=tidy,
        fill_frame=draw(st.integers(min_value=0, max_value=9)) == 0,
        case_report=body_value if clean else None,
        report=report,
    )
