"""Frames carrying values pamqp cannot decode are read all the same, so one sender cannot close a connection."""

from __future__ import annotations

import struct
from typing import Any

import pamqp.encode
import pamqp.frame
import pytest
from pamqp import commands, header

from shared.amqp_decoding import tolerate_undecodable_values
from tests.fuzz.messages import RawTimestamp, encoding_foreign_values, encoding_raw_timestamps

MICROSECONDS_SINCE_1970 = 1_780_000_000_000_000


class RawText(bytes):
    """A short string that need not be UTF-8."""

    def encode(self, *_: object) -> bytes:
        return self


@pytest.fixture
def a_foreign_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """pamqp's encoders, also writing what another client may send."""
    string = pamqp.encode._string

    def encode_string(encoder: struct.Struct, value: Any) -> bytes:
        if isinstance(value, RawText):
            return encoder.pack(len(value)) + value
        return string(encoder, value)

    monkeypatch.setattr(pamqp.encode, "encode_table_value", encoding_foreign_values(pamqp.encode.encode_table_value))
    monkeypatch.setattr(pamqp.encode, "_string", encode_string)
    monkeypatch.setitem(pamqp.encode.METHODS, "timestamp", encoding_raw_timestamps(pamqp.encode.METHODS["timestamp"]))


def received(properties: commands.Basic.Properties) -> commands.Basic.Properties:
    frame = pamqp.frame.marshal(header.ContentHeader(0, 2, properties), 1)
    tolerate_undecodable_values()
    _, _, content_header = pamqp.frame.unmarshal(frame)
    assert isinstance(content_header, header.ContentHeader)
    return content_header.properties


@pytest.mark.usefixtures("a_foreign_client")
def test_a_timestamp_header_past_the_year_9999_is_read_as_its_number() -> None:
    properties = received(
        commands.Basic.Properties(message_id="m-1", headers={"sent-at": RawTimestamp(MICROSECONDS_SINCE_1970)})
    )

    assert properties.headers == {"sent-at": MICROSECONDS_SINCE_1970}
    assert properties.message_id == "m-1"


@pytest.mark.usefixtures("a_foreign_client")
def test_a_timestamp_property_past_the_year_9999_is_read_as_none() -> None:
    """Found by review of the fix above: read as its number, the property failed aio-pika's own check in the
    client's consumer task, and the message stayed unacked for good."""
    properties = received(commands.Basic.Properties(message_id="m-1", timestamp=RawTimestamp(MICROSECONDS_SINCE_1970)))

    assert properties.timestamp is None
    assert properties.message_id == "m-1"


@pytest.mark.usefixtures("a_foreign_client")
def test_a_header_name_or_a_message_id_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    properties = received(
        commands.Basic.Properties(message_id=RawText(b"LP\xff1"), headers={RawText(b"asal\xfe"): "polres"})
    )

    assert properties.message_id == "LP\ufffd1"
    assert properties.headers == {"asal\ufffd": "polres"}
