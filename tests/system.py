"""The three services running in-process against a real broker vhost, and what they talk to: the agencies'
webhook endpoints, an SMTP server and an SMS/WhatsApp gateway, each recording what arrived."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import random
import re
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import HttpUrl
from standardwebhooks.webhooks import Webhook

from services.cli import build_services
from shared.broker import make_broker
from shared.clock import utcnow
from shared.contracts.cases import IDENTITY_FIELDS
from shared.directory import Directory, load_directory
from shared.sealing import load_sealer
from shared.service import Running
from shared.settings import Settings
from shared.topology import build_topology
from tests.builders import a_victim, the_sample_victims

CONFIG = Path(__file__).resolve().parent.parent / "config" / "kalbar.yaml"


ROOT = CONFIG.parent.parent


_handed_out: set[int] = set()


def _worker_ports() -> range:
    """This test process's own slice of 20000-31999 (pytest-xdist names its workers gw0, gw1, …): two workers never
    hand out the same port, which the check below cannot see while the other worker's server has not bound it yet."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")
    index, width = (int(worker), 12000 // int(workers)) if worker.isdigit() and workers.isdigit() else (0, 12000)
    return range(20000 + index * width, 20000 + (index + 1) * width)


def free_port() -> int:
    """A port below Linux's ephemeral range (32768+), so no outgoing connection can take it between this
    check and the server's bind; never the same one twice in a test run, nor one another worker hands out."""
    ports = _worker_ports()
    while True:
        port = random.choice(ports)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


async def serve_post(
    route: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], port: int
) -> web.AppRunner:
    """A local HTTP endpoint answering POSTs to ``route``, as an agency's webhook or a gateway would."""
    app = web.Application()
    app.router.add_post(route, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@dataclass
class Delivery:
    agency_id: str
    webhook_id: str
    payload: dict[str, Any]
    body: str


@dataclass
class WebhookSink:
    """Every agency's webhook endpoint: verifies Standard Webhooks signatures and records what arrived."""

    directory: Directory | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[int]] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    arrivals: dict[str, list[float]] | None = None
    """When a dict: monotonic arrival times of first deliveries, by case code (for the benchmark)."""
    _runner: web.AppRunner | None = None
    _ids: set[str] = field(default_factory=set)
    # Its own generator, not the random module's: hypothesis, drawing in another thread while the sink answers
    # (tests/fuzz), takes a change to the module's state for randomness inside its strategies.
    _chance: random.Random = field(default_factory=random.Random)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    failure_rate: float = 0.0
    """The share of requests, past any ``fail_next``, that answer 503 at random."""

    def fail_next(self, agency_id: str, *statuses: int) -> None:
        """The agency's next requests answer these statuses, in order, then it recovers."""
        self.failures.setdefault(agency_id, []).extend(statuses)

    async def start(self) -> None:
        self._runner = await serve_post("/webhooks/{agency_id}", self._receive, self.port)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        agency_id = request.match_info["agency_id"]
        self.requests[agency_id] += 1
        if self.failures.get(agency_id):
            return web.Response(status=self.failures[agency_id].pop(0))
        if self._chance.random() < self.failure_rate:
            return web.Response(status=503)
        assert self.directory is not None
        agency = self.directory.agency(agency_id)
        assert agency is not None
        assert agency.webhook is not None
        body = await request.text()
        try:
            payload = Webhook(agency.webhook.secret).verify(body, dict(request.headers))
        except Exception:  # the test then sees a 401 and no delivery
            return web.Response(status=401)
        if self.arrivals is not None and request.headers["webhook-id"] not in self._ids:
            self.arrivals.setdefault(payload["case_code"], []).append(time.monotonic())
        self._ids.add(request.headers["webhook-id"])
        self.deliveries.append(Delivery(agency_id, request.headers["webhook-id"], payload, body))
        return web.Response(status=204)

    def distinct_ids(self, agency_id: str | None = None) -> set[str]:
        if agency_id is None:
            return self._ids
        return {d.webhook_id for d in self.deliveries if d.agency_id == agency_id}

    def bodies(self) -> Iterator[str]:
        return (delivery.body for delivery in self.deliveries)


class Identities:
    """Victim identity a test sent in (every case report through ``System.http``) and the builders' names: none
    of it may ever reach a webhook, an email or a text message."""

    def __init__(self) -> None:
        self.names = {a_victim()["full_name"], *(victim["full_name"] for victim in the_sample_victims())}
        self.other = set[str]()

    def note(self, body: Any) -> None:
        for victim in body.get("victims", []) if isinstance(body, dict) else []:
            if isinstance(victim, dict):
                self.names.add(str(victim.get("full_name", "")))
                self.other |= {str(victim[f]) for f in IDENTITY_FIELDS - {"full_name"} if victim.get(f)}

    def leaks(self, texts: Iterable[str]) -> list[str]:
        # A name is looked for whole and by each part (a message might say "Siti"), other identity whole, each
        # as a word of its own outside links (a signed token is random letters and may spell anything).
        forbidden = {part for name in self.names for part in (name, *name.split()) if len(part) >= 4} | self.other
        patterns = {value: re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE) for value in forbidden}
        prose = [re.sub(r"https?://\S+", " ", text) for text in texts]
        return [value for text in prose for value, pattern in patterns.items() if pattern.search(text)]


@dataclass
class Mail:
    to: tuple[str, ...]
    subject: str
    body: str
    message_id: str


class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if code := self._sink.refusals.get(address):
            return f"{code} mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        self._sink.mails.append(
            Mail(
                tuple(envelope.rcpt_tos),
                # A long subject is folded right after "Subject:"; the fold's whitespace is no part of it.
                str(message["Subject"]).strip(),
                body.get_content(),
                str(message["Message-ID"]),
            )
        )
        return "250 OK"


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) that keeps every mail, or refuses the addresses it is told to."""

    port: int = field(default_factory=free_port)
    mails: list[Mail] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    def refuse(self, address: str, code: int = 550) -> None:
        self.refusals[address] = code

    def to(self, address: str) -> list[Mail]:
        return [mail for mail in self.mails if address in mail.to]

    async def start(self) -> None:
        handler = _SmtpHandler(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(handler, hostname="localhost"), "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    def bodies(self) -> Iterator[str]:
        return (f"{mail.subject}\n{mail.body}" for mail in self.mails)


@dataclass
class Text:
    channel: str
    to: str
    text: str
    id: str
    idempotency_key: str
    authorization: str | None


@dataclass
class GatewaySink:
    """The SMS/WhatsApp gateway's HTTP API: records every message it accepts, or answers what it is told to."""

    port: int = field(default_factory=free_port)
    texts: list[Text] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/gateway/messages"

    def fail_next(self, phone: str, *statuses: int) -> None:
        """The next requests for this number answer these statuses, in order, then it recovers."""
        self.failures.setdefault(phone, []).extend(statuses)

    def answer_late(self, phone: str, seconds: float) -> None:
        """The next request for this number is answered (and its text accepted) only after ``seconds``."""
        self.delays[phone] = seconds

    def to(self, phone: str) -> list[Text]:
        return [text for text in self.texts if text.to == phone]

    async def start(self) -> None:
        self._runner = await serve_post("/gateway/messages", self._receive, self.port)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests[body["to"]] += 1
        if delay := self.delays.pop(body["to"], 0.0):
            await asyncio.sleep(delay)
        if self.failures.get(body["to"]):
            return web.Response(status=self.failures[body["to"]].pop(0))
        self.texts.append(
            Text(
                body["channel"],
                body["to"],
                body["text"],
                body["id"],
                request.headers["Idempotency-Key"],
                request.headers.get("Authorization"),
            )
        )
        return web.json_response({"id": body["id"], "status": "queued"}, status=202)

    def bodies(self) -> Iterator[str]:
        return (text.text for text in self.texts)


def with_sinks(settings: Settings, smtp: SmtpSink, gateway: GatewaySink) -> Settings:
    return settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "sms_gateway_url": gateway.url}
    )


def directory_for(sink: WebhookSink) -> Directory:
    """The shipped Kalimantan Barat directory with every webhook pointed at the test's sink."""
    directory = load_directory(CONFIG)
    agencies = tuple(
        agency.model_copy(
            update={"webhook": agency.webhook.model_copy(update={"url": HttpUrl(f"{sink.url}/webhooks/{agency.id}")})}
        )
        if agency.webhook
        else agency
        for agency in directory.agencies
    )
    return directory.model_copy(update={"agencies": agencies})


def settings_for(amqp_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": f"sqlite+aiosqlite:///{data_dir}/rujukan.db",
        "intake_database_url": f"sqlite+aiosqlite:///{data_dir}/intake.db",
        "notifier_database_url": f"sqlite+aiosqlite:///{data_dir}/notifier.db",
        "data_dir": data_dir,
        "intake_port": free_port(),
        "referral_port": free_port(),
        "notifier_port": free_port(),
        "retry_schedule": (1.0, 2.0),
        "outbox_poll_seconds": 0.2,
        "webhook_attempts": 3,
        "log_level": "WARNING",
        "publish_timeout_seconds": 3.0,
    }
    values.update(overrides)
    values["public_referral_url"] = f"http://127.0.0.1:{values['referral_port']}"
    return Settings(**values)


async def declare_topology(settings: Settings, directory: Directory) -> None:
    """The whole topology, as ``rujukan broker setup`` declares it: services declare only their own part, and a
    test may run some of them (on guest, where nobody ran the setup)."""
    broker = make_broker(settings, app_id="test-topology")
    await broker.connect()
    try:
        await build_topology(directory, settings.retry_schedule).declare(broker)
    finally:
        await broker.stop()


class System:
    """The services as an agency would see them: over HTTP, with bearer tokens. Officers' email and text
    messages go to its own SMTP and gateway sinks; once stopped, it fails the test if any victim identity it
    was sent reached a webhook, an email or a text."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        sink: WebhookSink,
        names: tuple[str, ...],
        *,
        smtp: SmtpSink | None = None,
        gateway: GatewaySink | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.smtp = smtp or SmtpSink()
        self.gateway = gateway or GatewaySink()
        self.settings = with_sinks(settings, self.smtp, self.gateway)
        self.directory = directory
        self.sink = sink
        self.identities = Identities()
        self._running = Running(
            build_services(names, self.settings, directory, load_sealer(self.settings), clock=clock), "127.0.0.1"
        )
        self.http = httpx.AsyncClient(timeout=15, event_hooks={"request": [self._note_identity]})

    async def _note_identity(self, request: httpx.Request) -> None:
        if request.headers.get("content-type") == "application/json":
            self.identities.note(json.loads(request.content))

    async def start(self) -> None:
        await self.smtp.start()
        await self.gateway.start()
        if not (self.settings.require_user_id or self.settings.broker_secrets_file):
            await declare_topology(self.settings, self.directory)
        await self._running.start()

    async def stop(self) -> None:
        await self._running.stop()
        await self.http.aclose()
        await self.smtp.stop()
        await self.gateway.stop()
        leaks = self.identities.leaks([*self.sink.bodies(), *self.smtp.bodies(), *self.gateway.bodies()])
        assert not leaks, f"victim identity reached a notification: {sorted(set(leaks))}"

    def url(self, service: str, path: str) -> str:
        port = {"intake": self.settings.intake_port, "referral": self.settings.referral_port}[service]
        return f"http://127.0.0.1:{port}{path}"

    @staticmethod
    def token(agency_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer dev-{agency_id}"}

    async def report(self, body: dict[str, Any], *, agency_id: str | None = None) -> httpx.Response:
        agency = agency_id or body["reporting_agency"]
        return await self.http.post(self.url("intake", "/v1/cases"), json=body, headers=self.token(agency))

    async def case(self, case_id: str, *, agency_id: str = "polres-bengkayang") -> httpx.Response:
        return await self.http.get(self.url("referral", f"/v1/cases/{case_id}"), headers=self.token(agency_id))

    async def acknowledge(self, referral_id: str, agency_id: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            self.url("referral", f"/v1/referrals/{referral_id}/acknowledge"),
            json=body or None,
            headers=self.token(agency_id),
        )

    async def case_when(
        self,
        case_id: str,
        done: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 15,
        agency_id: str = "polres-bengkayang",
    ) -> dict[str, Any]:
        """The case as soon as ``done(case)`` holds; fails after ``timeout`` seconds with the last state seen."""
        last: dict[str, Any] = {}
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            response = await self.case(case_id, agency_id=agency_id)
            if response.status_code == 200:
                last = response.json()
                if done(last):
                    return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"case {case_id} did not reach the expected state in {timeout} s: {last}")


def delivered_everywhere(case: dict[str, Any]) -> bool:
    """Every leg reached its agency's system; officers' texts and mails may still be on their way."""
    legs = {leg["referral_id"] for leg in case["referrals"]}
    return bool(legs) and legs <= {e["referral_id"] for e in agency_deliveries(case)}


def agency_deliveries(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The timeline's deliveries to agency systems (not to officers, nor escalations)."""
    return [e for e in case["timeline"] if e["event"] == "delivered" and e["detail"]["recipient"] == "agency"]


async def eventually(check: Callable[[], Awaitable[bool] | bool], *, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        await asyncio.sleep(0.1)


class ServiceProcess:
    """One service as its own OS process (``rujukan <name>``), so it can be killed with SIGKILL."""

    def __init__(
        self, name: str, settings: Settings, directory: Directory, data_dir: Path, *, label: str | None = None
    ) -> None:
        """``label`` names a replica (its log file) when two processes run the same service."""
        self.name = name
        self.label = label or name
        self._port = getattr(settings, f"{name}_port")
        self._log = data_dir / f"{self.label}.log"
        config = data_dir / "directory.yaml"
        config.write_text(yaml.safe_dump(directory.model_dump(mode="json")))
        self._env = {
            **os.environ,
            "RUJUKAN_AMQP_URL": str(settings.amqp_url),
            "RUJUKAN_DATABASE_URL": settings.database_url,
            "RUJUKAN_INTAKE_DATABASE_URL": settings.intake_database_url,
            "RUJUKAN_NOTIFIER_DATABASE_URL": settings.notifier_database_url,
            "RUJUKAN_SMTP_PORT": str(settings.smtp_port),
            "RUJUKAN_SMS_GATEWAY_URL": settings.sms_gateway_url,
            "RUJUKAN_DATA_DIR": str(settings.data_dir),
            "RUJUKAN_CONFIG": str(config),
            f"RUJUKAN_{name.upper()}_PORT": str(self._port),
            "RUJUKAN_PUBLIC_REFERRAL_URL": settings.public_referral_url,
            "RUJUKAN_RETRY_SCHEDULE": ",".join(f"{int(step * 1000)}ms" for step in settings.retry_schedule),
            "RUJUKAN_OUTBOX_POLL_SECONDS": str(settings.outbox_poll_seconds),
            "RUJUKAN_LOG_LEVEL": "WARNING",
        }
        self.process: asyncio.subprocess.Process | None = None

    @property
    def environment(self) -> dict[str, str]:
        """The environment the service runs with, for a command run beside it (``rujukan ops``)."""
        return dict(self._env)

    async def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli", self.name, cwd=ROOT, env=self._env, stdout=log, stderr=log
            )
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"http://127.0.0.1:{self._port}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert self.process.returncode is None, self._log.read_text()[-2000:]
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready: {self._log.read_text()[-2000:]}")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(self.process.wait()), timeout=30)
            except TimeoutError:
                # Where it waits, from the service itself (shared.service.log_tasks), before it is killed.
                self.process.send_signal(signal.SIGUSR1)
                await asyncio.sleep(2)
                self.process.kill()
                await self.process.wait()
                dumps = [line for line in self._log.read_text().splitlines() if "tasks_dumped" in line]
                raise AssertionError(f"{self.name} did not stop within 30 s of SIGTERM; its tasks: {dumps}") from None


def replicas(name: str, count: int, settings: Settings, directory: Directory, data_dir: Path) -> list[ServiceProcess]:
    """``count`` processes of one service, labelled ``name``, ``name-2``, …: each replica after the first on an
    HTTP port of its own, everything else shared."""
    return [
        ServiceProcess(
            name,
            settings if replica == 1 else settings.model_copy(update={f"{name}_port": free_port()}),
            directory,
            data_dir,
            label=name if replica == 1 else f"{name}-{replica}",
        )
        for replica in range(1, count + 1)
    ]
