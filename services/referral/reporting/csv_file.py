"""The report as one CSV file: one row per month, agency and regency (columns in ``COLUMNS``)."""

from __future__ import annotations

import csv
import io

from services.referral.reporting.statistics import DECLINE_REASONS, ESCALATION_LEVELS, Report, Row

COLUMNS: tuple[tuple[str, str], ...] = (
    ("month", "YYYY-MM in the province's time zone; every figure is about the referrals issued that month"),
    ("agency_id", "the receiving agency"),
    ("agency_name", "its name in the directory (empty if it has left the directory)"),
    ("regency_code", "Kemendagri code of the case's regency or city"),
    ("regency_name", "its name in the directory"),
    ("referrals", "referrals issued (entered-in-error ones are not counted)"),
    ("urgent", "of which urgent"),
    ("acknowledged", "taken by the agency, at any time so far"),
    ("acknowledged_on_time", "taken at or before the acknowledgement deadline"),
    ("ack_median_minutes", "median minutes from issue to acknowledgement (empty: none acknowledged)"),
    ("ack_p90_minutes", "90th percentile of the same (linear interpolation between ranks)"),
    ("accepted", "accepted by the agency"),
    ("accept_median_minutes", "median minutes from issue to acceptance"),
    ("accept_p90_minutes", "90th percentile of the same"),
    ("declined", "declined, every reason"),
    *((f"declined_{reason.value}", f"declined as {reason.value}") for reason in DECLINE_REASONS),
    *((f"escalations_level_{level}", f"escalations fired at level {level}") for level in ESCALATION_LEVELS),
)
"""Column name and meaning, in file order (the README and the HTML page's notes repeat the meanings)."""


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(name for name, _ in COLUMNS)
    for row in report.rows:
        writer.writerow(_cells(row))
    return buffer.getvalue()


def _cells(row: Row) -> list[str | int | float]:
    def duration(value: float | None) -> str | float:
        return "" if value is None else value

    return [
        str(row.month),
        row.agency_id,
        row.agency_name,
        row.regency_code,
        row.regency_name,
        row.referrals,
        row.urgent,
        row.acknowledged,
        row.acknowledged_on_time,
        duration(row.ack_median_minutes),
        duration(row.ack_p90_minutes),
        row.accepted,
        duration(row.accept_median_minutes),
        duration(row.accept_p90_minutes),
        row.declined_total,
        *(row.declined[reason.value] for reason in DECLINE_REASONS),
        *(row.escalations[level] for level in ESCALATION_LEVELS),
    ]
