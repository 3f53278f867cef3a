"""The `application/vnd.amazon.eventstream` message encoder, for Bedrock's streaming answers (ConverseStream,
InvokeModelWithResponseStream). Only encoding: botocore's own `botocore.eventstream` parser reads it back in
the tests.

Wire format ("Event stream encoding", docs.aws.amazon.com/transcribe/latest/dg/event-stream.html; Smithy's
event-stream spec), big-endian throughout:

    prelude:  total length (uint32) | headers length (uint32) | CRC32 of those 8 bytes (uint32)
    headers:  per header: name length (uint8) | name | value type (uint8; 7 = string) | length (uint16) | value
    payload:  the event's bytes (JSON here)
    trailer:  CRC32 of everything before it (uint32)

The total length counts all four parts. Events carry `:message-type: event`, `:event-type: <member>` and
`:content-type: application/json`; errors after the 200 are `:message-type: exception` with
`:exception-type: <name>` and `{"message": ...}` as payload.
"""

from __future__ import annotations

import binascii
import json
import struct

_STRING = 7


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return struct.pack(">B", len(name_bytes)) + name_bytes + struct.pack(">BH", _STRING, len(value_bytes)) + value_bytes


def message(headers: dict[str, str], payload: bytes) -> bytes:
    """One `application/vnd.amazon.eventstream` message (see the module docstring): prelude, `headers` as string-typed
    headers in their order, `payload`, CRC32 trailer."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack(">I", binascii.crc32(body))


def event(event_type: str, payload: dict) -> bytes:
    """An eventstream event message: `:event-type` `event_type` (a ConverseStreamOutput or ResponseStream member, e.g.
    "contentBlockDelta", "chunk") with `payload` as JSON."""
    return message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                   json.dumps(payload, ensure_ascii=False).encode())


def exception(exception_type: str, text: str) -> bytes:
    """An eventstream exception message (an error after the 200): `:exception-type` `exception_type` (e.g.
    "validationException") with `{"message": text}` as JSON."""
    return message({":exception-type": exception_type, ":content-type": "application/json",
                    ":message-type": "exception"}, json.dumps({"message": text}, ensure_ascii=False).encode())
