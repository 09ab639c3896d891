"""The report as one printable HTML page: inline CSS with a print stylesheet, charts drawn as inline SVG; no
script, no font or file from anywhere else, so it prints and opens offline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from services.referral.reporting.csv_file import COLUMNS
from services.referral.reporting.statistics import (
    DECLINE_REASONS,
    ESCALATION_LEVELS,
    Report,
    Row,
    Totals,
    totals_by,
)

_CSS = """
:root { --ink: #1f2933; --muted: #52606d; --line: #cbd2d9; --a: #1d4e89; --b: #3fa34d; --c: #e0a100; --d: #c0392b; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: var(--ink);
       margin: 2rem auto; max-width: 70rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 2px solid var(--a); padding-bottom: .2rem; }
.sub, .note { color: var(--muted); }
.en { color: var(--muted); font-weight: normal; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .25rem .45rem; text-align: right; vertical-align: top; }
th { background: #f0f4f8; font-size: .85rem; }
th:first-child, td.text { text-align: left; }
.wide { overflow-x: auto; }
table.detail { font-size: .8rem; }
figure { margin: .5rem 0 1.5rem; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
svg text { font: 11px system-ui, Arial, sans-serif; fill: var(--ink); }
dl.columns { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; font-size: .85rem; }
dl.columns dt { font-family: ui-monospace, monospace; }
dl.columns dd { margin: 0; color: var(--muted); }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; }
  figure, tr, .keep { break-inside: avoid; }
  thead { display: table-header-group; }
  .wide { overflow: visible; }
  a { color: inherit; text-decoration: none; }
}
"""

_SERIES_COLOURS = ("var(--a)", "var(--b)", "var(--c)", "var(--d)")


def render_html(report: Report, *, generated_at: datetime) -> str:
    period = f"{report.first} to {report.last}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="id"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Statistik rujukan TPPO {escape(period)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header>",
        '<h1>Statistik rujukan TPPO <span class="en">/ TPPO referral statistics</span></h1>',
        f'<p class="sub">Periode / period: <strong>{escape(period)}</strong> (bulan menurut zona waktu'
        f" {escape(report.timezone)}) · dibuat / generated {escape(generated_at.strftime('%Y-%m-%d %H:%M %Z'))}"
        " · untuk rapat koordinasi Gugus Tugas TPPO</p>",
        '<p class="note">Hanya jumlah dan durasi: tanpa identitas korban, tanpa nomor kasus. Setiap angka menyangkut'
        " rujukan yang <em>dikirim</em> pada bulan itu. / Counts and durations only: no victim identity, no case"
        " numbers. Every figure is about the referrals <em>issued</em> in that month.</p>",
        "</header>",
    ]
    if not report.rows:
        parts.append(
            '<h2>Tidak ada rujukan <span class="en">/ No referrals</span></h2>'
            "<p>Tidak ada rujukan yang dikirim pada periode ini. / No referral was issued in this period.</p>"
        )
    else:
        parts += _by_month(report)
        parts += _by_agency(report)
        parts += _declines(report)
        parts += _detail(report)
    parts += _column_notes()
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _by_month(report: Report) -> list[str]:
    totals = totals_by(report, lambda row: str(row.month))
    labels = [str(month) for month in report.months]
    per_month = [totals.get(label, Totals()) for label in labels]
    return [
        '<h2>Per bulan <span class="en">/ By month</span> — semua instansi / all agencies</h2>',
        bar_chart(
            "Rujukan dan konfirmasi tepat waktu per bulan / Referrals and on-time acknowledgements by month",
            labels,
            [
                ("Rujukan / referrals", [t.referrals for t in per_month]),
                ("Dikonfirmasi / acknowledged", [t.acknowledged for t in per_month]),
                ("Tepat waktu / on time", [t.acknowledged_on_time for t in per_month]),
            ],
        ),
        bar_chart(
            "Eskalasi per tingkat / Escalations by level",
            labels,
            [
                (f"Tingkat / level {level}", [t.escalations[i] for t in per_month])
                for i, level in enumerate(ESCALATION_LEVELS)
            ],
        ),
        _totals_table("Bulan / month", list(zip(labels, per_month, strict=True))),
    ]


def _by_agency(report: Report) -> list[str]:
    totals = totals_by(report, lambda row: row.agency_id)
    names = {row.agency_id: row.agency_name or row.agency_id for row in report.rows}
    agencies = sorted(totals)
    return [
        '<h2>Per instansi <span class="en">/ By agency</span> — seluruh periode / whole period</h2>',
        bar_chart(
            "Rujukan dan konfirmasi tepat waktu per instansi / Referrals and on-time acknowledgements by agency",
            # Ids under the bars: the names are long, and the table below gives them.
            agencies,
            [
                ("Rujukan / referrals", [totals[a].referrals for a in agencies]),
                ("Tepat waktu / on time", [totals[a].acknowledged_on_time for a in agencies]),
                ("Diterima / accepted", [totals[a].accepted for a in agencies]),
            ],
        ),
        _totals_table("Instansi / agency", [(names[a], totals[a]) for a in agencies]),
    ]


def _totals_table(first: str, rows: Sequence[tuple[str, Totals]]) -> str:
    head = (
        f"<tr><th>{escape(first)}</th><th>Rujukan<br>referrals</th><th>Dikonfirmasi<br>acknowledged</th>"
        "<th>Tepat waktu<br>on time</th><th>% tepat waktu<br>% on time</th><th>Diterima<br>accepted</th>"
        "<th>Ditolak<br>declined</th>"
        + "".join(f"<th>Eskalasi {level}<br>escalations {level}</th>" for level in ESCALATION_LEVELS)
        + "</tr>"
    )
    body = "".join(
        f'<tr><td class="text">{escape(label)}</td><td>{t.referrals}</td><td>{t.acknowledged}</td>'
        f"<td>{t.acknowledged_on_time}</td><td>{_share(t.acknowledged_on_time, t.referrals)}</td>"
        f"<td>{t.accepted}</td><td>{t.declined}</td>" + "".join(f"<td>{n}</td>" for n in t.escalations) + "</tr>"
        for label, t in rows
    )
    return f'<table class="keep"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _declines(report: Report) -> list[str]:
    by_agency: dict[str, dict[str, int]] = {}
    for row in report.rows:
        counts = by_agency.setdefault(row.agency_name or row.agency_id, dict.fromkeys(row.declined, 0))
        for reason, count in row.declined.items():
            counts[reason] += count
    head = "<tr><th>Instansi / agency</th>" + "".join(f"<th>{escape(r.value)}</th>" for r in DECLINE_REASONS) + "</tr>"
    body = "".join(
        f'<tr><td class="text">{escape(agency)}</td>'
        + "".join(f"<td>{counts[r.value]}</td>" for r in DECLINE_REASONS)
        + "</tr>"
        for agency, counts in sorted(by_agency.items())
    )
    return [
        '<h2>Penolakan menurut alasan <span class="en">/ Declines by reason</span></h2>',
        f'<table class="keep"><thead>{head}</thead><tbody>{body}</tbody></table>',
    ]


def _detail(report: Report) -> list[str]:
    head = (
        "<tr><th>Bulan<br>month</th><th>Instansi<br>agency</th><th>Kabupaten/kota<br>regency</th>"
        "<th>Rujukan<br>referrals</th><th>Mendesak<br>urgent</th><th>Dikonfirmasi<br>acknowledged</th>"
        "<th>Tepat waktu<br>on time</th><th>Konfirmasi median (menit)<br>ack median (min)</th>"
        "<th>Konfirmasi p90 (menit)<br>ack p90 (min)</th><th>Diterima<br>accepted</th>"
        "<th>Penerimaan median (menit)<br>accept median (min)</th><th>Penerimaan p90 (menit)<br>accept p90 (min)</th>"
        "<th>Ditolak<br>declined</th>"
        + "".join(f"<th>Eskalasi {level}<br>escalations {level}</th>" for level in ESCALATION_LEVELS)
        + "</tr>"
    )
    return [
        '<h2>Rincian per bulan, instansi dan kabupaten/kota <span class="en">/ Detail by month, agency and'
        " regency</span></h2>",
        f'<div class="wide"><table class="detail"><thead>{head}</thead>'
        f"<tbody>{''.join(_detail_row(row) for row in report.rows)}</tbody></table></div>",
    ]


def _detail_row(row: Row) -> str:
    def minutes(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    cells = [
        str(row.month),
        row.agency_name or row.agency_id,
        f"{row.regency_name} ({row.regency_code})" if row.regency_name else row.regency_code,
    ]
    numbers = [
        str(row.referrals),
        str(row.urgent),
        str(row.acknowledged),
        str(row.acknowledged_on_time),
        minutes(row.ack_median_minutes),
        minutes(row.ack_p90_minutes),
        str(row.accepted),
        minutes(row.accept_median_minutes),
        minutes(row.accept_p90_minutes),
        str(row.declined_total),
        *(str(row.escalations[level]) for level in ESCALATION_LEVELS),
    ]
    return (
        "<tr>"
        + "".join(f'<td class="text">{escape(cell)}</td>' for cell in cells)
        + "".join(f"<td>{escape(n)}</td>" for n in numbers)
        + "</tr>"
    )


def _column_notes() -> list[str]:
    items = "".join(f"<dt>{escape(name)}</dt><dd>{escape(meaning)}</dd>" for name, meaning in COLUMNS)
    return [
        '<h2>Kolom CSV <span class="en">/ The CSV\'s columns</span></h2>',
        f'<dl class="columns keep">{items}</dl>',
    ]


def _share(part: int, whole: int) -> str:
    return "-" if whole == 0 else f"{100 * part / whole:.0f}%"


def bar_chart(title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> str:
    """Grouped vertical bars, one group per category, each bar labelled with its value (so the figures print)."""
    width, height = 760, 280
    left, right, top, bottom = 40, 10, 30, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_ceiling(max((v for _, values in series for v in values), default=0))
    group_w = plot_w / max(len(categories), 1)
    bar_w = min(36.0, group_w * 0.8 / max(len(series), 1))
    out = [
        f"<figure><figcaption>{escape(title)}</figcaption>",
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img"'
        f' aria-label="{escape(title)}">',
    ]
    for step in range(5):
        value = peak * step / 4
        y = top + plot_h - plot_h * step / 4
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>'
        )
    for index, category in enumerate(categories):
        group_x = left + group_w * index
        start = group_x + (group_w - bar_w * len(series)) / 2
        for number, (label, values) in enumerate(series):
            value = values[index]
            bar_h = 0 if peak == 0 else plot_h * value / peak
            x = start + bar_w * number
            y = top + plot_h - bar_h
            colour = _SERIES_COLOURS[number % len(_SERIES_COLOURS)]
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{bar_h:.1f}" fill="{colour}">'
                f"<title>{escape(category)}: {escape(label)} {value}</title></rect>"
                f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{value}</text>'
            )
        out.append(
            f'<text x="{group_x + group_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{escape(_shorten(category))}</text>"
        )
    legend_x = left
    for number, (label, _) in enumerate(series):
        colour = _SERIES_COLOURS[number % len(_SERIES_COLOURS)]
        out.append(
            f'<rect x="{legend_x}" y="{height - 22}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{legend_x + 16}" y="{height - 12}">{escape(label)}</text>'
        )
        legend_x += 16 + 7 * len(label) + 24
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#52606d"/>')
    out.append("</svg></figure>")
    return "".join(out)


def _nice_ceiling(value: int) -> int:
    """The top of the axis: four grid steps of 1, 2 or 5 times a power of ten, so every grid line is a whole
    number of referrals."""
    needed = math.ceil(max(value, 4) / 4)
    magnitude: int = 10 ** math.floor(math.log10(needed))
    step = next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= needed)
    return 4 * step


def _shorten(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
