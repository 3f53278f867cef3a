"""Request bodies and their Content-Encoding, through the real aiohttp app over the fake engine: gzip and deflate
bodies are read; a body that does not decode as its Content-Encoding is a 400, and a coding specd cannot decode a
415 with `Accept-Encoding`, both in each door's own error body (they were a 500 with a traceback, or aiohttp's
plain-text 400); a body that decodes beyond the size limit stays a 413; the daemon keeps serving."""

from __future__ import annotations

import gzip
import json
import logging
import zlib

import aiohttp
import pytest
from aiohttp import web

from specd.daemon.api.generation import MAX_BODY_BYTES, decode_body
from specd.daemon.api.schema import BadRequest

from .conftest import fake_daemon

botocore = pytest.importorskip("botocore")
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from specd.daemon.api.sigv4 import KeyPair  # noqa: E402

ACCEPTED = "gzip, deflate, identity"
KEYS = KeyPair("SPECDTESTKEY00000000", "secret")

# door -> (path, a body the fake engine answers with 200)
DOORS = {  # 2 tokens each: no door's default, so the engine's requests show the bodies were read
    "openai": ("/v1/completions", {"prompt": "x", "max_tokens": 2}),
    "anthropic": ("/v1/messages", {"model": "specd", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}),
    "gemini": ("/v1beta/models/specd:generateContent", {"contents": [{"parts": [{"text": "x"}]}],
                                                        "generationConfig": {"maxOutputTokens": 2}}),
    "bedrock": ("/model/specd/converse", {"messages": [{"role": "user", "content": [{"text": "x"}]}],
                                          "inferenceConfig": {"maxTokens": 2}}),
    "native": ("/specd/v1/complete", {"prefix": "x", "max_tokens": 2}),
}


def door_error(door: str, status: int, message: str) -> tuple[int, dict, dict]:
    """(status, body, headers) the door answers for a refused body, request ids left out."""
    if door == "anthropic":
        kinds = {400: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error"}
        return status, {"type": "error", "error": {"type": kinds[status], "message": message}}, {}
    if door == "gemini":
        return status, {"error": {"code": status, "message": message, "status": "INVALID_ARGUMENT"}}, {}
    if door == "bedrock":
        return status, {"message": message}, {"x-amzn-ErrorType": "ValidationException"}
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": status}}, {}


async def post(d, path: str, data: bytes, encoding: str | None) -> tuple[int, dict, dict]:
    headers = {**d.auth, "Content-Type": "application/json"}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    async with aiohttp.ClientSession() as s, s.post(d.url + path, data=data, headers=headers) as response:
        body = await response.json()
        body.pop("request_id", None)
        return response.status, body, response.headers


def undecodable(coding: str, why: str) -> str:
    return f"request body could not be decoded as its Content-Encoding {coding!r}: {why}"


def unsupported(coding: str) -> str:
    return (f"request body has Content-Encoding {coding!r}, which specd cannot decode; "
            f"it accepts {ACCEPTED} (not encoded)")


OK_BODY = json.dumps(DOORS["openai"][1]).encode()
REFUSED = [  # (Content-Encoding, body as sent, status, message)
    ("gzip", b"notgzip", 400, undecodable("gzip", "incorrect header check")),
    ("deflate", gzip.compress(OK_BODY), 400, undecodable("deflate", "invalid block type")),
    ("gzip", gzip.compress(OK_BODY)[:-6], 400, undecodable("gzip", "the compressed data ends early")),
    ("deflate", zlib.compress(OK_BODY) + b"junk", 400,
     undecodable("deflate", "4 bytes follow the end of the compressed data")),
    ("br", OK_BODY, 415, unsupported("br")),
    ("zstd", OK_BODY, 415, unsupported("zstd")),
    ("compress", OK_BODY, 415, unsupported("compress")),
    ("gzip, br", OK_BODY, 415, unsupported("br")),
    ("gzip", gzip.compress(b" " * (MAX_BODY_BYTES + 1)), 413, f"request body is larger than {MAX_BODY_BYTES} bytes"),
]


@pytest.mark.parametrize("door", DOORS)
async def test_a_body_that_cannot_be_decoded_is_a_4xx_in_the_doors_body_and_the_daemon_keeps_serving(door, caplog):
    path, body = DOORS[door]
    async with fake_daemon() as d:
        for encoding, data, status, message in REFUSED:  # refused before the JSON is read: any door's body does
            got_status, got_body, headers = await post(d, path, data, encoding)
            want_status, want_body, want_headers = door_error(door, status, message)
            assert (got_status, got_body) == (want_status, want_body), encoding
            for name, value in want_headers.items():
                assert headers[name] == value
            assert headers.get("Accept-Encoding") == (ACCEPTED if status == 415 else None), encoding
        assert (await post(d, path, json.dumps(body).encode(), None))[0] == 200  # still serving
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no tracebacks, no 500s"


@pytest.mark.parametrize("encoding, encode", [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),  # RFC 9110 §8.4.1.3: the same as gzip
    ("GZIP", gzip.compress),
    ("deflate", zlib.compress),  # zlib's format, as RFC 9110 names deflate
    ("deflate", lambda raw: zlib.compress(raw)[2:-4]),  # raw deflate without zlib's header, as some clients send
    ("identity", lambda raw: raw),
    ("gzip, identity", gzip.compress),
    ("deflate, gzip", lambda raw: gzip.compress(zlib.compress(raw))),  # applied in the order listed
    ("gzip", lambda raw: gzip.compress(raw[:5]) + gzip.compress(raw[5:])),  # two gzip members
])
async def test_encoded_bodies_are_read_on_every_door(encoding, encode):
    async with fake_daemon() as d:
        for door, (path, body) in DOORS.items():
            status, answer, _ = await post(d, path, encode(json.dumps(body).encode()), encoding)
            assert status == 200, (door, answer)
        assert [r.max_tokens for r in d.engine.requests] == [2] * len(DOORS)


async def test_a_sigv4_signed_gzip_body_is_checked_as_sent_then_decoded():
    """SigV4 signs the body as sent (encoded): the signature is checked over those bytes, then the body decoded."""
    async with fake_daemon(aws_keys=KEYS) as d:
        async def send(data: bytes) -> tuple[int, dict, str]:
            url = d.url + "/model/specd/converse"
            request = AWSRequest("POST", url, data=data, headers={"Content-Type": "application/json",
                                                                  "Content-Encoding": "gzip"})
            SigV4Auth(Credentials(KEYS.access_key_id, KEYS.secret_access_key), "bedrock", "us-east-1").add_auth(request)
            async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=dict(request.headers)) as r:
                return r.status, await r.json(), r.headers.get("x-amzn-ErrorType", "")

        status, answer, _ = await send(gzip.compress(json.dumps(DOORS["bedrock"][1]).encode()))
        assert status == 200 and answer["output"]["message"]["content"] == [{"text": "t0 t1 "}]
        assert d.engine.requests[-1].prompt == "user: x\nassistant:"
        assert await send(b"notgzip") == (400, {"message": undecodable("gzip", "incorrect header check")},
                                          "ValidationException")


def test_decode_body_undoes_codings_last_first_and_bounds_the_output():
    raw = b'{"prompt": "x"}'
    assert decode_body(raw, "") == raw
    assert decode_body(zlib.compress(gzip.compress(raw)), "gzip, deflate") == raw
    assert decode_body(gzip.compress(raw * 4), "gzip", limit=len(raw) * 4) == raw * 4
    with pytest.raises(web.HTTPRequestEntityTooLarge):
        decode_body(gzip.compress(raw * 4), "gzip", limit=len(raw) * 4 - 1)
    with pytest.raises(BadRequest) as refused:
        decode_body(gzip.compress(raw) + b"not a gzip member", "gzip")
    assert str(refused.value) == undecodable("gzip", "incorrect header check")
