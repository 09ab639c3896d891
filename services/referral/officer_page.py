"""The officer page behind a one-click link: mobile-friendly, Bahasa Indonesia, no login beyond the link."""

# No `from __future__ import annotations`: FastAPI must see the closure's parameters in the signatures.
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.referral.lifecycle import Reply, Status
from services.referral.officer_desk import (
    SESSION_HOURS,
    DeskRefusalError,
    LinkUsedError,
    OfficerDesk,
    PinLockedError,
    RefusedAfterSpendingError,
    Visit,
)
from shared.contracts.base import Priority
from shared.contracts.referrals import DeclineReason
from shared.directory import Directory
from shared.errors import IllegalTransitionError, NotPermittedError
from shared.links import ExpiredLinkError, LinkError

COOKIE = "rujukan_officer"
_templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

_STATUS_WORDS = {
    Status.REQUESTED: "menunggu konfirmasi",
    Status.DELIVERED: "terkirim, menunggu konfirmasi",
    Status.FAILED: "gagal terkirim, menunggu konfirmasi",
    Status.ACKNOWLEDGED: "dikonfirmasi",
    Status.ACCEPTED: "diterima",
    Status.DECLINED: "ditolak",
    Status.REFERRED_ONWARD: "dirujuk lanjut",
    Status.IN_PROGRESS: "sedang ditangani",
    Status.ON_HOLD: "ditunda",
    Status.COMPLETED: "selesai",
    Status.CANCELLED: "dibatalkan",
    Status.ENTERED_IN_ERROR: "salah input",
}
_DECLINE_WORDS = {
    DeclineReason.NOT_IN_JURISDICTION: "Bukan wilayah kami",
    DeclineReason.NOT_ELIGIBLE: "Tidak memenuhi syarat",
    DeclineReason.NO_CAPACITY: "Kapasitas penuh",
    DeclineReason.DUPLICATE: "Rujukan ganda",
    DeclineReason.OTHER: "Lainnya (tulis alasan)",
}
_ACTIONS = {"acknowledge": Reply.ACKNOWLEDGED, "accept": Reply.ACCEPTED, "decline": Reply.DECLINED}
_DONE_WORDS = {
    "acknowledged": "Rujukan sudah Anda konfirmasi. Terima kasih.",
    "accepted": "Rujukan diterima.",
    "declined": "Rujukan ditolak; pelapor sudah diberi tahu.",
}


def build_officer_page(desk: OfficerDesk, directory: Callable[[], Directory], *, secure_cookie: bool) -> APIRouter:
    router = APIRouter(prefix="/o", include_in_schema=False)

    def keep_session(response: Response, token: str, session: str | None) -> Response:
        if session:
            # Scoped to this link's own path, so one link's session never opens another referral. Lax, not
            # Strict: reopening the link from WhatsApp Web or webmail is a cross-site navigation, and GET only reads.
            response.set_cookie(
                COOKIE, session, max_age=SESSION_HOURS * 3600, path=f"/o/{token}",
                httponly=True, samesite="lax", secure=secure_cookie,
            )  # fmt: skip
        return response

    def render(request: Request, visit: Visit, *, status_code: int = 200, **extra: Any) -> Response:
        token = str(request.path_params["token"])
        response = _templates.TemplateResponse(
            request, "officer.html", {"token": token, **_page(visit, directory(), **extra)}, status_code=status_code
        )
        return keep_session(response, token, visit.session)

    def refusal(request: Request, error: Exception) -> Response:
        status_code = 410 if isinstance(error, LinkUsedError | ExpiredLinkError) else 404
        if isinstance(error, DeskRefusalError):
            status_code = 422
        if isinstance(error, PinLockedError):
            status_code = 423
        elif isinstance(error, NotPermittedError):
            status_code = 403
        elif isinstance(error, IllegalTransitionError):
            status_code = 409
        return _templates.TemplateResponse(
            request, "message.html", {"message": _safe_message(error)}, status_code=status_code
        )

    @router.get("/{token}", response_class=HTMLResponse)
    async def officer_page(
        request: Request, token: str, session: Annotated[str | None, Cookie(alias=COOKIE)] = None, done: str = ""
    ) -> Response:
        try:
            visit = await desk.look(token, session)
        except (LinkError, DeskRefusalError) as exc:
            return refusal(request, exc)
        return render(request, visit, done=_DONE_WORDS.get(done))

    @router.post("/{token}/{action}", response_class=HTMLResponse)
    async def officer_action(
        request: Request,
        token: str,
        action: str,
        session: Annotated[str | None, Cookie(alias=COOKIE)] = None,
        reason: Annotated[DeclineReason | None, Form()] = None,
        note: Annotated[str | None, Form(max_length=2000)] = None,
    ) -> Response:
        reply = _ACTIONS.get(action)
        if reply is None:
            return refusal(request, LinkError("tindakan tidak dikenal (unknown action)"))
        detail: dict[str, Any] = {}
        if reply is Reply.DECLINED:
            if reason is None or (reason is DeclineReason.OTHER and not (note and note.strip())):
                return refusal(request, DeskRefusalError("pilih alasan penolakan; alasan 'lainnya' perlu catatan"))
            detail["reason"] = reason.value
        try:
            visit = await desk.act(token, session, reply, note=note or None, detail=detail)
        except RefusedAfterSpendingError as exc:
            return keep_session(refusal(request, exc.cause), token, exc.session)
        except (LinkError, DeskRefusalError, NotPermittedError, IllegalTransitionError) as exc:
            return refusal(request, exc)
        return keep_session(RedirectResponse(f"/o/{token}?done={reply.value}", status_code=303), token, visit.session)

    @router.post("/{token}", response_class=HTMLResponse)
    async def reveal_identity(
        request: Request,
        token: str,
        pin: Annotated[str, Form(min_length=1, max_length=12)],
        session: Annotated[str | None, Cookie(alias=COOKIE)] = None,
    ) -> Response:
        try:
            revealed = await desk.reveal(token, session, pin)
        except RefusedAfterSpendingError as exc:
            return keep_session(refusal(request, exc.cause), token, exc.session)
        except (LinkError, PinLockedError, NotPermittedError) as exc:
            return refusal(request, exc)
        if revealed.refusal:
            return render(request, revealed.visit, status_code=403, pin_error=revealed.refusal)
        response = render(request, revealed.visit, identity=revealed.identity)
        # Identity must not linger in a shared phone's browser cache or history.
        response.headers["Cache-Control"] = "no-store"
        return response

    return router


def _safe_message(error: Exception) -> str:
    if isinstance(error, IllegalTransitionError):
        return f"Tidak dapat dilakukan: status rujukan sekarang {error.current}."
    if isinstance(error, NotPermittedError):
        return "Rujukan ini ditujukan ke lembaga lain; Anda dapat melihat ringkasannya saja."
    return str(error)


def _page(visit: Visit, directory: Directory, **extra: Any) -> dict[str, Any]:
    referral, case, agency = visit.referral, visit.case, visit.agency
    zone = directory.zone_of(agency)
    refs = set(referral.victim_refs)
    victims = [v for v in case.victims if v.victim_ref in refs]
    due = referral.ack_due_at.astimezone(zone)
    own = referral.agency_id == agency.id
    open_before_ack = referral.status in (Status.REQUESTED, Status.DELIVERED, Status.FAILED)
    before_decision = open_before_ack or referral.status is Status.ACKNOWLEDGED
    return {
        "case_code": case.case_code,
        "urgent": referral.priority is Priority.URGENT,
        "regency": directory.regency_name(case.regency_code) or case.regency_code,
        "agency_name": agency.name,
        "addressed_to": addressee.name if (addressee := directory.agency(referral.agency_id)) else referral.agency_id,
        "officer_name": visit.officer.name,
        "status": _STATUS_WORDS[referral.status],
        "due": f"{due:%d-%m-%Y %H:%M} {due.tzname()}",
        "victims": [
            {
                "ref": v.victim_ref,
                "sex": {"female": "perempuan", "male": "laki-laki"}.get(v.sex.value, "tidak diketahui"),
                "age": v.age_years,
                "needs": [need.value for need in v.needs],
            }
            for v in victims
        ],
        "can_acknowledge": own and open_before_ack,
        "can_decide": own and before_decision,
        "can_reveal": own,
        "decline_reasons": _DECLINE_WORDS,
        "identity": None,
        "pin_error": None,
        "done": None,
        **extra,
    }
