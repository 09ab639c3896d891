"""``python -m tests.chaos [--full] [--json PATH] [SCENARIO ...]``: runs the fault scenarios (short by default, over
2,000 cases each with --full, plus the 180-s soak), prints the checker's table and writes it as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from functools import partial
from pathlib import Path

from tests.chaos.checker import HEADER, Verdict, row
from tests.chaos.scenarios import CONTROLS, SCENARIOS, run_scenario, soak

SHORT, FULL, SOAK_SECONDS = 300, 2000, 180


async def main(names: list[str], size: int, with_soak: bool) -> list[Verdict]:
    verdicts: list[Verdict] = []
    print(HEADER, flush=True)
    for name in names:
        verdicts.append(await run_scenario(name, SCENARIOS[name], size))
        print(row(verdicts[-1]), flush=True)
    if with_soak:
        verdicts.append(await run_scenario(f"soak {SOAK_SECONDS} s, fault / 20 s", soak, SOAK_SECONDS))
        print(row(verdicts[-1]), flush=True)
    return verdicts


def report(verdicts: list[Verdict], out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([verdict.as_dict() for verdict in verdicts], indent=2))
    print(f"written to {out}")
    # A control passes by failing: it proves the checker sees losses.
    wrong = [v for v in verdicts if v.passed == (v.scenario in CONTROLS)]
    for verdict in wrong:
        print(f"{verdict.scenario}: lost {verdict.lost_cases[:5]}, duplicated {verdict.duplicated[:5]}")
        if verdict.misanswered:
            print(f"{verdict.scenario}: invalid reports answered {verdict.misanswered[:5]}")
    for verdict in verdicts:
        for queue, reasons in verdict.dead_letter_reasons.items():
            print(f"{verdict.scenario}: dead letters in {queue}: {reasons[:3]}")
        by_agency = ", ".join(f"{agency} {p95:.0f}" for agency, p95 in verdict.p95_by_agency.items())
        print(f"{verdict.scenario}: p95 ms by agency: {by_agency}")
    return 1 if wrong else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"some of: {', '.join(SCENARIOS)}")
    parser.add_argument("--full", action="store_true", help=f"{FULL} cases per scenario, then the soak")
    parser.add_argument("--cases", type=int, help="cases per scenario")
    parser.add_argument("--json", type=Path, default=Path("var/chaos-results.json"))
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    size = args.cases or (FULL if args.full else SHORT)
    run = partial(main, args.scenarios or list(SCENARIOS), size, args.full)
    sys.exit(report(asyncio.run(run()), args.json))
