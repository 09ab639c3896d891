"""The inbound SMS/WhatsApp gateway webhook: an officer with no data connection replies ``TERIMA <code>``."""

# No `from __future__ import annotations`: FastAPI must see the closure's parameters in the signatures.
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from services.referral.officer_desk import OfficerDesk

_bearer = HTTPBearer(auto_error=False, scheme_name="GatewayToken")


class InboundMessage(BaseModel):
    """What the gateway forwards of a reply it received."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    sender: str = Field(alias="from", pattern=r"^\+[1-9][0-9]{7,14}$")
    text: str = Field(max_length=1000)


class InboundAnswer(BaseModel):
    accepted: bool
    reply: str = Field(description="A text the gateway may send back to the officer.")
    referral_id: str | None = None


def build_sms_replies(desk: OfficerDesk, gateway_token: str | None) -> APIRouter:
    router = APIRouter(prefix="/v1/inbound", tags=["gateway"])

    async def gateway(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if not gateway_token:
            raise HTTPException(status_code=404, detail="no inbound gateway is configured")
        # Bytes, not str: compare_digest refuses non-ASCII text, and a header is whatever a caller sends.
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), gateway_token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong gateway token")

    @router.post(
        "/sms",
        dependencies=[Depends(gateway)],
        responses={
            401: {"description": "missing or wrong gateway token"},
            404: {"description": "no inbound gateway is configured"},
        },
    )
    async def sms_reply(message: InboundMessage) -> InboundAnswer:
        """200 for every message handled, refused or not: a gateway retries anything else."""
        outcome = await desk.sms_reply(message.sender, message.text)
        return InboundAnswer(
            accepted=outcome.accepted,
            reply=outcome.reply,
            referral_id=str(outcome.referral_id) if outcome.referral_id else None,
        )

    return router
