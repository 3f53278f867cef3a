"""The Anthropic door: `POST /v1/messages` (whole or streamed), `POST /v1/messages/count_tokens`, `GET /v1/models`
and `GET /v1/models/{model_id}` in Anthropic's shapes when the request carries `anthropic-version` (every Anthropic
SDK and Claude Code send it; OpenAI's clients do not), and `HEAD /` (Claude Code's probe).

Wire format: https://docs.anthropic.com/en/api/messages, .../messages-streaming (named SSE events in the order
message_start, content_block_start, content_block_delta…, content_block_stop, message_delta, message_stop, with
`ping`s), .../errors (`{"type": "error", "error": {type, message}}`, 529 overloaded_error), .../models-list,
.../models-get (ModelInfo: SDK `types/model_info.py`; the list page: `pagination.py` SyncPage).
Routes match on the path alone: Claude Code posts to `/v1/messages?beta=true`. The token comes as `x-api-key`
(SDK 0.x/1.x, ANTHROPIC_API_KEY) or `Authorization: Bearer` (SDK 2.x, ANTHROPIC_AUTH_TOKEN); security.py takes both.
The request is translated by anthropic_schema.py onto the chat path (a final assistant message is a prefill the
answer continues); tool calls in the model's text are cut out by tool_calls.py.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone

from aiohttp import web

from . import speculative, tool_calls
from .anthropic_schema import MessagesRequest, parse_messages_request
from .generation import CTX, Context, Door, Shape, add_door, chat_request, generate, log, read_body
from .security import ErrorResponse, json_error

ROUTES = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
MODEL_ALIAS = "claude-specd"  # Claude Code lists only models whose id starts with "claude" in its picker
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "cancelled": "end_turn"}


def owns(request: web.Request) -> bool:
    """Whether `request` is the Anthropic door's: `/v1/messages...` (batches too, which specd does not serve: a 404
    in Anthropic's shape), `HEAD /`, and any `/v1/...` path when it carries `anthropic-version` (`GET /v1/models`;
    a `:` in the path is the Gemini door's)."""
    path = request.path
    return path in ROUTES or path == "/" or path.startswith("/v1/messages/") or (
        "anthropic-version" in request.headers and path.startswith("/v1/") and ":" not in path)


def add_routes(app: web.Application) -> None:
    """Register the Anthropic door and its routes (messages, count_tokens, `HEAD /`) on `app`; its model list answers
    through the OpenAI door's `/v1/models` routes (Door.models)."""
    add_door(app, Door("anthropic", owns, error_response, models=models))
    app.router.add_post("/v1/messages", create_message)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_route("HEAD", "/", probe)


def error_body(status: int, message: str, kind: str) -> tuple[int, dict]:
    """(status, body) of an Anthropic error (docs.anthropic.com/en/api/errors): `{"type": "error", "error": {type,
    message}, "request_id"}`, the type from ERROR_TYPES by status; a 503 that is not `unavailable` (a full queue,
    shutting down) becomes 529 `overloaded_error`."""
    if status == 503 and kind != "unavailable":  # queue full, shutting down: Anthropic's overloaded
        status = 529
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return status, {"type": "error", "error": {"type": kind, "message": message},
                    "request_id": "req_" + secrets.token_hex(12)}


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
    """An Anthropic error response (`error_body`) with its `request-id` header, plus `headers`."""
    status, body = error_body(status, message, kind)
    return web.json_response(body, status=status, headers={**(headers or {}), "request-id": body["request_id"]})


def served_model(ctx: Context, requested: str) -> str | None:
    """The name to answer with, or None when `requested` is not served here."""
    name, aliases = ctx.model_names()
    return requested if requested.lower() in aliases | {MODEL_ALIAS} else None


def refuse_model(ctx: Context, requested: str) -> web.Response | None:
    """None when `requested` names the served model (its names, `specd` or `claude-specd`), else specd's 404
    `model_not_found` naming the served one (reworded as Anthropic's `not_found_error`)."""
    if served_model(ctx, requested) is not None:
        return None
    name, _ = ctx.model_names()
    return json_error(404, f"model {requested!r} is not served here; this daemon serves {name!r} (also accepted: "
                           f"'specd', {MODEL_ALIAS!r})", "model_not_found")


def build(ctx: Context, parsed: MessagesRequest):
    """The request, built on the worker; a prefill: the answer continues the final assistant message."""
    return chat_request(ctx, parsed.params, parsed.messages, parsed.tools, continue_final=parsed.prefill is not None)


async def create_message(request: web.Request) -> web.StreamResponse:
    """`POST /v1/messages` (docs.anthropic.com/en/api/messages): the answer as a Message, or streamed as Anthropic's
    named SSE events (.../messages-streaming) with `stream: true`. Raises BadRequest (a 400 in Anthropic's error body)
    for a body anthropic_schema.py refuses; a model not served is a 404."""
    ctx, body = request.app[CTX], await read_body(request)
    parsed = parse_messages_request(body)
    refused = refuse_model(ctx, parsed.params.model)
    if refused is not None:
        return refused
    report = speculative.apply_body(ctx, body, parsed.params)
    rid = "msg_" + secrets.token_hex(12)
    if ctx.settings.log_prompts:
        log.info("%s messages=%r tools=%d", rid, parsed.messages, len(parsed.tools or ()))
    shape = MessageShape(rid, parsed.params.model, speculative=report, names=tool_calls.declared_names(parsed.tools),
                         forced_tool=parsed.forced_tool)
    return await generate(request, ctx, build(ctx, parsed), parsed.params, shape)


async def count_tokens(request: web.Request) -> web.Response:
    """The prompt's tokens as the chat template renders it: a generation of 0 tokens, which prefills nothing."""
    ctx = request.app[CTX]
    parsed = parse_messages_request(await read_body(request), count_only=True)
    refused = refuse_model(ctx, parsed.params.model)
    if refused is not None:
        return refused
    parsed.params.max_tokens, parsed.params.stream, parsed.params.count_only = 0, False, True
    return await generate(request, ctx, build(ctx, parsed), parsed.params, CountShape("count"))


async def models(request: web.Request) -> web.Response:
    """`GET /v1/models[/{model_id}]` for Anthropic's clients (openai.py's routes hand them here: Door.models).

    Retrieve: the ModelInfo of a name served here (as written: the served name, `claude-specd`, `specd`, the
    `verifier` value), else a 404 `not_found_error`. List: the served name and `claude-specd` (Claude Code's picker
    shows only ids starting with "claude"), `{data, has_more, first_id, last_id}`, paged by `limit` (1-1000,
    default 20), `after_id` and `before_id` as Anthropic's API pages."""
    ctx = request.app[CTX]
    name, _ = ctx.model_names()
    requested = request.match_info.get("model")
    if requested is not None:
        if served_model(ctx, requested) is None:
            return json_error(404, f"model: {requested} (this daemon serves {name!r}, also as {MODEL_ALIAS!r} and "
                                   "'specd')", "not_found")
        return web.json_response(model_info(ctx, requested))
    ids, query = list(dict.fromkeys((name, MODEL_ALIAS))), request.query
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        return json_error(400, f"limit: must be an integer from 1 to 1000, got {query.get('limit')!r}",
                          "invalid_request_error")
    if query.get("after_id") in ids:
        ids = ids[ids.index(query["after_id"]) + 1:]
    if query.get("before_id") in ids:
        ids = ids[:ids.index(query["before_id"])]
    page = ids[-limit:] if "before_id" in query else ids[:limit]
    data = [model_info(ctx, model_id) for model_id in page]
    return web.json_response({"data": data, "has_more": len(page) < len(ids),
                              "first_id": page[0] if page else None, "last_id": page[-1] if page else None})


def model_info(ctx: Context, model_id: str) -> dict:
    """Anthropic's ModelInfo: `created_at` (RFC 3339, UTC) is the daemon's start; `max_input_tokens` and
    `max_tokens` are the context window (tokens; the loaded engine's, else the `max_context` setting), which holds
    the prompt and the answer together."""
    name, _ = ctx.model_names()
    window = (ctx.scheduler.engine_info() or {}).get("max_context") or ctx.settings.max_context
    created = datetime.fromtimestamp(ctx.started_at, timezone.utc).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": model_id, "display_name": f"{name} (specd)", "created_at": created,
            "lifecycle": "active", "max_input_tokens": window, "max_tokens": window}


async def probe(request: web.Request) -> web.Response:
    """`HEAD /`: 200 with no body (Claude Code's connectivity check)."""
    return web.Response(status=200)


def usage(stats: dict) -> dict:
    """Anthropic's `usage` from the engine's accounting: `input_tokens` the prompt tokens not read from the cache,
    `cache_read_input_tokens` those that were, `output_tokens` the generated ones (tokens);
    `cache_creation_input_tokens` always 0."""
    prompt, cached = int(stats.get("prompt_tokens", 0)), int(stats.get("cached_tokens", 0))
    return {"input_tokens": prompt - cached, "output_tokens": int(stats.get("completion_tokens", 0)),
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


class CountShape(Shape):
    """`POST /v1/messages/count_tokens`'s answer: `{"input_tokens": N}`, the prompt's tokens (Anthropic's
    MessageTokensCount)."""

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return {"input_tokens": int(stats.get("prompt_tokens", 0))}


class MessageShape(Shape):
    """A message whose content is the model's text cut into text and tool_use blocks (tool_calls.py). A text piece
    of whitespace alone makes no block, unless the answer has no other block; streamed and whole answers follow the
    same rule, so they carry the same blocks."""

    keepalive_s = 5.0

    def __init__(self, rid: str, model: str, speculative: dict | None = None, names: set[str] | None = None,
                 forced_tool: bool = False) -> None:
        """`names`: the declared tools (None: the request has none, the answer is text)."""
        super().__init__(rid, model, speculative)
        self.parser = tool_calls.ToolCallParser(names) if names is not None and not forced_tool else None
        # A forced tool call (tool_choice any/tool): the whole answer is the call's JSON, without the tags; a
        # stream holds it back until it is whole (`forced_text`)
        self.forced_tool = forced_tool
        self.forced_text = ""
        self.index = -1  # the current block's index
        self.text_open = False
        self.streamed = tool_calls.StreamedBlocks()
        self.called = False

    # -- whole answers ---------------------------------------------------------------------------------------------

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        if self.forced_tool:
            pieces = tool_calls.forced_pieces(text)
        else:
            pieces = tool_calls.split(text, self.parser.names) if self.parser is not None else [text]
        content = [self._tool_use(p) if isinstance(p, tool_calls.ToolCall) else {"type": "text", "text": p}
                   for p in pieces if not isinstance(p, str) or p.strip()]
        if not content:
            content = [{"type": "text", "text": text}]
        self.called = any(block["type"] == "tool_use" for block in content)
        return {"id": self.rid, "type": "message", "role": "assistant", "model": self.model, "content": content,
                **self._stop(finish_reason), "usage": usage(stats), "specd": stats}

    def _tool_use(self, call: tool_calls.ToolCall) -> dict:
        return {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": call.name, "input": call.input}

    def _stop(self, finish_reason: str) -> dict:
        if self.called:
            return {"stop_reason": "tool_use", "stop_sequence": None}
        if finish_reason == "stop" and self.stop_sequence:
            return {"stop_reason": "stop_sequence", "stop_sequence": self.stop_sequence}
        return {"stop_reason": STOP_REASONS.get(finish_reason, "end_turn"), "stop_sequence": None}

    # -- streams ---------------------------------------------------------------------------------------------------

    def encode(self, event: dict) -> bytes:
        return f"event: {event['type']}\ndata: ".encode() + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"

    def error_event(self, error: web.Response) -> bytes:
        if isinstance(error, ErrorResponse):
            _, body = error_body(error.status, error.message, error.kind)
        else:
            _, body = error_body(error.status, error.text or "error", "")
        return self.encode(body)

    def keepalive(self) -> bytes:
        return self.encode({"type": "ping"})

    done = b""

    def stream_start(self) -> list[dict]:
        message = {"id": self.rid, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   # the prompt is counted on the worker; message_delta carries the counts (cumulative)
                   "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                             "cache_creation_input_tokens": 0}}
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def delta(self, text: str) -> list[dict]:
        if self.forced_tool:  # nothing settles before the call's JSON is whole
            self.forced_text += text
            return []
        return self._events(self.parser.feed(text) if self.parser is not None else [text])

    def stream_end(self, finish_reason: str, stats: dict) -> list[dict]:
        if self.forced_tool:
            events = self._events(tool_calls.forced_pieces(self.forced_text))
        else:
            events = self._events(self.parser.finish() if self.parser is not None else [])
        rest = self.streamed.rest()
        if rest is not None:  # no block yet: the answer is its whitespace (or nothing) as one text block
            events += self._open_text() + ([self._text_delta(rest)] if rest else [])
        if self.text_open:
            events.append({"type": "content_block_stop", "index": self.index})
        return events + [{"type": "message_delta", "delta": self._stop(finish_reason), "usage": usage(stats),
                          "specd": stats},
                         {"type": "message_stop"}]

    def _events(self, pieces: list) -> list[dict]:
        events: list[dict] = []
        for piece in self.streamed.settle(pieces):
            if isinstance(piece, tool_calls.ToolCall):
                if self.text_open:
                    events.append({"type": "content_block_stop", "index": self.index})
                    self.text_open = False
                self.called = True
                block = self._tool_use(piece)
                self.index += 1
                events += [{"type": "content_block_start", "index": self.index, "content_block": {**block, "input": {}}},
                           {"type": "content_block_delta", "index": self.index,
                            "delta": {"type": "input_json_delta", "partial_json": json.dumps(piece.input)}},
                           {"type": "content_block_stop", "index": self.index}]
            else:
                events += (self._open_text() if piece.opens else []) + [self._text_delta(piece.text)]
        return events

    def _open_text(self) -> list[dict]:
        self.index += 1
        self.text_open = True
        return [{"type": "content_block_start", "index": self.index, "content_block": {"type": "text", "text": ""}}]

    def _text_delta(self, text: str) -> dict:
        return {"type": "content_block_delta", "index": self.index, "delta": {"type": "text_delta", "text": text}}
