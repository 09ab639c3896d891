"""Who is told of a referral event, decided at the moment it arrives. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.notifier.messages import SYSTEM, Address, Event, Recipient
from shared.contracts.referrals import ReferralCancelled, ReferralEscalated, ReferralIssued
from shared.directory import Agency, Contact, Directory, Officer
from shared.rosters import duty_officers


@dataclass(frozen=True)
class Fanout:
    recipients: tuple[Recipient, ...]
    nobody_on_duty: bool = False
    """The agency's roster had nobody on duty: itself a reason to escalate at once."""


def system_of(agency: Agency, *, own: bool) -> Recipient | None:
    """The agency's own system: its webhook, falling back to its desk's email."""
    channels = []
    if agency.webhook is not None:
        channels.append(Address(kind="webhook", to=agency.id))
    if agency.email is not None:
        channels.append(Address(kind="email", to=agency.email))
    if not channels:
        return None
    return Recipient(role="system", id=SYSTEM if own else agency.id, agency_id=agency.id, channels=tuple(channels))


def officer_of(agency: Agency, officer: Officer, *, own: bool) -> Recipient:
    """Only the referral's own officers get the one-click link and the reply code: they are the ones who may
    acknowledge it. An officer of the unit above is told, and acts through their own agency."""
    return Recipient(
        role="officer",
        id=officer.id if own else f"{agency.id}/{officer.id}",
        agency_id=agency.id,
        officer_id=officer.id if own else None,
        channels=tuple(Address(kind=channel.kind.value, to=channel.to) for channel in officer.channels),
    )


def contact_of(contact: Contact) -> Recipient:
    channels = tuple(Address(kind=channel.kind.value, to=channel.to) for channel in contact.channels)
    return Recipient(role="contact", id=contact.id, agency_id=None, channels=channels)


def recipients_for(event: Event, directory: Directory, at: datetime) -> Fanout:
    """Issued: the agency system and the officers on duty (nobody on duty: the backup, and say so). Escalation
    level 1: the officers on duty and the backup (nobody on duty: the supervisor too); 2: the supervisor; 3: the
    unit above (its system and its officers on duty) or the coordinator; an agency the directory no longer knows:
    the coordinator. Cancelled: the agency system and the officers on duty. An agency without a roster has its
    system as its only desk, so its escalations go there."""
    agency = directory.agency(event.agency_id)
    if agency is None:
        # An escalation must reach someone even when a reload lost the agency: the coordinator.
        if isinstance(event, ReferralEscalated) and directory.coordinator is not None:
            return Fanout((contact_of(directory.coordinator),))
        return Fanout(())
    system = system_of(agency, own=True)
    on_duty = tuple(officer_of(agency, o, own=True) for o in duty_officers(directory, agency, at))
    if isinstance(event, ReferralCancelled):
        return Fanout(_present(system, *on_duty))
    if isinstance(event, ReferralIssued):
        if on_duty or agency.roster is None:
            return Fanout(_present(system, *on_duty))
        return Fanout(_present(system, _role(agency, agency.roster.backup)), nobody_on_duty=True)
    return Fanout(_escalation(event, directory, agency, at, system, on_duty))


def _escalation(
    event: ReferralEscalated,
    directory: Directory,
    agency: Agency,
    at: datetime,
    system: Recipient | None,
    on_duty: tuple[Recipient, ...],
) -> tuple[Recipient, ...]:
    if event.level == 3:
        above = directory.agency(event.escalated_to) if event.escalated_to else None
        if above is None:
            return () if directory.coordinator is None else (contact_of(directory.coordinator),)
        officers = (officer_of(above, o, own=False) for o in duty_officers(directory, above, at))
        return _present(system_of(above, own=False), *officers)
    if agency.roster is None:
        return _present(system)
    if event.level == 1:
        # With nobody on duty the backup had level 0 already: the supervisor is the one new pair of eyes.
        supervisor = None if on_duty else _role(agency, agency.roster.supervisor)
        return _present(*on_duty, _role(agency, agency.roster.backup), supervisor)
    return (_role(agency, agency.roster.supervisor),)


def _role(agency: Agency, officer_id: str) -> Recipient:
    officer = agency.roster.officer(officer_id) if agency.roster else None
    assert officer is not None  # the directory checks that roster roles name the agency's officers
    return officer_of(agency, officer, own=True)


def _present(*recipients: Recipient | None) -> tuple[Recipient, ...]:
    """Each recipient once (the backup may be on duty already), in order."""
    seen: dict[str, Recipient] = {}
    for recipient in recipients:
        if recipient is not None:
            seen.setdefault(recipient.id, recipient)
    return tuple(seen.values())
