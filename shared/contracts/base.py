"""What every message contract shares: strictness, immutability, a versioned type name."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, StringConstraints

AgencyId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=60)]
RegencyCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}\.[0-9]{2}$")]
"""Kemendagri code of a regency or city, e.g. ``61.07`` Bengkayang."""
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2."""


class Contract(BaseModel):
    """A message body. ``TYPE`` travels in the AMQP ``type`` property, e.g. ``case.reported.v1``."""

    # A refused message's error names the field, never its value: the value may be a victim's NIK or name,
    # and errors end up in logs and dead-letter reasons.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
    TYPE: ClassVar[str]


class Priority(StrEnum):
    URGENT = "urgent"
    NORMAL = "normal"
