"""``rujukan ops``: the operators' console in a terminal. It talks to the referral service's ops API (never to the
broker or the database itself), so every action is authorised and audited in one place."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import TypeAdapter
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from shared.settings import Settings, parse_duration

OK = 0
ATTENTION = 1
"""``status``: a service's queue has no consumer; ``overdue``: a referral is late past the threshold."""
USAGE = 2
"""No token, or an argument the command cannot use."""
UNREACHABLE = 3
"""The ops API did not answer, refused the token (401/403) or the action (409), or failed."""
NOT_FOUND = 4
"""No such dead letter, queue or case."""

EXIT_CODES = f"""exit codes (for cron jobs and scripts):
  {OK}  all well (status: every service queue has a consumer; overdue: nothing late past --late-by)
  {ATTENTION}  needs attention (status: a service queue has no consumer; overdue: something is late past --late-by)
  {USAGE}  usage error, or RUJUKAN_OPS_TOKEN is not set
  {UNREACHABLE}  the ops API did not answer, refused the token or the action (409), or failed
  {NOT_FOUND}  no such dead letter, queue or case

RUJUKAN_OPS_URL is the referral service (default http://127.0.0.1:8002); RUJUKAN_OPS_TOKEN an operate token."""

_SPAN = TypeAdapter(timedelta)
_MOMENT = TypeAdapter(datetime)


class OpsApiError(Exception):
    """The ops API answered with an error, or not at all; ``code`` is the exit code it means."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_ops_parser(commands: Any) -> None:
    """``rujukan ops ...`` under the main command's subparsers."""
    ops = commands.add_parser(
        "ops",
        help="operate Rujukan: queues, overdue referrals, dead letters, a case (RUJUKAN_OPS_URL, RUJUKAN_OPS_TOKEN)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ops.add_argument("--json", action="store_true", help="print the API's JSON instead of tables (for scripts)")
    actions = ops.add_subparsers(dest="ops_command", required=True)
    # --json also after the action (`rujukan ops status --json`); SUPPRESS keeps an absent one from unsetting it.
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")
    sub = {"epilog": EXIT_CODES, "formatter_class": argparse.RawDescriptionHelpFormatter, "parents": [json_flag]}
    actions.add_parser("status", help="services consuming, queue depths and rates, agencies' figures", **sub)
    overdue = actions.add_parser("overdue", help="referrals past their deadline, the latest first", **sub)
    overdue.add_argument(
        "--late-by", default="0s", help="only those late by at least this long, e.g. 30m or 2h (default: any)"
    )
    dlq = actions.add_parser(
        "dlq",
        help="dead letters: list, show, replay, discard",
        epilog=EXIT_CODES,
        formatter_class=sub["formatter_class"],
    )
    dlq_actions = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_actions.add_parser("list", help="dead letters of every queue, or of --queue", **sub)
    listing.add_argument("--queue", help="a work queue (e.g. referral.cases) or its .dead queue")
    for name, text in (
        ("show", "one dead letter: reason, attempts, age (never its body)"),
        ("replay", "put it back into the one queue it died in; audited"),
        ("discard", "remove it for good, with a note saying why; audited"),
    ):
        action = dlq_actions.add_parser(name, help=text, **sub)
        action.add_argument("queue")
        action.add_argument("message_id")
        if name != "show":
            action.add_argument("--note", required=name == "discard", help="why, for the audit trail")
    case = actions.add_parser("case", help="a case by id, police report number or case code: legs and timeline", **sub)
    case.add_argument("query")


def run_ops(args: argparse.Namespace, settings: Settings, *, out: Console | None = None) -> int:
    console = out or Console()
    token = settings.ops_token
    if not token:
        print("rujukan ops: set RUJUKAN_OPS_TOKEN to an operate token", file=sys.stderr)
        return USAGE
    api = OpsApi(settings.ops_url, token)
    try:
        return _dispatch(args, api, console)
    except OpsApiError as exc:
        print(f"rujukan ops: {exc}", file=sys.stderr)
        return exc.code
    except ValueError as exc:
        print(f"rujukan ops: {exc}", file=sys.stderr)
        return USAGE


class OpsApi:
    """The referral service's ``/v1/ops`` API, with the operator's bearer token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self._base = base_url.rstrip("/") + "/v1/ops"
        self._token = token
        self._timeout = timeout

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the operator's own configured URL
            self._base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = _detail(exc.read())
            code = NOT_FOUND if exc.code == 404 else USAGE if exc.code == 422 else UNREACHABLE
            raise OpsApiError(code, f"{method} {path}: {exc.code} {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise OpsApiError(UNREACHABLE, f"the ops API at {self._base} did not answer: {exc}") from None


def _threshold(text: str) -> timedelta:
    """``2h``, ``30m``, or days as operators count lateness: ``3d``."""
    if text.strip().endswith("d") and text.strip()[:-1].isdigit():
        return timedelta(days=int(text.strip()[:-1]))
    return timedelta(seconds=parse_duration(text))


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body).get("detail", ""))
    except (ValueError, AttributeError):
        return ""


def _dispatch(args: argparse.Namespace, api: OpsApi, console: Console) -> int:
    as_json: bool = args.json
    if args.ops_command == "status":
        overview = api.call("GET", "/overview")
        _emit(console, overview, as_json, _show_overview)
        return ATTENTION if any(queue["stalled"] for queue in overview["queues"]) else OK
    if args.ops_command == "overdue":
        threshold = _threshold(args.late_by)
        late = [item for item in api.call("GET", "/overdue") if _SPAN.validate_python(item["late_by"]) >= threshold]
        _emit(console, late, as_json, _show_overdue)
        return ATTENTION if late else OK
    if args.ops_command == "case":
        _emit(console, api.call("GET", f"/cases/{quote(args.query, safe='')}"), as_json, _show_case)
        return OK
    return _dlq(args, api, console, as_json)


def _dlq(args: argparse.Namespace, api: OpsApi, console: Console, as_json: bool) -> int:
    if args.dlq_command == "list":
        query = f"?{urlencode({'queue': args.queue})}" if args.queue else ""
        _emit(console, api.call("GET", f"/dead-letters{query}"), as_json, _show_dead_letters)
        return OK
    path = f"/dead-letters/{quote(args.queue, safe='')}/{quote(args.message_id, safe='')}"
    if args.dlq_command == "show":
        _emit(console, api.call("GET", path), as_json, lambda c, letter: _show_dead_letters(c, [letter]))
        return OK
    answer = api.call("POST", f"{path}/{args.dlq_command}", {"note": args.note} if args.note else {})
    done = "replayed" if args.dlq_command == "replay" else "discarded"
    _emit(console, answer, as_json, lambda c, a: c.print(f"{done} {a[done]['message_id']} ({a[done]['queue']})"))
    return OK


def _emit(console: Console, payload: Any, as_json: bool, show: Callable[[Console, Any], None]) -> None:
    if as_json:
        console.print_json(json.dumps(payload))
    else:
        show(console, payload)


def _span(value: str | None) -> str:
    if value is None:
        return "-"
    seconds = int(_SPAN.validate_python(value).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def _moment(value: str | None) -> str:
    return "-" if value is None else f"{_MOMENT.validate_python(value):%Y-%m-%d %H:%M:%S %Z}"


def _show_overview(console: Console, overview: dict[str, Any]) -> None:
    services = Table(title=f"Services (queue figures from {overview['source']})")
    for column in ("service", "consuming", "last message seen"):
        services.add_column(column)
    for service in overview["services"]:
        consuming = "[green]yes[/green]" if service["consuming"] else "[bold red]NO[/bold red]"
        # None: nothing here knows (the management API tells of a quorum queue's traffic only while it delivers).
        seen = service["last_message_seen"]
        services.add_row(service["name"], consuming, "unknown" if seen is None else _moment(seen))
    console.print(services)

    queues = Table(title="Queues")
    for column in ("queue", "owner", "messages", "consumers", "in/s", "out/s"):
        queues.add_column(column, justify="right" if column in ("messages", "consumers", "in/s", "out/s") else "left")
    for queue in overview["queues"]:
        if queue["kind"] == "wait":
            continue
        if queue["kind"] == "dead" and not queue["messages"]:
            continue
        name = f"[bold red]{queue['name']}[/bold red]" if queue["stalled"] else queue["name"]
        queues.add_row(
            name,
            queue["owner"],
            _number(queue["messages"]),
            _number(queue["consumers"]),
            _rate(queue["publish_rate"]),
            _rate(queue["deliver_rate"]),
        )
    console.print(queues)

    agencies = Table(title="Agencies")
    for column in ("agency", "referrals by status", "overdue", "median ack 7d", "median ack 30d"):
        agencies.add_column(column)
    for agency in overview["agencies"]:
        statuses = ", ".join(f"{status} {count}" for status, count in sorted(agency["by_status"].items())) or "-"
        overdue = f"[bold red]{agency['overdue']}[/bold red]" if agency["overdue"] else "0"
        agencies.add_row(
            agency["agency_id"], statuses, overdue, _span(agency["median_ack_7d"]), _span(agency["median_ack_30d"])
        )
    console.print(agencies)
    stalled = [queue["name"] for queue in overview["queues"] if queue["stalled"]]
    if stalled:
        console.print(f"[bold red]no consumer on: {', '.join(stalled)}[/bold red]")
    console.print(f"dead letters: {overview['dead_letters']}")


def _number(value: int | None) -> str:
    return "missing" if value is None else str(value)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _show_overdue(console: Console, items: list[dict[str, Any]]) -> None:
    if not items:
        console.print("nothing overdue")
        return
    table = Table(title="Overdue referrals")
    for column in ("late by", "case", "agency", "awaited", "due at", "level", "on duty now", "referral"):
        table.add_column(column)
    for item in items:
        officers = ", ".join(f"{officer['name']} ({officer['id']})" for officer in item["on_duty"]) or "nobody"
        table.add_row(
            _span(item["late_by"]),
            item["case_code"],
            item["agency_id"],
            item["awaited"],
            _moment(item["due_at"]),
            str(item["escalation_level"]),
            officers,
            item["referral_id"],
        )
    console.print(table)


def _show_dead_letters(console: Console, letters: list[dict[str, Any]]) -> None:
    if not letters:
        console.print("no dead letters")
        return
    table = Table(title="Dead letters")
    # The queue and the message id are what `dlq show`, `replay` and `discard` take: whole, on one line, however
    # narrow the terminal (rich cuts a column that runs out of room to "…"); the other columns give way.
    for column, key in (("queue", "queue"), ("message id", "message_id")):
        table.add_column(column, no_wrap=True, min_width=max(len(letter[key]) for letter in letters))
    for column in ("reason", "attempts", "age", "type", "size"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(letter["queue"], letter["message_id"], *_dead_letter_details(letter))
    # Measured unbounded: within the console's width, rich clamps the measure to it.
    if Measurement.get(console, console.options.update_width(10_000), table).minimum <= console.width:
        console.print(table)
        return
    # Too narrow for the table: each letter's queue and id on a line of their own, which rich never cuts.
    console.print("Dead letters")
    for letter in letters:
        console.print(f"{letter['queue']} {letter['message_id']}", markup=False, highlight=False, soft_wrap=True)
        reason, attempts, age, message_type, size = _dead_letter_details(letter)
        console.print(f"  {reason}", markup=False, highlight=False)
        console.print(
            f"  attempts {attempts} · age {age} · type {message_type} · {size}", markup=False, highlight=False
        )


def _dead_letter_details(letter: dict[str, Any]) -> tuple[str, ...]:
    return (
        letter["reason"],
        str(letter["attempts"]),
        _span(letter["age"]),
        letter["message_type"] or "-",
        f"{letter['size']} B{' sealed' if letter['sealed'] else ''}",
    )


def _show_case(console: Console, case: dict[str, Any]) -> None:
    withdrawn = " (withdrawn)" if case["withdrawn"] else ""
    console.print(
        f"case {case['case_code']}{withdrawn}  id {case['case_id']}  report {case['police_report_number']}"
        f" by {case['reporting_agency']}  regency {case['regency_code']}  reported {_moment(case['reported_at'])}"
    )
    legs = Table(title="Referrals")
    for column in ("agency", "status", "priority", "ack due", "acknowledged", "level", "overdue"):
        legs.add_column(column)
    for leg in case["legs"]:
        legs.add_row(
            leg["agency_id"],
            leg["status"],
            leg["priority"],
            _moment(leg["ack_due_at"]),
            _moment(leg["acknowledged_at"]),
            str(leg["escalation_level"]),
            leg["overdue"] or "-",
        )
    console.print(legs)
    timeline = Table(title="Timeline")
    for column in ("at", "event", "actor", "detail"):
        timeline.add_column(column)
    for entry in case["timeline"]:
        detail = ", ".join(f"{key}={value}" for key, value in entry["detail"].items())
        timeline.add_row(_moment(entry["at"]), entry["event"], entry["actor"], detail)
    console.print(timeline)
