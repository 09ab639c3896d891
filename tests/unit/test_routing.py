from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from services.intake.reports import facts_of
from services.referral.routing import RoutingDecision, route
from shared.contracts.base import Priority
from shared.contracts.cases import VictimFacts
from shared.directory import Directory, load_directory
from tests.builders import a_case_report, the_sample_victims, victim_facts

DIRECTORY_FILE = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"
BENGKAYANG = "61.07"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(DIRECTORY_FILE)


def the_demo_victims() -> list[VictimFacts]:
    report = a_case_report(victims=the_sample_victims())
    return [facts_of(victim, date(2025, 8, 7)) for victim in report.victims]


def route_in(directory: Directory, regency_code: str, *victims: VictimFacts) -> dict[str, RoutingDecision]:
    decisions = route(victims, regency_code, directory.rules, directory)
    by_agency = {decision.agency_id: decision for decision in decisions}
    assert len(by_agency) == len(decisions), "one decision per agency"
    return by_agency


def test_demo_case_in_bengkayang_goes_to_exactly_three_agencies(directory: Directory) -> None:
    decisions = route_in(directory, BENGKAYANG, *the_demo_victims())

    assert set(decisions) == {"dinsos-bengkayang", "uptd-ppa-kalbar", "bp3mi-kalbar"}


def test_demo_case_refers_every_victim_to_the_local_social_services(directory: Directory) -> None:
    decision = route_in(directory, BENGKAYANG, *the_demo_victims())["dinsos-bengkayang"]

    assert decision.victim_refs == ("V1", "V2", "V3")
    assert decision.priority is Priority.NORMAL


def test_demo_case_refers_the_girl_and_the_woman_to_child_protection_as_urgent(directory: Directory) -> None:
    decision = route_in(directory, BENGKAYANG, *the_demo_victims())["uptd-ppa-kalbar"]

    assert decision.victim_refs == ("V1", "V2")
    assert decision.priority is Priority.URGENT


def test_demo_case_refers_the_migrant_workers_to_bp3mi(directory: Directory) -> None:
    decision = route_in(directory, BENGKAYANG, *the_demo_victims())["bp3mi-kalbar"]

    assert decision.victim_refs == ("V2", "V3")
    assert decision.priority is Priority.NORMAL


def test_each_decision_records_the_rules_that_fired_and_their_victims(directory: Directory) -> None:
    decisions = route_in(directory, BENGKAYANG, *the_demo_victims())

    reasons = {
        agency_id: [(reason.rule_id, reason.victim_refs) for reason in decision.reasons]
        for agency_id, decision in decisions.items()
    }

    assert reasons == {
        "dinsos-bengkayang": [("every-victim-to-social-services", ("V1", "V2", "V3"))],
        "uptd-ppa-kalbar": [("child-to-child-protection", ("V1",)), ("woman-to-child-protection", ("V2",))],
        "bp3mi-kalbar": [("migrant-worker-to-bp3mi", ("V2", "V3")), ("foreign-destination-to-bp3mi", ("V2", "V3"))],
    }


def test_each_reason_carries_the_description_of_its_rule(directory: Directory) -> None:
    descriptions = {rule.id: rule.description for rule in directory.rules}

    decisions = route_in(directory, BENGKAYANG, *the_demo_victims())

    for decision in decisions.values():
        for reason in decision.reasons:
            assert reason.description == descriptions[reason.rule_id]


def test_child_victim_is_referred_to_child_protection_as_urgent(directory: Directory) -> None:
    decisions = route_in(directory, BENGKAYANG, victim_facts(sex="male", age_years=17))

    assert decisions["uptd-ppa-kalbar"].priority is Priority.URGENT


def test_victim_of_unknown_age_is_referred_to_child_protection_as_urgent(directory: Directory) -> None:
    decisions = route_in(directory, BENGKAYANG, victim_facts(sex="male", age_years=None))

    decision = decisions["uptd-ppa-kalbar"]
    assert decision.priority is Priority.URGENT
    assert [reason.rule_id for reason in decision.reasons] == ["child-to-child-protection"]


def test_adult_man_without_migration_is_referred_only_to_social_services(directory: Directory) -> None:
    decisions = route_in(directory, BENGKAYANG, victim_facts(sex="male", age_years=18))

    assert list(decisions) == ["dinsos-bengkayang"]
    assert decisions["dinsos-bengkayang"].priority is Priority.NORMAL


def test_adult_woman_is_referred_to_child_protection_at_normal_priority(directory: Directory) -> None:
    decisions = route_in(directory, BENGKAYANG, victim_facts(sex="female", age_years=18))

    assert decisions["uptd-ppa-kalbar"].priority is Priority.NORMAL


@pytest.mark.parametrize(
    ("regency_code", "social_services"),
    [
        ("61.71", "dinsos-kalbar"),
        ("61.03", "dinsos-kalbar"),
        ("61.01", "dinsos-sambas"),
        ("61.07", "dinsos-bengkayang"),
    ],
)
def test_social_services_referral_goes_to_the_unit_covering_the_regency(
    directory: Directory, regency_code: str, social_services: str
) -> None:
    decisions = route_in(directory, regency_code, victim_facts(sex="male", age_years=40))

    assert list(decisions) == [social_services]


def test_case_in_a_regency_without_local_units_goes_to_the_provincial_units(directory: Directory) -> None:
    decisions = route_in(directory, "61.03", *the_demo_victims())

    assert set(decisions) == {"dinsos-kalbar", "uptd-ppa-kalbar", "bp3mi-kalbar"}


def test_foreign_destination_alone_sends_the_victim_to_bp3mi(directory: Directory) -> None:
    traveller = victim_facts(sex="male", age_years=40, migrant_worker_status="none", destination_country="SG")

    decision = route_in(directory, BENGKAYANG, traveller)["bp3mi-kalbar"]

    assert decision.victim_refs == ("V1",)
    assert [reason.rule_id for reason in decision.reasons] == ["foreign-destination-to-bp3mi"]


def test_destination_inside_indonesia_does_not_send_the_victim_to_bp3mi(directory: Directory) -> None:
    decisions = route_in(directory, BENGKAYANG, victim_facts(sex="male", age_years=40, destination_country="ID"))

    assert "bp3mi-kalbar" not in decisions


def test_decision_lists_victims_in_report_order_whatever_rule_named_them_first(directory: Directory) -> None:
    woman = victim_facts(victim_ref="V1", sex="female", age_years=30)
    child = victim_facts(victim_ref="V2", sex="male", age_years=10)

    decision = route_in(directory, BENGKAYANG, woman, child)["uptd-ppa-kalbar"]

    assert decision.victim_refs == ("V1", "V2")
    assert decision.priority is Priority.URGENT
