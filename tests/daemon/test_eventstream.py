"""specd's eventstream encoder read back by botocore's own parser (which checks both CRCs and every length)."""

from __future__ import annotations

import pytest

from specd.daemon.api import eventstream

botocore_eventstream = pytest.importorskip("botocore.eventstream")


def decode(data: bytes) -> list:
    buffer = botocore_eventstream.EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_events_and_exceptions_decode_with_their_headers_and_payload():
    data = (eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "déjà 😀"}})
            + eventstream.exception("throttlingException", "queue full"))
    first, second = decode(data)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert first.payload.decode() == '{"contentBlockIndex": 0, "delta": {"text": "déjà 😀"}}'
    assert second.headers[":message-type"] == "exception"
    assert second.headers[":exception-type"] == "throttlingException"
    assert second.payload == b'{"message": "queue full"}'


def test_a_flipped_bit_fails_botocores_crc_check():
    data = bytearray(eventstream.event("messageStop", {"stopReason": "end_turn"}))
    data[-6] ^= 1
    with pytest.raises(botocore_eventstream.ChecksumMismatch):
        decode(bytes(data))
