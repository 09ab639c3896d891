"""Who may call what, against the running services: every endpoint for every role (401, 403 or its 2xx), a token
rotated without downtime, and failed authentication throttled per client address and logged without the token."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from shared.clock import utcnow
from shared.directory import Directory
from shared.tokens import ApiToken, Scope
from tests.builders import a_case_report_body, the_sample_victims
from tests.system import System, WebhookSink, directory_for, settings_for

pytestmark = pytest.mark.rabbit

POLICE_A = "polres-bengkayang"
THIS_MONTH = f"{utcnow():%Y-%m}"
NO_LETTER = "00000000-0000-0000-0000-000000000000"
EXPIRED = "expired-token-of-polres-bengkayang"


def with_tokens(directory: Directory, agency_id: str, *tokens: ApiToken) -> Directory:
    """The directory with ``tokens`` in place of the agency's own."""
    agencies = tuple(
        agency.model_copy(update={"api_tokens": tokens}) if agency.id == agency_id else agency
        for agency in directory.agencies
    )
    return directory.model_copy(update={"agencies": agencies})


def a_token(token: str, scope: Scope, **fields: Any) -> ApiToken:
    return ApiToken(sha256=hashlib.sha256(token.encode()).hexdigest(), scopes=(scope,), **fields)


async def running(amqp_url: str, sink: WebhookSink, tmp_path: Path, directory: Directory, *names: str) -> System:
    sink.directory = directory
    system = System(settings_for(amqp_url, tmp_path), directory, sink, names)
    await system.start()
    return system


async def from_address(address: str, method: str, url: str, token: str | None, body: Any = None) -> httpx.Response:
    """A request from its own loopback address, so the failures of one row never throttle another."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=15) as client:
        return await client.request(method, url, json=body, headers=headers)


@dataclass(frozen=True)
class Case:
    case_id: str
    report: dict[str, Any]
    legs: dict[str, str]
    """Referral id by receiving agency."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    service: str
    method: str
    path: Callable[[Case], str]
    allowed: str
    """The one role that succeeds."""
    success: int = 200
    body: Callable[[Case], Any] = lambda _: None
    leg: str = "dinsos-bengkayang"
    """The receiving agency the endpoint is about: the "receiver" role."""
    other: str = "uptd-ppa-kalbar"
    """Another receiving agency on the same case: the "other receiver" role."""


def referral(leg: str, action: str = "") -> Callable[[Case], str]:
    return lambda case: f"/v1/referrals/{case.legs[leg]}{action}"


# In order: each endpoint's own role succeeds last, so the referral is in the state the next one needs.
ENDPOINTS = [
    Endpoint("report", "intake", "POST", lambda _: "/v1/cases", "police A", 202,
             body=lambda _: a_case_report_body(reporting_agency=POLICE_A)),
    Endpoint("amend", "intake", "POST", lambda c: f"/v1/cases/{c.case_id}/amend", "police A", 202,
             body=lambda c: c.report),
    Endpoint("read case", "referral", "GET", lambda c: f"/v1/cases/{c.case_id}", "police A"),
    Endpoint("read referral", "referral", "GET", referral("dinsos-bengkayang"), "receiver"),
    Endpoint("acknowledge", "referral", "POST", referral("dinsos-bengkayang", "/acknowledge"), "receiver"),
    Endpoint("accept", "referral", "POST", referral("dinsos-bengkayang", "/accept"), "receiver"),
    Endpoint("start", "referral", "POST", referral("dinsos-bengkayang", "/start"), "receiver"),
    Endpoint("hold", "referral", "POST", referral("dinsos-bengkayang", "/hold"), "receiver",
             body=lambda _: {"reason": "ditahan untuk penyidikan"}),
    Endpoint("resume", "referral", "POST", referral("dinsos-bengkayang", "/resume"), "receiver"),
    Endpoint("complete", "referral", "POST", referral("dinsos-bengkayang", "/complete"), "receiver",
             body=lambda _: {"outcome": "successful"}),
    Endpoint("decline", "referral", "POST", referral("uptd-ppa-kalbar", "/decline"), "receiver",
             body=lambda _: {"reason": "no_capacity"}, leg="uptd-ppa-kalbar", other="dinsos-bengkayang"),
    Endpoint("refer onward", "referral", "POST", referral("bp3mi-kalbar", "/refer-onward"), "receiver",
             body=lambda _: {"agency_id": "dinsos-kalbar"}, leg="bp3mi-kalbar", other="dinsos-bengkayang"),
    Endpoint("entered in error", "referral", "POST", referral("uptd-ppa-kalbar", "/entered-in-error"), "police A",
             body=lambda _: {"note": "dikirim karena salah input"}, leg="uptd-ppa-kalbar", other="bp3mi-kalbar"),
    Endpoint("statistics", "referral", "GET", lambda _: f"/v1/statistics?from={THIS_MONTH}&to={THIS_MONTH}",
             "overseer"),
    Endpoint("withdraw", "intake", "POST", lambda c: f"/v1/cases/{c.case_id}/withdraw", "police A", 202,
             body=lambda _: {"reason": "duplicate"}),
    Endpoint("ops overview", "referral", "GET", lambda _: "/v1/ops/overview", "operator"),
    Endpoint("ops overdue", "referral", "GET", lambda _: "/v1/ops/overdue", "operator"),
    Endpoint("ops dead letters", "referral", "GET", lambda _: "/v1/ops/dead-letters?queue=intake.reports", "operator"),
    # No such dead letter: the operator gets past authorisation to the lookup (replay and discard: test_ops_*).
    Endpoint("ops dead letter", "referral", "GET", lambda _: f"/v1/ops/dead-letters/intake.reports/{NO_LETTER}",
             "operator", 404),
    Endpoint("ops replay", "referral", "POST", lambda _: f"/v1/ops/dead-letters/intake.reports/{NO_LETTER}/replay",
             "operator", 404),
    Endpoint("ops discard", "referral", "POST", lambda _: f"/v1/ops/dead-letters/intake.reports/{NO_LETTER}/discard",
             "operator", 404, body=lambda _: {"note": "test"}),
    Endpoint("ops case", "referral", "GET", lambda c: f"/v1/ops/cases/{c.report['police_report_number']}", "operator"),
]  # fmt: skip

ROLES = ["police B", "other receiver", "operator", "overseer", "no token", "expired token", "receiver", "police A"]


def token_of(role: str, endpoint: Endpoint) -> str | None:
    return {
        "police A": f"dev-{POLICE_A}",
        "police B": "dev-polres-sambas",
        "receiver": f"dev-{endpoint.leg}",
        "other receiver": f"dev-{endpoint.other}",
        "operator": "dev-ops-rujukan",
        "overseer": "dev-polda-kalbar",
        "no token": None,
        "expired token": EXPIRED,
    }[role]


def expected(role: str, endpoint: Endpoint) -> int:
    if role in ("no token", "expired token"):
        return 401
    if (endpoint.name, role) == ("read case", "overseer"):
        return 200  # the statuses only, in Polda's province: see test_an_overseer_reads_statuses_without_identity
    if (endpoint.name, role) in (("read case", "police B"), ("withdraw", "police B"), ("withdraw", "overseer")):
        return 404  # another unit's case is as good as none: a 403 would confirm it reported that number
    return endpoint.success if role == endpoint.allowed else 403


@pytest.fixture
async def system(amqp_url: str, sink: WebhookSink, tmp_path: Path) -> AsyncIterator[System]:
    directory = directory_for(sink)
    police_a = directory.agency(POLICE_A)
    assert police_a is not None
    expired = a_token(EXPIRED, Scope.REPORT, not_after=utcnow() - timedelta(days=1))
    system = await running(
        amqp_url, sink, tmp_path, with_tokens(directory, POLICE_A, *police_a.api_tokens, expired),
        "intake", "referral", "notifier",
    )  # fmt: skip
    yield system
    await system.stop()


async def test_every_endpoint_answers_every_role_with_its_own_refusal_or_success(system: System) -> None:
    report = a_case_report_body(reporting_agency=POLICE_A, victims=the_sample_victims())
    accepted = await system.report(report)
    assert accepted.status_code == 202, accepted.text
    case_id = accepted.json()["case_id"]
    opened = await system.case_when(case_id, lambda c: len(c["referrals"]) == 3)
    case = Case(case_id, report, {leg["agency_id"]: leg["referral_id"] for leg in opened["referrals"]})

    answers: dict[tuple[str, str], int] = {}
    for row, endpoint in enumerate(ENDPOINTS):
        for column, role in enumerate(ROLES):
            url = system.url(endpoint.service, endpoint.path(case))
            response = await from_address(
                f"127.0.{row + 1}.{column + 1}", endpoint.method, url, token_of(role, endpoint), endpoint.body(case)
            )
            answers[endpoint.name, role] = response.status_code

    assert answers == {(e.name, role): expected(role, e) for e in ENDPOINTS for role in ROLES}


async def test_a_rotated_token_and_its_replacement_both_work_until_the_old_ones_not_after(
    amqp_url: str, sink: WebhookSink, tmp_path: Path
) -> None:
    not_after = utcnow() + timedelta(seconds=3)
    old = a_token(f"dev-{POLICE_A}", Scope.REPORT, label="case system 2025", not_after=not_after)
    new = a_token("rotated-polres-bengkayang", Scope.REPORT, label="case system 2026")
    system = await running(amqp_url, sink, tmp_path, with_tokens(directory_for(sink), POLICE_A, old, new), "intake")
    url = system.url("intake", "/v1/cases")

    async def report_with(token: str) -> int:
        response = await system.http.post(
            url, json=a_case_report_body(reporting_agency=POLICE_A), headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code

    try:
        assert await report_with(f"dev-{POLICE_A}") == 202
        assert await report_with("rotated-polres-bengkayang") == 202
        await asyncio.sleep((not_after - utcnow()).total_seconds() + 0.2)
        assert await report_with(f"dev-{POLICE_A}") == 401
        assert await report_with("rotated-polres-bengkayang") == 202
    finally:
        await system.stop()


async def test_failed_authentication_is_throttled_per_address_and_logged_without_the_token(
    amqp_url: str, sink: WebhookSink, tmp_path: Path
) -> None:
    system = await running(amqp_url, sink, tmp_path, directory_for(sink), "intake")
    url = system.url("intake", "/v1/cases")
    guess = "guess-0123456789abcdef-kanari"

    try:
        with capture_logs() as logs:
            failures = [
                (await from_address("127.0.9.1", "POST", url, guess, a_case_report_body())).status_code
                for _ in range(10)
            ]
            throttled = await from_address("127.0.9.1", "POST", url, guess, a_case_report_body())
            valid_meanwhile = await from_address("127.0.9.1", "POST", url, f"dev-{POLICE_A}", a_case_report_body())
            elsewhere = await from_address("127.0.9.2", "POST", url, f"dev-{POLICE_A}", a_case_report_body())
    finally:
        await system.stop()

    assert failures == [401] * 10
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert valid_meanwhile.status_code == 202  # an agency behind the same address is not locked out
    assert elsewhere.status_code == 202
    failed = [entry for entry in logs if entry["event"] == "authentication_failed"]
    assert len(failed) == 10
    assert failed[-1]["count"] == 10
    assert f"sha256:{hashlib.sha256(guess.encode()).hexdigest()[:8]} from 127.0.9.1" in failed[-1]["reason"]
    assert "kanari" not in repr(logs)


async def test_a_caller_without_the_scope_is_refused_before_its_body_is_read(
    amqp_url: str, sink: WebhookSink, tmp_path: Path
) -> None:
    """A token without the scope learns nothing from validation errors; one with it learns what is wrong."""
    system = await running(amqp_url, sink, tmp_path, directory_for(sink), "intake")
    url = system.url("intake", "/v1/cases")
    try:
        receiver = await system.http.post(url, json={"victims": []}, headers=system.token("dinsos-bengkayang"))
        operator = await system.http.post(url, json={"victims": []}, headers=system.token("ops-rujukan"))
        police = await system.http.post(url, json={"victims": []}, headers=system.token("polres-sambas"))
    finally:
        await system.stop()

    assert (receiver.status_code, operator.status_code) == (403, 403)
    assert receiver.json() == {"detail": "this token does not have the report scope"}
    assert police.status_code == 422


async def test_an_overseer_reads_a_case_s_statuses_in_its_province_without_timeline_or_identity(
    system: System,
) -> None:
    report = a_case_report_body(reporting_agency=POLICE_A, victims=the_sample_victims())
    case_id = (await system.report(report)).json()["case_id"]
    await system.case_when(case_id, lambda c: len(c["referrals"]) == 3)

    seen = await system.http.get(
        system.url("referral", f"/v1/cases/{case_id}"), headers={"Authorization": "Bearer dev-polda-kalbar"}
    )

    assert seen.status_code == 200
    body = seen.json()
    assert set(body) == {"case_id", "case_code", "regency_code", "status", "referrals"}
    assert all("victim_refs" not in leg and "reasons" not in leg for leg in body["referrals"])
    assert sorted(leg["agency_id"] for leg in body["referrals"]) == [
        "bp3mi-kalbar",
        "dinsos-bengkayang",
        "uptd-ppa-kalbar",
    ]
    for victim in the_sample_victims():
        assert victim["full_name"] not in seen.text


async def test_an_overseer_is_told_a_case_outside_its_area_does_not_exist_as_for_one_that_does_not(
    amqp_url: str, sink: WebhookSink, tmp_path: Path
) -> None:
    """Case ids are derived from report numbers: a 403 here would confirm that another unit filed that report."""
    sambas = a_token("overseer-polres-sambas", Scope.OVERSEE, label="Polres Sambas, its regency only")
    directory = with_tokens(directory_for(sink), "polres-sambas", sambas)
    system = await running(amqp_url, sink, tmp_path, directory, "intake", "referral")
    try:
        case_id = (await system.report(a_case_report_body(reporting_agency=POLICE_A))).json()["case_id"]
        await system.case_when(case_id, lambda c: len(c["referrals"]) > 0)
        overseer = {"Authorization": "Bearer overseer-polres-sambas"}

        outside = await system.http.get(system.url("referral", f"/v1/cases/{case_id}"), headers=overseer)
        missing = await system.http.get(system.url("referral", f"/v1/cases/{NO_LETTER}"), headers=overseer)
    finally:
        await system.stop()

    assert (outside.status_code, missing.status_code) == (404, 404)
    assert outside.text.replace(case_id, NO_LETTER) == missing.text
