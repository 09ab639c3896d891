"""What other AMQP clients put in a message that pamqp or FastStream would choke on; found by the queue fuzzer
(tests/fuzz/test_queues.py), which shows each end to end on the real broker."""

from __future__ import annotations

from typing import Any

import pamqp.decode
import pamqp.encode

from shared.consuming import encodable


def written_and_read(headers: dict[str, Any]) -> dict[str, Any]:
    _, table = pamqp.decode.field_table(pamqp.encode.field_table(headers))
    return table


def test_a_header_that_is_not_utf8_is_written_back_byte_for_byte() -> None:
    read = b"\xfd\x00nama"  # how pamqp reads a long string that is not UTF-8

    assert bytes(written_and_read({"h": encodable(read)})["h"]) == read


def test_a_double_beyond_single_precision_is_written_back_as_its_text() -> None:
    assert written_and_read({"h": encodable(-4.9e173)}) == {"h": "-4.9e+173"}


def test_headers_inside_tables_and_arrays_are_made_writable_too() -> None:
    written = written_and_read({"t": encodable({"a": [b"\xff", 1e300, 1.5]})})

    assert written == {"t": {"a": [bytearray(b"\xff"), "1e+300", 1.5]}}
