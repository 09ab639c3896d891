"""Judges one run: what was accepted against what the agencies received.

- lost: an accepted case that some expected agency never received (by webhook, or in its inbox if it has one);
- unexpected: something received for a case nobody saw accepted;
- duplicate effects: two referrals for one case and agency, or two distinct notification ids for one
  notification (a resend under the same id is no duplicate: receivers drop it)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass

from tests.chaos.harness import Observations

RECOVERY_TARGET_SECONDS = 30.0


@dataclass(frozen=True)
class Verdict:
    scenario: str
    accepted: int
    lost: int
    unexpected: int
    duplicates: int
    dead_letters: int
    dead_letter_reasons: dict[str, list[str]]
    p50_ms: float | None
    p95_ms: float | None
    recovery_s: float | None
    """The slowest fault's: from the fault until the first delivery of a case accepted after it began."""
    caught_up_s: float | None
    """The slowest fault's: from the fault until every case accepted before it ended was delivered."""
    faults: int
    refusals: int
    lost_cases: tuple[str, ...]
    duplicated: tuple[str, ...]

    @property
    def passed(self) -> bool:
        recovered = self.faults == 0 or (self.recovery_s is not None and self.recovery_s <= RECOVERY_TARGET_SECONDS)
        return self.accepted > 0 and not (self.lost or self.unexpected or self.duplicates) and recovered

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


HEADER = (
    f"{'scenario':<34} {'accepted':>8} {'lost':>5} {'unexp':>5} {'dups':>5} {'dead':>5} "
    f"{'p50 ms':>8} {'p95 ms':>8} {'recover s':>9} {'caught up':>9} {'retries':>7}  verdict"
)


def row(verdict: Verdict) -> str:
    def figure(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return (
        f"{verdict.scenario:<34} {verdict.accepted:>8} {verdict.lost:>5} {verdict.unexpected:>5} "
        f"{verdict.duplicates:>5} {verdict.dead_letters:>5} {figure(verdict.p50_ms, 0):>8} "
        f"{figure(verdict.p95_ms, 0):>8} {figure(verdict.recovery_s, 1):>9} {figure(verdict.caught_up_s, 1):>9} "
        f"{verdict.refusals:>7}  "
        f"{'pass' if verdict.passed else 'FAIL'}"
    )


def check(scenario: str, observed: Observations) -> Verdict:
    notified = [*observed.webhooks, *observed.desk_mails]
    received = [*notified, *observed.inbox]
    reached: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for arrival in notified:
        reached[arrival.case_code].add(("system or desk", arrival.agency_id))
    for arrival in observed.inbox:
        reached[arrival.case_code].add(("inbox", arrival.agency_id))
    wanted = {("system or desk", agency) for agency in observed.expected_agencies} | {
        ("inbox", agency) for agency in observed.expected_agencies & observed.inbox_agencies
    }
    lost = sorted(code for code in observed.accepted if not wanted <= reached.get(code, set()))
    unexpected = {arrival.case_code for arrival in received if arrival.case_code not in observed.accepted}

    referrals: dict[tuple[str, str], set[str]] = defaultdict(set)
    notifications: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for arrival in received:
        if arrival.referral_id:  # a mail names its case, not its referral
            referrals[(arrival.case_code, arrival.agency_id)].add(arrival.referral_id)
        notifications[(arrival.channel, arrival.agency_id, arrival.referral_id or arrival.case_code, arrival.kind)].add(
            arrival.notification_id
        )
    duplicated = sorted(
        {f"{code} at {agency}: {len(ids)} referrals" for (code, agency), ids in referrals.items() if len(ids) > 1}
        | {
            f"{kind} of {referral} by {channel}: {len(ids)} ids"
            for (channel, _, referral, kind), ids in notifications.items()
            if len(ids) > 1
        }
    )

    first: dict[tuple[str, str], float] = {}
    for arrival in notified:
        key = (arrival.case_code, arrival.agency_id)
        first[key] = min(first.get(key, arrival.at), arrival.at)
    latencies = sorted(
        (at - observed.accepted[code]) * 1000 for (code, _), at in first.items() if code in observed.accepted
    )
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else None
    return Verdict(
        scenario=scenario,
        accepted=len(observed.accepted),
        lost=len(lost),
        unexpected=len(unexpected),
        duplicates=len(duplicated),
        dead_letters=sum(len(reasons) for reasons in observed.dead_letters.values()),
        dead_letter_reasons={queue: sorted(set(reasons)) for queue, reasons in observed.dead_letters.items()},
        p50_ms=cuts[49] if cuts else None,
        p95_ms=cuts[94] if cuts else None,
        recovery_s=_recovery(observed, first),
        caught_up_s=_caught_up(observed, first),
        faults=len(observed.faults),
        refusals=observed.refusals,
        lost_cases=tuple(lost[:20]),
        duplicated=tuple(duplicated[:20]),
    )


def _recovery(observed: Observations, first: dict[tuple[str, str], float]) -> float | None:
    """None when there was no fault, or one was never followed by a delivery of a case accepted after it began."""
    if not observed.faults:
        return None
    slowest = 0.0
    for fault in observed.faults:
        after = [at for (code, _), at in first.items() if observed.accepted.get(code, 0.0) >= fault.started and at > 0]
        if not after:
            return None
        slowest = max(slowest, min(after) - fault.started)
    return slowest


def _caught_up(observed: Observations, first: dict[tuple[str, str], float]) -> float | None:
    """None when there was no fault; lost cases are left out (they are counted as lost)."""
    if not observed.faults:
        return None
    slowest = 0.0
    for fault in observed.faults:
        for code, accepted in observed.accepted.items():
            arrivals = [first.get((code, agency)) for agency in observed.expected_agencies]
            if accepted <= fault.ended and all(at is not None for at in arrivals):
                slowest = max(slowest, max(at for at in arrivals if at is not None) - fault.started)
    return slowest
