"""What every service's HTTP side shares: health endpoints, safe error bodies, body limits, agency auth."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.directory import Agency, Directory

Check = Callable[[], Awaitable[bool]]


def health_router(checks: Mapping[str, Check]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz")
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
        loc = [str(part) for part in item.get("loc", ())]
        if loc[:1] == ["body"]:
            loc = loc[1:]
        errors.append({"field": ".".join(loc) or "(body)", "message": item.get("msg", "invalid")})
    return JSONResponse({"detail": "request is invalid", "errors": errors}, status_code=422)


ErrorAnswers = Mapping[type[Exception], Callable[[Any], JSONResponse]]


def install_error_handlers(app: FastAPI, answers: ErrorAnswers | None = None) -> None:
    """Safe 422 bodies for every service, and each service's domain errors mapped to HTTP answers once."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error, answer in (answers or {}).items():
        app.add_exception_handler(error, _answering(answer))


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
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
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


_bearer = HTTPBearer(auto_error=False)


def agency_auth(directory_source: Callable[[], Directory]) -> Callable[..., Awaitable[Agency]]:
    """A dependency answering the calling agency, or 401 for a missing or unknown token."""

    async def authenticate(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Agency:
        agency = directory_source().agency_for_token(credentials.credentials) if credentials else None
        if agency is None:
            raise HTTPException(
                status_code=401,
                detail="missing or unknown bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return agency

    return authenticate


def problem(status_code: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code)
