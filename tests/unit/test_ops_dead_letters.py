"""Reading dead letters' headers and the headers of their replay, without a broker."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.referral.operations.broker import queue_inventory
from services.referral.operations.dead_letters import (
    dead_at_of,
    identity_case_of,
    reason_of,
    replay_headers,
    replays_of,
    routing_key_of,
    work_queue_of,
)
from shared.directory import load_directory
from shared.ids import case_id_for
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


def test_a_police_report_as_submitted_holds_the_identity_of_the_case_its_number_names() -> None:
    report = a_case_report_body(police_report_number="LP/B/12/VIII/2025")

    assert identity_case_of(body(report)) == case_id_for("polres-bengkayang", "lp/b/12/viii/2025")


SEALED = {"key_id": "k", "nonce": "n", "ciphertext": "c"}


@pytest.mark.parametrize("box", ["identity", "note"], ids=["reported-or-amended", "withdrawn"])
def test_a_case_event_holds_the_identity_of_its_case(box: str) -> None:
    case_id = uuid.uuid4()

    assert identity_case_of(body({"case_id": str(case_id), box: SEALED})) == case_id


@pytest.mark.parametrize(
    "data",
    [
        # A referral as an agency receives it: victim facts and the case, no identity.
        {"case_id": str(uuid.UUID(int=7)), "reporting_agency": "polres-bengkayang", "victims": [{"victim_ref": "V1"}]},
        # An agency's reply: its note is the agency's to keep, and the reply must stay replayable.
        {"case_id": str(uuid.UUID(int=7)), "referral_id": str(uuid.UUID(int=8)), "note": "sudah diterima"},
        # A withdrawal request: the case's number, but no victims.
        {"reporting_agency": "polres-bengkayang", "police_report_number": "LP/1", "reason": "duplicate"},
        {"reporting_agency": "polres-bengkayang", "police_report_number": "LP/1", "victims": [{"victim_ref": "V1"}]},
        {"case_id": "not a uuid", "identity": {}},
        ["a list"],
    ],
    ids=["referral", "reply", "withdrawal", "victims-without-identity", "bad-case-id", "not-an-object"],
)
def test_a_dead_letter_without_identity_names_no_case_to_erase(data: Any) -> None:
    assert identity_case_of(body(data)) is None


def test_a_body_that_is_not_json_names_no_case_to_erase() -> None:
    assert identity_case_of(b"\xff\x00 not json") is None
    assert identity_case_of(b"[" * 100_000) is None
