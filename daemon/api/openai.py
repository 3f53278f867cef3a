"""The OpenAI door: `/v1/completions`, `/v1/chat/completions`, `/v1/models` and `/v1/models/{model}`, in OpenAI's
JSON and SSE shapes (https://platform.openai.com/docs/api-reference/completions, .../chat, .../models).

Chat tools, as the Anthropic door does them: `tools` reach the chat template; `tool_choice` naming a function or
"required" constrains the answer (structured output) to one call `{"name", "arguments"}` of that tool (or one of
the tools) with its `parameters` schema; with "auto" a call the model writes in Qwen/Hermes form (`<tool_call>`,
tool_calls.py) is cut out of its text. Calls come back as `message.tool_calls` (streamed as `delta.tool_calls`: the
call's id and name, then its arguments) with `finish_reason: "tool_calls"`."""

from __future__ import annotations

import json
import secrets

from aiohttp import web

from . import speculative, tool_calls
from .generation import (CTX, Context, Door, Shape, add_door, chat_request, door_of, generate, generation_request, log,
                         log_prompt, read_body, usage)
from .schema import parse_chat, parse_chat_tools, parse_completion
from .security import json_error


ROUTES = frozenset({"/v1/models", "/v1/completions", "/v1/chat/completions"})


def owns(request: web.Request) -> bool:
    """The door's paths; under `/v1/models/` what the Gemini door claims is its (`…:generateContent`, and a
    listing that Google's SDKs send: gemini.google_client)."""
    if request.path.startswith("/v1/models/") or request.path == "/v1/models":
        from . import gemini  # gemini imports this module

        return not gemini.owns(request)
    return request.path in ROUTES


def add_routes(app: web.Application) -> None:
    """Register the OpenAI door and its routes on `app`: GET /v1/models[/{model}], POST /v1/completions and
    /v1/chat/completions."""
    add_door(app, Door("openai", owns))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", retrieve_model)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)


def model_object(ctx: Context, model_id: str) -> dict:
    """An entry of the model list."""
    return {"id": model_id, "object": "model", "created": int(ctx.started_at), "owned_by": "specd"}


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models` (platform.openai.com/docs/api-reference/models/list): `{"object": "list", "data": [model
    object]}` with the served name; a request another door owns (Anthropic's, Google's) gets that door's list
    (Door.models)."""
    door = door_of(request)
    if door is not None and door.models is not None:  # another door's list shape (generation.Door.models)
        return await door.models(request)
    ctx = request.app[CTX]
    return web.json_response({"object": "list", "data": [model_object(ctx, ctx.model_names()[0])]})


async def retrieve_model(request: web.Request) -> web.Response:
    """`GET /v1/models/{model}`: the model object for a name the daemon serves (as written), else OpenAI's 404."""
    door = door_of(request)
    if door is not None and door.models is not None:  # Google's SDK: the Gemini door answers it
        return await door.models(request)
    ctx, requested = request.app[CTX], request.match_info["model"]
    refused = check_model(ctx, requested)
    return refused if refused is not None else web.json_response(model_object(ctx, requested))


def check_model(ctx: Context, requested: str | None) -> web.Response | None:
    """None when `requested` is None or names the served model (Context.model_names, any case), else OpenAI's 404
    `model_not_found` body naming the served one."""
    if requested is None:
        return None
    name, aliases = ctx.model_names()
    if requested.lower() in aliases:
        return None
    # OpenAI's body for a model it does not have, on every route that names one: clients check `code`
    return json_error(404, f"The model {requested!r} does not exist; this daemon serves {name!r} (also accepted: "
                           "'specd')", "invalid_request_error", param="model", code="model_not_found")


async def completions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/completions` (platform.openai.com/docs/api-reference/completions): the prompt (FIM with `suffix`)
    answered as a text_completion, or streamed as its chunks ending in `data: [DONE]`. Raises BadRequest (400) for a bad
    body; a model not served is a 404."""
    ctx = request.app[CTX]
    body = await read_body(request)
    params = parse_completion(body)
    refused = check_model(ctx, params.model)
    if refused is not None:
        return refused
    report = speculative.apply_body(ctx, body, params)
    rid = "cmpl-" + secrets.token_hex(12)
    log_prompt(ctx, rid, params)
    shape = CompletionShape(rid, ctx.model_names()[0], speculative=report)
    return await generate(request, ctx, generation_request(ctx, params), params, shape)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/chat/completions` (platform.openai.com/docs/api-reference/chat): the chat template's prompt answered as
    a chat.completion, or streamed as chat.completion.chunk events, with tool calls cut out of the text (module
    docstring). Raises BadRequest (400) for a bad body; a model not served is a 404."""
    ctx = request.app[CTX]
    body = await read_body(request)
    messages, params = parse_chat(body)
    tools, forced_call = parse_chat_tools(body)
    if forced_call is not None:
        params.force_call(forced_call)
    refused = check_model(ctx, params.model)
    if refused is not None:
        return refused
    report = speculative.apply_body(ctx, body, params)
    rid = "chatcmpl-" + secrets.token_hex(12)
    if ctx.settings.log_prompts:
        log.info("%s messages=%r tools=%d", rid, messages, len(tools or ()))
    shape = ChatShape(rid, ctx.model_names()[0], speculative=report, names=tool_calls.declared_names(tools),
                      forced_tool=forced_call is not None)
    return await generate(request, ctx, chat_request(ctx, params, messages, tools), params, shape)


class CompletionShape(Shape):
    """`/v1/completions`' answer: a text_completion with one choice `{text, index, finish_reason, logprobs: null}`,
    `usage` and specd's `specd` accounting; a stream's chunks carry text pieces, the last one the finish_reason and
    `specd`."""

    chunk_object = "text_completion"

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return {"id": self.rid, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"text": text, "index": 0, "finish_reason": finish_reason, "logprobs": None}],
                "usage": usage(stats), "specd": stats}

    def delta(self, text: str) -> dict:
        return {"id": self.rid, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"text": text, "index": 0, "finish_reason": None, "logprobs": None}]}

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        end = self.delta("")
        end["choices"][0]["finish_reason"] = finish_reason
        end["specd"] = stats
        return end


class ChatShape(Shape):
    """A chat answer. With tools, its text is cut into content and tool calls (a forced call: the whole text is the
    call's JSON). Streamed content follows the rule of the whole answer: text of whitespace alone next to a call
    is no content (`content: null`), so both carry the same content and calls."""

    chunk_object = "chat.completion.chunk"

    def __init__(self, rid: str, model: str, speculative: dict | None = None, names: set[str] | None = None,
                 forced_tool: bool = False) -> None:
        """`names`: the declared tools (None: the request has none, the answer is text)."""
        super().__init__(rid, model, speculative)
        self.tools, self.forced_tool = names is not None or forced_tool, forced_tool
        self.parser = tool_calls.ToolCallParser(names) if names is not None and not forced_tool else None
        self.pending = ""  # streamed text not sent yet: a forced call's JSON, or whitespace that may precede a call
        self.sent_text = False
        self.calls = 0

    def _pieces(self, text: str) -> list:
        if self.forced_tool:
            return tool_calls.forced_pieces(text)
        return tool_calls.split(text, self.parser.names) if self.parser is not None else [text]

    def _call(self, call: tool_calls.ToolCall) -> dict:
        self.calls += 1
        return {"id": "call_" + secrets.token_hex(12), "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.input, ensure_ascii=False)}}

    def _finish(self, finish_reason: str) -> str:
        return "tool_calls" if self.calls else finish_reason

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        pieces = self._pieces(text)
        calls = [self._call(p) for p in pieces if isinstance(p, tool_calls.ToolCall)]
        content = "".join(p for p in pieces if isinstance(p, str))
        message: dict = {"role": "assistant", "content": None if calls and not content.strip() else content}
        if calls:
            message["tool_calls"] = calls
        return {"id": self.rid, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": self._finish(finish_reason),
                             "logprobs": None}],
                "usage": usage(stats), "specd": stats}

    def _chunk(self, delta: dict, finish_reason: str | None) -> dict:
        return {"id": self.rid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    def stream_start(self) -> list[dict]:
        return [self._chunk({"role": "assistant", "content": None if self.tools else ""}, None)]

    def delta(self, text: str) -> dict | list[dict]:
        if self.forced_tool:
            self.pending += text  # the call is sent once whole
            return []
        if self.parser is None:
            return self._chunk({"content": text}, None)
        return self._events(self.parser.feed(text))

    def _events(self, pieces: list) -> list[dict]:
        events = []
        for piece in pieces:
            if isinstance(piece, tool_calls.ToolCall):
                index, call = self.calls, self._call(piece)
                arguments = call["function"]["arguments"]
                events += [self._chunk({"tool_calls": [{"index": index, **call,
                                                        "function": {"name": piece.name, "arguments": ""}}]}, None),
                           self._chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}, None)]
                continue
            self.pending += piece
            if self.sent_text or self.pending.strip():
                events.append(self._chunk({"content": self.pending}, None))
                self.pending, self.sent_text = "", True
        return events

    def stream_end(self, finish_reason: str, stats: dict) -> dict | list[dict]:
        events = []
        if self.forced_tool:
            held, self.pending = self.pending, ""
            events = self._events(self._pieces(held))
        elif self.parser is not None:
            events = self._events(self.parser.finish())
        if self.tools and not self.calls and not self.sent_text:  # an answer of whitespace or nothing, as body's
            events.append(self._chunk({"content": self.pending}, None))
        end = self._chunk({}, self._finish(finish_reason))
        end["specd"] = stats
        return events + [end]
