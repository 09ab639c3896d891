"""The short chaos run CI does on every push: a few hundred cases through each of a handful of faults, each on a
RabbitMQ node of its own (never the shared one). Any lost, unexpected or duplicated case fails it; the control
must show losses, or the checker would not see them either. The long run: ``scripts/chaos --full``."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from tests.chaos.checker import check, row
from tests.chaos.harness import Arrival, DeadLetter, Fault, Observations
from tests.chaos.scenarios import CONTROLS, SCENARIOS, run_scenario

CI_CASES = 200
CI_SCENARIOS = (
    "kill -9 referral x3",
    "kill -9 intake",
    "connections cut every 10 s",
    "kill -9 broker halfway",
    "queue length limit",
    "CONTROL auto-ack killed",
)


@pytest.mark.chaos
@pytest.mark.rabbit
@pytest.mark.timeout(300)
@pytest.mark.xdist_group("chaos")  # one after another on one xdist worker (scripts/test says why)
@pytest.mark.parametrize("name", CI_SCENARIOS)
async def test_a_fault_loses_duplicates_and_invents_no_case(name: str, tmp_path: Path) -> None:
    verdict = await run_scenario(name, SCENARIOS[name], CI_CASES, tmp_path)

    print(row(verdict))
    if name in CONTROLS:
        assert verdict.lost > 0, "the control lost nothing: the checker cannot be trusted to see losses"
    else:
        assert verdict.passed, verdict.as_dict()


def webhook(agency: str, notification: str, referral: str, code: str, at: float = 2.0) -> Arrival:
    return Arrival("webhook", agency, notification, "referral.issued", referral, code, at)


def test_the_checker_counts_one_lost_one_duplicated_and_one_unexpected_case_and_forgives_a_resend() -> None:
    observed = Observations(
        accepted={"KB-25-AAAAAA": 1.0, "KB-25-BBBBBB": 1.0, "KB-25-CCCCCC": 1.0},
        expected_agencies=frozenset({"dinsos", "bp3mi"}),
        webhooks=[
            webhook("dinsos", "n1", "r1", "KB-25-AAAAAA"),
            webhook("dinsos", "n1", "r1", "KB-25-AAAAAA", at=3.0),  # a resend under the same id
            webhook("bp3mi", "n2", "r2", "KB-25-AAAAAA"),
            webhook("dinsos", "n3", "r3", "KB-25-BBBBBB"),  # never reached bp3mi: lost
            webhook("dinsos", "n5", "r5", "KB-25-CCCCCC"),
            webhook("bp3mi", "n6", "r6", "KB-25-CCCCCC"),
            webhook("bp3mi", "n7", "r6", "KB-25-CCCCCC"),  # the same notification under a second id
            webhook("bp3mi", "n8", "r8", "KB-25-DDDDDD"),  # never accepted
        ],
        faults=[Fault("kill -9 referral", started=0.5, ended=0.6)],
    )

    verdict = check("injected", observed)

    assert (verdict.accepted, verdict.lost, verdict.duplicates, verdict.unexpected) == (3, 1, 1, 1)
    assert verdict.lost_cases == ("KB-25-BBBBBB",)
    assert not verdict.passed
    clean = Observations(
        accepted={"KB-25-AAAAAA": 1.0},
        expected_agencies=frozenset({"dinsos", "bp3mi"}),
        webhooks=observed.webhooks[:3],
        faults=observed.faults,
    )
    assert check("clean", clean).passed


def test_the_checker_fails_a_stray_or_missing_dead_letter_an_invalid_report_not_refused_and_an_escalation_twice() -> (
    None
):
    delivered = Observations(
        accepted={"KB-25-AAAAAA": 1.0},
        expected_agencies=frozenset({"dinsos"}),
        webhooks=[
            webhook("dinsos", "n1", "r1", "KB-25-AAAAAA"),
            # Levels 1 and 2 of one referral's escalation are two notifications, not one sent twice.
            Arrival("webhook", "dinsos", "n2", "referral.escalated acknowledge level 1", "r1", "KB-25-AAAAAA", 3.0),
            Arrival("webhook", "dinsos", "n3", "referral.escalated acknowledge level 2", "r1", "KB-25-AAAAAA", 4.0),
        ],
        expected_dead_letters={("intake.reports.dead", "bad-1"), ("intake.reports.dead", "bad-2")},
        dead_letters=[DeadLetter("intake.reports.dead", "bad-1", "invalid case.report.v1: victims: Field required")],
        ledger_escalations=Counter({("r1", "acknowledge", 1): 1, ("r1", "acknowledge", 2): 2}),
        misanswered=["http oversized: 202"],
    )

    verdict = check("injected", delivered)

    assert (verdict.lost, verdict.unexpected, verdict.missing_dead_letters, verdict.stray_dead_letters) == (0, 0, 1, 0)
    assert verdict.duplicated == ("acknowledge escalation level 2 of r1: 2 in the ledger",)
    assert verdict.misanswered == ("http oversized: 202",)
    assert not verdict.passed
    stray = Observations(
        accepted=delivered.accepted,
        expected_agencies=delivered.expected_agencies,
        webhooks=delivered.webhooks,
        dead_letters=[DeadLetter("notifier.notifications.dead", "n9", "email: refused")],
    )
    assert check("stray", stray).stray_dead_letters == 1
    assert check("clean", replace(stray, dead_letters=[])).passed
