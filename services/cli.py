"""The ``rujukan`` command: the only module that knows all three services."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from services.intake.app import build_intake
from services.notifier.app import build_notifier, warn_of_roster_gaps
from services.notifier.rosters import uncovered_agencies
from services.referral.app import build_referral
from shared.directory import Directory, load_directory
from shared.errors import ConfigurationError
from shared.live_directory import LiveDirectory, pid_file, signal_running
from shared.logging import configure_logging
from shared.sealing import IdentitySealer, load_sealer
from shared.service import Service, serve
from shared.settings import Settings

SERVICES = ("intake", "referral", "notifier")


def build_services(
    names: Sequence[str],
    settings: Settings,
    directory: Directory | Callable[[], Directory],
    sealer: IdentitySealer,
) -> list[Service]:
    """``directory`` is a fixed one (tests) or the live one that SIGHUP reloads."""
    current: Callable[[], Directory] = directory if callable(directory) else lambda: directory

    builders = {
        "intake": lambda: build_intake(settings, current, sealer),
        "referral": lambda: build_referral(settings, current, sealer),
        "notifier": lambda: build_notifier(settings, current),
    }
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
    return parser


def _directory_command(action: str, settings: Settings) -> int:
    try:
        directory = load_directory(settings.config)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    if args.command == "demo":
        from services.demo import run_demo

        configure_logging("WARNING")
        try:
            return asyncio.run(run_demo(settings, timeout=args.timeout))
        except ConfigurationError as exc:
            print(f"rujukan: {exc}", file=sys.stderr)
            return 2
    if args.command == "directory":
        return _directory_command(args.action, settings)
    names = SERVICES if args.command == "run" else (args.command,)
    configure_logging(settings.log_level, service=args.command)
    try:
        directory = LiveDirectory(
            settings.config, on_reload=warn_of_roster_gaps if "notifier" in names else lambda _: None
        )
        services = build_services(names, settings, directory, load_sealer(settings))
    except ConfigurationError as exc:
        print(f"rujukan: {exc}", file=sys.stderr)
        return 2
    with pid_file(settings.data_dir, args.command):
        asyncio.run(serve(services, settings.http_host, on_hangup=directory.reload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
