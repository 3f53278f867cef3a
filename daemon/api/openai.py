"""The OpenAI door: `/v1/completions`, `/v1/chat/completions` and `/v1/models`, in OpenAI's JSON and SSE
shapes (https://platform.openai.com/docs/api-reference/completions)."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from . import speculative
from .generation import (CTX, Context, Door, Shape, add_door, door_of, generate, generation_request, log, log_prompt,
                         read_body, usage)
from .schema import parse_chat, parse_completion
from .security import json_error


ROUTES = frozenset({"/v1/models", "/v1/completions", "/v1/chat/completions"})


def add_routes(app: web.Application) -> None:
    add_door(app, Door("openai", lambda request: request.path in ROUTES))
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)


async def list_models(request: web.Request) -> web.Response:
    door = door_of(request)
    if door is not None and door.models is not None:  # another door's list shape (generation.Door.models)
        return await door.models(request)
    ctx = request.app[CTX]
    name, _ = ctx.model_names()
    model = {"id": name, "object": "model", "created": int(ctx.started_at), "owned_by": "specd"}
    return web.json_response({"object": "list", "data": [model]})


def check_model(ctx: Context, requested: str | None) -> web.Response | None:
    if requested is None:
        return None
    name, aliases = ctx.model_names()
    if requested.lower() in aliases:
        return None
    return json_error(404, f"model {requested!r} is not served here; this daemon serves {name!r} "
                           "(also accepted: 'specd')", "model_not_found")


async def completions(request: web.Request) -> web.StreamResponse:
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
    ctx = request.app[CTX]
    body = await read_body(request)
    messages, params = parse_chat(body)
    refused = check_model(ctx, params.model)
    if refused is not None:
        return refused
    report = speculative.apply_body(ctx, body, params)
    rid = "chatcmpl-" + secrets.token_hex(12)
    if ctx.settings.log_prompts:
        log.info("%s messages=%r", rid, messages)

    def build(engine: Any) -> Any:  # on the worker: the chat template needs the loaded tokenizer
        return generation_request(ctx, params, prompt=engine.apply_chat_template(messages))

    return await generate(request, ctx, build, params, ChatShape(rid, ctx.model_names()[0], speculative=report))


class CompletionShape(Shape):
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
    chunk_object = "chat.completion.chunk"

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        message = {"role": "assistant", "content": text}
        return {"id": self.rid, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
                "usage": usage(stats), "specd": stats}

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
