"""What every service's HTTP side shares: health endpoints, safe error bodies, body limits, agency auth."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.clock import utcnow
from shared.directory import Agency, Directory
from shared.errors import field_path
from shared.tokens import FailureLimiter, token_sha256
from shared.tokens import Scope as TokenScope  # Scope alone is ASGI's

log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[bool]]


class Readiness(BaseModel):
    status: str
    checks: dict[str, bool]


def health_router(checks: Mapping[str, Check]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=None,
        responses={
            200: {"model": Readiness, "description": "every dependency answers"},
            503: {"model": Readiness, "description": "a dependency does not answer (named in checks)"},
        },
    )
    async def readyz() -> JSONResponse:
        """Ready when every dependency answers (broker, database, consumers)."""
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), timeout=5)
            except Exception:  # a failing probe is an answer, not an error
                results[name] = False
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results}, status_code=200 if ready else 503
        )

    return router


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's default body echoes the input; ours names the fields only (inputs may be victim identity).
    errors = []
    for item in exc.errors():
        loc = list(item.get("loc", ()))
        if loc[:1] == ["body"]:
            loc = loc[1:]
        errors.append({"field": field_path(loc, item.get("type", "")), "message": item.get("msg", "invalid")})
    return JSONResponse({"detail": "request is invalid", "errors": errors}, status_code=422)


ErrorAnswers = Mapping[type[Exception], Callable[[Any], JSONResponse]]


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """The body of every refusal: what is wrong and, for an invalid request, the fields at fault (never their
    values). Some refusals add a key of their own (``case_id``, ``status``)."""

    detail: str
    errors: list[FieldError] | None = None


AGENCY_TOKEN_SCHEME = "AgencyToken"  # noqa: S105  # a name in the OpenAPI document, not a secret
"""The OpenAPI security scheme of agency and operator tokens (``agency_auth``)."""
_CALLER_REFUSALS = {
    "401": "missing, unknown or expired bearer token",
    "403": "the token is valid, but not for this",
    "429": "too many failed authentications from this address: try again after Retry-After seconds",
}
_RETRY_AFTER = {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}}}
_PROBLEM = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def install_error_handlers(app: FastAPI, answers: ErrorAnswers | None = None) -> None:
    """Safe 422 bodies for every service, and each service's domain errors mapped to HTTP answers once; the
    OpenAPI document lists these answers where they can happen."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error, answer in (answers or {}).items():
        app.add_exception_handler(error, _answering(answer))
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = generate()
        if fresh:
            limited = any(isinstance(m.cls, type) and issubclass(m.cls, BodyLimit) for m in app.user_middleware)
            document_refusals(document, body_limit=limited)
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend its document


def document_refusals(document: dict[str, Any], *, body_limit: bool) -> None:
    """Adds to each operation the refusals that come from outside its own code — the token check (401, 403,
    429), the body parser (400, 422) and ``BodyLimit`` (413) — and gives every refusal the ``Problem`` body it has
    (FastAPI would document its own validation error, which ``_validation_error`` replaces)."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if any(AGENCY_TOKEN_SCHEME in requirement for requirement in operation.get("security", ())):
                for code, description in _CALLER_REFUSALS.items():
                    responses.setdefault(code, {"description": description})
                responses["429"].setdefault("headers", _RETRY_AFTER)
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "the body cannot be read as JSON text (e.g. not UTF-8)"})
                responses.setdefault("422", {"description": "invalid request: the fields at fault, never their values"})
                if body_limit:
                    responses.setdefault("413", {"description": "the body is larger than this service accepts"})
            for code, answer in responses.items():
                if code[0] in "45" and (not answer.get("content") or "HTTPValidationError" in str(answer["content"])):
                    answer["content"] = _PROBLEM
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs"))
    schemas["Problem"] = problem_schema


def _answering(answer: Callable[[Any], JSONResponse]) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return answer(exc)

    return handle


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0
        started = too_large = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if too_large:
                # FastAPI answers a body it could not read (a chunked one, with no length declared) with 400: the
                # answer is 413, as for a body whose declared length is over the limit.
                if not started:
                    started = True
                    await self._too_large(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLargeError:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse({"detail": f"request body is larger than {self.max_bytes} bytes"}, 413)
        await response({"type": "http"}, _no_receive, send)


class _TooLargeError(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


_bearer = HTTPBearer(auto_error=False, scheme_name=AGENCY_TOKEN_SCHEME)


@dataclass(frozen=True)
class Caller:
    """Who called, by a valid token: an agency, or an operator (``agency`` None), and what the token may do."""

    id: str
    agency: Agency | None
    scopes: frozenset[TokenScope]

    def acting_as(self, scope: TokenScope) -> Agency:
        """The calling agency when its token has ``scope``; otherwise 403 (the token is good, not for this)."""
        if self.agency is None or scope not in self.scopes:
            raise HTTPException(status_code=403, detail=f"this token does not have the {scope} scope")
        return self.agency


def scoped(authenticate: Any, scope: TokenScope) -> Any:
    """A dependency answering the calling agency when its token has ``scope`` (403 otherwise): checked before
    the body is read, so a caller without the scope learns nothing from validation errors."""

    async def acting(caller: Caller = authenticate) -> Agency:
        return caller.acting_as(scope)

    return Depends(acting)


def agency_auth(
    directory_source: Callable[[], Directory],
    *,
    limiter: FailureLimiter | None = None,
    clock: Callable[[], datetime] = utcnow,
    monotonic: Callable[[], float] = time.monotonic,
) -> Callable[..., Awaitable[Caller]]:
    """A dependency answering the caller, 401 for a missing, unknown or expired token, and 429 for a client
    address with too many failures lately. A valid token always gets through: agencies behind one office NAT or
    proxy must not be locked out of acknowledging a child's referral by somebody else's failures, and a
    256-bit token is not found by guessing anyway."""
    failures = limiter or FailureLimiter()

    async def authenticate(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        address = request.client.host if request.client else "unknown"
        found = directory_source().token_holder(credentials.credentials) if credentials else None
        if found is not None and found[1].valid_at(clock()):
            holder, entry = found
            return Caller(holder.id, holder if isinstance(holder, Agency) else None, frozenset(entry.scopes))
        wait = failures.retry_after(address, monotonic())
        if wait is not None:
            raise HTTPException(
                status_code=429,
                detail="too many failed authentications from this address; try again later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if credentials is None:
            why, detail = "no bearer token", "missing or unknown bearer token"
        elif found is None:
            # A prefix of the hash lets an operator tell attempts apart; the token itself is never logged.
            why, detail = (
                f"unknown token sha256:{token_sha256(credentials.credentials)[:8]}",
                "missing or unknown bearer token",
            )
        else:
            holder, entry = found
            why, detail = f"expired token {entry.label or entry.sha256[:8]} of {holder.id}", "bearer token expired"
        count = failures.fail(address, monotonic())
        log.warning(
            "authentication_failed", reason=f"{why} from {address}", path=request.url.path, method=request.method,
            count=count,
        )  # fmt: skip
        raise HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})

    return authenticate


def problem(status_code: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code)
