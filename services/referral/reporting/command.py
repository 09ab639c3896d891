"""``rujukan report``: reads the ledger, writes the CSV and the HTML page."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from services.referral.reporting.csv_file import render_csv
from services.referral.reporting.html_page import render_html
from services.referral.reporting.monthly import monthly_report
from services.referral.reporting.statistics import Month, Report
from shared.database import make_engine
from shared.directory import Directory, load_directory
from shared.settings import Settings


async def write_report(settings: Settings, *, first: Month, last: Month, out: Path) -> int:
    if first > last:
        print(f"rujukan report: --from {first} is after --to {last}", file=sys.stderr)
        return 2
    directory = load_directory(settings.config)
    report = await _report(settings, directory, first=first, last=last)
    csv_path, html_path = _write(report, directory, out)
    referrals = sum(row.referrals for row in report.rows)
    print(f"{referrals} referrals in {len(report.rows)} rows ({first} to {last}): {csv_path}, {html_path}")
    return 0


async def _report(settings: Settings, directory: Directory, *, first: Month, last: Month) -> Report:
    engine = make_engine(settings.database_url)
    try:
        return await monthly_report(engine, directory, first=first, last=last)
    finally:
        await engine.dispose()


def _write(report: Report, directory: Directory, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"rujukan-report-{report.first}-{report.last}"
    csv_path, html_path = out / f"{stem}.csv", out / f"{stem}.html"
    csv_path.write_text(render_csv(report), encoding="utf-8")
    generated_at = datetime.now(UTC).astimezone(directory.timezone)
    html_path.write_text(render_html(report, generated_at=generated_at), encoding="utf-8")
    return csv_path, html_path
