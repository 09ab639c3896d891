"""The notifier's renewal of a claim it holds (``services.notifier.dispatch._Renewal``)."""

from __future__ import annotations

import asyncio

from services.notifier.dispatch import _Renewal


async def test_a_renewal_still_waiting_for_the_store_is_not_overtaken_by_the_next_one() -> None:
    """Each run writes the claim's new end as of when it started: two in flight could land in the wrong order and
    leave the earlier end, shortening the claim."""
    runs = waiting = most_waiting = 0
    store_answers = asyncio.Event()

    async def renew() -> None:
        nonlocal runs, waiting, most_waiting
        runs += 1
        waiting += 1
        most_waiting = max(most_waiting, waiting)
        await store_answers.wait()
        waiting -= 1

    renewal = _Renewal(renew, 0.01)
    await asyncio.sleep(0.2)  # many renewals fall due while the first still waits
    store_answers.set()
    await asyncio.sleep(0.1)  # and they go on once it is answered
    renewal.stop()

    assert most_waiting == 1
    assert runs > 1
