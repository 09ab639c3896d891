"""The short chaos run CI does on every push: a few hundred cases through each of a handful of faults, each on a
RabbitMQ node of its own (never the shared one). Any lost, unexpected or duplicated case fails it; the control
must show losses, or the checker would not see them either. The long run: ``scripts/chaos --full``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.checker import check, row
from tests.chaos.harness import Arrival, Fault, Observations
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
