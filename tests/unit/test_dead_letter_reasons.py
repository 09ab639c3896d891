from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from shared.consuming import _permanent_reason
from shared.errors import UnknownReferralError
from shared.topology import DELIVERY_LIMIT


@dataclass
class Message:
    headers: dict[str, Any] = field(default_factory=dict)


def test_a_permanent_error_is_dead_lettered_with_its_own_reason() -> None:
    referral_id = uuid4()

    reason = _permanent_reason(UnknownReferralError(referral_id), Message())  # type: ignore[arg-type]

    assert reason == f"referral {referral_id} does not exist"


def test_a_transient_error_is_retried_until_the_last_delivery_then_dead_lettered_with_a_reason() -> None:
    early = _permanent_reason(ConnectionError(), Message({"x-delivery-count": 1}))  # type: ignore[arg-type]
    last = _permanent_reason(ConnectionError(), Message({"x-delivery-count": DELIVERY_LIMIT - 1}))  # type: ignore[arg-type]

    assert early is None
    assert last == f"gave up after {DELIVERY_LIMIT} deliveries: ConnectionError"


def test_a_delivery_count_a_sender_forged_as_anything_but_a_whole_number_counts_as_none() -> None:
    for forged in (0.001, "sepuluh", b"\xff", True, -3, None):
        reason = _permanent_reason(ConnectionError(), Message({"x-delivery-count": forged}))  # type: ignore[arg-type]

        assert reason is None, forged
