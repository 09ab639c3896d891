"""The ops page in headless Chromium against the running services: what an operator sees and does, and what
the test run leaves under docs/screenshots/ (the ops page and the officer page, desktop and phone)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from services.intake.reports import ReportIntake, fingerprint_of
from shared.contracts.cases import CaseAmended, CaseReport
from shared.ids import case_id_for
from shared.sealing import load_sealer
from tests.browser.conftest import OPERATOR_TOKEN, SCREENSHOTS, VIEWPORTS, MovableClock
from tests.builders import a_case_report_body, a_victim
from tests.rabbit import BrokerClient
from tests.system import System, delivered_everywhere, eventually

# One xdist worker runs them all (scripts/test): they share the session's one browser.
pytestmark = [pytest.mark.rabbit, pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]

A_GIRL = a_victim(full_name="Wulan Sari", sex="female", age_years=15, nik="6107014107110003")
AN_ADULT_MAN = a_victim(full_name="Andi Wijaya", sex="male", age_years=40, nik="6107010101850001")


async def reported(system: System, victim: dict[str, Any]) -> dict[str, Any]:
    body = a_case_report_body(victims=[victim])
    response = await system.report(body)
    assert response.status_code == 202, response.text
    case = await system.case_when(response.json()["case_id"], delivered_everywhere)
    return {**case, "police_report_number": body["police_report_number"]}


def leg(case: dict[str, Any], agency_id: str) -> str:
    [referral_id] = [r["referral_id"] for r in case["referrals"] if r["agency_id"] == agency_id]
    return str(referral_id)


async def signed_in(page: Page, system: System) -> None:
    await page.goto(system.url("referral", "/ops"))
    await page.get_by_label("Token operator").fill(OPERATOR_TOKEN)
    await page.get_by_role("button", name="Masuk").click()
    await expect(page).to_have_url(re.compile(r"/ops/overview$"))


async def screenshots(page: Page, name: str) -> None:
    """The page as it is now at desktop and at phone size; the run overwrites what the last one left."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for size, viewport in VIEWPORTS.items():
        await page.set_viewport_size(viewport)
        await page.screenshot(path=SCREENSHOTS / f"{name}-{size}.png")
    await page.set_viewport_size(VIEWPORTS["desktop"])


async def no_identity_on(page: Page, system: System) -> None:
    leaks = system.identities.leaks([await page.content()])
    assert not leaks, f"victim identity on the ops page: {sorted(set(leaks))}"


async def dead_lettered_reply(broker: BrokerClient, referral_id: str, agency_id: str, reply: str) -> str:
    """An agency system's reply that its referral's state does not allow yet: it dies in referral.replies."""
    body = {"referral_id": referral_id, "agency_id": agency_id}
    if reply == "completed":
        body["outcome"] = "successful"
    message_id = await broker.publish(
        "rujukan.replies", f"referral.{agency_id}.{reply}", body, message_type=f"referral.{reply}.v1"
    )
    await eventually(lambda: _dead_in(broker, "referral.replies.dead"))
    return message_id


async def test_sign_in_is_refused_for_an_agency_token_and_an_unknown_one(page: Page, system: System) -> None:
    await page.goto(system.url("referral", "/ops/overview"))
    await expect(page).to_have_url(re.compile(r"/ops/signin$"))

    await page.get_by_label("Token operator").fill("dev-dinsos-bengkayang")
    async with page.expect_response(re.compile(r"/ops/signin$")) as agency_attempt:
        await page.get_by_role("button", name="Masuk").click()
    await expect(page.get_by_role("alert")).to_contain_text("bukan token operator")
    await page.get_by_label("Token operator").fill("not-a-token")
    async with page.expect_response(re.compile(r"/ops/signin$")) as unknown_attempt:
        await page.get_by_role("button", name="Masuk").click()

    assert (await agency_attempt.value).status == 403
    assert (await unknown_attempt.value).status == 401
    assert not await page.context.cookies()
    await page.goto(system.url("referral", "/ops/overdue"))
    await expect(page).to_have_url(re.compile(r"/ops/signin$"))


async def test_a_post_without_the_csrf_token_is_refused(page: Page, system: System, broker: BrokerClient) -> None:
    case = await reported(system, AN_ADULT_MAN)
    message_id = await dead_lettered_reply(broker, leg(case, "dinsos-bengkayang"), "dinsos-bengkayang", "completed")
    await signed_in(page, system)
    [cookie] = await page.context.cookies()
    discard = system.url("referral", f"/ops/dead-letters/referral.replies/{message_id}/discard")

    without = await page.request.post(discard, form={"note": "forged"})
    forged = await page.request.post(discard, form={"note": "forged", "csrf": "guessed"})
    sign_out = await page.request.post(system.url("referral", "/ops/signout"), form={})

    assert (without.status, forged.status, sign_out.status) == (403, 403, 403)
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    await page.goto(system.url("referral", "/ops/dead-letters"))
    await expect(page.locator(f'tr[data-message="{message_id}"]')).to_be_visible()
    assert await broker.depth("referral.replies.dead") == 1


async def test_the_overdue_list_shows_a_late_referral_without_a_reload(
    page: Page, system: System, clock: MovableClock
) -> None:
    case = await reported(system, A_GIRL)
    child_protection = leg(case, "uptd-ppa-kalbar")
    await signed_in(page, system)
    # The management API's figures lag a fresh vhost by its statistics interval (5 s); the page catches up itself.
    await expect(page.locator('tr[data-service="referral"] td').nth(1)).to_have_text("ya", timeout=15_000)
    await expect(page.locator("[data-source]")).to_contain_text("API manajemen")
    await page.get_by_role("link", name="Terlambat").click()
    await expect(page.get_by_text("Tidak ada rujukan yang terlambat.")).to_be_visible()
    await page.evaluate("window.stillTheSamePage = true")

    clock.advance(hours=2)  # urgent: acknowledge within 1 hour

    row = page.locator(f'tr[data-referral="{child_protection}"]')
    await expect(row).to_be_visible(timeout=15_000)
    await expect(row).to_contain_text(case["case_code"])
    await expect(row.locator("td").nth(3)).to_contain_text("1h")
    await expect(row.locator("td").nth(5)).not_to_have_text("0", timeout=15_000)
    assert await page.evaluate("window.stillTheSamePage === true")
    await no_identity_on(page, system)
    await screenshots(page, "ops-overdue")
    await page.get_by_role("link", name="Ringkasan").click()
    await expect(page.locator('tr[data-agency="uptd-ppa-kalbar"] td').nth(2)).to_have_text("1")
    await screenshots(page, "ops-overview")


async def an_amendment_ahead_of_its_report(system: System, broker: BrokerClient, body: dict[str, Any]) -> str:
    """A police unit's amendment published (as intake does) before its report reached the ledger: the referral
    service retries it up to the delivery limit, then dead-letters it."""
    report = CaseReport.model_validate(body)
    case_id = case_id_for(report.reporting_agency, report.police_report_number)
    intake = ReportIntake(lambda: system.directory, load_sealer(system.settings), None, None)  # type: ignore[arg-type]
    amended = CaseAmended(**intake._case_reported(report, case_id, fingerprint_of(report)).model_dump())
    system.identities.note(body)
    message_id = await broker.publish(
        "rujukan.events",
        "case.amended",
        amended.model_dump(mode="json"),
        message_type=CaseAmended.TYPE,
        correlation_id=str(case_id),
    )
    await eventually(lambda: _dead_in(broker, "referral.cases.dead"))
    return message_id


async def _dead_in(broker: BrokerClient, queue: str) -> bool:
    return await broker.depth(queue) > 0


async def test_a_replayed_dead_letter_completes_its_flow(page: Page, system: System, broker: BrokerClient) -> None:
    first = a_case_report_body(victims=[{**AN_ADULT_MAN, "victim_ref": "V1"}])
    amended = {**first, "victims": [*first["victims"], {**A_GIRL, "victim_ref": "V2"}]}
    message_id = await an_amendment_ahead_of_its_report(system, broker, amended)
    response = await system.report(first)
    case = await system.case_when(response.json()["case_id"], delivered_everywhere)
    assert {leg["agency_id"] for leg in case["referrals"]} == {"dinsos-bengkayang"}
    await signed_in(page, system)
    await page.get_by_role("link", name="Pesan gagal").click()
    letter = page.locator(f'tr[data-message="{message_id}"]')
    await expect(letter.locator(".reason")).to_contain_text("gave up after 10 deliveries")
    await no_identity_on(page, system)
    await screenshots(page, "ops-dead-letters")

    await letter.get_by_role("button", name="Kirim ulang").click()

    await expect(page.get_by_role("status")).to_contain_text("dikirim ulang")
    await expect(letter).to_have_count(0)
    both = await system.case_when(case["case_id"], lambda c: len(c["referrals"]) == 2 and delivered_everywhere(c))
    assert {leg["agency_id"] for leg in both["referrals"]} == {"dinsos-bengkayang", "uptd-ppa-kalbar"}
    assert await broker.depth("referral.cases.dead") == 0


async def test_a_dead_letter_is_discarded_only_with_a_note(page: Page, system: System, broker: BrokerClient) -> None:
    case = await reported(system, AN_ADULT_MAN)
    message_id = await dead_lettered_reply(broker, leg(case, "dinsos-bengkayang"), "dinsos-bengkayang", "completed")
    await signed_in(page, system)
    await page.goto(system.url("referral", "/ops/dead-letters"))
    letter = page.locator(f'tr[data-message="{message_id}"]')
    csrf = await page.locator('input[name="csrf"]').first.input_value()
    discard = system.url("referral", f"/ops/dead-letters/referral.replies/{message_id}/discard")

    blank = await page.request.post(discard, form={"csrf": csrf, "note": "   "})
    await letter.get_by_text("Buang").first.click()
    await letter.get_by_role("button", name="Buang").click()  # the browser holds back an empty required note
    await expect(letter).to_be_visible()
    await letter.locator("textarea").fill("Balasan lama dari sistem dinsos; sudah ditangani lewat telepon.")
    await letter.get_by_role("button", name="Buang").click()

    assert blank.status == 422
    await expect(page.get_by_role("status")).to_contain_text("dibuang")
    await expect(letter).to_have_count(0)
    assert await broker.depth("referral.replies.dead") == 0


async def test_a_case_is_found_by_its_police_report_number(page: Page, system: System) -> None:
    case = await reported(system, A_GIRL)
    await signed_in(page, system)
    await page.get_by_role("link", name="EN").click()
    await page.get_by_role("link", name="Find a case").click()

    await page.get_by_role("searchbox").fill(case["police_report_number"])
    await page.get_by_role("button", name="Search").click()

    found = page.locator("#case")
    await expect(found).to_contain_text(case["case_code"])
    await expect(found.locator("#legs tr[data-referral]")).to_have_count(len(case["referrals"]))
    await expect(found.locator('#timeline li[data-event="delivered"]').first).to_be_visible()
    await no_identity_on(page, system)
    await screenshots(page, "ops-case")


async def test_the_officer_page_behind_a_duty_officers_link(page: Page, system: System) -> None:
    case = await reported(system, A_GIRL)
    link = re.compile(rf"{re.escape(system.settings.public_referral_url)}/o/(\S+)")

    async def texted() -> bool:
        return any(link.search(text.text) for text in system.gateway.texts)

    await eventually(texted)
    token = next(m[1] for text in system.gateway.texts if (m := link.search(text.text)))

    await page.goto(system.url("referral", f"/o/{token}"))

    await expect(page.locator("h1")).to_contain_text(case["case_code"])
    await screenshots(page, "officer")
