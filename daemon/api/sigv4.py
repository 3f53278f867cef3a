"""AWS Signature Version 4, checked on the server side: boto3 pointed at specd with `endpoint_url` signs every
request with the access key pair specd issued (state dir, mode 0600), and specd recomputes the signature.

Wire format: "Create a signed AWS API request" and "Elements of an AWS API request signature"
(docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html). The request carries

    Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/<service>/aws4_request,
                   SignedHeaders=content-type;host;x-amz-date, Signature=<64 hex>
    X-Amz-Date: <yyyymmddThhmmssZ>

and the signature is HMAC-SHA256, under a key derived from the secret, the day, the region and the service, of

    AWS4-HMAC-SHA256 \\n <X-Amz-Date> \\n <day>/<region>/<service>/aws4_request \\n hex(sha256(canonical request))

where the canonical request is method, canonical URI, canonical query string, the signed headers as
`name:value` lines (names lower-cased, runs of spaces in values folded), the signed header names, and the
payload's SHA-256 (or the `X-Amz-Content-SHA256` header's value, which must then match the body unless it is
`UNSIGNED-PAYLOAD`). For services other than S3 the URI's path is normalised and its already percent-encoded
segments are encoded once more (botocore's `SigV4Auth.canonical_request`). Region and service are taken as
the client signed them: specd serves whatever region a profile names.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
from calendar import timegm
from dataclasses import dataclass
from time import strptime
from typing import Mapping
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
# bedrock-runtime's paths (botocore's service model), which boto3 signs: specd serves /model/...; the others
# (ApplyGuardrail, the async invocations) are answered in Bedrock's error shape too
BEDROCK_PATHS = ("/model/", "/guardrail/", "/async-invoke")
MAX_SKEW_S = 15 * 60  # AWS refuses requests signed more than 15 minutes away from its clock
_FIELDS = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]+)")


@dataclass(frozen=True)
class KeyPair:
    """The AWS access key pair specd issues for its Bedrock door: `access_key_id` ("SPECD" and 15 base32 characters) and
    `secret_access_key`."""

    access_key_id: str
    secret_access_key: str


class SignatureRefused(Exception):
    """Why a signed request is refused; `code` is the exception name AWS answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """SigV4's signing key: HMAC-SHA256 chained over `day` (yyyymmdd), `region`, `service` and "aws4_request", starting
    from "AWS4" + `secret`, as "Create a signed AWS API request" derives it
    (docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html). 32 bytes."""
    key = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def canonical_uri(raw_path: str) -> str:
    """SigV4's canonical URI for services other than S3 (botocore's): `raw_path` (still percent-encoded) normalised (a
    trailing slash kept) and percent-encoded once more, "/" and "~" left as they are; "/" for an empty path."""
    path = posixpath.normpath(raw_path) if raw_path else "/"
    if raw_path.endswith("/") and path != "/":
        path += "/"
    return quote(path, safe="/~")


def canonical_query(raw_query: str) -> str:
    """SigV4's canonical query string: the raw (already encoded) `name=value` pairs sorted by name, then value, a name
    without "=" given an empty value; "" for no query."""
    pairs = sorted(pair.partition("=")[::2] for pair in raw_query.split("&") if pair) if raw_query else []
    return "&".join(f"{key}={value}" for key, value in pairs)


def canonical_request(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
                      signed_headers: list[str], payload_hash: str) -> str:
    """SigV4's canonical request: method, canonical URI, canonical query, the `signed_headers` (lower-case names) as
    `name:value` lines (values trimmed, inner whitespace folded, repeated headers joined by ","), the signed header
    names joined by ";", and `payload_hash` (hex SHA-256, or "UNSIGNED-PAYLOAD"), one per line."""
    lines = [f"{name}:{','.join(' '.join(v.split()) for v in _values(headers, name))}\n" for name in signed_headers]
    return "\n".join([method.upper(), canonical_uri(raw_path), canonical_query(raw_query), "".join(lines),
                      ";".join(signed_headers), payload_hash])


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)  # multidict: a header sent twice is signed as "a,b"
    return list(getall(name, [])) if getall else ([headers[name]] if name in headers else [])


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """SigV4's string to sign: the algorithm, `amz_date` (yyyymmddThhmmssZ), the credential `scope`
    (day/region/service/aws4_request) and the hex SHA-256 of `canonical`, one per line."""
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def verify(method: str, raw_path_and_query: str, headers: Mapping[str, str], body: bytes, keys: KeyPair,
           now: float) -> None:
    """Returns when the request is signed by `keys`; raises SignatureRefused saying why otherwise."""
    authorization = headers.get("Authorization", "").strip()
    if not authorization.startswith(ALGORITHM + " "):
        raise SignatureRefused("MissingAuthenticationTokenException",
                               "the request is not signed (no 'Authorization: AWS4-HMAC-SHA256 ...' header)")
    fields = dict(_FIELDS.findall(authorization))
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise SignatureRefused("IncompleteSignatureException",
                               "the Authorization header needs Credential=, SignedHeaders= and Signature=")
    scope_parts = fields["Credential"].split("/")
    if len(scope_parts) != 5 or scope_parts[4] != "aws4_request":
        raise SignatureRefused("IncompleteSignatureException",
                               "Credential must be <key id>/<yyyymmdd>/<region>/<service>/aws4_request")
    key_id, day, region, service, _ = scope_parts
    if not hmac.compare_digest(key_id.encode(), keys.access_key_id.encode()):
        raise SignatureRefused("UnrecognizedClientException",
                               f"access key {key_id!r} is not specd's; use the key pair `specd config bedrock` prints")
    amz_date = headers.get("X-Amz-Date", "")
    try:
        signed_at = timegm(strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise SignatureRefused("IncompleteSignatureException",
                               "X-Amz-Date must be the signing time as yyyymmddThhmmssZ") from None
    if amz_date[:8] != day:
        raise SignatureRefused("InvalidSignatureException", "the Credential's date is not the X-Amz-Date's day")
    if abs(now - signed_at) > MAX_SKEW_S:
        raise SignatureRefused("InvalidSignatureException",
                               f"Signature expired: signed at {amz_date}, more than 15 minutes from this clock")
    signed_headers = fields["SignedHeaders"].split(";")
    if "host" not in signed_headers or "x-amz-date" not in signed_headers:
        raise SignatureRefused("IncompleteSignatureException", "SignedHeaders must include host and x-amz-date")
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = headers.get("X-Amz-Content-SHA256")
    if declared is not None and declared != "UNSIGNED-PAYLOAD" and declared != payload_hash:
        raise SignatureRefused("InvalidSignatureException", "X-Amz-Content-SHA256 does not match the body")
    path, _, query = raw_path_and_query.partition("?")
    canonical = canonical_request(method, path, query, headers, signed_headers, declared or payload_hash)
    scope = f"{day}/{region}/{service}/aws4_request"
    expected = hmac.new(signing_key(keys.secret_access_key, day, region, service),
                        string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), fields["Signature"].encode()):
        raise SignatureRefused("InvalidSignatureException",
                               "The request signature we calculated does not match the signature you provided: "
                               "check the secret access key (`specd config bedrock`)")
