"""``rujukan demo``: a sample case flows through all three services, and agencies acknowledge it.

It plays every outside party itself: the police unit (POST /v1/cases), each agency's webhook endpoint
(verifying signatures), the SMS/WhatsApp gateway and the mail server the duty officers are reached through,
and the people who acknowledge: Dinas Sosial's system through the referral API, UPTD PPA's duty officer by
tapping the one-click link in the text message, and BP3MI's by texting back ``TERIMA <code>``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import re
import socket
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks.webhooks import Webhook

from shared.directory import Directory, load_directory
from shared.sealing import load_sealer
from shared.service import Running, ServiceStartError
from shared.settings import Settings

REPORTER = "polres-bengkayang"
BY_API = {"dinsos-bengkayang": "Rina (Dinas Sosial)"}
"""Agencies whose own system acknowledges through the API; the others' duty officers do it from their phone."""
BY_LINK = "uptd-ppa-kalbar"
BY_SMS_REPLY = "bp3mi-kalbar"
GATEWAY_TOKEN = "demo-gateway"  # noqa: S105 - the demo plays the gateway itself
_LINK = re.compile(r"https?://\S+/o/\S+")
_CODE = re.compile(r"TERIMA ([0-9]+)")
_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")


def sample_report(now: datetime) -> dict[str, Any]:
    """A 15-year-old girl, a 24-year-old woman returned from Malaysia, a 30-year-old man about to leave."""
    number = f"LP/B/{random.randint(1000, 99999)}/{_ROMAN[now.month - 1]}/{now:%Y}/SPKT/POLRES BENGKAYANG"  # noqa: S311
    return {
        "police_report_number": number,
        "reporting_agency": REPORTER,
        "regency_code": "61.07",
        "reported_at": now.isoformat(),
        "exploitation_types": ["forced_labour", "sexual_exploitation"],
        "summary": "Korban direkrut dengan janji pekerjaan di Kuching; diamankan di PLBN Jagoi Babang.",
        "victims": [
            {"victim_ref": "V1", "full_name": "Contoh Anak", "sex": "female", "age_years": 15,
             "migrant_worker_status": "none", "needs": ["shelter", "psychosocial"]},
            {"victim_ref": "V2", "full_name": "Contoh Perempuan", "sex": "female", "age_years": 24,
             "migrant_worker_status": "returned", "destination_country": "MY",
             "needs": ["medical", "psychosocial", "reintegration"]},
            {"victim_ref": "V3", "full_name": "Contoh Laki-laki", "sex": "male", "age_years": 30,
             "migrant_worker_status": "prospective", "destination_country": "MY", "needs": ["legal_aid"]},
        ],
    }  # fmt: skip


class AgencyDesks:
    """Every agency's webhook endpoint; a verified notification is acknowledged by that agency's officer."""

    def __init__(self, directory: Directory, referral_url: str, session: aiohttp.ClientSession) -> None:
        self._directory = directory
        self._referral_url = referral_url
        self._session = session
        self.seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhooks/{agency_id}", self._receive)
        app.router.add_post("/gateway/messages", self._text)
        return app

    async def _text(self, request: web.Request) -> web.Response:
        """The SMS/WhatsApp gateway: shows each text as the officer's phone would."""
        body = await request.json()
        if request.headers["Idempotency-Key"] not in self.seen:
            self.seen.add(request.headers["Idempotency-Key"])
            found = self._directory.officer_by_phone(body["to"])
            who = f"{found[0].id}/{found[1].id}" if found else body["to"]
            print(f"  [{who}] {body['channel'].upper()}: {body['text']}")
            agency_id = found[0].id if found else ""
            if agency_id == BY_LINK and (link := _LINK.search(body["text"])):
                self._later(self._tap(link[0]))
            elif agency_id == BY_SMS_REPLY and (code := _CODE.search(body["text"])):
                self._later(self._reply(body["to"], f"TERIMA {code[1]}"))
        return web.json_response({"id": body["id"], "status": "queued"}, status=202)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tap(self, link: str) -> None:
        """The officer opens the link on their phone and taps the acknowledge button."""
        await asyncio.sleep(0.5)
        async with self._session.get(link) as page:
            page.raise_for_status()
        async with self._session.post(f"{link}/acknowledge", allow_redirects=False) as response:
            assert response.status == 303, response.status

    async def _reply(self, phone: str, text: str) -> None:
        """The officer texts back; the gateway forwards the reply to the referral service."""
        await asyncio.sleep(0.5)
        async with self._session.post(
            f"{self._referral_url}/v1/inbound/sms",
            json={"from": phone, "text": text},
            headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"},
        ) as response:
            response.raise_for_status()
            answer = await response.json()
        print(f"  [gateway] {phone} texted {text!r}; reply sent back: {answer['reply']}")

    async def _receive(self, request: web.Request) -> web.Response:
        agency = self._directory.agency(request.match_info["agency_id"])
        if agency is None or agency.webhook is None:
            return web.Response(status=404)
        body = await request.text()
        try:
            payload = Webhook(agency.webhook.secret).verify(body, dict(request.headers))
        except Exception:  # any verification failure is a refused notification
            return web.Response(status=401)
        if request.headers["webhook-id"] not in self.seen:
            self.seen.add(request.headers["webhook-id"])
            print(f"  [{agency.id}] notifikasi: {payload['text']}")
            if agency.id in BY_API and payload["type"] == "referral.issued":
                self._later(self._acknowledge(agency.id, payload["referral_id"]))
        return web.Response(status=204)

    async def _acknowledge(self, agency_id: str, referral_id: str) -> None:
        await asyncio.sleep(0.5)  # a person reads the notification first
        async with self._session.post(
            f"{self._referral_url}/v1/referrals/{referral_id}/acknowledge",
            json={"officer": BY_API[agency_id]},
            headers={"Authorization": f"Bearer dev-{agency_id}"},
        ) as response:
            response.raise_for_status()


class Mailroom:
    """The mail server officers' email goes through: shows each mail's recipient and subject."""

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        print(f"  [{', '.join(envelope.rcpt_tos)}] EMAIL: {str(message['Subject']).strip()}")
        return "250 OK"


def _describe(entry: dict[str, Any], agencies: dict[str, str]) -> str:
    detail = entry["detail"]
    agency = agencies.get(entry["referral_id"] or "", "")
    match entry["event"]:
        case "case_reported":
            return f"case reported by {entry['actor']}: {detail['victim_count']} victims in {detail['regency_code']}"
        case "referral_issued":
            return (f"referral issued to {detail['agency_id']} ({detail['priority']}) for "
                    f"{', '.join(detail['victim_refs'])} because {', '.join(detail['rules'])}")  # fmt: skip
        case "delivered":
            recipient = detail.get("recipient", "agency")
            to = agency if recipient == "agency" else f"{agency} ({recipient})"
            return f"delivered to {to} by {detail['channel']} after {detail['attempts']} attempt(s)"
        case "acknowledged":
            return f"acknowledged by {agency}: {detail['officer']} via {detail['via']}"
        case "identity_read":
            return f"{entry['actor']} read the identity of {', '.join(detail['victim_refs'])}"
        case other:
            return f"{other} {agency}"


async def run_demo(settings: Settings, *, timeout: float) -> int:
    from services.cli import build_services

    service_ports = (settings.intake_port, settings.referral_port, settings.notifier_port)
    if taken := _taken_ports(settings.http_host, service_ports):
        raise ServiceStartError(
            f"{'port' if len(taken) == 1 else 'ports'} {', '.join(map(str, taken))} already in use on "
            f"{settings.http_host}: is `rujukan run` or another "
            "demo running? Stop it, or give the demo other ports (RUJUKAN_INTAKE_PORT, _REFERRAL_PORT, "
            "_NOTIFIER_PORT)"
        )
    referral_url = f"http://{settings.http_host}:{settings.referral_port}"
    # The demo's officers tap their links on this machine, wherever the referral service was told to listen.
    settings = settings.model_copy(update={"inbound_gateway_token": GATEWAY_TOKEN, "public_referral_url": referral_url})
    directory = load_directory(settings.config)
    sealer = load_sealer(settings)
    webhook_urls = {urlsplit(str(a.webhook.url)) for a in directory.receiving_agencies() if a.webhook}
    ports = {url.port for url in webhook_urls if url.hostname in ("127.0.0.1", "localhost") and url.port}
    running = Running(
        build_services(("intake", "referral", "notifier"), settings, directory, sealer), settings.http_host
    )
    async with aiohttp.ClientSession() as session:
        desks = AgencyDesks(directory, referral_url, session)
        runner = web.AppRunner(desks.app())
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await _open_gateway(runner, settings, ports)
        mailroom = await _open_mailroom(settings)
        ports_text = ", ".join(map(str, service_ports))
        print(
            f"Rujukan demo: services on {ports_text}; webhooks on {sorted(ports)}; SMS gateway "
            f"{settings.sms_gateway_url}; mail on {settings.smtp_port}; broker {settings.amqp_url.host}"
        )
        try:
            await running.start()
            return await _send_and_follow(session, settings, referral_url, timeout)
        finally:
            await running.stop()
            await runner.cleanup()
            if mailroom is not None:
                mailroom.close()
                await mailroom.wait_closed()


def _taken_ports(host: str, ports: Sequence[int]) -> list[int]:
    """The ports something already listens on. Checked before the services start, which would each log the error
    and leave the demo to say which ports and why."""
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            # As uvicorn binds: a port left in TIME_WAIT by a demo that just ended is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                taken.append(port)
    return taken


async def _open_gateway(runner: web.AppRunner, settings: Settings, webhook_ports: set[int]) -> None:
    """The desks' server answers the gateway's API too; on its own port when the gateway's is another. If that
    port is taken the demo goes on, and officers' texts wait for their retries."""
    gateway = urlsplit(settings.sms_gateway_url)
    if gateway.hostname not in ("127.0.0.1", "localhost") or not gateway.port or gateway.port in webhook_ports:
        return
    try:
        await web.TCPSite(runner, "127.0.0.1", gateway.port).start()
    except OSError as exc:
        print(f"(no demo SMS gateway: port {gateway.port} is taken: {exc.strerror})")


async def _open_mailroom(settings: Settings) -> asyncio.Server | None:
    """The demo's SMTP server; if its port is taken the demo goes on, and officers' mail waits for retries."""
    try:
        return await asyncio.get_running_loop().create_server(
            lambda: SMTP(Mailroom(), hostname="localhost"), settings.smtp_host, settings.smtp_port
        )
    except OSError as exc:
        print(f"(no demo mail server: port {settings.smtp_port} is taken: {exc.strerror})")
        return None


async def _send_and_follow(
    session: aiohttp.ClientSession, settings: Settings, referral_url: str, timeout: float
) -> int:
    report = sample_report(datetime.now(UTC).astimezone())
    auth = {"Authorization": f"Bearer dev-{REPORTER}"}
    intake_url = f"http://{settings.http_host}:{settings.intake_port}/v1/cases"
    async with session.post(intake_url, json=report, headers=auth) as response:
        answer = await response.json()
        if response.status != 202:
            print(f"intake refused the sample case: HTTP {response.status} {answer}")
            return 1
    print(f"\n{REPORTER} reported {report['police_report_number']}")
    print(f"intake answered 202: case {answer['case_code']} ({answer['case_id']})\n\nTimeline:")
    printed = 0
    deadline = asyncio.get_running_loop().time() + timeout
    case: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        async with session.get(f"{referral_url}/v1/cases/{answer['case_id']}", headers=auth) as response:
            if response.status == 200:
                case = await response.json()
        agencies = {r["referral_id"]: r["agency_id"] for r in case.get("referrals", [])}
        for entry in case.get("timeline", [])[printed:]:
            at = datetime.fromisoformat(entry["at"]).astimezone()
            print(f"  {at:%H:%M:%S.%f}"[:-3] + f"  {_describe(entry, agencies)}")
        printed = len(case.get("timeline", []))
        events = [e["event"] for e in case.get("timeline", [])]
        legs = case.get("referrals", [])
        if legs and case["status"]["fully_acknowledged"] and events.count("delivered") >= len(legs):
            print(f"\nAll {len(legs)} referrals delivered and acknowledged:")
            for leg in legs:
                victims = ", ".join(leg["victim_refs"])
                print(f"  {leg['agency_id']:<20} {leg['status']:<13} {leg['priority']:<7} victims {victims}")
            return 0
        await asyncio.sleep(0.2)
    print(f"\nNot every referral was acknowledged within {timeout:.0f} s; is RabbitMQ running at {settings.amqp_url}?")
    return 1
