"""A whole Rujukan of a scenario's own: a throwaway RabbitMQ node (never the shared one on 5672), a TCP proxy in
front of it, the three services as separate processes talking to the broker through the proxy, and the agencies'
side (a webhook sink, officers' SMTP and SMS gateway sinks, the agency inboxes read straight off the node).
Scaled out, two referral and two notifier processes share a PostgreSQL ledger and notifier store made for the run.

Cases stream in over HTTP (202) and AMQP (publisher-confirmed); what was accepted and what arrived where is kept
with monotonic times, and at the end the ledger's referrals and escalations are read, for ``tests.chaos.checker``
to judge."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aiohttp import web
from sqlalchemy import func, select

from services.referral.deadlines import TOP_LEVEL
from services.referral.ledger import cases, referrals, timeline
from shared.consuming import REASON_HEADER
from shared.database import make_engine
from shared.directory import Deadlines, Directory
from shared.ids import case_code_for, case_id_for
from shared.topology import build_topology, dead_letter_queue_name
from tests.builders import a_case_report_body, the_sample_victims
from tests.chaos.proxy import TcpProxy
from tests.postgres import fresh_databases
from tests.rabbit import BrokerClient
from tests.system import (
    ROOT,
    GatewaySink,
    Mail,
    ServiceProcess,
    SmtpSink,
    WebhookSink,
    declare_topology,
    directory_for,
    replicas,
    settings_for,
    with_sinks,
)
from tests.throwaway_node import kill_node, restart_node, throwaway_node

SERVICES = ("intake", "referral", "notifier")
SCALED_OUT = ("referral", "notifier")
"""The services a scaled-out run starts twice; the second process of each is ``<service>-2``."""
HEARTBEAT_SECONDS = 5
"""Short, so a frozen broker or a stalled connection is noticed within seconds (the default is a minute)."""
REPORTER = "polres-bengkayang"
OPERATOR_TOKEN = "dev-ops-rujukan"
"""The demo directory's operate token (README, "Operating Rujukan")."""
ESCALATING = "dinsos-bengkayang"
"""Scaled out, this agency's deadlines are seconds long, so every referral to it escalates to the top level during
the run and both referral replicas' sweepers compete for the levels. Its unit above (dinsos-kalbar) is no agency
the streamed case reaches, so level 3's webhook there is told apart from a referral."""
QUICK_DEADLINES = Deadlines.model_validate(
    {"acknowledge": {"urgent": "10s", "normal": "10s"}, "escalate_every": {"urgent": "5s", "normal": "5s"}}
)


@dataclass(frozen=True)
class Arrival:
    channel: str
    agency_id: str
    notification_id: str
    kind: str
    referral_id: str
    case_code: str
    at: float


@dataclass
class Fault:
    name: str
    started: float
    ended: float = 0.0


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    reason: str | None


@dataclass
class Observations:
    """Everything the checker judges, gathered by one run."""

    accepted: dict[str, float] = field(default_factory=dict)
    """Case code -> when the reporter first heard 202 or the broker's confirm."""
    expected_agencies: frozenset[str] = frozenset()
    inbox_agencies: frozenset[str] = frozenset()
    webhooks: list[Arrival] = field(default_factory=list)
    desk_mails: list[Arrival] = field(default_factory=list)
    """Mails to an agency's desk: where a referral goes once the agency's webhook keeps failing."""
    inbox: list[Arrival] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    """What the dead-letter queues hold at the end."""
    expected_dead_letters: set[tuple[str, str]] = field(default_factory=set)
    """(dead-letter queue, message id) of each invalid message sent on purpose: it must end there."""
    replayed: int = 0
    """Dead letters operators put back (``rujukan ops dlq replay``) during the run."""
    malformed: int = 0
    """Invalid reports sent on purpose (over HTTP and AMQP); none of them is accepted."""
    misanswered: list[str] = field(default_factory=list)
    """Invalid reports posted over HTTP that got anything but a 4xx."""
    invalid_answers: Counter[int] = field(default_factory=Counter)
    """HTTP status -> invalid reports posted over HTTP that got it."""
    faults: list[Fault] = field(default_factory=list)
    refusals: int = 0
    """503s and dropped connections a reporter saw before trying again."""
    mails: int = 0
    texts: int = 0
    ledger_referrals: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(case code, agency) -> referrals the ledger holds for it."""
    ledger_escalations: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    """(referral id, deadline, level) -> the escalations the ledger's timeline records for it."""
    unescalated: int = 0
    """Referrals to an agency with quick deadlines that never reached the top escalation level."""


class RecordingSink(WebhookSink):
    """The webhook sink, also keeping when each signed delivery arrived. It can take ``delay`` seconds to answer
    (``delays`` per agency), so a kill can land while the notifier waits on it, and answer 503 to every request
    for an agency in ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[Arrival] = []
        self.delay = 0.0
        self.delays: dict[str, float] = {}
        self.down: set[str] = set()
        self.in_flight = 0

    async def _receive(self, request: web.Request) -> web.Response:
        agency_id = request.match_info["agency_id"]
        if agency_id in self.down:
            self.requests[agency_id] += 1
            return web.Response(status=503)
        self.in_flight += 1
        try:
            await asyncio.sleep(self.delays.get(agency_id, self.delay))
            response = await super()._receive(request)
        except ConnectionResetError:  # the notifier was killed while it waited
            return web.Response(status=499)
        finally:
            self.in_flight -= 1
        if response.status == 204:
            delivery = self.deliveries[-1]
            self.arrived.append(
                Arrival(
                    "webhook",
                    delivery.agency_id,
                    delivery.webhook_id,
                    kind_of(str(delivery.payload.get("type")), delivery.payload),
                    str(delivery.payload.get("referral_id")),
                    str(delivery.payload.get("case_code")),
                    time.monotonic(),
                )
            )
        return response


class TimedMails(list[Mail]):
    """The SMTP sink's mails, with when each arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, mail: Mail) -> None:
        self.times.append(time.monotonic())
        super().append(mail)


def kind_of(message_type: str, body: dict[str, Any]) -> str:
    """What a notification tells of: its type, and for an escalation the deadline and level (each level of a
    referral's escalation is a notification of its own)."""
    if body.get("level"):
        return f"{message_type} {body.get('deadline')} level {body['level']}"
    return message_type


CASE_CODE = re.compile(r"\b[A-Z]{2,4}-\d{2}-[0-9A-Z]{6}\b")


class Chaos:
    def __init__(self, workdir: Path, *, services: tuple[str, ...] = SERVICES, scale_out: bool = False) -> None:
        """``scale_out``: two processes each of referral and notifier, on PostgreSQL, and quick deadlines at
        ``ESCALATING``."""
        self.workdir = workdir
        self.scale_out = scale_out
        self.node_home = workdir / "node"
        self.data_dir = workdir / "data"
        self.node_home.mkdir(parents=True)
        self.data_dir.mkdir(parents=True)
        self.sink = RecordingSink()
        self.mails = TimedMails()
        self.smtp, self.gateway = SmtpSink(mails=self.mails), GatewaySink()
        self.directory: Directory = directory_for(self.sink)
        if scale_out:
            self.directory = _with_deadlines(self.directory, ESCALATING, QUICK_DEADLINES)
        self.sink.directory = self.directory
        self.observed = Observations(
            inbox_agencies=frozenset(agency.id for agency in self.directory.receiving_agencies() if agency.inbox)
        )
        self._desks = {str(agency.email): agency.id for agency in self.directory.agencies if agency.email}
        self._names = services
        self.services: dict[str, ServiceProcess] = {}
        self._stack = AsyncExitStack()
        self._reporting: set[asyncio.Task[None]] = set()
        self.node_port = 0
        self.patience = 90.0
        """Seconds without progress after which undelivered cases count as lost: longer than a notification
        held by a killed notifier waits for its lease to lapse."""
        self.proxy: TcpProxy | None = None
        self._amqp: aio_pika.abc.AbstractRobustConnection | None = None
        self._http = httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer dev-{REPORTER}"})

    @property
    def node_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.node_port}/"

    async def __aenter__(self) -> Chaos:
        self.node_port = self._stack.enter_context(throwaway_node(self.node_home, "chaos"))
        self.proxy = TcpProxy(self.node_port)
        await self.proxy.start()
        self._stack.push_async_callback(self.proxy.stop)
        for server in (self.sink, self.smtp, self.gateway):
            await server.start()
            self._stack.push_async_callback(server.stop)
        self._stack.push_async_callback(self._http.aclose)
        proxied = f"amqp://guest:guest@127.0.0.1:{self.proxy.port}/?heartbeat={HEARTBEAT_SECONDS}"
        databases: dict[str, str] = {}
        if self.scale_out:
            # Pushed before the services start, so the databases are dropped only once they stopped.
            made = await self._stack.enter_async_context(fresh_databases(("ledger", "notifier")))
            databases = {"database_url": made["ledger"], "notifier_database_url": made["notifier"]}
        # Retries come back within seconds, so a run's failed attempts are retried within the run.
        self.settings = with_sinks(
            settings_for(proxied, self.data_dir, retry_schedule=(1.0, 2.0, 4.0), **databases), self.smtp, self.gateway
        )
        await declare_topology(settings_for(self.node_url, self.data_dir), self.directory)
        for name in self._names:
            count = 2 if self.scale_out and name in SCALED_OUT else 1
            for process in replicas(name, count, self.settings, self.directory, self.data_dir):
                self.services[process.label] = process
                await process.start()
                self._stack.push_async_callback(process.stop)
        self._amqp = await aio_pika.connect_robust(self.node_url)
        self._stack.push_async_callback(self._amqp.close)
        await self._learn_expected_agencies()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._reporting:
            task.cancel()
        await self._stack.aclose()

    async def _learn_expected_agencies(self) -> None:
        """Every streamed case is the demo's three-victim case: the agencies its first copy reaches are the ones
        each copy must reach."""
        code = await self.report_http(a_case_report_body(victims=the_sample_victims()))
        deadline = time.monotonic() + 60
        while len({a.agency_id for a in self.sink.arrived if a.case_code == code}) < 3:
            assert time.monotonic() < deadline, "the first case was not delivered to its three agencies"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        self.observed.expected_agencies = frozenset(a.agency_id for a in self.sink.arrived if a.case_code == code)

    # Reporting -----------------------------------------------------------------------------------------------

    async def report_http(self, body: dict[str, Any], *, deadline: float = 120) -> str | None:
        """Posts until intake answers 202, as a reporter told "send the same report again" would."""
        give_up = time.monotonic() + deadline
        while time.monotonic() < give_up:
            try:
                response = await self._http.post(f"http://127.0.0.1:{self.settings.intake_port}/v1/cases", json=body)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 202:
                code = str(response.json()["case_code"])
                self.observed.accepted.setdefault(code, time.monotonic())
                return code
            assert response is None or response.status_code in {503, 409}, response.text
            self.observed.refusals += 1
            await asyncio.sleep(0.5)
        return None

    async def report_amqp(self, body: dict[str, Any], *, copies: int = 1, deadline: float = 120) -> str | None:
        """Publishes as a police system would, persistent and confirmed, again under the same message id until
        the broker confirms; ``copies`` > 1 sends that many confirmed copies with one message id."""
        message = _report_message(json.dumps(body).encode(), str(uuid.uuid4()))
        code = self.case_code(body)
        give_up = time.monotonic() + deadline
        confirmed = 0
        while confirmed < copies and time.monotonic() < give_up:
            try:
                await self._publish_once(message)
                confirmed += 1
                self.observed.accepted.setdefault(code, time.monotonic())
            except Exception:  # a police system retries on whatever kept its confirm away
                self.observed.refusals += 1
                await asyncio.sleep(0.5)
        return code if confirmed else None

    def case_code(self, body: dict[str, Any]) -> str:
        reported_at = datetime.fromisoformat(body["reported_at"]).astimezone(self.directory.timezone)
        case_id = case_id_for(body["reporting_agency"], body["police_report_number"])
        return case_code_for(case_id, prefix=self.directory.province.case_code_prefix, reported_at=reported_at)

    async def stream(
        self,
        count: int,
        *,
        rate: float,
        amqp_every: int = 4,
        copies: int = 1,
        http_copies: int = 1,
        malformed_every: int = 0,
        gates: Sequence[tuple[int, asyncio.Event]] = (),
    ) -> None:
        """``count`` cases at ``rate`` per second, one in ``amqp_every`` over AMQP and the rest over HTTP; each
        reporter goes on until its case is accepted, whatever the fault. With ``malformed_every``, one message in
        that many is an invalid report instead, of each kind in ``MALFORMED`` in turn. Each of ``gates``,
        ``(index, event)``, holds the case of that index and those after it until the event is set."""
        started = time.monotonic()
        for index in range(count):
            held = [event for at, event in gates if index >= at and not event.is_set()]
            if held:
                await asyncio.gather(*(event.wait() for event in held))
                started = time.monotonic() - index / rate  # on at the rate from here, not in a burst
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            body = a_case_report_body(victims=the_sample_victims())
            if malformed_every and index % malformed_every == malformed_every - 1:
                kind = MALFORMED[(index // malformed_every) % len(MALFORMED)]
                sending: Awaitable[object] = self.report_malformed(kind)
            elif index % amqp_every == amqp_every - 1:
                sending = self.report_amqp(body, copies=copies)
            else:
                sending = self._http_copies(body, http_copies)
            task = asyncio.create_task(_discard(sending))
            self._reporting.add(task)
            task.add_done_callback(self._reporting.discard)
        while self._reporting:
            await asyncio.gather(*list(self._reporting))

    async def _http_copies(self, body: dict[str, Any], copies: int) -> None:
        await asyncio.gather(*(self.report_http(body) for _ in range(copies)))

    async def accepted_at_least(self, count: int, *, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while len(self.observed.accepted) < count:
            assert time.monotonic() < deadline, f"only {len(self.observed.accepted)} of {count} cases accepted"
            await asyncio.sleep(0.05)

    # Faults ----------------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def fault(self, name: str) -> AsyncIterator[Fault]:
        fault = Fault(name, time.monotonic())
        self.observed.faults.append(fault)
        try:
            yield fault
        finally:
            fault.ended = time.monotonic()

    async def kill_service(self, name: str) -> None:
        """kill -9, then started again as a supervisor would."""
        async with self.fault(f"kill -9 {name}"):
            await self.services[name].kill()
            await self.services[name].start()

    async def kill_broker(self) -> None:
        """kill -9 of the node, started again on the same data directory."""
        async with self.fault("kill -9 broker"):
            await asyncio.to_thread(kill_node, self.node_home)
            await asyncio.to_thread(restart_node, self.node_home)

    async def freeze_broker(self, seconds: float) -> None:
        """SIGSTOP of the node for ``seconds``, then SIGCONT."""
        pid = int((self.node_home / "pid").read_text())
        async with self.fault(f"broker frozen {seconds:g} s"):
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(seconds)
            finally:
                os.kill(pid, signal.SIGCONT)

    async def cut_connections(self) -> None:
        assert self.proxy is not None
        async with self.fault("connections cut"):
            self.proxy.cut()

    async def rabbitmqctl(self, *args: str) -> None:
        environment = {**os.environ, **json.loads((self.node_home / "environment.json").read_text())}
        process = await asyncio.create_subprocess_exec(
            "/usr/lib/rabbitmq/bin/rabbitmqctl",
            "-n",
            environment["RABBITMQ_NODENAME"],
            *args,
            env=environment,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, error = await process.communicate()
        assert process.returncode == 0, error.decode()[-1000:]

    # Operators --------------------------------------------------------------------------------------------------

    async def replay_dead_letters(self, queue: str) -> int:
        """Every dead letter of ``queue`` put back as an operator would, with ``rujukan ops dlq list`` and
        ``rujukan ops dlq replay`` against the referral service's ops API (``tests.chaos.operator``); returns how
        many it replayed."""
        environment = {
            **self.services["referral"].environment,
            "RUJUKAN_OPS_URL": f"http://127.0.0.1:{self.settings.referral_port}",
            "RUJUKAN_OPS_TOKEN": OPERATOR_TOKEN,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.chaos.operator",
            queue,
            cwd=ROOT,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, error = await process.communicate()
        assert process.returncode == 0, error.decode()[-2000:]
        replayed = int(out.decode().split()[-1])
        self.observed.replayed += replayed
        return replayed

    async def dead_letter_depth(self, queue: str) -> int:
        client = await BrokerClient.connect(self.node_url)
        try:
            return await client.depth(dead_letter_queue_name(queue))
        finally:
            await client.close()

    # Invalid reports -------------------------------------------------------------------------------------------

    async def report_malformed(self, kind: str) -> None:
        """One invalid report (``MALFORMED`` names the kinds): over HTTP it must be answered 4xx, over AMQP it must
        end in intake's dead-letter queue with a reason; either way it is never accepted."""
        self.observed.malformed += 1
        channel, _, flaw = kind.partition(" ")
        body = a_case_report_body(victims=the_sample_victims())
        content = {
            "not JSON": json.dumps(body).encode()[:-40],
            "missing fields": json.dumps({key: body[key] for key in ("reporting_agency", "regency_code")}).encode(),
            # Valid but for its size: padding a report with whitespace keeps it valid JSON.
            "oversized": json.dumps(body).encode() + b" " * (self.settings.max_request_bytes + 1),
            "garbage": os.urandom(300),
        }[flaw]
        if channel == "http":
            await self._post_malformed(kind, content)
        else:
            message_id = str(uuid.uuid4())
            self.observed.expected_dead_letters.add((dead_letter_queue_name("intake.reports"), message_id))
            await self._publish(content, message_id)

    async def _post_malformed(self, kind: str, content: bytes) -> None:
        url = f"http://127.0.0.1:{self.settings.intake_port}/v1/cases"
        for _ in range(10):
            try:
                response = await self._http.post(url, content=content, headers={"content-type": "application/json"})
            except httpx.TransportError:
                await asyncio.sleep(0.5)  # intake is away, or closed the connection on a body it will not read
                continue
            if response.status_code == 503:
                await asyncio.sleep(0.5)  # a reporter is told to send it again; its answer is the next one
                continue
            self.observed.invalid_answers[response.status_code] += 1
            if not 400 <= response.status_code < 500:
                self.observed.misanswered.append(f"{kind}: {response.status_code}")
            return
        self.observed.misanswered.append(f"{kind}: never answered")

    async def _publish(self, content: bytes, message_id: str) -> None:
        message = _report_message(content, message_id)
        while True:
            try:
                await self._publish_once(message)
                return
            except Exception:  # sent again until confirmed, as a police system would
                await asyncio.sleep(0.5)

    async def _publish_once(self, message: aio_pika.Message) -> None:
        """One persistent, mandatory publish to ``rujukan.intake``, waiting for the broker's confirm."""
        assert self._amqp is not None
        channel = await asyncio.wait_for(self._amqp.channel(publisher_confirms=True), 5)
        async with channel:
            exchange = await channel.get_exchange("rujukan.intake", ensure=False)
            await asyncio.wait_for(exchange.publish(message, "case.report", mandatory=True), 5)

    # The end of a run ------------------------------------------------------------------------------------------

    def undelivered(self) -> int:
        reached: dict[str, set[str]] = {}
        for arrival in self.sink.arrived:
            reached.setdefault(arrival.case_code, set()).add(arrival.agency_id)
        for mail in self.mails:
            if code := CASE_CODE.search(mail.subject):
                reached.setdefault(code.group(), set()).update(self._desks.get(address, "") for address in mail.to)
        return sum(
            1 for code in self.observed.accepted if not self.observed.expected_agencies <= reached.get(code, set())
        )

    async def delivered_or_parked(self, queue: str) -> None:
        """Waits until every accepted case reached its agencies or waits in ``queue``'s dead-letter queue (one
        parked notification per case), or nothing moved for ``patience`` seconds."""
        last, moved = (-1, -1), time.monotonic()
        while time.monotonic() - moved < self.patience:
            now = (self.undelivered(), await self.dead_letter_depth(queue))
            if now[0] == now[1]:
                return
            if now != last:
                last, moved = now, time.monotonic()
            await asyncio.sleep(1)

    async def settle(self) -> Observations:
        """Waits until every accepted case reached its agencies or nothing moved for ``patience`` seconds (and,
        scaled out, every referral to ``ESCALATING`` reached the top escalation level), then reads the agency
        inboxes and dead-letter queues off the node and the referrals and escalations out of the ledger."""
        last, moved = self.undelivered(), time.monotonic()
        while last and time.monotonic() - moved < self.patience:
            await asyncio.sleep(0.5)
            if (now := self.undelivered()) != last:
                last, moved = now, time.monotonic()
        if self.scale_out:
            await self._escalated_to_the_top()
        await asyncio.sleep(2)  # a late resend of something already delivered still counts, if it is a duplicate
        self.observed.webhooks = list(self.sink.arrived)
        for mail, at in zip(self.mails, self.mails.times, strict=True):
            code = CASE_CODE.search(mail.subject)
            for address in mail.to:
                if address in self._desks and code:
                    kind = mail.subject[: code.start()]
                    self.observed.desk_mails.append(
                        Arrival("email", self._desks[address], mail.message_id, kind, "", code.group(), at)
                    )
        self.observed.mails, self.observed.texts = len(self.smtp.mails), len(self.gateway.texts)
        client = await BrokerClient.connect(self.node_url)
        try:
            for agency in sorted(self.observed.inbox_agencies):
                for message in await client.drain(f"agency.{agency}.inbox", at_least=0):
                    body = json.loads(message.body)
                    self.observed.inbox.append(
                        Arrival(
                            "inbox",
                            agency,
                            str(message.message_id),
                            kind_of(str(message.type), body),
                            str(body.get("referral_id")),
                            str(body.get("case_code")),
                            time.monotonic(),
                        )
                    )
            for spec in build_topology(self.directory, self.settings.retry_schedule).specs:
                if spec.dead_lettered:
                    name = dead_letter_queue_name(spec.queue.name)
                    for message in await client.drain(name, at_least=0):
                        reason = message.headers.get(REASON_HEADER)
                        self.observed.dead_letters.append(
                            DeadLetter(name, str(message.message_id), None if reason is None else str(reason))
                        )
        finally:
            await client.close()
        await self._read_ledger()
        return self.observed

    async def _escalated_to_the_top(self) -> None:
        last, moved = await self._below_top_level(), time.monotonic()
        while last and time.monotonic() - moved < self.patience:
            await asyncio.sleep(1)
            if (now := await self._below_top_level()) != last:
                last, moved = now, time.monotonic()

    async def _below_top_level(self) -> int:
        engine = make_engine(self.settings.database_url)
        try:
            async with engine.connect() as connection:
                below = select(func.count()).where(
                    referrals.c.agency_id == ESCALATING, referrals.c.escalation_level < TOP_LEVEL
                )
                return int((await connection.execute(below)).scalar_one())
        finally:
            await engine.dispose()

    async def _read_ledger(self) -> None:
        """Every referral of the ledger by (case, agency), and every escalation on its timeline by (referral,
        deadline, level): the checker wants one of each."""
        engine = make_engine(self.settings.database_url)
        try:
            async with engine.connect() as connection:
                legs = select(cases.c.case_code, referrals.c.agency_id, func.count()).join_from(
                    referrals, cases, referrals.c.case_id == cases.c.case_id
                )
                for code, agency, count in await connection.execute(
                    legs.group_by(cases.c.case_code, referrals.c.agency_id)
                ):
                    self.observed.ledger_referrals[(code, agency)] = int(count)
                escalated = select(timeline.c.referral_id, timeline.c.detail).where(timeline.c.event == "escalated")
                for referral_id, detail in await connection.execute(escalated):
                    key = (str(referral_id), str(detail.get("deadline")), int(detail.get("level", 0)))
                    self.observed.ledger_escalations[key] += 1
        finally:
            await engine.dispose()
        if self.scale_out:
            self.observed.unescalated = await self._below_top_level()


MALFORMED = ("http not JSON", "amqp garbage", "http missing fields", "amqp missing fields", "http oversized",
             "amqp oversized")  # fmt: skip
"""The invalid reports a stream mixes in, in turn."""


def _report_message(content: bytes, message_id: str) -> aio_pika.Message:
    return aio_pika.Message(
        content,
        message_id=message_id,
        type="case.report.v1",
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _with_deadlines(directory: Directory, agency_id: str, deadlines: Deadlines) -> Directory:
    agencies = tuple(
        agency.model_copy(update={"deadlines": deadlines}) if agency.id == agency_id else agency
        for agency in directory.agencies
    )
    return directory.model_copy(update={"agencies": agencies})


async def _discard(awaitable: Awaitable[object]) -> None:
    with suppress(asyncio.CancelledError):
        await awaitable


Scenario = Callable[[Chaos, int], Awaitable[None]]
