"""``rujukan audit verify`` and ``rujukan privacy``: commands an operator runs against the referral ledger."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from services.referral.audit import AuditKeys, ChainCheck
from services.referral.ledger import Ledger
from services.referral.operations.facade import Operations
from services.referral.privacy import HeldCase, Privacy
from services.referral.referrals import SYSTEM, UnknownCaseError
from shared.database import make_engine
from shared.directory import Directory, load_directory
from shared.sealing import load_audit_keys, load_sealer
from shared.settings import Settings


async def verify_audit_trail(args: argparse.Namespace, settings: Settings) -> int:
    keys = load_audit_keys(settings, create=False)
    check = ChainCheck(keys, current=settings.audit_key_id, unkeyed_rows=args.unkeyed_rows)
    # The expected head is the last entry when the trail was last verified; entries written since follow it.
    reached = args.expect_head is None
    engine = make_engine(settings.database_url)
    try:
        async for row in Ledger(engine).audit_rows():
            if problem := check.add(row):
                print(f"audit trail broken at {problem}; {check.intact} entries before it are intact", file=sys.stderr)
                return 1
            reached = reached or row.hash == args.expect_head
    finally:
        await engine.dispose()
    if not reached:
        print(
            f"audit trail cut short: no entry has the expected head {args.expect_head}; the {check.intact} entries"
            f" left are intact up to {check.head}",
            file=sys.stderr,
        )
        return 1
    print(f"audit trail intact: {check.intact} entries; the last hash is {check.head}")
    return 0


async def privacy_command(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    ledger = Ledger(engine, audit_keys=AuditKeys(settings.audit_key_id, load_audit_keys(settings)))
    try:
        await ledger.migrate()

        def directory() -> Directory:
            return load_directory(settings.config)

        privacy = Privacy(ledger, directory)
        if args.action == "held":
            _print_held(await privacy.held_open())
            return 0
        if args.action == "sweep":
            print(f"cases past the retention period erased: {await privacy.sweep()}")
        else:
            try:
                erased = await privacy.erase(args.case_id, operator=args.by, reason=args.reason)
            except UnknownCaseError:
                print(f"rujukan: no case {args.case_id} in the ledger", file=sys.stderr)
                return 1
            print(f"case {args.case_id}: identity {'erased' if erased else 'was already erased'}")
        actor = args.by if args.action == "erase" else SYSTEM
        return await _clear_dead_letters(ledger, directory, settings, actor)
    finally:
        await engine.dispose()


async def _clear_dead_letters(
    ledger: Ledger, directory: Callable[[], Directory], settings: Settings, actor: str
) -> int:
    """Run once the erasure has committed: without the broker or the identity key, the erasure itself stands."""
    try:
        operations = Operations(ledger, directory, settings, load_sealer(settings))
        cleared = len(await operations.clear_erased_identity(actor))
    except Exception as exc:  # the broker is away, or the identity key: the erasure itself is done
        print(
            f"rujukan: dead letters not checked ({type(exc).__name__}): the referral service's next retention sweep"
            " takes an erased identity out of them",
            file=sys.stderr,
        )
        return 1
    print(f"dead letters cleared of an erased identity: {cleared}")
    return 0


def _print_held(held: list[HeldCase]) -> None:
    print(f"cases keeping identity past the retention period because a referral is open: {len(held)}")
    for case in held:
        referrals = ", ".join(f"{agency} {status.value}" for agency, status in case.open_referrals)
        print(f"  {case.case_code}  {case.case_id}  quiet since {case.quiet_since:%Y-%m-%d}  open: {referrals}")
