"""The ``rujukan`` command: the only module that knows all three services.

A command imports what it runs only once it is chosen: a service's process then holds its own code and libraries,
not the other two services' (the ledger's migrations, templates, HTTP clients), which would cost it tens of MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from uuid import UUID

from pydantic import ValidationError

from services.ops_cli import add_ops_parser, run_ops
from services.referral.reporting.statistics import month
from shared.clock import utcnow
from shared.directory import Directory, load_directory
from shared.errors import ConfigurationError
from shared.live_directory import LiveDirectory, pid_file, signal_running
from shared.logging import configure_logging
from shared.rosters import uncovered_agencies
from shared.sealing import IdentitySealer, load_sealer
from shared.service import Service, ServiceStartError, run_on_uvloop, serve
from shared.settings import Settings
from shared.tokens import Scope, issue_token

SERVICES = ("intake", "referral", "notifier")


def build_services(
    names: Sequence[str],
    settings: Settings,
    directory: Directory | Callable[[], Directory],
    sealer: IdentitySealer,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> list[Service]:
    """``directory`` is a fixed one (tests) or the live one that SIGHUP reloads; ``clock`` is the referral
    service's (deadlines, overdue figures), which tests move instead of waiting."""
    current: Callable[[], Directory] = directory if callable(directory) else lambda: directory

    def intake() -> Service:
        from services.intake.app import build_intake

        return build_intake(settings.for_service("intake"), current, sealer)

    def referral() -> Service:
        from services.referral.app import build_referral

        return build_referral(settings.for_service("referral"), current, sealer, clock=clock)

    def notifier() -> Service:
        from services.notifier.app import build_notifier

        return build_notifier(settings.for_service("notifier"), current)

    builders = {"intake": intake, "referral": referral, "notifier": notifier}
    return [builders[name]() for name in names]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rujukan", description="TPPO multi-agency referral service")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in SERVICES:
        commands.add_parser(name, help=f"run the {name} service (HTTP port from RUJUKAN_{name.upper()}_PORT)")
    commands.add_parser("run", help="run all three services in one process (ports 8001, 8002, 8003)")
    demo = commands.add_parser("demo", help="send a sample Bengkayang case through the system and print its timeline")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for every acknowledgement")
    directory = commands.add_parser("directory", help="the agency directory (RUJUKAN_CONFIG)")
    directory.add_argument(
        "action",
        choices=("check", "reload"),
        help="check: validate the file; reload: validate it, then make running services take it (SIGHUP)",
    )
    broker = commands.add_parser("broker", help="broker identities: users, permissions, secrets (management API)")
    broker.add_argument("action", choices=("setup",), help="setup: create or update the vhost, users and permissions")
    broker.add_argument("--vhost", default="rujukan")
    broker.add_argument("--secrets", type=Path, default=Path("broker-secrets.json"), help="written with mode 0600")
    broker.add_argument("--management-url", default="http://127.0.0.1:15672")
    broker.add_argument("--admin-user", default="guest", help="a management API administrator (guest: local only)")
    broker.add_argument("--admin-password", default="guest")
    broker.add_argument("--rotate", action="store_true", help="give every user a new password")
    audit = commands.add_parser("audit", help="the identity audit trail in RUJUKAN_DATABASE_URL")
    audit.add_argument("action", choices=("verify",), help="verify: check the keyed chain; exit 1 at the first bad row")
    audit.add_argument(
        "--expect-head",
        metavar="HASH",
        help="a head printed by an earlier verify, kept apart from the database: exit 1 unless the trail still reaches"
        " it (rows cut off the end)",
    )
    audit.add_argument(
        "--unkeyed-rows",
        type=int,
        default=0,
        metavar="N",
        help="rows written before the trail was keyed (the count an earlier verify printed): checked with plain hashes",
    )
    privacy = commands.add_parser("privacy", help="erase victim identity (RUJUKAN_DATABASE_URL)")
    erasures = privacy.add_subparsers(dest="action", required=True)
    erase = erasures.add_parser("erase", help="erase one case's victim identity now; its facts and timeline stay")
    erase.add_argument("case_id", type=UUID)
    erase.add_argument("--reason", required=True, help="why, for the case's timeline (e.g. the victim's request)")
    erase.add_argument("--by", required=True, help="who erases it, for the audit trail")
    erasures.add_parser(
        "sweep", help="erase cases past the directory's retention (the referral service does it hourly by itself)"
    )
    erasures.add_parser(
        "held", help="list cases keeping identity past the retention period because a referral was never closed"
    )
    token = commands.add_parser("token", help="issue an API token: printed once, with its entry for the directory")
    token.add_argument("scopes", nargs="+", choices=[scope.value for scope in Scope], metavar="scope")
    token.add_argument("--label", help="who or what holds it, e.g. the agency's case system")
    add_ops_parser(commands)
    report = commands.add_parser(
        "report", help="monthly statistics per agency and regency from RUJUKAN_DATABASE_URL, as CSV and HTML"
    )
    report.add_argument("--from", dest="first", required=True, type=month, metavar="YYYY-MM", help="first month")
    report.add_argument("--to", dest="last", required=True, type=month, metavar="YYYY-MM", help="last month")
    report.add_argument("--out", type=Path, default=Path(), help="directory for the CSV and the HTML page")
    docs = commands.add_parser("docs", help="the integrators' AsyncAPI and OpenAPI documents (repository root)")
    docs.add_argument("action", choices=("generate",), help="generate: rewrite them from the code")
    docs.add_argument("--out", type=Path, default=Path("docs"))
    docs.add_argument("--config", type=Path, default=Path("config/kalbar.yaml"), help="names the agency queues")
    return parser


def _issue_token(scopes: Sequence[str], label: str | None) -> int:
    token, entry = issue_token(tuple(Scope(scope) for scope in scopes), label=label)
    print(f"token: {token}")
    print("give it to its holder over a safe channel: it is shown only now. Add to the holder's api_tokens:")
    # JSON is YAML: the entry pastes into the directory as a flow mapping.
    print(f"  - {json.dumps(entry.model_dump(mode='json', exclude_none=True))}")
    return 0


def _directory_command(action: str, settings: Settings) -> int:
    try:
        directory = load_directory(settings.config, production=settings.environment == "production")
    except ConfigurationError as exc:
        print(f"rujukan: {exc}", file=sys.stderr)
        print("rujukan: nothing reloaded; the running services keep the directory in force", file=sys.stderr)
        return 2
    print(f"{settings.config}: valid ({len(directory.agencies)} agencies, {len(directory.rules)} rules)")
    for agency_id, uncovered in uncovered_agencies(directory).items():
        print(f"warning: {agency_id} has nobody on duty {uncovered}", file=sys.stderr)
    if action == "check":
        return 0
    signalled = signal_running(settings.data_dir)
    for name, pid in signalled:
        print(f"reload sent to {name} (pid {pid})")
    if not signalled:
        print(f"no running service has a pid file in {settings.data_dir}; nothing to reload", file=sys.stderr)
        return 1
    return 0


def _roster_warnings(directory: Directory) -> None:
    from services.notifier.app import warn_of_roster_gaps

    warn_of_roster_gaps(directory)


def settings_problems(exc: ValidationError) -> str:
    """Invalid settings on one line, each named by its variable; never the value given, which may be a password
    (an AMQP URL's, say)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        variable = "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"RUJUKAN_{variable}: {message}" if variable else message)
    return "; ".join(problems)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"rujukan: {settings_problems(exc)}", file=sys.stderr)
        return 2
    if args.command == "demo":
        from services.demo import run_demo

        configure_logging("WARNING")
        try:
            return run_on_uvloop(run_demo(settings, timeout=args.timeout))
        except ConfigurationError as exc:
            print(f"rujukan: {exc}", file=sys.stderr)
            return 2
        except ServiceStartError as exc:
            print(f"rujukan demo: {exc}", file=sys.stderr)
            return 1
    if args.command == "directory":
        return _directory_command(args.action, settings)
    if args.command == "token":
        return _issue_token(args.scopes, args.label)
    if args.command == "ops":
        return run_ops(args, settings)
    if args.command == "docs":
        # Imported here: it builds every service through this module.
        from services.docs import generate_command

        # The services it builds warn of their demo settings; the documents do not depend on them.
        configure_logging("ERROR")
        return generate_command(args.out, args.config)
    if args.command == "report":
        from services.referral.reporting.command import write_report

        configure_logging("WARNING")
        try:
            return asyncio.run(write_report(settings, first=args.first, last=args.last, out=args.out))
        except ConfigurationError as exc:
            print(f"rujukan: {exc}", file=sys.stderr)
            return 2
    if args.command == "audit":
        try:
            from services.referral.ledger_commands import verify_audit_trail

            return asyncio.run(verify_audit_trail(args, settings))
        except ConfigurationError as exc:
            print(f"rujukan: {exc}", file=sys.stderr)
            return 2
    if args.command == "privacy":
        # The command prints what it did; the service's info lines would only repeat it.
        from services.referral.ledger_commands import privacy_command

        configure_logging("WARNING")
        try:
            return asyncio.run(privacy_command(args, settings))
        except ConfigurationError as exc:
            print(f"rujukan: {exc}", file=sys.stderr)
            return 2
    if args.command == "broker":
        try:
            from services.broker_command import set_up_broker_command

            return asyncio.run(set_up_broker_command(args, settings))
        except ConfigurationError as exc:
            print(f"rujukan: {exc}", file=sys.stderr)
            return 2
    names = SERVICES if args.command == "run" else (args.command,)
    configure_logging(settings.log_level, service=args.command, cache_loggers=True)
    try:
        directory = LiveDirectory(
            settings.config,
            production=settings.environment == "production",
            on_reload=_roster_warnings if "notifier" in names else lambda _: None,
        )
        services = build_services(names, settings, directory, load_sealer(settings))
    except ConfigurationError as exc:
        print(f"rujukan: {exc}", file=sys.stderr)
        return 2
    with pid_file(settings.data_dir, args.command):
        try:
            run_on_uvloop(serve(services, settings.http_host, on_hangup=directory.reload))
        except ServiceStartError as exc:
            print(f"rujukan {args.command}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
