"""The operators' console under ``/ops``: overview, overdue referrals, dead letters with replay and discard, and
case search. Server-rendered, no external assets (it must work on an office network cut off from the internet),
Bahasa Indonesia by default with an English switch, and never any victim identity."""

# No `from __future__ import annotations`: FastAPI must see the closure's parameters in the signatures.
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.referral.operations import Operations, ReplayRefusedError, UnknownDeadLetterQueueError
from services.referral.operations.views import CaseView, DeadLetter, TimelineItem
from services.referral.ops_sessions import OpsSession, OpsSessions, SignedIn, SignInRefusedError
from shared.clock import utcnow
from shared.contracts.cases import IDENTITY_FIELDS
from shared.directory import Directory
from shared.tokens import FailureLimiter

COOKIE = "rujukan_ops"
LANG_COOKIE = "rujukan_ops_lang"
REFRESH_SECONDS = 5
FRAGMENT_HEADER = "X-Ops-Fragment"
_templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

_WORDS: Mapping[str, Mapping[str, str]] = {
    "id": {
        "overview": "Ringkasan",
        "overdue": "Terlambat",
        "dead_letters": "Pesan gagal",
        "case": "Cari kasus",
        "sign_in": "Masuk",
        "sign_in_title": "Masuk konsol operator",
        "sign_out": "Keluar",
        "token_label": "Token operator",
        "sign_in_hint": "Gunakan token dengan cakupan 'operate'. Sesi berakhir setelah 60 menit tanpa aktivitas,"
        " dan selambat-lambatnya 12 jam setelah masuk.",
        "refreshes": "Diperbarui otomatis; terakhir",
        "source_management": "Angka antrean dari API manajemen RabbitMQ (termasuk laju pesan).",
        "source_passive": "Angka antrean dari deklarasi pasif (jumlah pesan dan konsumen saja; API manajemen tidak"
        " tersedia).",
        "services": "Layanan",
        "service": "Layanan",
        "consuming": "Mengonsumsi",
        "yes": "ya",
        "no": "TIDAK",
        "last_message": "Pesan terakhir",
        "not_known": "tidak diketahui",
        "queues": "Antrean",
        "queue": "Antrean",
        "kind": "Jenis",
        "messages": "Pesan",
        "consumers": "Konsumen",
        "rate_in": "Masuk/s",
        "rate_out": "Keluar/s",
        "missing": "tidak ada",
        "agencies": "Lembaga",
        "agency": "Lembaga",
        "by_status": "Rujukan per status",
        "overdue_count": "Terlambat",
        "median_7d": "Median konfirmasi 7 hari",
        "median_30d": "Median konfirmasi 30 hari",
        "stalled": "Antrean kerja tanpa konsumen",
        "none_overdue": "Tidak ada rujukan yang terlambat.",
        "case_code": "Kode kasus",
        "awaited": "Menunggu",
        "acknowledge": "konfirmasi",
        "accept": "persetujuan",
        "status": "Status",
        "priority": "Prioritas",
        "due": "Batas",
        "late_by": "Terlambat",
        "level": "Eskalasi",
        "on_duty": "Petugas piket",
        "nobody_on_duty": "tidak ada yang piket",
        "no_dead_letters": "Tidak ada pesan gagal.",
        "all_queues": "Semua antrean",
        "reason": "Alasan",
        "attempts": "Percobaan",
        "age": "Umur",
        "message": "Pesan",
        "actions": "Tindakan",
        "replay": "Kirim ulang",
        "discard": "Buang",
        "discard_note": "Catatan (wajib)",
        "replay_note": "Catatan (opsional)",
        "replayed": "Pesan dikirim ulang ke antrean asalnya; tercatat di jejak audit.",
        "discarded": "Pesan dibuang; tercatat di jejak audit.",
        "note_required": "Membuang pesan memerlukan catatan.",
        "not_found": "Tidak ditemukan.",
        "search_hint": "ID kasus atau nomor laporan polisi",
        "search": "Cari",
        "no_case": "Tidak ada kasus dengan ID atau nomor laporan itu.",
        "report_number": "Nomor laporan polisi",
        "reporting_agency": "Pelapor",
        "regency": "Kabupaten/kota",
        "reported_at": "Dilaporkan",
        "withdrawn": "Dicabut",
        "legs": "Rujukan",
        "timeline": "Lini masa",
        "refused": "Ditolak",
        "unknown_token": "Token tidak dikenal atau sudah kedaluwarsa.",
        "not_operator": "Token ini bukan token operator (cakupan 'operate').",
        "too_many": "Terlalu banyak percobaan gagal; coba lagi nanti.",
        "csrf": "Permintaan ditolak: formulir kedaluwarsa atau tidak sah. Muat ulang halaman lalu coba lagi.",
        "signed_out": "Sesi berakhir; silakan masuk lagi.",
        "action_failed": "Tindakan gagal",
        "no_such_queue": "Bukan antrean pesan gagal",
        "gone": "Pesan itu sudah tidak ada (mungkin sudah dikirim ulang atau dibuang operator lain).",
    },
    "en": {
        "overview": "Overview",
        "overdue": "Overdue",
        "dead_letters": "Dead letters",
        "case": "Find a case",
        "sign_in": "Sign in",
        "sign_in_title": "Operator console sign-in",
        "sign_out": "Sign out",
        "token_label": "Operator token",
        "sign_in_hint": "Use a token with the 'operate' scope. A session ends after 60 minutes without activity,"
        " and 12 hours after sign-in at the latest.",
        "refreshes": "Refreshes itself; last",
        "source_management": "Queue figures from RabbitMQ's management API (message rates included).",
        "source_passive": "Queue figures from passive declares (depth and consumers only; the management API is not"
        " available).",
        "services": "Services",
        "service": "Service",
        "consuming": "Consuming",
        "yes": "yes",
        "no": "NO",
        "last_message": "Last message",
        "not_known": "unknown",
        "queues": "Queues",
        "queue": "Queue",
        "kind": "Kind",
        "messages": "Messages",
        "consumers": "Consumers",
        "rate_in": "In/s",
        "rate_out": "Out/s",
        "missing": "missing",
        "agencies": "Agencies",
        "agency": "Agency",
        "by_status": "Referrals by status",
        "overdue_count": "Overdue",
        "median_7d": "Median to acknowledge, 7 days",
        "median_30d": "Median to acknowledge, 30 days",
        "stalled": "Work queues without a consumer",
        "none_overdue": "No referral is overdue.",
        "case_code": "Case code",
        "awaited": "Awaiting",
        "acknowledge": "acknowledgement",
        "accept": "acceptance",
        "status": "Status",
        "priority": "Priority",
        "due": "Due",
        "late_by": "Late by",
        "level": "Escalation",
        "on_duty": "Officer on duty",
        "nobody_on_duty": "nobody on duty",
        "no_dead_letters": "No dead letters.",
        "all_queues": "All queues",
        "reason": "Reason",
        "attempts": "Attempts",
        "age": "Age",
        "message": "Message",
        "actions": "Actions",
        "replay": "Replay",
        "discard": "Discard",
        "discard_note": "Note (required)",
        "replay_note": "Note (optional)",
        "replayed": "Message replayed into the queue it died in; recorded on the audit trail.",
        "discarded": "Message discarded; recorded on the audit trail.",
        "note_required": "Discarding a message needs a note.",
        "not_found": "Not found.",
        "search_hint": "Case id or police report number",
        "search": "Search",
        "no_case": "No case has that id or police report number.",
        "report_number": "Police report number",
        "reporting_agency": "Reported by",
        "regency": "Regency",
        "reported_at": "Reported",
        "withdrawn": "Withdrawn",
        "legs": "Referrals",
        "timeline": "Timeline",
        "refused": "Refused",
        "unknown_token": "Unknown or expired token.",
        "not_operator": "This is not an operator's token (the 'operate' scope).",
        "too_many": "Too many failed attempts; try again later.",
        "csrf": "Request refused: the form is stale or forged. Reload the page and try again.",
        "signed_out": "Your session ended; please sign in again.",
        "action_failed": "The action failed",
        "no_such_queue": "Not a dead-letter queue",
        "gone": "That message is no longer there (another operator may have replayed or discarded it).",
    },
}
LANGUAGES = tuple(_WORDS)
_PAGES = (
    ("overview", "/ops/overview"),
    ("overdue", "/ops/overdue"),
    ("dead_letters", "/ops/dead-letters"),
    ("case", "/ops/case"),
)


def build_ops_page(
    operations: Operations,
    directory: Callable[[], Directory],
    link_key: bytes,
    *,
    secure_cookie: bool,
    clock: Callable[[], datetime] = utcnow,
    monotonic: Callable[[], float] = time.monotonic,
) -> APIRouter:
    """``clock`` times sessions only: deadlines and ages come from ``operations``, on the service's own clock."""
    router = APIRouter(prefix="/ops", include_in_schema=False)
    sessions = OpsSessions(link_key)
    failures = FailureLimiter()

    def language(request: Request) -> str:
        asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or ""
        return asked if asked in _WORDS else LANGUAGES[0]

    async def signed_in(request: Request) -> SignedIn | None:
        who = sessions.verify(request.cookies.get(COOKIE), directory(), clock())
        if who is None:
            return None
        # The cookie carries its sign-in to the second: one signed in the second an operator signed out is over too.
        signed_out_at = await operations.signed_out_at(who.operator.id)
        return None if signed_out_at is not None and who.session.signed_in_at <= signed_out_at else who

    def render(
        request: Request,
        partial: str,
        context: Mapping[str, Any],
        *,
        who: SignedIn | None,
        current: str,
        status_code: int = 200,
        refresh: bool = True,
    ) -> Response:
        lang = language(request)
        nonce = secrets.token_urlsafe(16)
        fragment = request.headers.get(FRAGMENT_HEADER) == "1"
        zone = directory().timezone
        # The figures' own time (the service's clock), not the session clock's.
        rendered_at = f"{operations.now().astimezone(zone):%H:%M:%S %Z}"
        kept = [(key, value) for key, value in request.query_params.multi_items() if key != "lang"]
        values = {
            "t": _WORDS[lang],
            "lang": lang,
            "languages": LANGUAGES,
            "keep_query": "&" + urlencode(kept) if kept else "",
            "nav": _PAGES,
            "current": current,
            "title": current,
            "partial": partial,
            "operator": who.operator if who else None,
            "csrf": who.session.csrf if who else "",
            "nonce": nonce,
            "refresh": request.url.path if refresh and who else None,
            "refresh_ms": REFRESH_SECONDS * 1000,
            "rendered_at": rendered_at,
            "zone": zone,
            **context,
        }
        response = _templates.TemplateResponse(
            request, partial if fragment else "ops/page.html", values, status_code=status_code
        )
        response.headers["X-Rendered-At"] = rendered_at
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = FRAGMENT_HEADER
        # Everything is served from here: no CDN, no frames, scripts and styles only with this response's nonce.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self';"
            " img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        if request.query_params.get("lang") in _WORDS:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/ops", samesite="strict")
        if who and not fragment:
            # Page loads and actions keep a session alive; the auto-refresh alone does not.
            keep_session(response, who)
        return response

    def keep_session(response: Response, who: SignedIn) -> None:
        now = clock()
        set_session(response, sessions.renewed(who.session, now), now)

    def set_session(response: Response, session: OpsSession, now: datetime) -> None:
        # The browser drops the cookie when the session ends, its last renewal short of an hour included.
        response.set_cookie(
            COOKIE, sessions.encode(session), max_age=int((session.expires_at - now).total_seconds()), path="/ops",
            httponly=True, samesite="strict", secure=secure_cookie,
        )  # fmt: skip

    def to_sign_in(request: Request) -> Response:
        if request.headers.get(FRAGMENT_HEADER) == "1":
            return Response(status_code=401)
        return RedirectResponse("/ops/signin", status_code=303)

    def refused(request: Request, who: SignedIn | None, status_code: int, message: str) -> Response:
        return render(
            request, "ops/message.html", {"message": message}, who=who, current="refused", status_code=status_code,
            refresh=False,
        )  # fmt: skip

    async def authorised_post(request: Request, csrf: str | None) -> SignedIn | Response:
        who = await signed_in(request)
        if who is None:
            return refused(request, None, 401, _WORDS[language(request)]["signed_out"])
        if not sessions.csrf_matches(who.session, csrf):
            return refused(request, who, 403, _WORDS[language(request)]["csrf"])
        return who

    @router.get("", response_class=HTMLResponse)
    async def ops_root() -> Response:
        return RedirectResponse("/ops/overview", status_code=303)

    @router.get("/signin", response_class=HTMLResponse)
    async def sign_in_form(request: Request) -> Response:
        if await signed_in(request):
            return RedirectResponse("/ops/overview", status_code=303)
        return render(request, "ops/signin.html", {"refusal": None}, who=None, current="sign_in", refresh=False)

    @router.post("/signin", response_class=HTMLResponse)
    async def sign_in(request: Request, token: Annotated[str, Form(max_length=200)] = "") -> Response:
        words = _WORDS[language(request)]
        address = request.client.host if request.client else "unknown"
        now = clock()
        try:
            session = sessions.sign_in(directory(), token, now)
        except SignInRefusedError as exc:
            # As for the API: a valid operator token always gets through; failures only hold back guessing.
            wait = failures.retry_after(address, monotonic())
            failures.fail(address, monotonic())
            status_code, message = (
                (429, words["too_many"])
                if wait is not None
                else (exc.status_code, words["not_operator" if exc.status_code == 403 else "unknown_token"])
            )
            return render(
                request, "ops/signin.html", {"refusal": message}, who=None, current="sign_in",
                status_code=status_code, refresh=False,
            )  # fmt: skip
        response = RedirectResponse("/ops/overview", status_code=303)
        set_session(response, session, now)
        return response

    @router.post("/signout", response_class=HTMLResponse)
    async def sign_out(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
        who = await authorised_post(request, csrf)
        if isinstance(who, Response):
            return who
        await operations.sign_out(who.operator.id, clock())
        response = RedirectResponse("/ops/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/ops", httponly=True, samesite="strict", secure=secure_cookie)
        return response

    @router.get("/overview", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        if (who := await signed_in(request)) is None:
            return to_sign_in(request)
        return render(request, "ops/overview.html", {"view": await operations.overview()}, who=who, current="overview")

    @router.get("/overdue", response_class=HTMLResponse)
    async def overdue(request: Request) -> Response:
        if (who := await signed_in(request)) is None:
            return to_sign_in(request)
        # The facade answers them the latest first.
        return render(request, "ops/overdue.html", {"overdue": await operations.overdue()}, who=who, current="overdue")

    @router.get("/dead-letters", response_class=HTMLResponse)
    async def dead_letters(request: Request, queue: str = "", done: str = "") -> Response:
        if (who := await signed_in(request)) is None:
            return to_sign_in(request)
        words = _WORDS[language(request)]
        try:
            letters = await operations.dead_letters(queue or None)
        except UnknownDeadLetterQueueError:
            return refused(request, who, 404, f"{words['no_such_queue']}: {queue}")
        context = {"letters": _by_queue(letters), "queue": queue, "done": done if done in _OUTCOMES else None}
        return render(request, "ops/dead_letters.html", context, who=who, current="dead_letters")

    @router.post("/dead-letters/{queue}/{message_id:path}/{action}", response_class=HTMLResponse)
    async def act_on_dead_letter(
        request: Request,
        queue: str,
        message_id: str,
        action: str,
        csrf: Annotated[str | None, Form()] = None,
        note: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        who = await authorised_post(request, csrf)
        if isinstance(who, Response):
            return who
        words = _WORDS[language(request)]
        note = note.strip()
        if action not in _DONE:
            return refused(request, who, 404, words["not_found"])
        if action == "discard" and not note:
            return refused(request, who, 422, words["note_required"])
        try:
            if action == "replay":
                letter = await operations.replay(queue, message_id, who.operator.id, note=note or None)
            else:
                letter = await operations.discard(queue, message_id, who.operator.id, note)
        except UnknownDeadLetterQueueError:
            return refused(request, who, 404, f"{words['no_such_queue']}: {queue}")
        except ReplayRefusedError as exc:
            return refused(request, who, 409, f"{words['action_failed']}: {exc}")
        outcome = "gone" if letter is None else _DONE[action]
        response = RedirectResponse(f"/ops/dead-letters?{urlencode({'done': outcome})}", status_code=303)
        keep_session(response, who)
        return response

    @router.get("/case", response_class=HTMLResponse)
    async def find_case(request: Request, q: str = "") -> Response:
        if (who := await signed_in(request)) is None:
            return to_sign_in(request)
        query = q.strip()[:200]
        case = await operations.find_case(query) if query else None
        found = _case(case, directory()) if case else None
        context = {"query": query, "found": found, "searched": bool(query)}
        return render(request, "ops/case.html", context, who=who, current="case")

    return router


_DONE = {"replay": "replayed", "discard": "discarded"}
_OUTCOMES = (*_DONE.values(), "gone")
"""What the dead-letter page says after an action (``gone``: someone else already replayed or discarded it)."""


def _by_queue(letters: list[DeadLetter] | tuple[DeadLetter, ...]) -> dict[str, list[DeadLetter]]:
    grouped: dict[str, list[DeadLetter]] = {}
    for letter in sorted(letters, key=lambda letter: (letter.queue, letter.dead_at is None, letter.dead_at)):
        grouped.setdefault(letter.queue, []).append(letter)
    return grouped


def _case(case: CaseView, directory: Directory) -> dict[str, Any]:
    return {
        "case": case,
        "regency": directory.regency_name(case.regency_code) or case.regency_code,
        "timeline": [_entry(item) for item in case.timeline],
    }


def _entry(item: TimelineItem) -> dict[str, Any]:
    # The facade's timeline holds no identity; this page drops identity fields all the same should one ever
    # appear in an entry's detail, since nothing on an operator's screen may name a victim.
    detail = {key: _plain(value) for key, value in item.detail.items() if key not in IDENTITY_FIELDS}
    return {"item": item, "detail": detail}


def _plain(value: object) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_plain(part) for part in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={_plain(part)}" for key, part in value.items())
    return str(value)


def duration(value: timedelta | None) -> str:
    """``2d 3h``, ``3h 05m``, ``4m 10s``: how late, how old, at a glance."""
    if value is None:
        return "-"
    seconds = max(0, int(value.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s"


def stamp(value: datetime | None, zone: tzinfo) -> str:
    """In the province's time zone (WIB for Kalimantan Barat), as the agencies' own clocks read."""
    if value is None:
        return "-"
    local = value.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def path_segment(value: str) -> str:
    """``value`` as one segment of a URL path, its slashes escaped too. A message id is whatever its sender chose:
    left with its slashes, ``../intake.reports/<id>`` would be dot segments a browser resolves before sending, and
    the form would act on another dead letter. The route's ``{message_id:path}`` takes the id back whole."""
    return quote(value, safe="")


_templates.env.filters["duration"] = duration
_templates.env.filters["path_segment"] = path_segment
_templates.env.filters["stamp"] = stamp
