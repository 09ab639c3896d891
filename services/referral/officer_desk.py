"""The officer desk: what a duty officer does from a one-click link or an SMS reply, for offices with no case
system of their own. Links are single-use (the first action spends the link and opens a short session on that
device); victim identity needs the officer's PIN, and too many wrong PINs lock it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from services.referral.ack_codes import answerable_ack_code
from services.referral.ledger import CaseRecord, Ledger, LedgerTx, Referral
from services.referral.lifecycle import AWAITING_ACK, Reply
from services.referral.referrals import Referrals, ReplyCommand
from shared.clock import utcnow
from shared.directory import Agency, Directory, Officer
from shared.errors import IllegalTransitionError, NotPermittedError, RujukanError
from shared.links import LinkClaim, LinkError, LinkSigner

log = structlog.get_logger(__name__)

SESSION_HOURS = 12
AGENCY_WIDE = "*"
AGENCY_WIDE_FACTOR = 3
"""Wrong SMS codes from all of an agency's numbers together may be this many times one officer's allowance."""
_SMS_REPLY = re.compile(r"^\s*TERIMA\s+([0-9]{6}|[0-9]{4})\s*$", re.IGNORECASE)
"""Six digits, or four on a referral issued before codes had six."""


class LinkUsedError(LinkError):
    """The link was already used, from another device (or the session on this one ran out)."""


class DeskRefusalError(RujukanError):
    """A refusal that is safe to show the officer (in Bahasa Indonesia)."""


class PinLockedError(DeskRefusalError):
    pass


class RefusedAfterSpendingError(RujukanError):
    """An action was refused after it spent the link: the officer keeps the session on this device."""

    def __init__(self, cause: Exception, session: str | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.session = session


@dataclass(frozen=True)
class Visit:
    claim: LinkClaim
    agency: Agency
    officer: Officer
    referral: Referral
    case: CaseRecord
    session: str | None
    """A fresh session cookie value when this request spent the link, else None."""


@dataclass(frozen=True)
class Revealed:
    visit: Visit
    identity: dict[str, dict[str, Any]] | None
    refusal: str | None
    """Why the PIN was refused (the officer may try again), or None."""


@dataclass(frozen=True)
class SmsOutcome:
    accepted: bool
    reply: str
    """What the gateway may text back to the officer."""
    referral_id: UUID | None = None


class OfficerDesk:
    def __init__(
        self,
        ledger: Ledger,
        referrals: Referrals,
        directory: Callable[[], Directory],
        link_key: bytes,
        *,
        pin_attempts: int,
        pin_lockout: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ledger = ledger
        self._referrals = referrals
        self._directory = directory
        self._links = LinkSigner(link_key)
        self._sessions = LinkSigner(link_key, purpose="officer-session")
        self._pin_attempts = pin_attempts
        self._pin_lockout = pin_lockout
        self._clock = clock

    async def look(self, token: str, session: str | None) -> Visit:
        """The referral behind a link, read-only: a link already spent shows only on the device that spent it."""
        claim, agency, officer = self._verify(token)
        return await self._ledger.run(self._look, claim, agency, officer, session=session)

    def _look(self, tx: LedgerTx, claim: LinkClaim, agency: Agency, officer: Officer, *, session: str | None) -> Visit:
        if tx.link_used(claim.token_id) and not self._session_matches(session, claim):
            raise LinkUsedError("tautan sudah digunakan (this link was already used)")
        return _visit(tx, claim, agency, officer, session=None)

    async def act(
        self,
        token: str,
        session: str | None,
        reply: Reply,
        *,
        note: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Visit:
        """Acknowledge, accept or decline as the officer the link was sent to."""
        claim, agency, officer = self._verify(token)
        fresh = await self._spend(claim, session)
        try:
            await self._referrals.reply(
                ReplyCommand(
                    referral_id=claim.referral_id,
                    agency_id=agency.id,
                    reply=reply,
                    via="officer_page",
                    officer=officer.id,
                    note=note,
                    detail=detail or {},
                )
            )
        except IllegalTransitionError as exc:
            # E.g. the backup taps "Terima" after the duty officer already did: they may still accept or decline.
            raise RefusedAfterSpendingError(exc, fresh) from exc
        return await self._ledger.run(_visit, claim, agency, officer, session=fresh)

    async def reveal(self, token: str, session: str | None, pin: str) -> Revealed:
        """Victim identity of this referral's own victims, after the officer's PIN; the read is on the timeline."""
        claim, agency, officer = self._verify(token)
        fresh = await self._spend(claim, session)
        try:
            refusal = await self._check_pin(claim, agency, officer, pin)
        except PinLockedError as exc:
            raise RefusedAfterSpendingError(exc, fresh) from exc
        identity = None
        if refusal is None:
            view = await self._referrals.referral_view(
                claim.referral_id, agency_id=agency.id, reader=officer.id, via="officer_page"
            )
            identity = view.identity
        visit = await self._ledger.run(_visit, claim, agency, officer, session=fresh)
        return Revealed(visit, identity, refusal)

    async def _check_pin(self, claim: LinkClaim, agency: Agency, officer: Officer, pin: str) -> str | None:
        """None for the right PIN; else why not. Wrong tries are committed before any refusal is raised."""
        tried = await self._ledger.run(self._try_pin, claim, agency, officer, pin, self._clock())
        if tried is None:
            return None
        locked, failures = tried
        if locked:
            raise PinLockedError("PIN terkunci sementara karena terlalu banyak percobaan salah (PIN locked)")
        left = self._pin_attempts - failures
        return f"PIN salah; sisa {left} percobaan (wrong PIN, {left} tries left)"

    def _try_pin(
        self, tx: LedgerTx, claim: LinkClaim, agency: Agency, officer: Officer, pin: str, now: datetime
    ) -> tuple[bool, int] | None:
        """None for the right PIN; else whether the officer is locked out now, and the wrong tries so far (0 if
        locked out before this one, which is then not counted)."""
        referral = _visit(tx, claim, agency, officer, session=None).referral
        locked_until = tx.locked_until(agency.id, officer.id, "pin")
        if locked_until is not None and now < locked_until:
            return True, 0
        if officer.pin_matches(pin):
            tx.set_lockout(agency.id, officer.id, "pin", failures=0, until=None)
            return None
        failures = self._count_failure(tx, agency.id, officer.id, "pin", now)
        locked = failures >= self._pin_attempts
        tx.record(
            referral.case_id,
            "officer_pin_refused",
            at=now,
            actor=agency.id,
            referral_id=referral.referral_id,
            detail={"officer": officer.id, "locked": locked},
        )
        return locked, failures

    async def sms_reply(self, phone: str, text: str) -> SmsOutcome:
        """``TERIMA 482193`` from an officer's registered phone acknowledges the referral with that code."""
        directory = self._directory()
        match = _SMS_REPLY.match(text)
        found = directory.officer_by_phone(phone)
        if found is None:
            log.warning("sms_reply_from_unknown_number")
            return SmsOutcome(False, "Nomor ini tidak terdaftar di Rujukan.")
        agency, officer = found
        if match is None:
            return SmsOutcome(False, "Format: TERIMA <kode 6 angka>, mis. TERIMA 482193.")
        referral = await self._ledger.run(self._referral_by_code, agency, officer, match[1], self._clock())
        if isinstance(referral, SmsOutcome):
            return referral
        try:
            await self._referrals.reply(
                ReplyCommand(
                    referral_id=referral.referral_id,
                    agency_id=agency.id,
                    reply=Reply.ACKNOWLEDGED,
                    via="sms",
                    officer=officer.id,
                )
            )
        except IllegalTransitionError:
            # Taken by someone else between the lookup and now (the link, the agency's system).
            return SmsOutcome(False, f"Kode {match[1]} sudah dipakai atau tidak berlaku lagi.")
        return SmsOutcome(True, f"Terima kasih, {officer.name}: rujukan dikonfirmasi.", referral.referral_id)

    def _referral_by_code(
        self, tx: LedgerTx, agency: Agency, officer: Officer, code: str, now: datetime
    ) -> Referral | SmsOutcome:
        """The referral awaiting acknowledgement that holds ``code``, or the answer to an officer locked out or
        to a wrong code (counted)."""
        locks = [tx.locked_until(agency.id, who, "sms") for who in (officer.id, AGENCY_WIDE)]
        if any(until is not None and now < until for until in locks):
            return SmsOutcome(False, "Terlalu banyak kode salah; coba lagi nanti atau buka tautan di pesan.")
        candidates = tx.referrals_by_code(agency.id, code)
        waiting = [r for r in candidates if r.status in AWAITING_ACK and answerable_ack_code(r, now) == code]
        if not waiting:
            self._count_failure(tx, agency.id, officer.id, "sms", now)
            self._count_agency_failure(tx, agency.id, now)
            if candidates:
                return SmsOutcome(False, f"Kode {code} sudah dipakai atau tidak berlaku lagi.")
            return SmsOutcome(False, f"Kode {code} tidak dikenal untuk {agency.name}.")
        tx.set_lockout(agency.id, officer.id, "sms", failures=0, until=None)
        return waiting[0]

    def _count_failure(self, tx: LedgerTx, agency_id: str, officer_id: str, purpose: str, now: datetime) -> int:
        """One more wrong try, counted atomically (concurrent guesses cannot each read the old count); locked out
        for a while at ``pin_attempts``."""
        failures = tx.count_failure(agency_id, officer_id, purpose)
        if failures >= self._pin_attempts:
            tx.set_lockout(agency_id, officer_id, purpose, failures=0, until=now + self._pin_lockout)
            log.warning("officer_locked_out", agency_id=agency_id, purpose=purpose, agency_wide=False)
        return failures

    def _count_agency_failure(self, tx: LedgerTx, agency_id: str, now: datetime) -> None:
        """Sender numbers can be spoofed: guesses spread over an agency's officers are capped too, at
        ``AGENCY_WIDE_FACTOR`` times ``pin_attempts`` within one lockout's length. Counted in that sliding window,
        so that officers' typos over weeks never add up to locking the whole agency out; a window as long as the
        lock means none of the tries that caused a lock still counts once it ends."""
        failures = tx.count_recent_failure(agency_id, AGENCY_WIDE, "sms", at=now, window=self._pin_lockout)
        if failures >= self._pin_attempts * AGENCY_WIDE_FACTOR:
            tx.set_lockout(agency_id, AGENCY_WIDE, "sms", failures=failures, until=now + self._pin_lockout)
            log.warning("officer_locked_out", agency_id=agency_id, purpose="sms", agency_wide=True)

    def _verify(self, token: str) -> tuple[LinkClaim, Agency, Officer]:
        claim = self._links.verify(token, now=self._clock())
        directory = self._directory()
        agency = directory.agency(claim.agency_id)
        officer = self._officer(directory, agency, claim.officer_id) if agency else None
        if agency is None or officer is None:
            # The roster changed since the link was sent: the officer is no longer there to act.
            raise LinkError("tautan ini tidak lagi berlaku (the officer is no longer on the roster)")
        return claim, agency, officer

    @staticmethod
    def _officer(directory: Directory, agency: Agency, officer_id: str) -> Officer | None:
        if agency.roster and (officer := agency.roster.officer(officer_id)):
            return officer
        coordinator = directory.coordinator
        if coordinator is not None and coordinator.id == officer_id:
            return Officer(id=coordinator.id, name=coordinator.name, channels=coordinator.channels)
        return None

    async def _spend(self, claim: LinkClaim, session: str | None) -> str | None:
        """The first action spends the link and opens a session on this device; later ones need that session."""
        if await self._ledger.run(_spend_link, claim, self._clock()):
            return self._new_session(claim)
        if self._session_matches(session, claim):
            return None
        raise LinkUsedError("tautan sudah digunakan (this link was already used)")

    def _new_session(self, claim: LinkClaim) -> str:
        expires = min(claim.expires_at, self._clock() + timedelta(hours=SESSION_HOURS))
        return self._sessions.issue(
            LinkClaim(claim.token_id, claim.referral_id, claim.agency_id, claim.officer_id, expires)
        )

    def _session_matches(self, session: str | None, claim: LinkClaim) -> bool:
        if not session:
            return False
        try:
            held = self._sessions.verify(session, now=self._clock())
        except LinkError:
            return False
        return held.token_id == claim.token_id


def _visit(tx: LedgerTx, claim: LinkClaim, agency: Agency, officer: Officer, *, session: str | None) -> Visit:
    referral = tx.referral(claim.referral_id)
    if referral is None:
        raise LinkError("rujukan tidak ditemukan (referral not found)")
    case = tx.case(referral.case_id)
    assert case is not None  # referrals reference their case (foreign key)
    return Visit(claim, agency, officer, referral, case, session)


def _spend_link(tx: LedgerTx, claim: LinkClaim, now: datetime) -> bool:
    """False if the link was spent already."""
    referral = tx.referral(claim.referral_id)
    if referral is None:
        raise LinkError("rujukan tidak ditemukan (referral not found)")
    if referral.agency_id != claim.agency_id:
        # An escalation shows another institution the referral; only its own agency acts on it.
        raise NotPermittedError(f"referral {referral.referral_id} is not addressed to {claim.agency_id}")
    return tx.spend_link(claim.token_id, claim.referral_id, claim.officer_id, now)
