"""The HTTP application: one aiohttp app with the security and error/metrics middleware, the routes of
every API door (one module each), `/health` and `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from aiohttp import web

from specd.daemon import __version__
from specd.daemon.config.settings import Settings
from specd.daemon.service.metrics import Metrics
from specd.daemon.service.scheduler import Scheduler

from . import anthropic, bedrock, gemini, native, openai
from .generation import (ACCEPT_ENCODING, CTX, DOORS, MAX_BODY_BYTES, Context, UnsupportedEncoding, door_error,
                         door_of)
from .schema import BadRequest
from .security import json_error, security_middlewares
from .sigv4 import KeyPair

log = logging.getLogger("specd.server")


def create_app(settings: Settings, scheduler: Scheduler, *, token: str, new_request: Callable[..., Any],
               request_error: type[Exception], metrics: Metrics | None = None,
               aws_keys: KeyPair | None = None) -> web.Application:
    """`new_request` and `request_error` are the engine's GenerationRequest and RequestError, passed in
    so that this module (and its tests) never import torch. `aws_keys`: the pair SigV4-signed requests must
    be signed with (none: such requests are refused)."""
    metrics = metrics or scheduler.metrics
    app = web.Application(
        middlewares=[errors_and_metrics(metrics), *security_middlewares(settings, token, aws_keys)],
        client_max_size=MAX_BODY_BYTES,
        # Bodies arrive as sent: generation.read_body undoes their Content-Encoding, so that one that does not
        # decode, or a coding specd cannot decode, is a 4xx in the door's error body (aiohttp's decoding answered
        # a 500, or a plain-text 400 before the app saw the request), and SigV4 checks the bytes the client signed.
        handler_args={"auto_decompress": False},
    )
    app[CTX] = Context(settings, scheduler, metrics, new_request, request_error, time.time())
    app[DOORS] = []  # each door's add_routes adds itself (generation.add_door); the first that owns a request
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_text)
    anthropic.add_routes(app)  # before openai: it owns GET /v1/models when the request carries anthropic-version
    openai.add_routes(app)
    native.add_routes(app)
    gemini.add_routes(app)
    bedrock.add_routes(app)
    return app


def errors_and_metrics(metrics: Metrics):
    """The outermost middleware: answers a handler's HTTPException, BadRequest (400), UnsupportedEncoding (415, with
    Accept-Encoding) or unexpected exception (500, logged) as specd's JSON error, rewords every error in the owning
    door's body (Door.error), and counts each request in `metrics` by route and door (499 when the client went away,
    which is re-raised)."""
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        started = time.monotonic()
        door = door_of(request)
        try:
            response = await handler(request)
        except web.HTTPException as e:  # unknown route, wrong method, body too large, ...
            response = _http_error(request, e)
        except UnsupportedEncoding as e:  # 415 with the codings a client may use instead (RFC 9110 §15.5.16)
            response = json_error(415, str(e), "invalid_request_error", {"Accept-Encoding": ACCEPT_ENCODING})
        except BadRequest as e:
            response = json_error(400, str(e), "invalid_request_error")
        except (ConnectionResetError, asyncio.CancelledError):
            metrics.count_request(request.method, _route(request), 499)  # client went away
            metrics.count_door(door.name if door else "none", 499)
            log.info("%s %s -> client went away after %.0f ms", request.method, request.path,
                     (time.monotonic() - started) * 1000)
            raise
        except Exception:  # noqa: BLE001 - one broken request must not take the daemon down
            log.exception("internal error on %s %s", request.method, request.path)
            response = json_error(500, "internal error; see `specd logs`", "server_error")
        response = door_error(door, response)  # errors in the door's own body
        metrics.count_request(request.method, _route(request), response.status)
        metrics.count_door(door.name if door else "none", response.status)
        log.info("%s %s -> %d in %.0f ms", request.method, request.path, response.status,
                 (time.monotonic() - started) * 1000)
        return response

    return middleware


def _http_error(request: web.Request, e: web.HTTPException) -> web.Response:
    if e.status == 404:
        message = f"no such route: {request.method} {request.path}"
    elif e.status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    elif e.status == 413:
        message = f"request body is larger than {MAX_BODY_BYTES} bytes"
    else:
        message = e.reason
    headers = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
    return json_error(e.status, message, "invalid_request_error" if e.status < 500 else "server_error", headers)


def _route(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


# ---- routes of no door --------------------------------------------------------------------------

async def health(request: web.Request) -> web.Response:
    """`GET /health` (no token needed): `{"status", "version"}`, status "ok" while the models are loaded or unloaded for
    keep_alive, else the scheduler's state ("starting", "loading", "failed", "stopped")."""
    state = request.app[CTX].scheduler.state
    return web.json_response({"status": "ok" if state in ("ready", "unloaded") else state,
                              "version": __version__})


async def metrics_text(request: web.Request) -> web.Response:
    """`GET /metrics`: the Prometheus text exposition format (Metrics.render), as text/plain in UTF-8."""
    ctx = request.app[CTX]
    ctx.metrics.set_gauges(queue_depth=ctx.scheduler.queue_depth)
    return web.Response(text=ctx.metrics.render(), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"}, charset="utf-8")
