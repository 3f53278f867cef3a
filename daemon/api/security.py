"""Local means safe: the bearer token file and the Host / Origin / token checks as aiohttp middlewares.

Host and Origin checks stop DNS rebinding and cross-site requests from a browser tab: a web page can
reach 127.0.0.1, but it cannot pick the Host header's name nor hide its Origin.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from specd.daemon.config.settings import Settings, is_loopback_host

from . import sigv4
from .speculative import HEADER_NAMES

log = logging.getLogger("specd.security")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_ROUTES = frozenset({"/health", "/"})  # `/` answers only HEAD, Claude Code's probe, which sends no key


class ErrorResponse(web.Response):
    """An error in specd's generic body, OpenAI's layout `{"error": {message, type, param, code}}` with `code` the
    HTTP status (as llama-server and vLLM answer) unless the error has a code of OpenAI's own (`model_not_found`);
    the app rewords it for a door that has its own error body (generation.Door), so a check made here answers in
    every door's shape."""

    def __init__(self, status: int, message: str, kind: str, headers: dict | None = None, param: str | None = None,
                 code: str | None = None) -> None:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code or status}}
        super().__init__(text=json.dumps(body), status=status, content_type="application/json", headers=headers)
        self.message, self.kind, self.extra_headers = message, kind, dict(headers or {})


def json_error(status: int, message: str, kind: str, headers: dict | None = None, param: str | None = None,
               code: str | None = None) -> web.Response:
    """specd's generic JSON error response (ErrorResponse: OpenAI's `{"error": {message, type, param, code}}`, `code`
    the status unless given), which the app rewords for the door that owns the request."""
    return ErrorResponse(status, message, kind, headers, param, code)


def load_or_create_token(token_file: Path) -> str:
    """The token lives in a 0600 file created on first start and reused afterwards, so that
    editors configured with it keep working across restarts."""
    token_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(token_file.stat().st_mode)
        if mode & 0o077:
            log.warning("token file %s was readable by others (mode %o); restricting it to 0600", token_file, mode)
            os.chmod(token_file, 0o600)
        token = token_file.read_text(encoding="utf-8").strip()
        if token:
            return token
        fd = os.open(token_file, os.O_WRONLY | os.O_TRUNC, 0o600)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


def load_or_create_aws_keys(keys_file: Path) -> sigv4.KeyPair:
    """The access key pair AWS SDKs sign with (SigV4) when pointed at specd's Bedrock door: made at first start
    beside the token, in a 0600 JSON file, and kept across restarts."""
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(keys_file, 0o600)
        try:
            saved = json.loads(keys_file.read_text(encoding="utf-8"))
            return sigv4.KeyPair(saved["aws_access_key_id"], saved["aws_secret_access_key"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s is unreadable; issuing a new key pair", keys_file)
        fd = os.open(keys_file, os.O_WRONLY | os.O_TRUNC, 0o600)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    keys = sigv4.KeyPair("SPECD" + "".join(secrets.choice(alphabet) for _ in range(15)), secrets.token_urlsafe(30))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"aws_access_key_id": keys.access_key_id, "aws_secret_access_key": keys.secret_access_key}, f)
    return keys


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:7411
        return host_header[1:].split("]", 1)[0]
    if host_header.count(":") == 1:
        return host_header.rsplit(":", 1)[0]
    return host_header


def allowed_host_names(settings: Settings) -> frozenset[str]:
    """Host header names accepted besides loopback ones: the `allowed_hosts` setting (lower-cased), and `host` itself
    when the daemon binds a specific non-loopback address."""
    names = {h.lower() for h in settings.allowed_hosts}
    if settings.host not in ("0.0.0.0", "::", "") and not is_loopback_host(settings.host):
        names.add(settings.host.lower())  # an explicit non-loopback bind is reached by that name
    return frozenset(names)


def security_middlewares(settings: Settings, token: str, aws_keys: sigv4.KeyPair | None = None) -> list:
    """The aiohttp middlewares that guard every route, in order: the Host header must be a loopback name or an allowed
    one (403), a browser Origin (or a cross-site Sec-Fetch-Site) must be in `allowed_origins` (403; an allowed one gets
    CORS headers and preflight answers), and every route but PUBLIC_ROUTES needs the token as `Authorization: Bearer`,
    `x-api-key`, `x-goog-api-key` or `?key=` (401; one of them holding it is enough), or a SigV4 signature with
    `aws_keys` (403 when it does not verify)."""
    extra_hosts = allowed_host_names(settings)
    allowed_origins = frozenset(o.rstrip("/") for o in settings.allowed_origins)
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if host is None:
            return json_error(403, "missing Host header", "forbidden")
        name = _host_name(host.strip()).lower()
        if not (is_loopback_host(name) or name in extra_hosts):
            log.warning("refused a request for Host %r (not a loopback name)", host)
            return json_error(403, f"Host {host!r} is not allowed: specd answers only to loopback names "
                                   "(add it to allowed_hosts in settings.json to change this)", "forbidden")
        return await handler(request)

    @web.middleware
    async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if origin is not None and origin.rstrip("/") in allowed_origins:
            if request.method == "OPTIONS":
                asked = request.headers.get("Access-Control-Request-Headers", "")
                return web.Response(status=204, headers=_cors_headers(origin, preflight=True, asked=asked))
            response = await handler(request)
            response.headers.update(_cors_headers(origin))
            return response
        if origin is not None or fetch_site not in (None, "none", "same-origin"):
            log.warning("refused a browser request from origin %r", origin)
            return json_error(403, f"browser origin {origin!r} is not allowed "
                                   "(list it in allowed_origins in settings.json to allow it)", "forbidden")
        return await handler(request)

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_ROUTES:
            return await handler(request)
        authorization = request.headers.get("Authorization", "").strip().encode()
        if authorization.startswith(sigv4.ALGORITHM.encode()):  # AWS SDKs sign with the key pair specd issued
            return await check_signature(request, handler)
        scheme, _, credentials = authorization.partition(b" ")
        if scheme.lower() == b"bearer":  # an auth scheme's name is case-insensitive (RFC 9110, section 11.1)
            authorization = b"Bearer " + credentials.strip()
        # Anthropic's header (its SDK 0.x/1.x, ANTHROPIC_API_KEY); Google's header and query parameter
        keys = [k for k in (request.headers.get("x-api-key"), request.headers.get("x-goog-api-key"),
                            request.query.get("key")) if k is not None]
        offered = ([authorization] if authorization else []) + [b"Bearer " + k.strip().encode() for k in keys]
        # any one that holds the token opens the door: Claude Code sends Bearer and x-api-key when both
        # ANTHROPIC_AUTH_TOKEN and ANTHROPIC_API_KEY are set, and a stale one of them refused every request
        if not any([hmac.compare_digest(given, expected) for given in offered]):
            why = "missing Authorization header" if not offered else "wrong token"
            aws = (" or sign it with SigV4 and specd's AWS key pair (`specd config bedrock` prints a profile)"
                   if request.path.startswith(sigv4.BEDROCK_PATHS) else "")
            return json_error(401, f"{why}: send 'Authorization: Bearer <token>' (or 'x-api-key' or "
                                   "'x-goog-api-key: <token>', or '?key=<token>') with the token from `specd status "
                                   f"--json` (token_file){aws}", "unauthorized", headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def check_signature(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if aws_keys is None:
                raise sigv4.SignatureRefused("UnrecognizedClientException", "this daemon issued no AWS key pair")
            sigv4.verify(request.method, request.raw_path, request.headers, await request.read(), aws_keys,
                         time.time())
        except sigv4.SignatureRefused as refused:
            return json_error(403, f"{refused} (SigV4)", refused.code)
        return await handler(request)

    return [check_host, check_origin, check_token]


# Response headers a page of an allowed origin may read (CORS exposes only a safelisted few by default).
EXPOSED_HEADERS = ", ".join(["retry-after", *HEADER_NAMES])  # every header of specd's a page may read
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


def _cors_headers(origin: str, preflight: bool = False, asked: str = "") -> dict[str, str]:
    """CORS headers for an origin the user allowed (Fetch standard). A preflight may ask for any request headers:
    the SDKs' own (`x-api-key`, `anthropic-version`, `x-goog-api-key`, `x-stainless-*`) are granted as asked,
    since the token still has to come with the request."""
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Expose-Headers": EXPOSED_HEADERS}
    if preflight:
        headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        allowed = "Authorization, Content-Type"
        if _HEADER_LIST.fullmatch(asked.strip()):
            allowed += ", " + asked.strip()
        headers["Access-Control-Allow-Headers"] = allowed
        headers["Access-Control-Max-Age"] = "600"
    return headers
