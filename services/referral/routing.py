"""Routing rules applied to a case: which agencies get it, for which victims, and why. Pure domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.contracts.base import Priority
from shared.contracts.cases import VictimFacts
from shared.contracts.referrals import ReferralReason
from shared.directory import Directory, Rule, VictimCondition


@dataclass(frozen=True)
class RoutingDecision:
    """One agency gets the case: for these victims, because these rules fired."""

    agency_id: str
    priority: Priority
    victim_refs: tuple[str, ...]
    reasons: tuple[ReferralReason, ...]


def victim_matches(condition: VictimCondition, victim: VictimFacts) -> bool:
    if condition.sex is not None and victim.sex is not condition.sex:
        return False
    if condition.min_age is not None or condition.max_age is not None:
        if victim.age_years is None:
            # Unknown age is never silently an adult: each rule says whether it counts the victim.
            if not condition.unknown_age_matches:
                return False
        elif (condition.min_age is not None and victim.age_years < condition.min_age) or (
            condition.max_age is not None and victim.age_years > condition.max_age
        ):
            return False
    if condition.migrant_worker_status and victim.migrant_worker_status not in condition.migrant_worker_status:
        return False
    if condition.destination_abroad is not None:
        abroad = victim.destination_country is not None and victim.destination_country != "ID"
        if abroad is not condition.destination_abroad:
            return False
    return True


def route(
    victims: Sequence[VictimFacts], regency_code: str, rules: Sequence[Rule], directory: Directory
) -> list[RoutingDecision]:
    """One decision per agency, merging every rule that resolves to it; urgent if any of them is."""
    merged: dict[str, tuple[Priority, list[str], list[ReferralReason]]] = {}
    for rule in rules:
        refs = tuple(v.victim_ref for v in victims if victim_matches(rule.when, v))
        if not refs:
            continue
        agency = directory.resolve(rule.agency_kind, regency_code)
        priority, victim_refs, reasons = merged.get(agency.id, (Priority.NORMAL, [], []))
        if rule.priority is Priority.URGENT:
            priority = Priority.URGENT
        victim_refs.extend(ref for ref in refs if ref not in victim_refs)
        reasons.append(ReferralReason(rule_id=rule.id, description=rule.description, victim_refs=refs))
        merged[agency.id] = (priority, victim_refs, reasons)
    order = {v.victim_ref: i for i, v in enumerate(victims)}
    return [
        RoutingDecision(
            agency_id=agency_id,
            priority=priority,
            victim_refs=tuple(sorted(refs, key=order.__getitem__)),
            reasons=tuple(reasons),
        )
        for agency_id, (priority, refs, reasons) in merged.items()
    ]
