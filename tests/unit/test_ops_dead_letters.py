"""Reading dead letters' headers and the headers of their replay, without a broker."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pamqp.encode import field_table

from services.referral.ledger import Ledger
from services.referral.operations import Operations
from services.referral.operations.broker import queue_inventory
from services.referral.operations.dead_letters import (
    dead_at_of,
    reason_of,
    replay_headers,
    replays_of,
    routing_key_of,
    submission_case_of,
    without_identity,
    work_queue_of,
)
from shared.directory import load_directory
from shared.ids import case_id_for
from shared.sealing import IdentitySealer
from shared.settings import Settings
from shared.topology import build_topology
from tests.builders import a_case_report_body
from tests.system import CONFIG

BROKER_DEATH = {
    "x-death": [
        {
            "count": 1,
            "reason": "delivery_limit",
            "queue": "referral.cases",
            "time": datetime(2026, 3, 1, 8, 0),
            "exchange": "rujukan.events",
            "routing-keys": ["case.reported"],
        }
    ],
    "x-first-death-reason": "delivery_limit",
    "x-delivery-count": 10,
}


def test_our_reason_is_shown_before_the_brokers() -> None:
    ours = {"x-rujukan-reason": "invalid case.report.v1: victims.0.age_years: too small", **BROKER_DEATH}

    assert reason_of(ours) == "invalid case.report.v1: victims.0.age_years: too small"
    assert reason_of(BROKER_DEATH) == "broker: delivery_limit"
    assert reason_of({}) == "unknown (no reason header)"


def test_a_broker_dead_letter_tells_its_routing_key_and_time() -> None:
    assert routing_key_of(BROKER_DEATH) == "case.reported"
    assert dead_at_of(BROKER_DEATH, None) == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert dead_at_of({"x-rujukan-dead-at": "2026-03-02T01:00:00+00:00"}, None) == datetime(2026, 3, 2, 1, tzinfo=UTC)
    assert dead_at_of({}, datetime(2026, 3, 3, tzinfo=UTC)) == datetime(2026, 3, 3, tzinfo=UTC)


def test_a_replay_counts_itself_names_the_operator_marks_itself_and_leaves_the_dead_letter_bookkeeping_behind() -> None:
    dead = {
        **BROKER_DEATH,
        "x-rujukan-reason": "gave up after 10 deliveries: OperationalError",
        "x-rujukan-queue": "referral.cases",
        "x-rujukan-dead-at": "2026-03-02T01:00:00+00:00",
        "x-rujukan-replays": 1,
        "causation_id": "c-1",
    }

    headers = replay_headers(dead, operator="ops-rujukan")

    assert headers == {
        "causation_id": "c-1",
        "x-rujukan-replays": 2,
        "x-rujukan-replayed-by": "ops-rujukan",
        "x-rujukan-replay": True,
    }
    assert replays_of(headers) == 2
    assert replays_of({"x-rujukan-replays": "nonsense"}) == 0


def test_a_dead_letter_goes_back_only_to_the_queue_its_dead_letter_queue_belongs_to() -> None:
    assert work_queue_of("agency.dinsos-bengkayang.inbox.dead") == "agency.dinsos-bengkayang.inbox"
    with pytest.raises(ValueError, match="not a dead-letter queue"):
        work_queue_of("rujukan.events")
    with pytest.raises(ValueError, match="not a dead-letter queue"):
        work_queue_of(".dead")


def test_every_service_work_queue_needs_a_consumer_and_agency_wait_and_dead_queues_do_not() -> None:
    inventory = {info.name: info for info in queue_inventory(build_topology(load_directory(CONFIG), (30.0, 120.0)))}

    work = {name: info.owner for name, info in inventory.items() if info.kind == "work"}
    assert work == {
        "intake.reports": "intake",
        "referral.cases": "referral",
        "referral.deliveries": "referral",
        "referral.replies": "referral",
        "notifier.referrals": "notifier",
        "notifier.notifications": "notifier",
    }
    assert inventory["agency.dinsos-bengkayang.inbox"].owner == "agency:dinsos-bengkayang"
    assert inventory["agency.dinsos-bengkayang.inbox.dead"].kind == "dead"
    assert inventory["notifier.notifications.wait.2m"].kind == "wait"
    assert "notifier.notifications.wait.2m.dead" not in inventory


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "submission",
    [
        a_case_report_body(police_report_number="LP/B/12/VIII/2025"),
        {"reporting_agency": "polres-bengkayang", "police_report_number": "lp/b/12/viii/2025", "reason": "duplicate"},
    ],
    ids=["report", "withdrawal-request"],
)
def test_a_police_submission_names_the_case_of_its_agency_and_report_number(submission: dict[str, Any]) -> None:
    assert submission_case_of(body(submission)) == case_id_for("polres-bengkayang", "LP/B/12/VIII/2025")


@pytest.mark.parametrize(
    "raw",
    [b"\xff\x00 not json", b"[" * 100_000, b'["a list"]', body({"police_report_number": "LP/1"})],
    ids=["not-json", "too-deep", "not-an-object", "no-agency"],
)
def test_a_body_naming_no_agency_and_report_number_names_no_case(raw: bytes) -> None:
    assert submission_case_of(raw) is None


CASE = uuid.UUID(int=7)
SEALED = {"key_id": "k", "nonce": "n", "ciphertext": "c"}


def nothing_sealed(case_id: uuid.UUID) -> dict[str, Any]:
    return {"key_id": "k", "nonce": "sealed nothing", "ciphertext": str(case_id)}


def kept(data: dict[str, Any]) -> tuple[uuid.UUID, dict[str, Any]] | None:
    found = without_identity(body(data), nothing_sealed)
    return None if found is None else (found[0], json.loads(found[1]))


def test_a_case_event_keeps_its_facts_and_loses_its_identity_and_note() -> None:
    event = {"case_id": str(CASE), "victims": [{"victim_ref": "V1", "sex": "female"}], "identity": SEALED}
    withdrawn = {"case_id": str(CASE), "reason": "duplicate", "note": SEALED}
    withdrawn_v1 = {"case_id": str(CASE), "reason": "duplicate", "note": "Siti Aminah sudah pulang"}

    assert kept(event) == (CASE, {**event, "identity": nothing_sealed(CASE)})
    assert kept(withdrawn) == (CASE, {**withdrawn, "note": None})
    assert kept(withdrawn_v1) == (CASE, {**withdrawn_v1, "note": None})


@pytest.mark.parametrize(
    "data",
    [
        {"case_id": str(CASE), "reason": "duplicate", "note": None},
        {"case_id": "not a uuid", "identity": SEALED},
        ["a list"],
    ],
    ids=["nothing-to-take-out", "bad-case-id", "not-an-object"],
)
def test_a_body_with_no_identity_or_note_of_a_case_is_left_as_it_is(data: Any) -> None:
    assert without_identity(body(data), nothing_sealed) is None


def test_a_case_event_kept_without_identity_keeps_headers_the_broker_takes_again(tmp_path: Path) -> None:
    """The broker's own dead-lettering keeps headers as the sender wrote them: a number past signed 64 bits reads
    back as that number, which cannot be written again as it is."""
    directory = load_directory(CONFIG)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/rujukan.db")
    operations = Operations(
        cast("Ledger", None), lambda: directory, settings, IdentitySealer({"k": os.urandom(32)}, "k")
    )
    event = {"case_id": str(CASE), "identity": SEALED}
    headers = {"x-sent-at": 2**64 - 1, "x-death": [{"count": 10, "reason": "delivery_limit"}]}
    letter = SimpleNamespace(
        body=body(event), headers=headers, message_id="m-1", correlation_id=str(CASE), type="case.amended.v1",
        content_type="application/json", content_encoding=None, timestamp=None, app_id="intake",
    )  # fmt: skip

    claim = operations._claim("referral.cases.dead", cast("Any", letter), "intake.reports.dead")

    assert claim is not None
    case_id, kept = claim
    assert case_id == CASE
    assert kept is not None
    assert kept.headers is not None
    assert field_table(dict(kept.headers))
    assert kept.headers["x-sent-at"] == str(2**64 - 1)
