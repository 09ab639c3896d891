"""Judges one run: what was accepted against what the agencies received.

- lost: an accepted case that some expected agency never received (by webhook, or in its inbox if it has one);
- unexpected: something received for a case nobody saw accepted;
- duplicate effects: two referrals for one case and agency (as received, or in the ledger), two distinct
  notification ids for one notification (a resend under the same id is no duplicate: receivers drop it), or one
  escalation level of a referral's deadline recorded twice;
- dead letters: each must be one of the invalid messages sent on purpose (a stray one fails the run), and each of
  those must be there with a reason; a dead letter operators replayed is gone by the end and counts for nothing;
- invalid reports posted over HTTP must be answered 4xx."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field

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
    stray_dead_letters: int = 0
    """Dead letters that are none of the invalid messages sent on purpose."""
    missing_dead_letters: int = 0
    """Invalid messages sent on purpose over AMQP that are not in their dead-letter queue with a reason."""
    replayed: int = 0
    malformed: int = 0
    invalid_answers: dict[int, int] = field(default_factory=dict)
    """HTTP status -> invalid reports posted over HTTP answered with it."""
    misanswered: tuple[str, ...] = ()
    escalations: int = 0
    unescalated: int = 0
    p95_by_agency: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        recovered = self.faults == 0 or (self.recovery_s is not None and self.recovery_s <= RECOVERY_TARGET_SECONDS)
        wrong = (
            self.lost
            or self.unexpected
            or self.duplicates
            or self.stray_dead_letters
            or self.missing_dead_letters
            or self.misanswered
            or self.unescalated
        )
        return self.accepted > 0 and not wrong and recovered

    def notes(self) -> str:
        """What the table's columns do not show, when there is any."""
        notes = [
            f"{self.replayed} replayed" if self.replayed else "",
            f"{self.malformed} invalid sent, over HTTP answered "
            + " ".join(f"{status}x{count}" for status, count in sorted(self.invalid_answers.items()))
            if self.malformed
            else "",
            f"{self.stray_dead_letters} stray dead" if self.stray_dead_letters else "",
            f"{self.missing_dead_letters} invalid not dead-lettered" if self.missing_dead_letters else "",
            f"{len(self.misanswered)} invalid not 4xx" if self.misanswered else "",
            f"{self.escalations} escalations" if self.escalations else "",
            f"{self.unescalated} short of the top level" if self.unescalated else "",
        ]
        return ", ".join(note for note in notes if note)

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
        f"{'  (' + verdict.notes() + ')' if verdict.notes() else ''}"
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
        | {
            f"{code} at {agency}: {count} referrals in the ledger"
            for (code, agency), count in observed.ledger_referrals.items()
            if count > 1
        }
        | {
            f"{deadline} escalation level {level} of {referral}: {count} in the ledger"
            for (referral, deadline, level), count in observed.ledger_escalations.items()
            if count > 1
        }
    )

    dead = {(letter.queue, letter.message_id) for letter in observed.dead_letters}
    reasoned = {(letter.queue, letter.message_id) for letter in observed.dead_letters if letter.reason}

    # Latency is the referral's: the first arrival at each agency the case reaches (an escalation's webhook to the
    # unit above is none of them).
    first: dict[tuple[str, str], float] = {}
    for arrival in notified:
        if arrival.agency_id in observed.expected_agencies:
            key = (arrival.case_code, arrival.agency_id)
            first[key] = min(first.get(key, arrival.at), arrival.at)
    waited: dict[str, list[float]] = defaultdict(list)
    for (code, agency), at in first.items():
        if code in observed.accepted:
            waited[agency].append((at - observed.accepted[code]) * 1000)
    latencies = sorted(ms for each in waited.values() for ms in each)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else None
    return Verdict(
        scenario=scenario,
        accepted=len(observed.accepted),
        lost=len(lost),
        unexpected=len(unexpected),
        duplicates=len(duplicated),
        dead_letters=len(observed.dead_letters),
        dead_letter_reasons=_reasons(observed),
        p50_ms=cuts[49] if cuts else None,
        p95_ms=cuts[94] if cuts else None,
        recovery_s=_recovery(observed, first),
        caught_up_s=_caught_up(observed, first),
        faults=len(observed.faults),
        refusals=observed.refusals,
        lost_cases=tuple(lost[:20]),
        duplicated=tuple(duplicated[:20]),
        stray_dead_letters=len(dead - observed.expected_dead_letters),
        missing_dead_letters=len(observed.expected_dead_letters - reasoned),
        replayed=observed.replayed,
        malformed=observed.malformed,
        invalid_answers=dict(observed.invalid_answers),
        misanswered=tuple(observed.misanswered[:20]),
        escalations=sum(observed.ledger_escalations.values()),
        unescalated=observed.unescalated,
        p95_by_agency={
            agency: statistics.quantiles(each, n=100)[94] for agency, each in sorted(waited.items()) if len(each) >= 2
        },
    )


def _reasons(observed: Observations) -> dict[str, list[str]]:
    reasons: dict[str, set[str]] = defaultdict(set)
    for letter in observed.dead_letters:
        reasons[letter.queue].add(letter.reason or "no reason")
    return {queue: sorted(each) for queue, each in reasons.items()}


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
