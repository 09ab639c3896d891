"""The referral lifecycle (services/referral/lifecycle.py) driven by hypothesis through every sequence of moves,
agency replies and delivery reports, against a model written from DESIGN.md's "Referral lifecycle": each step
either moves the referral as the model says or is refused with ``IllegalTransitionError`` naming both states,
and the history it leaves is a path in the transition graph. Pure and fast: no broker, no database."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from services.referral.lifecycle import (
    ALLOWED,
    REPLY_MOVES,
    Reply,
    Status,
    after_delivery_report,
    apply_reply,
    deadlines_met_by,
    move,
)
from shared.errors import IllegalTransitionError, PermanentError
from tests.fuzz.budget import fuzz_settings

pytestmark = pytest.mark.fuzz

AWAITING = {Status.REQUESTED, Status.DELIVERED, Status.FAILED}
DECISIONS = {Status.ACCEPTED, Status.DECLINED, Status.REFERRED_ONWARD}
IN_SERVICE = {Status.ACCEPTED, Status.IN_PROGRESS, Status.ON_HOLD}
CLOSED = {Status.DECLINED, Status.REFERRED_ONWARD, Status.COMPLETED, Status.CANCELLED, Status.ENTERED_IN_ERROR}


def model_allows(current: Status, requested: Status) -> bool:
    """DESIGN.md in code: a referral goes forward — delivered, taken, decided, served, closed — never back; only a
    failed delivery may still be delivered, service may pause and resume, and a referral sent by mistake may be
    marked so whatever became of it."""
    if requested is Status.ENTERED_IN_ERROR:
        return current is not Status.ENTERED_IN_ERROR
    if current in CLOSED:
        return False
    return {
        Status.REQUESTED: False,
        Status.DELIVERED: current in {Status.REQUESTED, Status.FAILED},
        Status.FAILED: current is Status.REQUESTED,
        Status.ACKNOWLEDGED: current in AWAITING,
        Status.ACCEPTED: current in AWAITING | {Status.ACKNOWLEDGED},
        Status.DECLINED: current in AWAITING | {Status.ACKNOWLEDGED},
        Status.REFERRED_ONWARD: current in AWAITING | {Status.ACKNOWLEDGED},
        Status.IN_PROGRESS: current in IN_SERVICE - {Status.IN_PROGRESS},
        Status.ON_HOLD: current in IN_SERVICE - {Status.ON_HOLD},
        Status.COMPLETED: current in IN_SERVICE,
        Status.CANCELLED: True,
    }[requested]


REPLY_TARGETS = {
    Reply.ACKNOWLEDGED: Status.ACKNOWLEDGED,
    Reply.ACCEPTED: Status.ACCEPTED,
    Reply.DECLINED: Status.DECLINED,
    Reply.REFERRED_ONWARD: Status.REFERRED_ONWARD,
    Reply.STARTED: Status.IN_PROGRESS,
    Reply.HELD: Status.ON_HOLD,
    Reply.RESUMED: Status.IN_PROGRESS,
    Reply.COMPLETED: Status.COMPLETED,
}


def model_allows_reply(current: Status, reply: Reply) -> bool:
    """An agency's reply is a move it may make, with two narrowings: service starts from acceptance only and
    resumes from a hold only (a paused referral is resumed, not started again)."""
    if reply is Reply.STARTED and current is not Status.ACCEPTED:
        return False
    if reply is Reply.RESUMED and current is not Status.ON_HOLD:
        return False
    return model_allows(current, REPLY_TARGETS[reply])


class ReferralLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.referral_id = uuid.uuid4()
        self.status = Status.REQUESTED
        self.history = [Status.REQUESTED]

    def _refused(self, error: IllegalTransitionError, requested: Status) -> None:
        assert isinstance(error, PermanentError)  # dead-lettered, never retried
        assert (error.referral_id, error.current, error.requested) == (self.referral_id, self.status, requested)
        assert f"{self.status.value} -> {requested.value}" in str(error)

    def _moved(self, to: Status) -> None:
        self.status = to
        self.history.append(to)

    @rule(requested=st.sampled_from(Status))
    def move_to(self, requested: Status) -> None:
        allowed = model_allows(self.status, requested)
        try:
            moved = move(self.referral_id, self.status, requested)
        except IllegalTransitionError as error:
            assert not allowed, f"{self.status} -> {requested} is refused, the model allows it"
            self._refused(error, requested)
            return
        assert allowed, f"{self.status} -> {requested} is made, the model forbids it"
        assert moved is requested
        self._moved(moved)

    @rule(reply=st.sampled_from(Reply))
    def agency_replies(self, reply: Reply) -> None:
        allowed = model_allows_reply(self.status, reply)
        try:
            moved = apply_reply(self.referral_id, self.status, reply)
        except IllegalTransitionError as error:
            assert not allowed, f"{reply} from {self.status} is refused, the model allows it"
            self._refused(error, REPLY_TARGETS[reply])
            return
        assert allowed, f"{reply} from {self.status} is taken, the model forbids it"
        assert moved is REPLY_TARGETS[reply]
        self._moved(moved)

    @rule(delivered=st.booleans(), level=st.integers(min_value=0, max_value=3))
    def delivery_report(self, delivered: bool, level: int) -> None:
        target = after_delivery_report(self.status, delivered=delivered, level=level)
        if target is None:
            # Nothing to move: an escalation's report, one the referral has outgrown, or a repeat.
            assert level > 0 or self.status not in AWAITING or self.status is (
                Status.DELIVERED if delivered else Status.FAILED
            ) or (self.status is Status.DELIVERED and not delivered)  # fmt: skip
            return
        assert level == 0
        assert self.status in AWAITING
        assert target is (Status.DELIVERED if delivered else Status.FAILED)
        assert model_allows(self.status, target)
        self._moved(target)

    @precondition(lambda self: self.status in CLOSED)
    @rule(requested=st.sampled_from([s for s in Status if s is not Status.ENTERED_IN_ERROR]))
    def a_closed_referral_never_reopens(self, requested: Status) -> None:
        with pytest.raises(IllegalTransitionError):
            move(self.referral_id, self.status, requested)

    @invariant()
    def history_is_a_path_in_the_transition_graph(self) -> None:
        for before, after in itertools.pairwise(self.history):
            assert after in ALLOWED[before] or (after is Status.ENTERED_IN_ERROR and before is not after)

    @invariant()
    def once_closed_always_closed(self) -> None:
        closed_at = next((i for i, status in enumerate(self.history) if status in CLOSED), None)
        if closed_at is not None:
            assert all(status in CLOSED for status in self.history[closed_at:])

    @invariant()
    def a_met_deadline_stays_met(self) -> None:
        met = [deadlines_met_by(status) for status in self.history]
        assert all(earlier <= later for earlier, later in itertools.pairwise(met))


def test_reply_moves_are_moves_the_lifecycle_allows() -> None:
    """The agency-reply table and the transition graph agree: no reply makes a move ``move`` would refuse."""
    for allowed_from, target in REPLY_MOVES.values():
        for current in allowed_from:
            assert target in ALLOWED[current], (current, target)


ReferralLifecycle.TestCase.settings = fuzz_settings(300, stateful_step_count=40)
test_every_sequence_of_moves_follows_the_lifecycle = ReferralLifecycle.TestCase
