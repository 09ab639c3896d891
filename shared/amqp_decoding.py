"""Decoding that a sender's odd value cannot turn into a lost connection.

pamqp decodes every frame on the connection's reader task. A value it cannot decode — a timestamp past the year
9999 (a millisecond or microsecond epoch, or a pre-1970 time from the Java client), text that is not UTF-8 in a
property or a header's name — raised there and closed the whole connection (aiormq#186): every consumer of the
service stopped, the message came back at the next connection and closed it again, and the broker finally
dead-lettered it, and the messages behind it, unread. Decoded here instead into something the consumers can
look at and refuse, so the message meets the same checks as any other.
"""

from __future__ import annotations

import struct
from datetime import datetime

from pamqp import common, decode

_UNSIGNED_64 = struct.Struct(">Q")


def _timestamp(value: bytes) -> tuple[int, datetime | int]:
    """A header's: out of datetime's range, the raw number, as the protocol carries it."""
    try:
        return decode.timestamp(value)
    except (ValueError, OverflowError, OSError):
        if len(value) < _UNSIGNED_64.size:
            raise
        return 8, _UNSIGNED_64.unpack_from(value)[0]


def _timestamp_property(value: bytes) -> tuple[int, datetime | None]:
    """The message's ``timestamp`` property: out of datetime's range, none. aio-pika takes only a datetime there,
    and failing to build the message in the client's consumer task would leave it unacked for good, holding a
    prefetch slot without a word."""
    consumed, decoded = _timestamp(value)
    return consumed, decoded if isinstance(decoded, datetime) else None


def _short_str(value: bytes) -> tuple[int, str]:
    try:
        return decode.short_str(value)
    except UnicodeDecodeError:
        length = value[0]
        return length + 1, value[1 : length + 1].decode("utf-8", errors="replace")


def _field_table(value: bytes) -> tuple[int, common.FieldTable]:
    """pamqp's own, with a name that is not UTF-8 decoded with replacement characters instead of raising."""
    try:
        return decode.field_table(value)
    except UnicodeDecodeError:
        pass
    length = common.Struct.integer.unpack_from(value)[0]
    end = 4 + length
    if end > len(value):
        raise ValueError("Field table length exceeds available data")
    table: dict[str, common.FieldValue] = {}
    offset = 4
    while offset < end:
        name_length = value[offset]
        offset += 1
        name = value[offset : offset + name_length].decode("utf-8", errors="replace")
        offset += name_length
        consumed, table[name] = decode.embedded_value(value[offset:])
        offset += consumed
    return end, table


def tolerate_undecodable_values() -> None:
    """Installs the decoders above in pamqp, for every connection of the process (idempotent)."""
    decode.METHODS.update(timestamp=_timestamp_property, shortstr=_short_str, table=_field_table)
    decode.TABLE_MAPPING.update({b"T": _timestamp, b"F": _field_table})
