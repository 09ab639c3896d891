"""The whole pipeline, each service in its own process, against a fresh vhost of the local broker.

HTTP intake -> referral (SQLite ledger, outbox) -> notifier -> signed webhook to a local sink -> delivery report
back into the ledger. Each case is the demo's three-victim case, so it makes three referrals (three webhooks);
each referral also notifies the officer on duty (local SMTP and SMS gateway sinks). Every phase waits for the
ledger to record the last delivery before the next starts, so phases do not bleed into each other.

Scaled out, the ledger and the notifier's store are on the local PostgreSQL and two referral and two notifier
processes share the work; the run then also counts what two replicas must never do twice.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.referral.ledger import referrals as referral_rows
from services.referral.ledger import timeline
from shared.database import make_engine
from tests.builders import a_case_report_body, the_sample_victims
from tests.postgres import fresh_databases
from tests.rabbit import fresh_vhost
from tests.system import (
    GatewaySink,
    ServiceProcess,
    SmtpSink,
    WebhookSink,
    directory_for,
    replicas,
    settings_for,
    with_sinks,
)

SERVICES = ("intake", "referral", "notifier")
SCALED_OUT = ("referral", "notifier")
"""The services that run two processes each in a scaled-out run."""
REFERRALS_PER_CASE = 3
HEADERS = {"Authorization": "Bearer dev-polres-bengkayang"}


@dataclass
class Pipeline:
    client: httpx.AsyncClient
    url: str
    sink: WebhookSink
    ledger: AsyncEngine
    processes: list[ServiceProcess]
    delivered: int = 0
    """Referrals delivered and recorded before the current phase."""

    async def post(self, accepted: dict[str, float]) -> None:
        response = await self.client.post(self.url, json=a_case_report_body(victims=the_sample_victims()))
        response.raise_for_status()
        accepted[response.json()["case_code"]] = time.monotonic()

    async def burst(self, cases: int, concurrency: int) -> dict[str, float]:
        """Posts ``cases`` as fast as ``concurrency`` reporters get their 202s."""
        accepted: dict[str, float] = {}
        remaining = iter(range(cases))

        async def reporter() -> None:
            for _ in remaining:
                await self.post(accepted)

        await asyncio.gather(*(reporter() for _ in range(concurrency)))
        return accepted

    async def paced(self, cases: int, rate: float) -> dict[str, float]:
        """Posts ``cases`` on a fixed timetable (open loop: a slow answer does not delay the next case)."""
        accepted: dict[str, float] = {}
        start = time.monotonic()
        posts = []
        for index in range(cases):
            await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
            posts.append(asyncio.create_task(self.post(accepted)))
        await asyncio.gather(*posts)
        return accepted

    async def webhooks(self, cases: int, timeout: float) -> float:
        """The moment the sink holds every webhook of ``cases`` more cases."""
        expected = self.delivered + REFERRALS_PER_CASE * cases
        deadline = time.monotonic() + timeout
        while len(self.sink.distinct_ids()) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.sink.distinct_ids())} of {expected} webhooks in {timeout} s")
            await asyncio.sleep(0.005)
        return time.monotonic()

    async def ledger_caught_up(self, cases: int, timeout: float) -> float:
        """The moment the referral ledger has recorded every agency delivery (the pipeline's last step)."""
        expected = self.delivered + REFERRALS_PER_CASE * cases
        deadline = time.monotonic() + timeout
        agency_deliveries = (
            select(func.count())
            .select_from(timeline)
            .where(timeline.c.event == "delivered", timeline.c.detail["recipient"].as_string() == "agency")
        )
        while True:
            async with self.ledger.connect() as connection:
                recorded = (await connection.execute(agency_deliveries)).scalar_one()
            if recorded >= expected:
                self.delivered = expected
                return time.monotonic()
            if time.monotonic() > deadline:
                raise SystemExit(f"the ledger recorded {recorded} of {expected} deliveries in {timeout} s")
            await asyncio.sleep(0.02)

    def cpu_seconds(self) -> dict[str, float]:
        """Each service's CPU time so far (user + system): a cost that contention for the cores does not inflate."""
        ticks = os.sysconf("SC_CLK_TCK")
        used: dict[str, float] = {}
        for process in self.processes:
            assert process.process is not None
            # The fields after the command's closing parenthesis; utime and stime are the 12th and 13th of them.
            fields = Path(f"/proc/{process.process.pid}/stat").read_text().rpartition(")")[2].split()
            used[process.label] = (int(fields[11]) + int(fields[12])) / ticks
        return used

    def memory_mb(self) -> dict[str, dict[str, float]]:
        """Each service's resident memory now and its peak so far (VmRSS, VmHWM)."""
        figures: dict[str, dict[str, float]] = {}
        for process in self.processes:
            assert process.process is not None
            status = Path(f"/proc/{process.process.pid}/status").read_text().splitlines()
            fields = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status if line.startswith("Vm")}
            figures[process.label] = {"rss": round(fields["VmRSS"], 1), "peak": round(fields["VmHWM"], 1)}
        return figures


def _percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1)}


async def raid(pipeline: Pipeline, cases: int, concurrency: int) -> dict[str, Any]:
    """A raid: ``cases`` posted at once; how long until every referral reached its agency."""
    cpu_before = pipeline.cpu_seconds()
    started = time.monotonic()
    await pipeline.burst(cases, concurrency)
    accepted_at = time.monotonic()
    delivered_at = await pipeline.webhooks(cases, 600)
    recorded_at = await pipeline.ledger_caught_up(cases, 600)
    cpu_after = pipeline.cpu_seconds()
    delivered = REFERRALS_PER_CASE * cases
    return {
        "cases": cases,
        "concurrency": concurrency,
        "intake_cases_per_second": round(cases / (accepted_at - started), 1),
        "delivered_seconds": round(delivered_at - started, 2),
        "referrals_delivered_per_second": round(delivered / (delivered_at - started), 1),
        "ledger_caught_up_seconds": round(recorded_at - started, 2),
        "cpu_ms_per_referral": {
            label: round((cpu_after[label] - cpu_before[label]) * 1000 / delivered, 2) for label in cpu_after
        },
    }


async def latency(pipeline: Pipeline, rate: float, seconds: float) -> dict[str, Any]:
    """Cases at ``rate`` for ``seconds``: 202 -> webhook receipt per referral, in milliseconds."""
    cases = round(rate * seconds)
    pipeline.sink.arrivals = {}
    started = time.monotonic()
    accepted = await pipeline.paced(cases, rate)
    sent_for = time.monotonic() - started
    await pipeline.webhooks(cases, 600)
    await pipeline.ledger_caught_up(cases, 600)
    arrivals = pipeline.sink.arrivals
    latencies = [(arrived - accepted[code]) * 1000 for code, times in arrivals.items() for arrived in times]
    return {"rate": rate, "cases": cases, "achieved_rate": round(cases / sent_for, 1), **_percentiles(latencies)}


async def twice_done(pipeline: Pipeline) -> dict[str, int]:
    """What replicas must never do twice: a second referral for one case and agency, a notification under a
    second id, a timeline entry of one escalation level twice."""
    ids_per_referral: dict[str, set[str]] = {}
    for delivery in pipeline.sink.deliveries:
        ids_per_referral.setdefault(str(delivery.payload.get("referral_id")), set()).add(delivery.webhook_id)
    per_leg = select(referral_rows.c.case_id).group_by(referral_rows.c.case_id, referral_rows.c.agency_id)
    escalations = select(timeline.c.referral_id).where(timeline.c.event == "escalated")
    escalation_level = timeline.c.detail["level"].as_string()
    async with pipeline.ledger.connect() as connection:
        legs = (await connection.execute(select(func.count()).select_from(per_leg.subquery()))).scalar_one()
        rows = (await connection.execute(select(func.count()).select_from(referral_rows))).scalar_one()
        levels = (
            await connection.execute(
                select(func.count()).select_from(
                    escalations.add_columns(escalation_level)
                    .group_by(timeline.c.referral_id, escalation_level)
                    .having(func.count() > 1)
                    .subquery()
                )
            )
        ).scalar_one()
    return {
        "duplicate_referrals": rows - legs,
        "duplicate_webhook_ids": sum(len(ids) - 1 for ids in ids_per_referral.values()),
        "duplicate_escalations": levels,
    }


@contextmanager
def _scratch_directory() -> Iterator[Path]:
    """The services' databases and logs: removed after the run, kept after a failure (its path printed)."""
    path = Path(tempfile.mkdtemp(prefix="rujukan-bench-"))
    try:
        yield path
    except BaseException:
        print(f"the services' logs are kept in {path}", file=sys.stderr)
        raise
    shutil.rmtree(path, ignore_errors=True)


async def run(
    *, raid_cases: int, concurrency: int, rates: list[float], seconds: float, scale_out: bool = False
) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        amqp_url = await stack.enter_async_context(fresh_vhost())
        sink = WebhookSink()
        smtp, gateway = SmtpSink(), GatewaySink()
        for server in (sink, smtp, gateway):
            await server.start()
            stack.push_async_callback(server.stop)
        data_dir = stack.enter_context(_scratch_directory())
        directory = directory_for(sink)
        sink.directory = directory
        databases: dict[str, str] = {}
        if scale_out:
            made = await stack.enter_async_context(fresh_databases(("ledger", "notifier")))
            databases = {"database_url": made["ledger"], "notifier_database_url": made["notifier"]}
        settings = with_sinks(settings_for(amqp_url, data_dir, retry_schedule=(30.0,), **databases), smtp, gateway)
        processes = [
            process
            for name in SERVICES
            for process in replicas(name, 2 if scale_out and name in SCALED_OUT else 1, settings, directory, data_dir)
        ]
        ledger = make_engine(settings.database_url)
        stack.push_async_callback(ledger.dispose)
        for process in processes:
            await process.start()
            stack.push_async_callback(process.stop)
        client = await stack.enter_async_context(httpx.AsyncClient(headers=HEADERS, timeout=60))
        pipeline = Pipeline(client, f"http://127.0.0.1:{settings.intake_port}/v1/cases", sink, ledger, processes)
        # Warm up (imports, connections, database pages), then let the services settle to measure them at rest.
        await pipeline.burst(20, 4)
        await pipeline.webhooks(20, 120)
        await pipeline.ledger_caught_up(20, 120)
        await asyncio.sleep(3)
        at_rest = pipeline.memory_mb()
        raided = await raid(pipeline, raid_cases, concurrency)
        paced = [await latency(pipeline, rate, seconds) for rate in rates]
        under_load = pipeline.memory_mb()
        twice = await twice_done(pipeline)
    return {
        "scale_out": scale_out,
        "raid": raided,
        "paced": paced,
        "memory_mb": {
            label: {"at_rest": at_rest[label]["rss"], "peak": under_load[label]["peak"]} for label in at_rest
        },
        "done_twice": twice,
    }
