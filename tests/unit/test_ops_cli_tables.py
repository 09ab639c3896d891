"""What `rujukan ops` prints in a terminal: whatever its width, the names an operator must copy are whole."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from services.ops_cli import _show_dead_letters

QUEUE = "intake.reports"
MESSAGE_ID = "polres-bengkayang-LP-B-21678-XI-2026-SPKT-POLRES-BENGKAYANG-amendment-2"


def a_dead_letter(**changes: Any) -> dict[str, Any]:
    letter: dict[str, Any] = {
        "message_id": MESSAGE_ID,
        "dead_letter_queue": f"{QUEUE}.dead",
        "queue": QUEUE,
        "reason": "invalid case.report.v1: victims.0.age_years: Input should be less than or equal to 120",
        "attempts": 1,
        "dead_at": "2026-12-07T10:00:00Z",
        "age": "PT3H",
        "routing_key": "case.report",
        "message_type": "case.report.v1",
        "correlation_id": None,
        "content_type": "application/json",
        "size": 1234,
        "sealed": True,
    }
    return letter | changes


def test_dlq_list_at_80_columns_prints_the_queue_and_message_id_whole_for_show_and_replay() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)

    _show_dead_letters(console, [a_dead_letter(), a_dead_letter(message_id="m-2")])

    lines = out.getvalue().splitlines()
    assert any(QUEUE in line and MESSAGE_ID in line for line in lines), out.getvalue()
    assert "…" not in "".join(line for line in lines if QUEUE in line)
