"""specd's SigV4 check against botocore's own signer: what boto3 signs passes, anything else is refused with the
exception name AWS answers with."""

from __future__ import annotations

import json
import time

import pytest
from multidict import CIMultiDict

from specd.daemon.api import sigv4

botocore = pytest.importorskip("botocore")
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

KEYS = sigv4.KeyPair("SPECDTESTKEY0000", "s3cr3t/with+odd=chars")
BODY = json.dumps({"prompt": "def f(", "max_tokens": 8}).encode()


def signed(url: str = "http://127.0.0.1:7411/model/tiny%3Amodel/invoke", body: bytes = BODY,
           keys: sigv4.KeyPair = KEYS, region: str = "eu-west-3", headers: dict | None = None):
    request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials(keys.access_key_id, keys.secret_access_key), "bedrock", region).add_auth(request)
    received = CIMultiDict(request.headers)
    received["Host"] = url.split("/")[2]
    return "/" + url.split("/", 3)[3], received


def test_what_botocore_signs_is_accepted_in_any_region_with_query_and_encoded_path():
    for url in ("http://127.0.0.1:7411/model/tiny%3Amodel/invoke", "http://localhost:9/model/m/converse?b=2&a=1"):
        for region in ("us-east-1", "eu-west-3"):
            path, headers = signed(url, region=region)
            sigv4.verify("POST", path, headers, BODY, KEYS, time.time())


def test_unsigned_payload_header_is_signed_as_is():
    path, headers = signed(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    sigv4.verify("POST", path, headers, BODY, KEYS, time.time())


@pytest.mark.parametrize("change, code", [
    ("secret", "InvalidSignatureException"),
    ("key id", "UnrecognizedClientException"),
    ("body", "InvalidSignatureException"),
    ("path", "InvalidSignatureException"),
    ("signed header", "InvalidSignatureException"),
    ("clock", "InvalidSignatureException"),
    ("unsigned", "MissingAuthenticationTokenException"),
    ("garbled", "IncompleteSignatureException"),
])
def test_anything_else_is_refused_with_aws_exception_names(change, code):
    keys = {"secret": sigv4.KeyPair(KEYS.access_key_id, "other"),
            "key id": sigv4.KeyPair("AKIAOTHER", KEYS.secret_access_key)}.get(change, KEYS)
    path, headers = signed(keys=keys)
    body, now = BODY, time.time()
    if change == "body":
        body = BODY.replace(b"8", b"9")
    elif change == "path":
        path = path.replace("invoke", "converse")
    elif change == "signed header":
        headers["Content-Type"] = "text/plain"
    elif change == "clock":
        now += 16 * 60
    elif change == "unsigned":
        del headers["Authorization"]
    elif change == "garbled":
        headers["Authorization"] = "AWS4-HMAC-SHA256 Signature=abc"
    with pytest.raises(sigv4.SignatureRefused) as refused:
        sigv4.verify("POST", path, headers, body, KEYS, now)
    assert refused.value.code == code and str(refused.value)


def test_the_key_pair_is_made_once_private_and_kept(tmp_path):
    from specd.daemon.api.security import load_or_create_aws_keys

    path = tmp_path / "state" / "aws_keys.json"
    keys = load_or_create_aws_keys(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert keys.access_key_id.startswith("SPECD") and len(keys.access_key_id) == 20
    assert len(keys.secret_access_key) >= 40
    path.chmod(0o644)
    assert load_or_create_aws_keys(path) == keys and (path.stat().st_mode & 0o777) == 0o600


async def test_through_the_app_a_signed_request_passes_and_a_wrongly_signed_one_is_403():
    import aiohttp

    from .conftest import fake_daemon

    async with fake_daemon(aws_keys=KEYS) as d, aiohttp.ClientSession() as s:
        for keys, status in ((KEYS, 200), (sigv4.KeyPair(KEYS.access_key_id, "wrong"), 403)):
            path, headers = signed(d.url + "/v1/completions", json.dumps({"prompt": "a", "max_tokens": 2}).encode(),
                                   keys=keys)
            async with s.post(d.url + path, data=json.dumps({"prompt": "a", "max_tokens": 2}).encode(),
                              headers={k: v for k, v in headers.items() if k != "Host"}) as response:
                assert response.status == status, await response.text()
        async with s.post(d.url + "/v1/completions", json={"prompt": "a"}, headers={"x-goog-api-key": d.token}) as r:
            assert r.status == 200
        async with s.post(d.url + "/v1/completions?key=" + d.token, json={"prompt": "a"}) as r:
            assert r.status == 200
        async with s.post(d.url + "/v1/completions?key=nope", json={"prompt": "a"}) as r:
            assert r.status == 401
