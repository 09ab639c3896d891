"""The fault scenarios, each streaming ``cases`` cases while it does its damage, and the runner that judges them.

scripts/chaos --full                          # every scenario over 2,000 cases, then the 180-s soak
scripts/chaos "kill -9 intake" --cases 500    # one scenario, 500 cases
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.chaos.checker import Verdict, check
from tests.chaos.harness import HEARTBEAT_SECONDS, Chaos
from tests.system import ROOT, eventually

RATE = 12.0
"""Cases per second, each making three referrals and six notifications: under the 17 or so a second the pipeline
sustains here (README, "Measured"), so a fault's backlog can be caught up."""

Scenario = Callable[[Chaos, int], Awaitable[None]]


LEAD = 12
"""Cases the stream may run ahead of a fault's trigger before it waits for the fault to begin."""


async def _streaming_with(
    chaos: Chaos, cases: int, fractions: tuple[float, ...], fault: Callable[[], Awaitable[None]]
) -> None:
    """Streams ``cases`` and does ``fault`` once each fraction of them has been accepted."""
    triggers = [1 + int(cases * fraction) for fraction in fractions]
    begun = [asyncio.Event() for _ in fractions]
    # Recovery is measured on the cases accepted after a fault began, so some must still be coming: on a loaded
    # machine a fault could end so late that the stream ran out before the next one (seen in the CI subset). The
    # stream waits instead, a little past each trigger, until that fault has begun.
    gates = [(trigger + LEAD, event) for trigger, event in zip(triggers, begun, strict=True)]
    feeding = asyncio.create_task(chaos.stream(cases, rate=RATE, gates=gates))
    for fraction, trigger, event in zip(fractions, triggers, begun, strict=True):
        await chaos.accepted_at_least(trigger)
        assert not feeding.done(), f"the stream ended before the fault at {fraction:.0%}: stream more cases"
        event.set()
        await fault()
    await feeding


async def kill_referral(chaos: Chaos, cases: int) -> None:
    await _streaming_with(chaos, cases, (0.15, 0.4, 0.65), lambda: chaos.kill_service("referral"))


async def kill_intake(chaos: Chaos, cases: int) -> None:
    await _streaming_with(chaos, cases, (0.3,), lambda: chaos.kill_service("intake"))


async def kill_notifier_mid_call(chaos: Chaos, cases: int) -> None:
    # Each webhook answer takes a while, so the notifier always has calls open when it dies.
    chaos.sink.delay = 0.02

    async def kill_while_calling() -> None:
        await eventually(lambda: chaos.sink.in_flight > 0, timeout=60)
        await chaos.kill_service("notifier")

    await _streaming_with(chaos, cases, (0.3,), kill_while_calling)


async def connections_cut(chaos: Chaos, cases: int) -> None:
    feeding = asyncio.create_task(chaos.stream(cases, rate=RATE))
    while not feeding.done():
        await asyncio.wait({feeding}, timeout=10)
        if not feeding.done():
            await chaos.cut_connections()


async def webhook_failing_half(chaos: Chaos, cases: int) -> None:
    # Left failing while the run settles too: every delivery it ever makes goes through the coin toss.
    chaos.sink.failure_rate = 0.5
    await chaos.stream(cases, rate=RATE)


async def duplicate_publishes(chaos: Chaos, cases: int) -> None:
    """Every AMQP report confirmed twice under one message id, every HTTP report posted twice at once."""
    await chaos.stream(cases, rate=RATE, amqp_every=2, copies=2, http_copies=2)


async def kill_broker(chaos: Chaos, cases: int) -> None:
    await _streaming_with(chaos, cases, (0.4,), chaos.kill_broker)


async def freeze_broker(chaos: Chaos, cases: int) -> None:
    await _streaming_with(chaos, cases, (0.3,), lambda: chaos.freeze_broker(2 * HEARTBEAT_SECONDS + 3))


QUEUE_LIMIT = 20


async def queue_full(chaos: Chaos, cases: int) -> None:
    """referral.cases holds at most QUEUE_LIMIT messages and its consumer is away for a while: intake must answer
    503 (its reporters send again) and never 202 for a case the broker refused."""
    await chaos.rabbitmqctl(
        "set_policy",
        "--apply-to",
        "queues",
        "limit",
        r"^referral\.cases$",
        f'{{"max-length": {QUEUE_LIMIT}, "overflow": "reject-publish"}}',
    )

    async def referral_away() -> None:
        async with chaos.fault("referral.cases full"):
            await chaos.services["referral"].kill()
            refused_before = chaos.observed.refusals
            await eventually(lambda: chaos.observed.refusals - refused_before >= 10, timeout=60)
            await chaos.services["referral"].start()

    await _streaming_with(chaos, cases, (0.3,), referral_away)


DOWN_SECONDS = 15.0
"""Longer than a notification's whole retry schedule in the harness (waits of 1, 2 and 4 s, each round after three
quick attempts), so the notifications of the outage run out of channels and are parked."""


async def endpoint_down_then_replayed(chaos: Chaos, cases: int) -> None:
    """One agency's webhook answers 503 and its desk's mailbox refuses mail (550) for ``DOWN_SECONDS``: its
    notifications spend their retries, fall back to the desk, and are parked in notifier.notifications.dead. Once
    both are back, an operator replays every dead letter with ``rujukan ops dlq replay``: each case then reaches
    the agency's desk, once."""
    feeding = asyncio.create_task(chaos.stream(cases, rate=RATE))
    await chaos.accepted_at_least(1 + int(cases * 0.2))
    assert not feeding.done(), "the stream ended before the outage: stream more cases"
    agency = chaos.directory.agency(sorted(chaos.observed.expected_agencies)[0])
    assert agency is not None
    assert agency.email is not None
    async with chaos.fault(f"{agency.id} webhook and desk down {DOWN_SECONDS:g} s"):
        chaos.sink.down.add(agency.id)
        chaos.smtp.refuse(agency.email)
        await asyncio.sleep(DOWN_SECONDS)
        chaos.sink.down.discard(agency.id)
        del chaos.smtp.refusals[agency.email]
    await feeding
    await chaos.delivered_or_parked("notifier.notifications")
    assert await chaos.dead_letter_depth("notifier.notifications"), "the outage parked nothing: make it longer"
    await chaos.replay_dead_letters("notifier.notifications")


SLOW_SECONDS = 20.0
"""Four times the notifier's webhook timeout (5 s): every call to the slow agency times out."""


async def one_agency_slow(chaos: Chaos, cases: int) -> None:
    """One agency's endpoint answers after ``SLOW_SECONDS`` (having taken the delivery): the notifier times out,
    tries again under the same webhook-id, opens the endpoint's circuit and falls back to the desk's email. The
    other agencies' deliveries must not wait on it (the checker's p95 by agency)."""
    chaos.sink.delays[sorted(chaos.observed.expected_agencies)[0]] = SLOW_SECONDS
    await chaos.stream(cases, rate=RATE)


async def one_in_ten_invalid(chaos: Chaos, cases: int) -> None:
    """One message in ten is an invalid report: malformed JSON, missing fields, garbage or over the size limit,
    over HTTP (answered 4xx) or AMQP (dead-lettered by intake with a reason)."""
    await chaos.stream(cases, rate=RATE, malformed_every=10)


async def scaled_out_kill_referral(chaos: Chaos, cases: int) -> None:
    """Scaled out: one referral replica killed, then the other, while both sweep quick deadlines."""
    targets = iter(("referral-2", "referral"))
    await _streaming_with(chaos, cases, (0.25, 0.6), lambda: chaos.kill_service(next(targets)))


async def scaled_out_kill_notifier_mid_call(chaos: Chaos, cases: int) -> None:
    """Scaled out: one notifier replica killed with webhook calls open; the other goes on sending."""
    chaos.sink.delay = 0.02

    async def kill_while_calling() -> None:
        await eventually(lambda: chaos.sink.in_flight > 0, timeout=60)
        await chaos.kill_service("notifier-2")

    await _streaming_with(chaos, cases, (0.3,), kill_while_calling)


async def control_auto_ack(chaos: Chaos, cases: int) -> None:
    """CONTROL, must show losses: a rogue consumer on referral.cases that acknowledges on receipt, killed with
    messages in hand."""
    chaos.patience = 15.0  # what it loses never comes; no need to wait long to be sure
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.chaos.autoack",
        chaos.node_url,
        "referral.cases",
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    await process.stdout.readline()

    async def kill_it() -> None:
        async with chaos.fault("kill -9 auto-ack consumer"):
            process.kill()
            await process.wait()

    await _streaming_with(chaos, cases, (0.6,), kill_it)


FAULTS: dict[str, Callable[[Chaos], Awaitable[None]]] = {
    "kill -9 referral": lambda chaos: chaos.kill_service("referral"),
    "kill -9 intake": lambda chaos: chaos.kill_service("intake"),
    "kill -9 notifier": lambda chaos: chaos.kill_service("notifier"),
    "connections cut": lambda chaos: chaos.cut_connections(),
    "broker frozen": lambda chaos: chaos.freeze_broker(2 * HEARTBEAT_SECONDS + 3),
    "kill -9 broker": lambda chaos: chaos.kill_broker(),
}


async def soak(chaos: Chaos, seconds: int) -> None:
    """``seconds`` of streaming at a lower rate, with a random fault every 20 s."""
    rate = RATE / 2
    feeding = asyncio.create_task(chaos.stream(int(seconds * rate), rate=rate))
    pick = random.Random(seconds)
    while not feeding.done():
        await asyncio.wait({feeding}, timeout=20)
        if not feeding.done():
            await FAULTS[pick.choice(sorted(FAULTS))](chaos)


SCENARIOS: dict[str, Scenario] = {
    "kill -9 referral x3": kill_referral,
    "kill -9 intake": kill_intake,
    "kill -9 notifier mid-call": kill_notifier_mid_call,
    "connections cut every 10 s": connections_cut,
    "webhook fails 50 %": webhook_failing_half,
    "duplicate publishes": duplicate_publishes,
    "kill -9 broker halfway": kill_broker,
    "broker frozen > heartbeat": freeze_broker,
    "queue length limit": queue_full,
    "endpoint down, then replayed": endpoint_down_then_replayed,
    "one agency answers after 20 s": one_agency_slow,
    "1 in 10 invalid or oversized": one_in_ten_invalid,
    "scale-out: kill -9 referral x2": scaled_out_kill_referral,
    "scale-out: kill -9 notifier mid-call": scaled_out_kill_notifier_mid_call,
    "CONTROL auto-ack killed": control_auto_ack,
}
CONTROLS = frozenset({"CONTROL auto-ack killed"})
SCALED_OUT = frozenset({"scale-out: kill -9 referral x2", "scale-out: kill -9 notifier mid-call"})
"""Run with two referral and two notifier processes on PostgreSQL (``Chaos(scale_out=True)``)."""


async def run_scenario(name: str, scenario: Scenario, size: int, workdir: Path | None = None) -> Verdict:
    """Without ``workdir``, the run's broker node, databases and logs go in a directory of their own, removed
    after a run that came out as it should and kept (its path printed) after one that did not."""
    scratch = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="rujukan-chaos-"))
    started = time.monotonic()
    try:
        async with Chaos(workdir, scale_out=name in SCALED_OUT) as chaos:
            await scenario(chaos, size)
            observed = await chaos.settle()
    except BaseException:
        print(f"  ({name}: failed, its logs in {workdir})", file=sys.stderr)
        raise
    verdict = check(name, observed)
    took = f"{time.monotonic() - started:.0f} s"
    if scratch and verdict.passed != (name in CONTROLS):
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"  ({name}: {took})", file=sys.stderr)
    else:
        print(f"  ({name}: {took}, in {workdir})", file=sys.stderr)
    return verdict
