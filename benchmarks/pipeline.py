"""Throughput and latency of the whole pipeline, each service in its own process, against the local broker.

    .venv/bin/python -m benchmarks.pipeline --burst 500 --rate 20 --paced 200

Prints figures; asserts nothing (machines here are shared and noisy). Each case is the demo's three-victim
case, so it makes three referrals: intake -> referral (SQLite ledger, outbox) -> notifier -> signed webhook
-> delivery report back into the ledger. The paced phase starts once the ledger has caught up with the burst.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.builders import a_case_report_body, the_sample_victims
from tests.rabbit import fresh_vhost
from tests.system import (
    GatewaySink,
    ServiceProcess,
    SmtpSink,
    WebhookSink,
    directory_for,
    settings_for,
    with_sinks,
)

SERVICES = ("intake", "referral", "notifier")


async def _post_all(client: httpx.AsyncClient, url: str, count: int, concurrency: int) -> dict[str, float]:
    """Posts ``count`` cases; returns each case code with the moment intake answered 202."""
    accepted: dict[str, float] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            response = await client.post(url, json=a_case_report_body(victims=the_sample_victims()))
            response.raise_for_status()
            accepted[response.json()["case_code"]] = time.monotonic()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted


async def _delivered(sink: WebhookSink, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while len(sink.distinct_ids()) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(sink.distinct_ids())} of {expected} referrals delivered in {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def _ledger_caught_up(database: Path, expected: int, timeout: float) -> float:
    """When the referral ledger has recorded ``expected`` delivery reports (the pipeline's last step)."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(database) as connection:
            (recorded,) = connection.execute(
                "SELECT count(*) FROM timeline"
                " WHERE event = 'delivered' AND json_extract(detail, '$.recipient') = 'agency'"
            ).fetchone()
        if recorded >= expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"the ledger recorded {recorded} of {expected} deliveries in {timeout} s")
        await asyncio.sleep(0.05)


def _peak_rss_mb(process: ServiceProcess) -> float:
    assert process.process is not None
    for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(burst: int, paced: int, rate: float, concurrency: int) -> None:
    async with fresh_vhost() as amqp_url:
        sink = WebhookSink(arrivals={})
        smtp, gateway = SmtpSink(), GatewaySink()
        for server in (sink, smtp, gateway):
            await server.start()
        data_dir = Path(tempfile.mkdtemp(prefix="rujukan-bench-"))
        directory = directory_for(sink)
        sink.directory = directory
        # Duty officers' texts and mails go to local sinks too, as they would to a real gateway and relay.
        settings = with_sinks(settings_for(amqp_url, data_dir, retry_schedule=(30.0,)), smtp, gateway)
        processes = [ServiceProcess(name, settings, directory, data_dir) for name in SERVICES]
        for process in processes:
            await process.start()
        url = f"http://127.0.0.1:{settings.intake_port}/v1/cases"
        headers = {"Authorization": "Bearer dev-polres-bengkayang"}
        try:
            async with httpx.AsyncClient(headers=headers, timeout=30) as client:
                await _post_all(client, url, 20, concurrency)
                await _delivered(sink, 60, 60)

                started = time.monotonic()
                await _post_all(client, url, burst, concurrency)
                accepted_at = time.monotonic()
                done = await _delivered(sink, 60 + 3 * burst, 600)
                recorded = await _ledger_caught_up(data_dir / "rujukan.db", 60 + 3 * burst, 600)
                print(f"burst of {burst} cases ({3 * burst} referrals), {concurrency} concurrent reporters:")
                print(f"  intake accepted        {burst / (accepted_at - started):8.1f} cases/s")
                print(f"  all webhooks after     {done - started:8.2f} s  ({3 * burst / (done - started):.1f} /s)")
                print(
                    f"  ledger caught up after {recorded - started:8.2f} s  ({3 * burst / (recorded - started):.1f} /s)"
                )

                sink.arrivals.clear()
                before = len(sink.distinct_ids())
                accepted: dict[str, float] = {}
                for _ in range(paced):
                    tick = time.monotonic()
                    accepted.update(await _post_all(client, url, 1, 1))
                    await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - tick)))
                await _delivered(sink, before + 3 * paced, 120)
                await _ledger_caught_up(data_dir / "rujukan.db", before + 3 * paced, 120)
                latencies = sorted(
                    (arrived - accepted[code]) * 1000 for code, times in sink.arrivals.items() for arrived in times
                )
                cuts = statistics.quantiles(latencies, n=100)
                print(f"paced {paced} cases at {rate:g} cases/s, 202 -> webhook per referral:")
                print(f"  p50 {cuts[49]:7.1f} ms   p95 {cuts[94]:7.1f} ms   p99 {cuts[98]:7.1f} ms")
            print("peak RSS: " + ", ".join(f"{p.name} {_peak_rss_mb(p):.0f} MB" for p in processes))
        finally:
            for process in processes:
                await process.stop()
            for server in (sink, smtp, gateway):
                await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=500, help="cases sent as fast as intake takes them")
    parser.add_argument("--paced", type=int, default=200, help="cases sent at --rate for the latency figures")
    parser.add_argument("--rate", type=float, default=20.0, help="cases per second in the paced phase")
    parser.add_argument("--concurrency", type=int, default=16, help="reporters posting at once in the burst")
    args = parser.parse_args()
    asyncio.run(run(args.burst, args.paced, args.rate, args.concurrency))


if __name__ == "__main__":
    main()
