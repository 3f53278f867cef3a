"""What every API door shares: the request context, handing a request to the scheduler, the answer
(JSON or SSE stream) in the door's own shape, and engine failures mapped to HTTP errors.

A door parses its wire format into `CompletionParams` (schema.py), calls `generate` with a `Shape` that
words its answers, and never touches the engine: the scheduler's worker thread owns it.

A new door (one module, e.g. anthropic.py) in its `add_routes(app)`:

- `add_door(app, Door(name, owns, error))`: `owns(request)` says which requests are the door's (by path, or by
  a header on a route doors share); `error(status, message, kind, headers)` words an error in the door's body.
  Every error answered for those requests (security checks, unknown methods, bad bodies, a full queue, engine
  failures) is reworded with it by the app's middleware, and `/metrics` counts the door's requests
  (`specd_door_requests_total{door=name}`).
- a `Shape` subclass: `body` (a whole answer), `stream_start`, `delta`, `stream_end` (one event or a list),
  and where its stream differs `content_type`, `encode`, `error_event`, `done`. `Shape(..., speculative=report)`
  with the report of speculative.apply (the knobs a request carries).
- `generate(request, ctx, gen_request, params, shape)`: a whole answer carries the `x-specd-*` accounting
  headers (speculative.headers); a stream carries the speculative report in headers and the accounting in its
  last events (`shape.stats(...)` adds the report to the engine's accounting).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Awaitable, Callable

from aiohttp import web

from specd.daemon.config.settings import Settings
from specd.daemon.engine.requests import PromptTooLong
from specd.daemon.engine.upstream_call import UpstreamError
from specd.daemon.service.metrics import Metrics
from specd.daemon.service.scheduler import EngineUnavailable, JobCancelled, QueueFull, Scheduler

from . import speculative
from .schema import BadRequest, CompletionParams, parse_json_body
from .security import ErrorResponse, json_error

log = logging.getLogger("specd.server")

MAX_BODY_BYTES = 16 * 1024 * 1024  # a request body, as sent and once its Content-Encoding is undone


@dataclass
class Context:
    """What every handler reaches through `request.app[CTX]`: the daemon's Settings, the Scheduler, the Metrics, the
    engine's GenerationRequest and RequestError classes (passed in so that the API never imports torch), and
    `started_at` (time.time() seconds of the daemon's start)."""

    settings: Settings
    scheduler: Scheduler
    metrics: Metrics
    new_request: Callable[..., Any]  # GenerationRequest
    request_error: type[Exception]  # RequestError
    started_at: float

    def model_names(self) -> tuple[str, set[str]]:
        """The served model's name and every name a client may use for it. With an upstream: the model it serves
        (its setting, else the first /v1/models lists once it answered), else "specd"."""
        info = self.scheduler.engine_info() or {}
        if self.settings.upstream is not None:
            spec = str(info.get("verifier") or self.settings.upstream.get("model") or "specd")
        else:
            spec = self.settings.verifier
        name = PurePath(spec).name if ("/" in spec and os.path.exists(spec)) else spec
        aliases = {"specd", spec, name, PurePath(spec).name}
        if info.get("verifier"):
            aliases.add(str(info["verifier"]))
        return name, {a.lower() for a in aliases}


CTX = web.AppKey("specd_context", Context)


@dataclass(frozen=True)
class Door:
    """One API door as the app sees it: its name (a label in /metrics), which requests it answers, and how it
    words an error (None: specd's generic `{"error": {message, type, code}}`)."""

    name: str
    owns: Callable[[web.Request], bool]
    error: Callable[[int, str, str, dict], web.Response] | None = None
    # GET /v1/models is one route for every door (the OpenAI door registers it): a door that owns a request
    # to it (Anthropic: by its `anthropic-version` header) answers it in its own list shape.
    models: Callable[[web.Request], Awaitable[web.Response]] | None = None


DOORS = web.AppKey("specd_doors", list)


def add_door(app: web.Application, door: Door) -> None:
    """Add `door` to the app's doors; the first whose `owns` accepts a request is that request's door."""
    app[DOORS].append(door)


def door_of(request: web.Request) -> Door | None:
    """The first door of the app that owns `request`, or None (`/health`, `/metrics`, unknown paths)."""
    for door in request.app.get(DOORS, ()):
        if door.owns(request):
            return door
    return None


def door_error(door: Door | None, response: web.StreamResponse) -> web.StreamResponse:
    """An error answered in specd's generic body, reworded in the door's own shape."""
    if door is None or door.error is None or not isinstance(response, ErrorResponse):
        return response
    return door.error(response.status, response.message, response.kind, response.extra_headers)


async def read_body(request: web.Request) -> dict:
    """The request's JSON object body, its Content-Encoding undone (decode_body). Refusals are BadRequest (400),
    UnsupportedEncoding (415) or HTTPRequestEntityTooLarge (413); the app words them in the door's error body."""
    return parse_json_body(decode_body(await request.read(), request.headers.get("Content-Encoding", "")))


# The content codings specd undoes in request bodies (RFC 9110 §8.4.1), all by the standard library's zlib: the
# app turns aiohttp's own decoding off (app.create_app), which answered a body that does not decode with a 500 and
# br/zstd without their optional packages with a plain-text 400 before any door could word it.
# wbits: gzip's header and trailer; for deflate (zlib's format, RFC 1950) see _inflate.
DECODED_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ACCEPT_ENCODING = "gzip, deflate, identity"  # sent with a 415: what a client may use instead


class UnsupportedEncoding(BadRequest):
    """A Content-Encoding specd does not decode. Answered 415 Unsupported Media Type with `Accept-Encoding`, as
    RFC 9110 §15.5.16 (from RFC 7694) says for "an unsupported content coding" in a request: the status tells the
    client that the coding, not the content, is the problem, and the header names the codings it may retry with."""


def decode_body(raw: bytes, content_encoding: str, limit: int = MAX_BODY_BYTES) -> bytes:
    """`raw` with the codings of its Content-Encoding header undone, the last applied first (RFC 9110 §8.4);
    `identity` and an empty header change nothing. At most `limit` bytes come out (else 413), so a small
    compressed body cannot expand without bound."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    for coding in codings:
        if coding not in DECODED_CODINGS:
            raise UnsupportedEncoding(f"request body has Content-Encoding {coding!r}, which specd cannot decode; "
                                      f"it accepts {ACCEPT_ENCODING} (not encoded)")
    for coding in reversed(codings):
        raw = _inflate(raw, coding, limit)
    return raw


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    wbits = DECODED_CODINGS[coding]
    if coding == "deflate" and data[:1] and data[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate (RFC 1951) without zlib's header, as some clients send (and aiohttp read)
    out = bytearray()
    while True:  # gzip: members may follow one another (RFC 1952 §2.2)
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as e:
            raise _undecodable(coding, str(e).split(": ", 1)[-1]) from None
        if len(out) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(out))
        if not inflater.eof:
            raise _undecodable(coding, "the compressed data ends early")
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if wbits != DECODED_CODINGS["gzip"]:
            raise _undecodable(coding, f"{len(data)} bytes follow the end of the compressed data")


def _undecodable(coding: str, why: str) -> BadRequest:
    return BadRequest(f"request body could not be decoded as its Content-Encoding {coding!r}: {why}")


def generation_request(ctx: Context, params: CompletionParams, prompt: str | None = None) -> Any:
    """The engine's GenerationRequest for `params` (`prompt` replaces params.prompt when given: a rendered chat);
    `document_id` becomes the cache key."""
    return ctx.new_request(
        prompt=params.prompt if prompt is None else prompt, suffix=params.suffix,
        max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p, seed=params.seed,
        stop=params.stop, mode=params.mode, draft_tokens=params.draft_tokens, cache_key=params.document_id,
        fit_context=params.fit_context, token_healing=params.token_healing, json_schema=params.json_schema,
        text_choices=params.text_choices,
        prefill_only=params.prefill_only, count_only=params.count_only, context_files=params.context_files,
        path=params.path, language=params.language,
    )


def chat_request(ctx: Context, params: CompletionParams, messages: list[dict], tools: list[dict] | None = None,
                 continue_final: bool = False) -> Callable[[Any], Any]:
    """A chat's request, built on the worker: the chat template needs the loaded tokenizer. `tools`: OpenAI's
    function form; `continue_final`: the prompt ends with the final assistant message's text, left open for the
    answer to continue (a prefill)."""
    return lambda engine: generation_request(ctx, params, prompt=engine.apply_chat_template(
        messages, tools=tools, continue_final=continue_final))


def log_prompt(ctx: Context, rid: str, params: CompletionParams, extra: str = "") -> None:
    """Log the request's prompt and suffix (plus `extra`) under `rid`, only when the `log_prompts` setting is on:
    prompts are the user's source code."""
    if ctx.settings.log_prompts:  # off by default: prompts are the user's source code
        log.info("%s prompt=%r suffix=%r%s", rid, params.prompt, params.suffix, extra)


def usage(stats: dict) -> dict:
    """OpenAI's `usage` from the engine's accounting (tokens): `prompt_tokens`, `completion_tokens`, their
    `total_tokens`, and `prompt_tokens_details.cached_tokens`."""
    prompt, completion = int(stats.get("prompt_tokens", 0)), int(stats.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": int(stats.get("cached_tokens", 0))}}


async def generate(request: web.Request, ctx: Context, gen_request: Any, params: CompletionParams,
                    shape: "Shape") -> web.StreamResponse:
    """Submit `gen_request` (a GenerationRequest, or a callable building one on the worker) and answer in `shape`: the
    whole answer as JSON with the `x-specd-*` headers, or with `params.stream` the door's stream (`stream`). A full
    queue is a 503 `overloaded` with Retry-After, engine failures the statuses `failure_response` gives; a deadline met
    after some text answers that text with finish_reason "length"."""
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
            result = cut_by_deadline(e)
            if result is None:
                return failure_response(ctx, e, shape)
        stats = shape.stats(result.stats.to_dict())
        shape.stop_sequence = getattr(result, "stop_sequence", None)
        return web.json_response(shape.body(result.text, result.finish_reason, stats),
                                 headers=speculative.headers(shape.speculative, stats))
    return await stream(request, ctx, job, deltas, params, shape)


def failure_response(ctx: Context, error: Exception, shape: "Shape") -> web.Response:
    """The HTTP answer for a job that failed with `error`: a superseded job is a 200 answer of its partial text with
    finish_reason "cancelled"; the deadline before any text 504; another cancellation 503; a RequestError 400;
    EngineUnavailable 503; an UpstreamError its own status (400, 503 or 504); anything else 500 (logged). Errors are
    specd's JSON error, which the app rewords in the door's body."""
    if isinstance(error, JobCancelled):
        if error.reason == "superseded":  # the client itself sent a newer request for this document
            partial = error.result
            stats = shape.stats(partial.stats.to_dict() if partial is not None else {})
            return web.json_response(shape.body(partial.text if partial else "", "cancelled", stats),
                                     headers=speculative.headers(shape.speculative, stats))
        if error.reason == "deadline":  # and no text yet (cut_by_deadline)
            stats = error.result.stats if error.result is not None else None
            log.warning("request_timeout (%gs) ran out before any text: answered 504 (%s)",
                        ctx.settings.request_timeout, "still queued" if stats is None else
                        f"queued {stats.queue_s:.1f}s, prefill {stats.prefill_s:.1f}s of {stats.prompt_tokens} "
                        "prompt tokens")
            return json_error(504, f"the request did not finish within request_timeout "
                                   f"({ctx.settings.request_timeout:g}s) and had generated no text yet; raise "
                                   "request_timeout (settings.json, SPECD_REQUEST_TIMEOUT or `specd restart "
                                   "--request-timeout SECONDS`)", "timeout")
        return json_error(503, f"the request was cancelled ({error.reason})", "cancelled")
    if isinstance(error, PromptTooLong):  # OpenAI's code, which clients (LiteLLM, LangChain) map to an overflow
        return json_error(400, str(error), "invalid_request_error", code="context_length_exceeded")
    if isinstance(error, ctx.request_error):
        return json_error(400, str(error), "invalid_request_error")
    if isinstance(error, EngineUnavailable):
        return json_error(503, str(error), "unavailable")
    if isinstance(error, UpstreamError):  # engine/remote.py: the upstream server failed; its URL and what happened
        log.warning("upstream: %s", error)
        kinds = {400: "invalid_request_error", 504: "timeout"}
        return json_error(error.status, str(error), kinds.get(error.status, "unavailable"))
    log.error("generation failed: %s: %s", type(error).__name__, error,
              exc_info=(type(error), error, error.__traceback__))
    return json_error(500, f"generation failed: {type(error).__name__}; see `specd logs`", "server_error")


def cut_by_deadline(error: Exception) -> Any | None:
    """The answer for a job that request_timeout cancelled after it had generated text: its partial
    GenerationResult with finish_reason "length" (each door's max-tokens reason: a cut answer, as max_tokens cuts
    one) and `stats.truncated = "deadline"` (the `specd` accounting, and `x-specd-truncated` on answers sent whole).
    None for any other error, and for a deadline met before any text (the caller answers the 504)."""
    if not (isinstance(error, JobCancelled) and error.reason == "deadline" and error.result is not None
            and error.result.text):
        return None
    error.result.finish_reason = "length"
    error.result.stats.truncated = "deadline"
    return error.result


async def stream(request: web.Request, ctx: Context, job: Any, deltas: asyncio.Queue,
                  params: CompletionParams, shape: "Shape") -> web.StreamResponse:
    """The job's answer as the door's stream. Nothing is sent before the job's first event (a piece of text, or
    its end): a job that fails before it (prompt beyond the context window, a bad request, the models failed to
    load, shutdown, the deadline) is answered with its HTTP status in the door's error body, as without `stream`,
    so SDKs raise their status errors (BadRequestError...). Once the first piece exists the status line, the door's
    opening events and the piece go out at once; later failures are in-band (`shape.error_event`)."""
    finished = False
    waiter = asyncio.ensure_future(ctx.scheduler.wait(job))
    getter: asyncio.Future | None = asyncio.ensure_future(deltas.get())
    try:
        await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
        failure = _failure_before_text(waiter, getter, deltas)
        if failure is not None:
            finished = True
            getter.cancel()
            return failure_response(ctx, failure, shape)
        response = web.StreamResponse(headers={"Content-Type": shape.content_type, "Cache-Control": "no-cache",
                                               **speculative.headers(shape.speculative)})
        await response.prepare(request)
        for chunk in shape.stream_start():
            await send_event(response, shape, chunk)
        sent = []
        keepalive = shape.keepalive()
        while True:
            getter = getter or asyncio.ensure_future(deltas.get())
            done, _ = await asyncio.wait({getter, waiter}, timeout=shape.keepalive_s if keepalive else None,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:  # a slow step: tell the client the stream is alive
                await response.write(keepalive)
                continue
            if getter not in done:
                getter.cancel()
                break
            sent.append(getter.result())
            getter = None
            await send_event(response, shape, shape.delta(sent[-1]))
        while not deltas.empty():  # deltas queued just before the result arrived
            sent.append(deltas.get_nowait())
            await send_event(response, shape, shape.delta(sent[-1]))
        finished = True
        error = waiter.exception()
        cut = cut_by_deadline(error) if error is not None else None  # text was sent: the deadline ends it
        try:
            result = cut if cut is not None else waiter.result()
        except JobCancelled as e:
            if e.reason != "superseded":
                await response.write(shape.error_event(failure_response(ctx, e, shape)))
            else:
                stats = shape.stats(e.result.stats.to_dict() if e.result is not None else {})
                await send_event(response, shape, shape.stream_end("cancelled", stats))
        except Exception as e:  # noqa: BLE001 - reported in-band: the 200 status line is already sent
            await response.write(shape.error_event(failure_response(ctx, e, shape)))
        else:
            streamed = "".join(sent)
            if result.text != streamed and result.text.startswith(streamed):
                await send_event(response, shape, shape.delta(result.text[len(streamed):]))
            elif result.text != streamed:
                log.error("%s: streamed text differs from the final text", shape.rid)
            stats = shape.stats(result.stats.to_dict())
            shape.stop_sequence = getattr(result, "stop_sequence", None)
            await send_event(response, shape, shape.stream_end(result.finish_reason, stats))
            if params.include_usage:
                await send_event(response, shape, shape.stream_usage(stats))
        if shape.done:
            await response.write(shape.done)
        await response.write_eof()
        return response
    finally:
        if not finished:  # client gone (write failed or handler cancelled): free the worker
            job.cancel_with("disconnect")
            waiter.cancel()
            if getter is not None:
                getter.cancel()


def _failure_before_text(waiter: asyncio.Future, getter: asyncio.Future, deltas: asyncio.Queue) -> Exception | None:
    """The job's error when it failed before writing any text, else None (the stream starts). A superseded job
    is no failure: its stream ends with finish_reason `cancelled`, as its whole answer would."""
    if not waiter.done() or getter.done() or not deltas.empty():  # a piece the getter has not taken yet
        return None
    error = waiter.exception()
    if isinstance(error, JobCancelled) and error.reason == "superseded":
        return None
    return error


async def send_event(response: web.StreamResponse, shape: "Shape", payload: dict | list[dict]) -> None:
    """Write one event, or each of a list of events, to the stream, encoded by `shape.encode`."""
    for event in payload if isinstance(payload, list) else [payload]:
        await response.write(shape.encode(event))


class Shape:
    """How one route words its answers. Streams are SSE `data:` events ending in `data: [DONE]` (OpenAI's);
    a door whose stream differs overrides `content_type`, `encode`, `error_event` and `done`."""

    content_type = "text/event-stream"
    done = b"data: [DONE]\n\n"  # written after the last event; b"" for streams that just end

    def encode(self, payload: dict) -> bytes:
        return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"

    def error_event(self, error: web.Response) -> bytes:
        """An error after the 200 status line is sent, in-band."""
        return b"data: " + error.body + b"\n\n"

    def __init__(self, rid: str, model: str = "specd", speculative: dict | None = None) -> None:
        self.rid, self.model, self.created = rid, model, int(time.time())
        self.speculative = speculative  # speculative.apply's report: in `stats` and the x-specd-* headers
        self.stop_sequence: str | None = None  # the stop string that ended the answer, set before body/stream_end

    keepalive_s = 5.0  # a stream quiet this long gets keepalive() bytes (none when it returns b"")

    def keepalive(self) -> bytes:
        return b""

    def stats(self, stats: dict) -> dict:
        """The engine's accounting, with the speculative report when the door made one."""
        return {**stats, "speculative": self.speculative} if self.speculative is not None else stats

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        raise NotImplementedError

    def stream_start(self) -> list[dict]:
        return []

    def delta(self, text: str) -> dict:
        raise NotImplementedError

    def stream_end(self, finish_reason: str, stats: dict) -> dict | list[dict]:
        raise NotImplementedError

    def stream_usage(self, stats: dict) -> dict:
        return {"id": self.rid, "object": self.chunk_object, "created": self.created, "model": self.model,
                "choices": [], "usage": usage(stats), "specd": stats}

    chunk_object = ""
