"""Duty officers with no case system act from a one-click link or an SMS reply."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.clock import utcnow
from shared.links import LinkClaim, LinkSigner
from shared.sealing import load_link_key
from tests.builders import a_case_report_body, a_victim
from tests.rabbit import BrokerClient
from tests.system import System, WebhookSink, directory_for, eventually, settings_for

pytestmark = pytest.mark.rabbit

AGENCY = "dinsos-bengkayang"
GATEWAY = {"Authorization": "Bearer gw-test"}
ON_DUTY_PHONE = "+628125502001"  # dinsos-bengkayang's morning officer in the shipped directory
A_GIRL = a_victim(victim_ref="V1", full_name="Siti Aminah", sex="female", age_years=15)


@pytest.fixture
async def desk_system(amqp_url: str, sink: WebhookSink, tmp_path: Path) -> AsyncIterator[System]:
    """Intake and referral only: the tests make the links and read the codes themselves."""
    async with running_system(amqp_url, sink, tmp_path, ("intake", "referral")) as system:
        yield system


class MovableClock:
    """The referral service's clock, moved by the test instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def clocked_desk_system(
    amqp_url: str, sink: WebhookSink, tmp_path: Path, clock: MovableClock
) -> AsyncIterator[System]:
    async with running_system(amqp_url, sink, tmp_path, ("intake", "referral"), clock=clock) as system:
        yield system


@contextlib.asynccontextmanager
async def running_system(
    amqp_url: str, sink: WebhookSink, tmp_path: Path, names: tuple[str, ...], *, clock: MovableClock | None = None
) -> AsyncIterator[System]:
    directory = directory_for(sink)
    sink.directory = directory
    settings = settings_for(amqp_url, tmp_path, inbound_gateway_token="gw-test")
    running = System(settings, directory, sink, names, clock=clock or utcnow)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def a_referral(system: System, broker: BrokerClient) -> tuple[str, str, str]:
    """A Bengkayang case referred to dinsos-bengkayang: (case id, referral id, the referral's SMS code)."""
    response = await system.report(a_case_report_body(victims=[A_GIRL]))
    assert response.status_code == 202
    [issued] = await broker.take(f"agency.{AGENCY}.inbox")
    body = json.loads(issued.body)
    return response.json()["case_id"], body["referral_id"], body["ack_code"]


def link_for(system: System, referral_id: str, *, officer: str = "piket-pagi", agency: str = AGENCY,
             expires_in: timedelta = timedelta(hours=1)) -> str:  # fmt: skip
    signer = LinkSigner(load_link_key(system.settings))
    claim = LinkClaim(str(uuid.uuid4()), uuid.UUID(referral_id), agency, officer, datetime.now(UTC) + expires_in)
    return signer.issue(claim)


async def status_of(system: System, referral_id: str) -> str:
    response = await system.http.get(
        system.url("referral", f"/v1/referrals/{referral_id}"), headers=system.token(AGENCY)
    )
    return str(response.json()["status"])


async def timeline(system: System, case_id: str) -> list[dict[str, Any]]:
    return list((await system.case(case_id)).json()["timeline"])


def officer_browser(system: System) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=system.url("referral", ""), timeout=15)


async def test_a_one_click_link_acknowledges_once_and_refuses_reuse(desk_system: System, broker: BrokerClient) -> None:
    _, referral_id, _ = await a_referral(desk_system, broker)
    token = link_for(desk_system, referral_id)

    async with officer_browser(desk_system) as phone, officer_browser(desk_system) as other:
        page = await phone.get(f"/o/{token}")
        assert page.status_code == 200
        assert "Terima / konfirmasi rujukan" in page.text
        assert "Siti Aminah" not in page.text

        acknowledged = await phone.post(f"/o/{token}/acknowledge")
        assert acknowledged.status_code == 303
        assert await status_of(desk_system, referral_id) == "acknowledged"

        assert (await other.post(f"/o/{token}/acknowledge")).status_code == 410
        assert (await other.get(f"/o/{token}")).status_code == 410
        # The device that used the link carries on: the officer can now accept.
        assert (await phone.post(f"/o/{token}/accept")).status_code == 303
    assert await status_of(desk_system, referral_id) == "accepted"


async def test_an_expired_or_forged_link_moves_nothing(desk_system: System, broker: BrokerClient) -> None:
    _, referral_id, _ = await a_referral(desk_system, broker)
    expired = link_for(desk_system, referral_id, expires_in=timedelta(seconds=-1))
    forged = link_for(desk_system, referral_id)[:-4] + "AAAA"

    async with officer_browser(desk_system) as phone:
        assert (await phone.get(f"/o/{expired}")).status_code == 410
        assert (await phone.post(f"/o/{expired}/acknowledge")).status_code == 410
        assert (await phone.post(f"/o/{forged}/acknowledge")).status_code == 404
    assert await status_of(desk_system, referral_id) == "requested"


async def test_a_decline_from_the_page_needs_a_coded_reason(desk_system: System, broker: BrokerClient) -> None:
    _, referral_id, _ = await a_referral(desk_system, broker)
    token = link_for(desk_system, referral_id)

    async with officer_browser(desk_system) as phone:
        assert (await phone.post(f"/o/{token}/decline", data={"reason": "other"})).status_code == 422
        declined = await phone.post(f"/o/{token}/decline", data={"reason": "no_capacity", "note": "rumah aman penuh"})
        assert declined.status_code == 303
    assert await status_of(desk_system, referral_id) == "declined"


async def test_victim_identity_appears_only_after_the_right_pin_and_each_view_is_on_the_timeline(
    desk_system: System, broker: BrokerClient
) -> None:
    case_id, referral_id, _ = await a_referral(desk_system, broker)
    token = link_for(desk_system, referral_id)

    async with officer_browser(desk_system) as phone:
        wrong = await phone.post(f"/o/{token}", data={"pin": "0000"})
        assert wrong.status_code == 403
        assert "Siti Aminah" not in wrong.text
        right = await phone.post(f"/o/{token}", data={"pin": "1234"})
        assert right.status_code == 200
        assert "Siti Aminah" in right.text

    reads = [e for e in await timeline(desk_system, case_id) if e["event"] == "identity_read"]
    assert [(e["actor"], e["detail"]["officer"], e["detail"]["via"]) for e in reads] == [
        (AGENCY, "piket-pagi", "officer_page")
    ]


async def test_five_wrong_pins_lock_the_identity_even_for_the_right_pin(
    desk_system: System, broker: BrokerClient
) -> None:
    _, referral_id, _ = await a_referral(desk_system, broker)
    token = link_for(desk_system, referral_id)

    async with officer_browser(desk_system) as phone:
        answers = [(await phone.post(f"/o/{token}", data={"pin": "0000"})).status_code for _ in range(5)]
        assert answers == [403, 403, 403, 403, 423]
        locked = await phone.post(f"/o/{token}", data={"pin": "1234"})
    assert locked.status_code == 423
    assert "Siti Aminah" not in locked.text


async def test_an_officer_of_another_agency_sees_the_summary_but_cannot_act_or_see_identity(
    desk_system: System, broker: BrokerClient
) -> None:
    _, referral_id, _ = await a_referral(desk_system, broker)
    token = link_for(desk_system, referral_id, agency="dinsos-kalbar", officer="kepala-bidang")

    async with officer_browser(desk_system) as phone:
        page = await phone.get(f"/o/{token}")
        assert page.status_code == 200
        assert "Terima / konfirmasi rujukan" not in page.text
        assert (await phone.post(f"/o/{token}/acknowledge")).status_code == 403
        assert (await phone.post(f"/o/{token}", data={"pin": "1234"})).status_code == 403
    assert await status_of(desk_system, referral_id) == "requested"


async def sms(system: System, sender: str, text: str, headers: dict[str, str] = GATEWAY) -> httpx.Response:
    return await system.http.post(
        system.url("referral", "/v1/inbound/sms"), json={"from": sender, "text": text}, headers=headers
    )


async def test_an_sms_reply_terima_with_the_code_acknowledges_and_the_code_cannot_be_reused(
    desk_system: System, broker: BrokerClient
) -> None:
    case_id, referral_id, code = await a_referral(desk_system, broker)

    first = await sms(desk_system, ON_DUTY_PHONE, f"terima {code}")
    again = await sms(desk_system, ON_DUTY_PHONE, f"TERIMA {code}")

    assert first.status_code == again.status_code == 200
    assert first.json()["accepted"] is True
    assert first.json()["referral_id"] == referral_id
    assert again.json()["accepted"] is False
    assert "sudah dipakai" in again.json()["reply"]
    assert await status_of(desk_system, referral_id) == "acknowledged"
    [ack] = [e for e in await timeline(desk_system, case_id) if e["event"] == "acknowledged"]
    assert (ack["detail"]["via"], ack["detail"]["officer"]) == ("sms", "piket-pagi")


async def test_a_wrong_code_or_an_unknown_number_acknowledges_nothing(
    desk_system: System, broker: BrokerClient
) -> None:
    _, referral_id, code = await a_referral(desk_system, broker)
    wrong_code = a_wrong_code(code)

    answers = [
        await sms(desk_system, ON_DUTY_PHONE, f"TERIMA {wrong_code}"),
        await sms(desk_system, "+628199999999", f"TERIMA {code}"),
        await sms(desk_system, ON_DUTY_PHONE, f"OK {code}"),
    ]

    assert [a.json()["accepted"] for a in answers] == [False, False, False]
    assert (await sms(desk_system, ON_DUTY_PHONE, f"TERIMA {code}", headers={})).status_code == 401
    assert await status_of(desk_system, referral_id) == "requested"


@pytest.fixture
async def full_system(amqp_url: str, sink: WebhookSink, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(amqp_url, sink, tmp_path, ("intake", "referral", "notifier")) as system:
        yield system


async def officers_text(system: System, case_code: str) -> Any:
    """The text the on-duty officer of the referral's agency got for this case."""
    for _ in range(150):
        texts = [t for t in system.gateway.texts if case_code in t.text and "/o/" in t.text]
        if texts:
            return texts[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no officer text for {case_code}: {[t.text for t in system.gateway.texts]}")


async def test_the_link_in_an_officers_text_opens_the_page_and_acknowledges(full_system: System) -> None:
    response = await full_system.report(a_case_report_body(victims=[a_victim(sex="male", age_years=40)]))
    text = await officers_text(full_system, response.json()["case_code"])
    link = re.search(r"http://\S+/o/\S+", text.text)
    assert link is not None

    async with httpx.AsyncClient(timeout=15) as phone:
        assert (await phone.get(link[0])).status_code == 200
        assert (await phone.post(f"{link[0]}/acknowledge")).status_code == 303

    case = await full_system.case(response.json()["case_id"])
    [referral_id] = [r["referral_id"] for r in case.json()["referrals"]]
    assert await status_of(full_system, referral_id) == "acknowledged"


async def test_replying_terima_with_the_code_from_the_text_acknowledges(full_system: System) -> None:
    response = await full_system.report(a_case_report_body(victims=[a_victim(sex="male", age_years=40)]))
    text = await officers_text(full_system, response.json()["case_code"])
    code = re.search(r"TERIMA ([0-9]{6})\b", text.text)
    assert code is not None

    answer = await sms(full_system, text.to, f"TERIMA {code[1]}")

    assert answer.json()["accepted"] is True
    assert await status_of(full_system, answer.json()["referral_id"]) == "acknowledged"


async def test_a_second_officer_tapping_acknowledge_too_late_can_still_accept_from_that_phone(
    desk_system: System, broker: BrokerClient
) -> None:
    _, referral_id, _ = await a_referral(desk_system, broker)
    duty, backup = link_for(desk_system, referral_id), link_for(desk_system, referral_id, officer="cadangan")

    async with officer_browser(desk_system) as duty_phone, officer_browser(desk_system) as backup_phone:
        assert (await duty_phone.post(f"/o/{duty}/acknowledge")).status_code == 303
        too_late = await backup_phone.post(f"/o/{backup}/acknowledge")
        assert too_late.status_code == 409
        assert "acknowledged" in too_late.text
        assert (await backup_phone.post(f"/o/{backup}/accept")).status_code == 303
    assert await status_of(desk_system, referral_id) == "accepted"


async def test_the_identity_page_is_never_cached_and_a_garbled_link_is_simply_not_found(
    desk_system: System, broker: BrokerClient
) -> None:
    _, referral_id, _ = await a_referral(desk_system, broker)
    token = link_for(desk_system, referral_id)

    async with officer_browser(desk_system) as phone:
        shown = await phone.post(f"/o/{token}", data={"pin": "1234"})
        garbled = await phone.get(f"/o/{token[:-3]}%C3%A9")
    assert shown.headers["cache-control"] == "no-store"
    assert "samesite=lax" in shown.headers["set-cookie"].lower()
    assert "httponly" in shown.headers["set-cookie"].lower()
    assert garbled.status_code == 404


async def test_the_code_of_a_withdrawn_referral_acknowledges_nothing(desk_system: System, broker: BrokerClient) -> None:
    case_id, referral_id, code = await a_referral(desk_system, broker)
    withdrawn = await desk_system.http.post(
        desk_system.url("intake", f"/v1/cases/{case_id}/withdraw"),
        json={"reason": "reported_in_error"},
        headers=desk_system.token("polres-bengkayang"),
    )
    assert withdrawn.status_code == 202

    async def cancelled() -> bool:
        return await status_of(desk_system, referral_id) == "cancelled"

    await eventually(cancelled)
    answer = await sms(desk_system, ON_DUTY_PHONE, f"TERIMA {code}")

    assert answer.status_code == 200
    assert answer.json()["accepted"] is False
    assert await status_of(desk_system, referral_id) == "cancelled"


async def test_wrong_codes_spread_over_an_agencys_numbers_lock_sms_replies_for_the_whole_agency(
    desk_system: System, broker: BrokerClient
) -> None:
    _, referral_id, code = await a_referral(desk_system, broker)
    wrong_code = a_wrong_code(code)

    for phone in ("+628125502001", "+628125502002", "+628125502003"):  # five wrong tries from each
        for _ in range(5):
            await sms(desk_system, phone, f"TERIMA {wrong_code}")
    from_the_supervisor = await sms(desk_system, "+628125502201", f"TERIMA {code}")

    assert from_the_supervisor.json()["accepted"] is False
    assert "Terlalu banyak" in from_the_supervisor.json()["reply"]
    assert await status_of(desk_system, referral_id) == "requested"


def a_wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


async def fourteen_wrong_codes_spread_over_the_agency(system: System, code: str) -> None:
    """One short of the agency-wide bound (3 x RUJUKAN_PIN_ATTEMPTS), none of its officers locked on their own."""
    for phone, tries in (("+628125502001", 4), ("+628125502002", 4), ("+628125502003", 4), ("+628125502101", 2)):
        for _ in range(tries):
            await sms(system, phone, f"TERIMA {a_wrong_code(code)}")


async def test_wrong_codes_older_than_the_lockout_no_longer_count_towards_locking_the_agency(
    clocked_desk_system: System, broker: BrokerClient, clock: MovableClock
) -> None:
    _, referral_id, code = await a_referral(clocked_desk_system, broker)
    await fourteen_wrong_codes_spread_over_the_agency(clocked_desk_system, code)
    clock.now += timedelta(minutes=31)
    await sms(clocked_desk_system, "+628125502201", f"TERIMA {a_wrong_code(code)}")

    from_the_supervisor = await sms(clocked_desk_system, "+628125502201", f"TERIMA {code}")

    assert from_the_supervisor.json()["accepted"] is True
    assert await status_of(clocked_desk_system, referral_id) == "acknowledged"


async def test_wrong_codes_within_the_lockout_window_still_lock_the_whole_agency(
    clocked_desk_system: System, broker: BrokerClient, clock: MovableClock
) -> None:
    _, referral_id, code = await a_referral(clocked_desk_system, broker)
    await fourteen_wrong_codes_spread_over_the_agency(clocked_desk_system, code)
    clock.now += timedelta(minutes=29)
    await sms(clocked_desk_system, "+628125502201", f"TERIMA {a_wrong_code(code)}")

    from_the_supervisor = await sms(clocked_desk_system, "+628125502201", f"TERIMA {code}")

    assert from_the_supervisor.json()["accepted"] is False
    assert "Terlalu banyak" in from_the_supervisor.json()["reply"]
    assert await status_of(clocked_desk_system, referral_id) == "requested"
