"""One benchmark run: the raw one-hop ceiling, then the whole pipeline, on the same broker.

    .venv/bin/python -m bench                      # raid of 1,000 cases; 10, 50 and 60 cases/s for 20 s each
    .venv/bin/python -m bench --raid 300 --seconds 10 --raw-messages 3000   # a quicker look
    .venv/bin/python -m bench --raid 2000 --rates ''                         # the raid alone, to compare CPU
    .venv/bin/python -m bench --scale-out          # 2 referral + 2 notifier processes on PostgreSQL

Prints a table and writes the figures as JSON under bench/results/. Asserts nothing: the machine is shared and
noisy, so compare medians of several runs, and the pipeline/raw ratio of each run rather than absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.pipeline import run as run_pipeline
from bench.raw import one_hop
from tests.rabbit import fresh_vhost

RESULTS = Path(__file__).resolve().parent / "results"

# The targets on this 2-core machine.
TARGET_RATIO = 0.35
TARGET_RAID_SECONDS = 8.0
TARGET_RAID_CASES = 1000
TARGET_P99_MS = {10.0: 15.0, 50.0: 25.0, 60.0: 250.0}
TARGET_REST_MB = 80.0


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)  # noqa: S607
    return done.stdout.strip()


def _machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version()}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    async with fresh_vhost() as amqp_url:
        raw = await one_hop(amqp_url, args.raw_messages)
    pipeline = await run_pipeline(
        raid_cases=args.raid,
        concurrency=args.concurrency,
        rates=args.rates,
        seconds=args.seconds,
        scale_out=args.scale_out,
    )
    ratio = pipeline["raid"]["referrals_delivered_per_second"] / raw["per_second"]
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": _machine(),
        "raw_one_hop": raw,
        **pipeline,
        "pipeline_raw_ratio": round(ratio, 3),
    }


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def table(result: dict[str, Any]) -> str:
    raw, raid = result["raw_one_hop"], result["raid"]
    lines = [
        f"{'measure':<44}{'figure':>14}  {'target':<14}",
        f"{'raw one hop (aio-pika), messages/s':<44}{raw['per_second']:>14.1f}",
        f"{'pipeline: referrals delivered/s (raid)':<44}{raid['referrals_delivered_per_second']:>14.1f}",
        f"{'pipeline/raw ratio':<44}{result['pipeline_raw_ratio']:>14.3f}  "
        f">= {TARGET_RATIO:<11} {_mark(result['pipeline_raw_ratio'] >= TARGET_RATIO)}",
        f"{'raid of ' + str(raid['cases']) + ' cases: all webhooks, s':<44}{raid['delivered_seconds']:>14.2f}  "
        + (
            f"< {TARGET_RAID_SECONDS:<12} {_mark(raid['delivered_seconds'] < TARGET_RAID_SECONDS)}"
            if raid["cases"] == TARGET_RAID_CASES
            else f"(target for {TARGET_RAID_CASES:,} cases)"
        ),
        f"{'raid: ledger caught up, s':<44}{raid['ledger_caught_up_seconds']:>14.2f}",
        f"{'raid: intake accepted, cases/s':<44}{raid['intake_cases_per_second']:>14.1f}",
    ]
    lines += [
        f"{'raid: ' + label + ' CPU ms per referral':<44}{ms:>14.2f}"
        for label, ms in raid["cpu_ms_per_referral"].items()
    ]
    for paced in result["paced"]:
        figures = f"{paced['p50']:.0f}/{paced['p95']:.0f}/{paced['p99']:.0f}"
        target = TARGET_P99_MS.get(paced["rate"])
        verdict = f"p99 < {target:<8g} {_mark(paced['p99'] < target)}" if target is not None else ""
        label = f"{paced['rate']:g} cases/s ({paced['achieved_rate']:g} sent): p50/p95/p99 ms"
        lines.append(f"{label:<44}{figures:>14}  {verdict}")
    for name, memory in result["memory_mb"].items():
        figures = f"{memory['at_rest']:.0f} / {memory['peak']:.0f}"
        verdict = f"< {TARGET_REST_MB:<12g} {_mark(memory['at_rest'] < TARGET_REST_MB)}"
        lines.append(f"{name + ' RSS MB, at rest / peak':<44}{figures:>14}  {verdict}")
    for what, count in result["done_twice"].items():
        lines.append(f"{what.replace('_', ' '):<44}{count:>14}  = 0{'':<11} {_mark(count == 0)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-messages", type=int, default=5000, help="messages through the raw one hop")
    parser.add_argument("--raid", type=int, default=1000, help="cases posted at once (three referrals each)")
    parser.add_argument("--concurrency", type=int, default=16, help="reporters posting at once in the raid")
    parser.add_argument(
        "--rates", type=lambda text: [float(rate) for rate in text.split(",") if rate], default=[10.0, 50.0, 60.0],
        help="paced phases, cases per second (comma-separated; '' for none: the raid alone)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each paced phase")
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="two referral and two notifier processes, the ledger and the notifier's store on the local PostgreSQL",
    )
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    print(table(result))
    RESULTS.mkdir(exist_ok=True)
    kind = "-scale-out" if args.scale_out else ""
    path = RESULTS / f"{result['when'].replace(':', '')}-{result['commit']}{kind}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
