"""SMS acknowledgement codes: six random digits an officer texts back (``TERIMA 482193``), never one another referral
of the agency may still be answered with; a four-digit code given before codes had six, for a while yet."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import structlog

from services.referral.ledger import LedgerTx, Referral
from shared.contracts.referrals import ACK_CODE_DIGITS

log = structlog.get_logger(__name__)

ACK_CODE_RESERVED = timedelta(days=7)
"""A code is not given again for this long after its referral was issued, nor after it was acknowledged."""


ACK_CODE_PROBES = 8
"""Random codes tried one by one before reading every code in use: while fewer than half are taken, the chance
that all eight are is under 1 in 250."""

ACK_CODES = 10**ACK_CODE_DIGITS


def ack_code_for(tx: LedgerTx, agency_id: str, now: datetime) -> str | None:
    """Six random digits no other referral of the agency holds (awaiting acknowledgement, or issued or acknowledged
    recently); None in the (absurd) case that all million are taken: the signed link still acknowledges."""
    since = now - ACK_CODE_RESERVED
    # A probe is one lookup in ix_referrals_agency_ack_code; reading every code in use cost a row per referral of
    # the last week on every referral issued (quadratic in a raid).
    for _ in range(ACK_CODE_PROBES):
        code = _code_of(secrets.randbelow(ACK_CODES))
        if not tx.ack_code_in_use(agency_id, code, since=since):
            return code
    taken = sorted(int(code) for code in tx.ack_codes_in_use(agency_id, since=since) if len(code) == ACK_CODE_DIGITS)
    if len(taken) >= ACK_CODES:
        log.warning("ack_codes_exhausted", agency_id=agency_id)
        return None
    return _code_of(nth_free(secrets.randbelow(ACK_CODES - len(taken)), taken))


def answerable_ack_code(referral: Referral, now: datetime) -> str | None:
    """The code an officer may text back for ``referral`` at ``now``. A four-digit code, given before codes had six,
    only for ``ACK_CODE_RESERVED`` after its referral's issue: guessed about once a fortnight, it must not stay open
    for as long as its referral waits (its link, and the agency's system, still acknowledge)."""
    code = referral.ack_code
    if code is not None and len(code) != ACK_CODE_DIGITS and now - referral.issued_at > ACK_CODE_RESERVED:
        return None
    return code


def _code_of(number: int) -> str:
    return f"{number:0{ACK_CODE_DIGITS}d}"


def nth_free(n: int, taken: list[int]) -> int:
    """The ``n``-th number (from 0) that ``taken``, sorted, does not hold: a uniform choice among the free codes
    without listing a million of them."""
    for number in taken:
        if number > n:
            break
        n += 1
    return n
