"""The operations facade: one object the JSON API, the ops page and the CLI (through the API) all use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import aio_pika
import structlog
from aio_pika.abc import AbstractConnection
from sqlalchemy import func, or_, select

from services.referral import ledger as tables
from services.referral.ledger import Ledger, LedgerTx
from services.referral.lifecycle import ACCEPTED_STATES, CLOSED_LEGS, Status
from services.referral.operations.broker import BrokerOps, Held, QueueInfo, Settlement, copy_of, queue_inventory
from services.referral.operations.dead_letters import (
    DEAD_SUFFIX,
    IDENTITY_REMOVED_HEADER,
    NO_IDENTITY,
    submission_case_of,
    without_identity,
    work_queue_of,
)
from services.referral.operations.figures import OpenLeg, ack_medians, awaited, last_traffic, operator_detail
from services.referral.operations.trail import DeadLetterAction, record_dead_letter_action
from services.referral.operations.views import (
    AgencyFigures,
    CaseView,
    DeadLetter,
    LegView,
    OfficerOnDuty,
    OverdueReferral,
    Overview,
    ServiceStatus,
    TimelineItem,
)
from shared.clock import utcnow
from shared.consuming import SEALED_BODY_HEADER, dead_letter_context, encodable
from shared.directory import Directory
from shared.errors import PermanentError
from shared.rosters import duty_officers
from shared.sealing import IdentitySealer
from shared.settings import Settings
from shared.topology import Topology, build_topology, dead_letter_queue_name

log = structlog.get_logger(__name__)

SERVICES = ("intake", "referral", "notifier")

# Legs whose deadlines may still be running: not yet decided, not closed.
_OPEN = [status.value for status in Status if status not in ACCEPTED_STATES | CLOSED_LEGS | {Status.COMPLETED}]


class UnknownDeadLetterQueueError(LookupError):
    """A queue name that is not one of the deployment's dead-letter queues."""


class NoteRequiredError(ValueError):
    """A discard without a note: the audit trail must say why a message was thrown away."""


class Operations:
    """What operators see and do. Reads the ledger and the broker; writes only the audit trail, operators'
    sign-outs and, through a replay, the one queue a dead letter came from."""

    def __init__(
        self,
        ledger: Ledger,
        directory: Callable[[], Directory],
        settings: Settings,
        sealer: IdentitySealer,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ledger = ledger
        self._directory = directory
        self._settings = settings
        self._clock = clock
        self._sealer = sealer
        self._broker = BrokerOps(settings, open_sealed=lambda body, context: sealer.open_bytes(body, context=context))

    def now(self) -> datetime:
        return self._clock()

    def _inventory(self) -> list[QueueInfo]:
        return queue_inventory(self._topology())

    def dead_letter_queues(self) -> list[str]:
        return [info.name for info in self._inventory() if info.kind == "dead"]

    # Overview

    async def overview(self) -> Overview:
        now = self._clock()
        source, queues = await self._broker.figures(self._inventory())
        seen = await self._last_seen()
        services = []
        for service in SERVICES:
            own = [queue for queue in queues if queue.owner == service]
            work = [queue for queue in own if queue.needs_consumer]
            # Passive declares tell nothing of a queue's traffic; the management API only sometimes does.
            traffic = last_traffic(work, now) if source == "management" else None
            known = [moment for moment in (seen.get(service), traffic) if moment is not None]
            services.append(
                ServiceStatus(
                    name=service,
                    consuming=all(queue.consumers for queue in work),
                    queues=tuple(queue.name for queue in own),
                    last_message_seen=max(known, default=None),
                )
            )
        return Overview(
            at=now,
            source=source,
            queues=tuple(queues),
            services=tuple(services),
            agencies=tuple(await self._agency_figures(now)),
        )

    async def _last_seen(self) -> dict[str, datetime]:
        """The referral service records every message it took in its inbox table; the other services keep no
        such record here (the management API's queue figures stand in for them, when they tell)."""
        async with self._ledger.engine.connect() as connection:
            newest = (await connection.execute(select(func.max(tables.inbox.c.received_at)))).scalar()
        return {"referral": newest} if newest is not None else {}

    async def _agency_figures(self, now: datetime) -> list[AgencyFigures]:
        r = tables.referrals
        async with self._ledger.engine.connect() as connection:
            by_agency = select(r.c.agency_id, r.c.status, func.count()).group_by(r.c.agency_id, r.c.status)
            counts = (await connection.execute(by_agency)).all()
            acknowledged = (
                await connection.execute(
                    select(r.c.agency_id, r.c.issued_at, r.c.acknowledged_at).where(
                        r.c.acknowledged_at >= now - timedelta(days=30),
                        r.c.status != Status.ENTERED_IN_ERROR.value,
                    )
                )
            ).all()
        late: dict[str, int] = {}
        for leg in await self._open_legs():
            if awaited(leg, now) is not None:
                late[leg.agency_id] = late.get(leg.agency_id, 0) + 1
        by_status: dict[str, dict[str, int]] = {}
        for agency_id, status, count in counts:
            by_status.setdefault(agency_id, {})[status] = int(count)
        medians = ack_medians(((a, i, k) for a, i, k in acknowledged), now)
        directory = self._directory()
        figures = []
        for agency in directory.receiving_agencies():
            week, month = medians.get(agency.id, (None, None))
            figures.append(
                AgencyFigures(
                    agency_id=agency.id,
                    name=agency.name,
                    by_status=by_status.get(agency.id, {}),
                    overdue=late.get(agency.id, 0),
                    median_ack_7d=week,
                    median_ack_30d=month,
                )
            )
        return figures

    # Overdue referrals

    async def _open_legs(self) -> list[OpenLeg]:
        r, c = tables.referrals, tables.cases
        query = select(
            r.c.referral_id, r.c.case_id, c.c.case_code, r.c.agency_id, r.c.status, r.c.priority, r.c.issued_at,
            r.c.ack_due_at, r.c.accept_due_at, r.c.escalation_level,
        ).join(c, c.c.case_id == r.c.case_id).where(r.c.status.in_(_OPEN))  # fmt: skip
        async with self._ledger.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [_open_leg(row, row.case_code) for row in rows]

    async def overdue(self) -> list[OverdueReferral]:
        """Every referral past a deadline it has not met, the latest first, with who is on duty there now."""
        now = self._clock()
        directory = self._directory()
        found = []
        for leg in await self._open_legs():
            missed = awaited(leg, now)
            if missed is None:
                continue
            kind, due_at = missed
            agency = directory.agency(leg.agency_id)
            officers = duty_officers(directory, agency, now) if agency is not None else ()
            found.append(
                OverdueReferral(
                    referral_id=leg.referral_id,
                    case_id=leg.case_id,
                    case_code=leg.case_code,
                    agency_id=leg.agency_id,
                    awaited=kind,
                    status=leg.status.value,
                    priority=leg.priority,
                    due_at=due_at,
                    late_by=now - due_at,
                    escalation_level=leg.escalation_level,
                    on_duty=tuple(OfficerOnDuty(id=officer.id, name=officer.name) for officer in officers),
                )
            )
        return sorted(found, key=lambda item: item.late_by, reverse=True)

    # Dead letters

    def _dead_letter_queue(self, queue: str) -> str:
        """``queue`` as a dead-letter queue of this deployment: its work queue's name or the ``.dead`` one."""
        name = queue if queue.endswith(DEAD_SUFFIX) else f"{queue}{DEAD_SUFFIX}"
        if name not in self.dead_letter_queues():
            raise UnknownDeadLetterQueueError(queue)
        return name

    async def dead_letters(self, queue: str | None = None) -> list[DeadLetter]:
        """The dead letters of one queue (a work queue's name or its ``.dead`` one), or of every queue."""
        names = [self._dead_letter_queue(queue)] if queue is not None else self.dead_letter_queues()
        return await self._broker.dead_letters(names, self._clock())

    async def dead_letter(self, queue: str, message_id: str) -> DeadLetter | None:
        return next((letter for letter in await self.dead_letters(queue) if letter.message_id == message_id), None)

    async def replay(self, queue: str, message_id: str, operator: str, note: str | None = None) -> DeadLetter | None:
        """Puts the dead letter back into the one queue it died in (confirmed), then removes it; audited. None
        when there is no such dead letter."""
        dead_letter_queue = self._dead_letter_queue(queue)
        into = work_queue_of(dead_letter_queue)

        async def put_back(connection: AbstractConnection, message: Held, letter: DeadLetter) -> None:
            await self._broker.replay(connection, message, into=into, operator=operator)
            await self._audit(DeadLetterAction.REPLAYED, letter, operator, note)

        letter = await self._broker.act_on(dead_letter_queue, message_id, self._clock(), action=put_back)
        if letter is not None:
            log.warning("dead_letter_replayed", queue=into, message_id=message_id, operator=operator)
        return letter

    async def discard(self, queue: str, message_id: str, operator: str, note: str) -> DeadLetter | None:
        """Removes the dead letter for good; the note says why, on the audit trail. None when there is none."""
        if not note or not note.strip():
            raise NoteRequiredError("a discard needs a note saying why")
        dead_letter_queue = self._dead_letter_queue(queue)

        async def record(_: AbstractConnection, __: Held, letter: DeadLetter) -> None:
            await self._audit(DeadLetterAction.DISCARDED, letter, operator, note)

        letter = await self._broker.act_on(dead_letter_queue, message_id, self._clock(), action=record)
        if letter is not None:
            log.warning("dead_letter_discarded", queue=letter.queue, message_id=message_id, operator=operator)
        return letter

    async def clear_erased_identity(self, actor: str) -> list[DeadLetter]:
        """Takes an erased case's identity out of the dead-letter queues, where the service's own key would still
        open it; each letter settled is on the audit trail, by ``actor``, before it goes.

        A police submission intake refused (its own queue's dead letters: a report, an amendment, a withdrawal
        request, holding the victims' identity or a note in the police unit's words) is removed: intake never
        accepted it, and its sender was told so. A case event intake did accept (the referral's case queue) is
        kept, replayable, with its identity and note taken out: an amendment may still refer a victim, a withdrawal
        still cancel legs. Other dead letters hold no identity and are left alone."""
        topology = self._topology()
        submissions = dead_letter_queue_name(topology.intake_reports.name)
        case_events = dead_letter_queue_name(topology.referral_cases.name)

        async def erased(queue: str, held: Sequence[Held]) -> list[Settlement]:
            claims = [(message, claim) for message in held if (claim := self._claim(queue, message, submissions))]
            named = {case_id for _, (case_id, _) in claims}
            gone = await self._ledger.run(LedgerTx.erased_cases, named) if named else set()
            return [Settlement(message, kept, case_id) for message, (case_id, kept) in claims if case_id in gone]

        async def record(settlement: Settlement, letter: DeadLetter) -> None:
            await record_dead_letter_action(
                self._ledger,
                at=self._clock(),
                operator=actor,
                action=DeadLetterAction.ERASED if settlement.replacement is None else DeadLetterAction.IDENTITY_REMOVED,
                queue=letter.queue,
                message_id=letter.message_id,
                # The case the body names: a submission's own correlation id is whatever its sender chose.
                correlation_id=str(settlement.case_id),
                note="the case's identity was erased",
            )

        settled = await self._broker.settle(
            [submissions, case_events], self._clock(), choose=erased, before_removing=record
        )
        for settlement, letter in settled:
            event = "dead_letter_erased" if settlement.replacement is None else "dead_letter_identity_removed"
            log.warning(event, queue=letter.queue, message_id=letter.message_id, operator=actor)
        return [letter for _, letter in settled]

    def _claim(self, queue: str, message: Held, submissions: str) -> tuple[UUID, aio_pika.Message | None] | None:
        """The case whose identity the dead letter holds, and what is to take its place (nothing for a refused
        submission); None when it holds none, or no longer does."""
        if queue == submissions:
            case_id = submission_case_of(self._opened(message))
            return (case_id, None) if case_id is not None else None
        headers = dict(message.headers or {})
        if headers.get(IDENTITY_REMOVED_HEADER) or not (kept := without_identity(message.body, self._sealed_nothing)):
            return None
        case_id, body = kept
        # As read: any value pamqp reads but cannot write again is made writable (shared.consuming.encodable).
        return case_id, copy_of(message, body, {**encodable(headers), IDENTITY_REMOVED_HEADER: True})

    def _topology(self) -> Topology:
        return build_topology(self._directory(), self._settings.retry_schedule)

    def _opened(self, message: Held) -> bytes:
        """The body as it came, a sealed one opened; nothing when no key of ours opens it (nobody here could read
        it either)."""
        if not (message.headers or {}).get(SEALED_BODY_HEADER):
            return bytes(message.body)
        try:
            return self._sealer.open_bytes(message.body, context=dead_letter_context(message.message_id))
        except PermanentError:
            return b""

    def _sealed_nothing(self, case_id: UUID) -> dict[str, Any]:
        return self._sealer.seal(NO_IDENTITY, context=case_id.bytes).model_dump(mode="json")

    async def _audit(self, action: DeadLetterAction, letter: DeadLetter, operator: str, note: str | None) -> None:
        # Written before the dead letter is acked: nothing leaves a dead-letter queue without its audit entry.
        await record_dead_letter_action(
            self._ledger,
            at=self._clock(),
            operator=operator,
            action=action,
            queue=letter.queue,
            message_id=letter.message_id,
            correlation_id=letter.correlation_id,
            note=note,
        )

    # Sessions

    async def sign_out(self, operator_id: str, at: datetime) -> None:
        await self._ledger.run(LedgerTx.sign_out, operator_id, at)

    async def signed_out_at(self, operator_id: str) -> datetime | None:
        """When the operator last signed out of the ops page: their sessions signed in before then are over."""
        return await self._ledger.run(LedgerTx.signed_out_at, operator_id)

    # Cases

    async def find_case(self, query: str) -> CaseView | None:
        """A case by its id, its police report number or its case code (the newest when several units used the
        same report number): its legs and timeline, without identity."""
        c, r = tables.cases, tables.referrals
        query = query.strip()
        try:
            matches = c.c.case_id == str(UUID(query))
        except ValueError:
            matches = or_(c.c.police_report_number == query, c.c.case_code == query)
        now = self._clock()
        async with self._ledger.engine.connect() as connection:
            case = (
                await connection.execute(select(c).where(matches).order_by(c.c.reported_at.desc()).limit(1))
            ).first()
            if case is None:
                return None
            legs = (
                await connection.execute(select(r).where(r.c.case_id == case.case_id).order_by(r.c.issued_at))
            ).all()
            t = tables.timeline
            entries = (await connection.execute(select(t).where(t.c.case_id == case.case_id).order_by(t.c.id))).all()
        return CaseView(
            case_id=UUID(case.case_id),
            case_code=case.case_code,
            police_report_number=case.police_report_number,
            reporting_agency=case.reporting_agency,
            regency_code=case.regency_code,
            reported_at=case.reported_at,
            withdrawn=case.withdrawn_at is not None,
            legs=tuple(_leg(row, case.case_code, now) for row in legs),
            timeline=tuple(
                TimelineItem(
                    at=entry.at,
                    event=entry.event,
                    referral_id=UUID(entry.referral_id) if entry.referral_id else None,
                    actor=entry.actor,
                    detail=operator_detail(entry.event, entry.detail or {}),
                )
                for entry in entries
            ),
        )


def _open_leg(row: Any, case_code: str) -> OpenLeg:
    """A referrals row (with its case's code) as the figures read it."""
    return OpenLeg(
        referral_id=UUID(row.referral_id),
        case_id=UUID(row.case_id),
        case_code=case_code,
        agency_id=row.agency_id,
        status=Status(row.status),
        priority=row.priority,
        issued_at=row.issued_at,
        ack_due_at=row.ack_due_at,
        accept_due_at=row.accept_due_at,
        escalation_level=row.escalation_level,
    )


def _leg(row: Any, case_code: str, now: datetime) -> LegView:
    leg = _open_leg(row, case_code)
    missed = awaited(leg, now)
    return LegView(
        referral_id=leg.referral_id,
        agency_id=leg.agency_id,
        status=leg.status.value,
        priority=leg.priority,
        ack_due_at=leg.ack_due_at,
        acknowledged_at=row.acknowledged_at,
        accept_due_at=leg.accept_due_at,
        escalation_level=leg.escalation_level,
        overdue=missed[0] if missed else None,
    )
