"""specd's own door for the language server: `/specd/v1/complete` (prefix, suffix, language, extra
context, line/block mode; a newer request for a document cancels the older one) and `/specd/v1/status`."""

from __future__ import annotations

import asyncio
import os
import secrets
import time

from aiohttp import web

from specd.daemon import __version__

from . import speculative
from .generation import CTX, Door, Shape, add_door, generate, generation_request, log_prompt, read_body, usage
from .schema import parse_native


def add_routes(app: web.Application) -> None:
    """Register the native door (every `/specd/...` path) and its routes on `app`: POST /specd/v1/complete and GET
    /specd/v1/status."""
    add_door(app, Door("native", lambda request: request.path.startswith("/specd/")))
    app.router.add_post("/specd/v1/complete", native_complete)
    app.router.add_get("/specd/v1/status", status)


async def native_complete(request: web.Request) -> web.StreamResponse:
    """`POST /specd/v1/complete`, the language server's route: a body schema.parse_native reads (prefix, suffix,
    language, path, extra_context, mode, document_id, ...), answered `{id, text, finish_reason, usage, specd}` or
    streamed as `data:` events of `{id, text}`. Raises BadRequest (400) for a bad body."""
    ctx = request.app[CTX]
    body = await read_body(request)
    params = parse_native(body)
    report = speculative.apply_body(ctx, body, params)
    rid = "spd-" + secrets.token_hex(12)
    files = [f"{file.path} ({len(file.text)} chars)" for file in params.context_files]
    log_prompt(ctx, rid, params, f" language={params.language!r} path={params.path!r} other_files={files!r}")
    return await generate(request, ctx, generation_request(ctx, params), params, NativeShape(rid, speculative=report))


async def status(request: web.Request) -> web.Response:
    """`GET /specd/v1/status`: the daemon's version, pid, uptime (seconds), scheduler state and load error, the loaded
    models (Engine.info), requests served, acceptance rate, queue depth, whether it is idle, the main settings, and with
    an upstream what it answers when asked now (HttpUpstream.describe)."""
    ctx = request.app[CTX]
    s = ctx.settings
    upstream = None
    check = getattr(ctx.scheduler.engine, "check_upstream", None)  # engine/remote.py: ask the upstream now
    if check is not None:
        upstream = await asyncio.wrap_future(check())
    return web.json_response({
        "upstream": upstream,
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(time.time() - ctx.started_at, 3),
        "state": ctx.scheduler.state,
        "load_error": ctx.scheduler.load_error,
        "device": (ctx.scheduler.engine_info() or {}).get("device"),
        "models": ctx.scheduler.engine_info(),
        "requests_served": ctx.metrics.requests_served(),
        "acceptance_rate": ctx.metrics.acceptance_rate(),
        "queue_depth": ctx.scheduler.queue_depth,
        "idle": ctx.scheduler.idle,
        "settings": {"verifier": s.verifier, "drafter": s.drafter, "draft_strategy": s.draft_strategy,
                     "max_draft_tokens": s.max_draft_tokens, "max_context": s.max_context,
                     "keep_alive": s.keep_alive, "queue_size": s.queue_size,
                     "request_timeout": s.request_timeout},
    })


class NativeShape(Shape):
    """The native route's answer: `{id, text, finish_reason, usage: {prompt_tokens, completion_tokens, total_tokens},
    specd}`; a stream's events are `{id, text}`, the last one the whole body with empty text."""

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        counts = usage(stats)
        del counts["prompt_tokens_details"]
        return {"id": self.rid, "text": text, "finish_reason": finish_reason, "usage": counts, "specd": stats}

    def delta(self, text: str) -> dict:
        return {"id": self.rid, "text": text}

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        return self.body("", finish_reason, stats)
