"""The operators' JSON API (scope ``operate``): overview, overdue referrals, dead letters, a case. Thin: the
operations facade does the work; every action is authorised and audited here, in one place."""

# No `from __future__ import annotations`: FastAPI must see the closure's dependency in the signatures.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.referral.operations import (
    NoteRequiredError,
    Operations,
    ReplayRefusedError,
    UnknownDeadLetterQueueError,
)
from shared.http import Caller, ErrorAnswers, problem
from shared.tokens import Scope


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000, description="why, for the audit trail")


class DiscardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000, description="why it is thrown away, for the audit trail")


OPS_ERROR_ANSWERS: ErrorAnswers = {
    UnknownDeadLetterQueueError: lambda exc: problem(404, f"{exc.args[0]} is not a dead-letter queue here"),
    NoteRequiredError: lambda exc: problem(422, str(exc)),
    ReplayRefusedError: lambda exc: problem(409, str(exc)),
}
"""How the operations facade's refusals reach an operator (installed by the composition root)."""


def operator_of(authenticate: Any) -> Any:
    """A dependency answering the calling operator when the token has ``operate`` (403 otherwise, 401 without
    a valid token): checked before any body is read."""

    async def operating(caller: Caller = authenticate) -> Caller:
        if Scope.OPERATE not in caller.scopes:
            raise HTTPException(status_code=403, detail=f"this token does not have the {Scope.OPERATE} scope")
        return caller

    return Depends(operating)


def _json(model: BaseModel | list[Any]) -> JSONResponse:
    if isinstance(model, list):
        return JSONResponse([item.model_dump(mode="json") for item in model])
    return JSONResponse(model.model_dump(mode="json"))


def build_ops_api(operations: Operations, authenticate: Any) -> APIRouter:
    router = APIRouter(prefix="/v1/ops", tags=["operations"])
    Operator = Annotated[Caller, operator_of(authenticate)]
    missing: dict[int | str, dict[str, Any]] = {403: {}, 404: {}}

    @router.get("/overview", responses={403: {}})
    async def overview(_: Operator) -> JSONResponse:
        """Queues (depth, consumers, rates where the management API answers), services consuming or not, and
        per agency: referrals by status, overdue, median time to acknowledge over 7 and 30 days."""
        return _json(await operations.overview())

    @router.get("/overdue", responses={403: {}})
    async def overdue(_: Operator) -> JSONResponse:
        """Referrals past a deadline they have not met, the latest first, with the officers on duty now."""
        return _json(await operations.overdue())

    @router.get("/dead-letters", responses=missing)
    async def dead_letters(_: Operator, queue: str | None = None) -> JSONResponse:
        """Dead letters of every queue, or of ``queue``: reason, attempts, age; never a body."""
        return _json(await operations.dead_letters(queue))

    @router.get("/dead-letters/{queue}/{message_id:path}", responses=missing)
    async def dead_letter(_: Operator, queue: str, message_id: str) -> JSONResponse:
        letter = await operations.dead_letter(queue, message_id)
        if letter is None:
            return problem(404, f"no dead letter {message_id} in {queue}")
        return _json(letter)

    @router.post("/dead-letters/{queue}/{message_id:path}/replay", responses={**missing, 409: {}})
    async def replay(
        operator: Operator, queue: str, message_id: str, body: ReplayRequest | None = None
    ) -> JSONResponse:
        """Back into the one queue it died in (default exchange), confirmed, then removed; audited."""
        letter = await operations.replay(queue, message_id, operator.id, (body or ReplayRequest()).note)
        if letter is None:
            return problem(404, f"no dead letter {message_id} in {queue}")
        return JSONResponse({"replayed": letter.model_dump(mode="json")})

    @router.post("/dead-letters/{queue}/{message_id:path}/discard", responses={**missing, 422: {}})
    async def discard(operator: Operator, queue: str, message_id: str, body: DiscardRequest) -> JSONResponse:
        """Removed for good; the note (required) says why, on the audit trail."""
        letter = await operations.discard(queue, message_id, operator.id, body.note)
        if letter is None:
            return problem(404, f"no dead letter {message_id} in {queue}")
        return JSONResponse({"discarded": letter.model_dump(mode="json")})

    # ``:path``: police report numbers have slashes (LP/B/123/VIII/2025/POLRES).
    @router.get("/cases/{query:path}", responses=missing)
    async def find_case(_: Operator, query: str) -> JSONResponse:
        """A case by id, police report number or case code: legs and timeline, no identity."""
        view = await operations.find_case(query)
        if view is None:
            return problem(404, f"no case {query}")
        return _json(view)

    return router
