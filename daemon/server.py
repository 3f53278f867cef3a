"""The HTTP API: app factory, routes and the error/metrics middleware.

Handlers turn a request body into engine parameters (server_schema), hand the work to the scheduler
and shape the answer (OpenAI JSON, OpenAI SSE chunks, or the native LSP shape). They never touch the
engine directly: the scheduler's worker thread owns it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Callable

from aiohttp import web

from . import __version__
from .metrics import Metrics
from .scheduler import EngineUnavailable, JobCancelled, QueueFull, Scheduler
from .server_schema import (BadRequest, CompletionParams, native_prompt, parse_chat, parse_completion,
                            parse_json_body, parse_native)
from .server_security import json_error, security_middlewares
from .settings import Settings

log = logging.getLogger("specd.server")

MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class Context:
    settings: Settings
    scheduler: Scheduler
    metrics: Metrics
    new_request: Callable[..., Any]  # GenerationRequest
    request_error: type[Exception]  # RequestError
    started_at: float

    def model_names(self) -> tuple[str, set[str]]:
        """The served model's name and every name a client may use for it."""
        spec = self.settings.verifier
        name = PurePath(spec).name if ("/" in spec and os.path.exists(spec)) else spec
        aliases = {"specd", spec, name, PurePath(spec).name}
        info = self.scheduler.engine_info()
        if info and info.get("verifier"):
            aliases.add(str(info["verifier"]))
        return name, {a.lower() for a in aliases}


CTX = web.AppKey("specd_context", Context)


def create_app(settings: Settings, scheduler: Scheduler, *, token: str, new_request: Callable[..., Any],
               request_error: type[Exception], metrics: Metrics | None = None) -> web.Application:
    """`new_request` and `request_error` are the engine's GenerationRequest and RequestError, passed in
    so that this module (and its tests) never import torch."""
    metrics = metrics or scheduler.metrics
    app = web.Application(
        middlewares=[errors_and_metrics(metrics), *security_middlewares(settings, token)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CTX] = Context(settings, scheduler, metrics, new_request, request_error, time.time())
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/specd/v1/complete", native_complete)
    app.router.add_get("/specd/v1/status", status)
    app.router.add_get("/metrics", metrics_text)
    return app


def errors_and_metrics(metrics: Metrics):
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        started = time.monotonic()
        try:
            response = await handler(request)
        except web.HTTPException as e:  # unknown route, wrong method, body too large, ...
            response = _http_error(request, e)
        except BadRequest as e:
            response = json_error(400, str(e), "invalid_request_error")
        except (ConnectionResetError, asyncio.CancelledError):
            metrics.count_request(request.method, _route(request), 499)  # client went away
            raise
        except Exception:  # noqa: BLE001 - one broken request must not take the daemon down
            log.exception("internal error on %s %s", request.method, request.path)
            response = json_error(500, "internal error; see `specd logs`", "server_error")
        metrics.count_request(request.method, _route(request), response.status)
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


# ---- simple routes -------------------------------------------------------------------------------

async def health(request: web.Request) -> web.Response:
    state = request.app[CTX].scheduler.state
    return web.json_response({"status": "ok" if state in ("ready", "unloaded") else state,
                              "version": __version__})


async def list_models(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name, _ = ctx.model_names()
    model = {"id": name, "object": "model", "created": int(ctx.started_at), "owned_by": "specd"}
    return web.json_response({"object": "list", "data": [model]})


async def status(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    s = ctx.settings
    return web.json_response({
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


async def metrics_text(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.metrics.set_gauges(queue_depth=ctx.scheduler.queue_depth)
    return web.Response(text=ctx.metrics.render(), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"}, charset="utf-8")


# ---- completions ---------------------------------------------------------------------------------

async def _read_body(request: web.Request) -> dict:
    return parse_json_body(await request.read())


def _check_model(ctx: Context, requested: str | None) -> web.Response | None:
    if requested is None:
        return None
    name, aliases = ctx.model_names()
    if requested.lower() in aliases:
        return None
    return json_error(404, f"model {requested!r} is not served here; this daemon serves {name!r} "
                           "(also accepted: 'specd')", "model_not_found")


def _generation_request(ctx: Context, params: CompletionParams, prompt: str | None = None) -> Any:
    return ctx.new_request(
        prompt=params.prompt if prompt is None else prompt, suffix=params.suffix,
        max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p, seed=params.seed,
        stop=params.stop, mode=params.mode, draft_tokens=params.draft_tokens, cache_key=params.document_id,
        fit_context=params.fit_context,
    )


def _log_prompt(ctx: Context, rid: str, params: CompletionParams, extra: str = "") -> None:
    if ctx.settings.log_prompts:  # off by default: prompts are the user's source code
        log.info("%s prompt=%r suffix=%r%s", rid, params.prompt, params.suffix, extra)


def _usage(stats: dict) -> dict:
    prompt, completion = int(stats.get("prompt_tokens", 0)), int(stats.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": int(stats.get("cached_tokens", 0))}}


async def completions(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    params = parse_completion(await _read_body(request))
    refused = _check_model(ctx, params.model)
    if refused is not None:
        return refused
    rid = "cmpl-" + secrets.token_hex(12)
    _log_prompt(ctx, rid, params)
    shape = _CompletionShape(rid, ctx.model_names()[0])
    return await _generate(request, ctx, _generation_request(ctx, params), params, shape)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    messages, params = parse_chat(await _read_body(request))
    refused = _check_model(ctx, params.model)
    if refused is not None:
        return refused
    rid = "chatcmpl-" + secrets.token_hex(12)
    if ctx.settings.log_prompts:
        log.info("%s messages=%r", rid, messages)

    def build(engine: Any) -> Any:  # on the worker: the chat template needs the loaded tokenizer
        return _generation_request(ctx, params, prompt=engine.apply_chat_template(messages))

    return await _generate(request, ctx, build, params, _ChatShape(rid, ctx.model_names()[0]))


async def native_complete(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    params, language, path, snippets = parse_native(await _read_body(request))
    params.prompt = native_prompt(params.prompt, language, snippets)
    rid = "spd-" + secrets.token_hex(12)
    _log_prompt(ctx, rid, params, f" language={language!r} path={path!r}")
    return await _generate(request, ctx, _generation_request(ctx, params), params, _NativeShape(rid))


async def _generate(request: web.Request, ctx: Context, gen_request: Any, params: CompletionParams,
                    shape: "_Shape") -> web.StreamResponse:
    deltas: asyncio.Queue[str] | None = asyncio.Queue() if params.stream else None
    on_text = None
    if deltas is not None:
        loop = asyncio.get_running_loop()

        def on_text(delta: str) -> None:  # called on the worker thread
            loop.call_soon_threadsafe(deltas.put_nowait, delta)

    try:
        job = ctx.scheduler.submit(gen_request, params.document_id, on_text)
    except QueueFull as e:
        return json_error(503, str(e), "overloaded", headers={"Retry-After": str(e.retry_after)})
    except EngineUnavailable as e:
        return json_error(503, str(e), "unavailable")
    if deltas is None:
        try:
            result = await ctx.scheduler.wait(job)
        except Exception as e:  # noqa: BLE001 - mapped to an HTTP answer below
            return _failure_response(ctx, e, shape)
        return web.json_response(shape.body(result.text, result.finish_reason, result.stats.to_dict()))
    return await _stream(request, ctx, job, deltas, params, shape)


def _failure_response(ctx: Context, error: Exception, shape: "_Shape") -> web.Response:
    if isinstance(error, JobCancelled):
        if error.reason == "superseded":  # the client itself sent a newer request for this document
            partial = error.result
            stats = partial.stats.to_dict() if partial is not None else {}
            return web.json_response(shape.body(partial.text if partial else "", "cancelled", stats))
        if error.reason == "deadline":
            return json_error(504, f"the request did not finish within request_timeout "
                                   f"({ctx.settings.request_timeout:g}s)", "timeout")
        return json_error(503, f"the request was cancelled ({error.reason})", "cancelled")
    if isinstance(error, ctx.request_error):
        return json_error(400, str(error), "invalid_request_error")
    if isinstance(error, EngineUnavailable):
        return json_error(503, str(error), "unavailable")
    log.error("generation failed: %s: %s", type(error).__name__, error,
              exc_info=(type(error), error, error.__traceback__))
    return json_error(500, f"generation failed: {type(error).__name__}; see `specd logs`", "server_error")


async def _stream(request: web.Request, ctx: Context, job: Any, deltas: asyncio.Queue,
                  params: CompletionParams, shape: "_Shape") -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    finished = False
    waiter = asyncio.ensure_future(ctx.scheduler.wait(job))
    try:
        await response.prepare(request)
        for chunk in shape.stream_start():
            await _send_event(response, chunk)
        sent = []
        while True:
            getter = asyncio.ensure_future(deltas.get())
            done, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            sent.append(getter.result())
            await _send_event(response, shape.delta(sent[-1]))
        while not deltas.empty():  # deltas queued just before the result arrived
            sent.append(deltas.get_nowait())
            await _send_event(response, shape.delta(sent[-1]))
        finished = True
        try:
            result = waiter.result()
        except JobCancelled as e:
            if e.reason != "superseded":
                await response.write(b"data: " + _failure_response(ctx, e, shape).body + b"\n\n")
            else:
                stats = e.result.stats.to_dict() if e.result is not None else {}
                await _send_event(response, shape.stream_end("cancelled", stats))
        except Exception as e:  # noqa: BLE001 - reported in-band: the 200 status line is already sent
            await response.write(b"data: " + _failure_response(ctx, e, shape).body + b"\n\n")
        else:
            streamed = "".join(sent)
            if result.text != streamed and result.text.startswith(streamed):
                await _send_event(response, shape.delta(result.text[len(streamed):]))
            elif result.text != streamed:
                log.error("%s: streamed text differs from the final text", shape.rid)
            stats = result.stats.to_dict()
            await _send_event(response, shape.stream_end(result.finish_reason, stats))
            if params.include_usage:
                await _send_event(response, shape.stream_usage(stats))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    finally:
        if not finished:  # client gone (write failed or handler cancelled): free the worker
            job.cancel_with("disconnect")
            waiter.cancel()


async def _send_event(response: web.StreamResponse, payload: dict) -> None:
    await response.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")


class _Shape:
    """How one route words its answers."""

    def __init__(self, rid: str, model: str = "specd") -> None:
        self.rid, self.model, self.created = rid, model, int(time.time())

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        raise NotImplementedError

    def stream_start(self) -> list[dict]:
        return []

    def delta(self, text: str) -> dict:
        raise NotImplementedError

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        raise NotImplementedError

    def stream_usage(self, stats: dict) -> dict:
        return {"id": self.rid, "object": self.chunk_object, "created": self.created, "model": self.model,
                "choices": [], "usage": _usage(stats), "specd": stats}

    chunk_object = ""


class _CompletionShape(_Shape):
    chunk_object = "text_completion"

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return {"id": self.rid, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"text": text, "index": 0, "finish_reason": finish_reason, "logprobs": None}],
                "usage": _usage(stats), "specd": stats}

    def delta(self, text: str) -> dict:
        return {"id": self.rid, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"text": text, "index": 0, "finish_reason": None, "logprobs": None}]}

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        end = self.delta("")
        end["choices"][0]["finish_reason"] = finish_reason
        end["specd"] = stats
        return end


class _ChatShape(_Shape):
    chunk_object = "chat.completion.chunk"

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        message = {"role": "assistant", "content": text}
        return {"id": self.rid, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
                "usage": _usage(stats), "specd": stats}

    def _chunk(self, delta: dict, finish_reason: str | None) -> dict:
        return {"id": self.rid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    def stream_start(self) -> list[dict]:
        return [self._chunk({"role": "assistant", "content": ""}, None)]

    def delta(self, text: str) -> dict:
        return self._chunk({"content": text}, None)

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        end = self._chunk({}, finish_reason)
        end["specd"] = stats
        return end


class _NativeShape(_Shape):
    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        usage = _usage(stats)
        del usage["prompt_tokens_details"]
        return {"id": self.rid, "text": text, "finish_reason": finish_reason, "usage": usage, "specd": stats}

    def delta(self, text: str) -> dict:
        return {"id": self.rid, "text": text}

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        return self.body("", finish_reason, stats)
