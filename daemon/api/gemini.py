"""The Gemini / Vertex AI door: `generateContent`, `streamGenerateContent` and `countTokens`, as google-genai and
the Gemini CLI call them, translated onto the chat path.

Wire format: the Gemini API reference (ai.google.dev/api/generate-content: GenerateContentRequest, Content, Part,
GenerationConfig, GenerateContentResponse, Candidate.FinishReason, UsageMetadata; ai.google.dev/api/tokens for
countTokens) and Vertex AI's (cloud.google.com/vertex-ai/generative-ai/docs/reference/rest), checked against what
google-genai 3.6.1 and the Gemini CLI 0.61.0 send and accept (../shared/notes/api-doors.md section 2,
cli-clients.md):

- Paths: `/{v1,v1beta}/models/{model}:{method}` (google-genai ≥ 3 uses v1, the Gemini CLI v1beta), Vertex's
  `/{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{model}:{method}` and express mode's
  `/{v1,v1beta1}/publishers/google/models/{model}:{method}`. `model` must name the served model (or `specd`).
- The request body is read by gemini_schema.py: contents, systemInstruction, generationConfig and function
  calling (tools' functionDeclarations, functionCall/functionResponse parts, toolConfig's mode). `safetySettings`,
  `cachedContent`, `labels`, and in `generationConfig` `topK`, `thinkingConfig`, `presencePenalty`,
  `frequencyPenalty` are accepted and ignored; `candidateCount` above 1 and image/file parts are refused (400).
  Answers carry text parts and, with functions declared, `functionCall` parts (GeminiShape).
- Streams are SSE `data: <GenerateContentResponse>` events with no event names and no end marker (`alt=sse`);
  the last carries `finishReason` and `usageMetadata`. Without `alt=sse` the answer is the JSON array of such
  responses, here one whole response (no client the notes list reads it piece by piece).
- Errors: `{"error": {"code", "message", "status"}}` with Google's status names; a full queue is 429
  `RESOURCE_EXHAUSTED`.
- Model listing (`models.list()`, `models.get()`): `GET /{v1beta,v1beta1}/models[/{model}]` and the Vertex paths
  answer Google's `Model` (`{models: [...]}`; Vertex's `{publisherModels: [...]}`). `GET /v1/models[/{model}]` is
  also the OpenAI door's route: requests carrying Google's key (`x-goog-api-key`, `?key=`) or client header
  (`x-goog-api-client`) are this door's (`google_client`), answered here through `Door.models`.
"""

from __future__ import annotations

import json
import re
import secrets

from aiohttp import web

from specd.daemon import __version__

from . import speculative, tool_calls
from .gemini_schema import camel, parse_generate
from .generation import CTX, Context, Door, Shape, add_door, chat_request, generate, log, read_body
from .openai import check_model
from .security import ErrorResponse

VERSIONS = "{version:v1|v1beta|v1beta1}"
PATHS = (f"/{VERSIONS}/models/{{model}}:{{method}}",
         f"/{VERSIONS}/publishers/google/models/{{model}}:{{method}}",
         f"/{VERSIONS}/projects/{{project}}/locations/{{location}}/publishers/google/models/{{model}}:{{method}}")
_OWNED = re.compile(r"^/v1(beta1?)?/(projects/[^/]+/locations/[^/]+/)?(publishers/google/)?models/[^/]+:[^/]*$")
MODEL = "{model:[^/:]+}"
LISTING_PATHS = ("/{version:v1beta|v1beta1}/models", f"/{{version:v1beta|v1beta1}}/models/{MODEL}",
                 f"/{VERSIONS}/publishers/google/models", f"/{VERSIONS}/publishers/google/models/{MODEL}",
                 f"/{VERSIONS}/projects/{{project}}/locations/{{location}}/publishers/google/models",
                 f"/{VERSIONS}/projects/{{project}}/locations/{{location}}/publishers/google/models/{MODEL}")
_LISTING = re.compile(r"^/v1(beta1?)?/(projects/[^/]+/locations/[^/]+/)?(publishers/google/)?models(/[^/:]+)?$")
# Google's other paths (tunedModels, cachedContents, Vertex endpoints, a `:method` of any version): only Google's
# clients send them, so their 404 is Google's error (the SDKs read its message), not the OpenAI door's
_GOOGLE_ONLY = re.compile(r"^/(v1beta1?(/|$)|v1/projects/|v\d+\w*/\S*:\w+$)")

FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "cancelled": "OTHER"}
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
                499: "CANCELLED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def google_client(request: web.Request) -> bool:
    """A request from Google's SDKs or the Gemini CLI: they send the key as `x-goog-api-key` (or `?key=`) and name
    themselves in `x-goog-api-client`."""
    return "x-goog-api-key" in request.headers or "x-goog-api-client" in request.headers or "key" in request.query


def owns(request: web.Request) -> bool:
    """Whether `request` is the Gemini door's: a `...models/{model}:{method}` path, a path only Google's APIs have
    (`_GOOGLE_ONLY`), or a model listing path, `/v1/models[/{model}]` only when a Google client sends it
    (`google_client`)."""
    path = request.path
    if _OWNED.match(path) or _GOOGLE_ONLY.match(path):
        return True
    return bool(_LISTING.match(path)) and (not path.startswith("/v1/models") or google_client(request))


def add_routes(app: web.Application) -> None:
    """Register the Gemini door, its `:{method}` routes (POST) and its model listing routes (GET) on `app`; the OpenAI
    door keeps the `/v1/models[/{model}]` routes and hands Google's clients to `models`."""
    add_door(app, Door("gemini", owns, error, models=models))
    for path in PATHS:
        app.router.add_post(path, handle)
    for path in LISTING_PATHS:  # GET /v1/models[/{model}] is the OpenAI door's route, which calls `models` for us
        app.router.add_get(path, models)


def error(status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
    """Google's error body. specd's full queue (503 `overloaded`) is Google's 429 RESOURCE_EXHAUSTED."""
    if kind == "overloaded":
        status = 429
    body = {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}}
    return web.json_response(body, status=status, headers=headers)


async def handle(request: web.Request) -> web.StreamResponse:
    """`POST .../models/{model}:{method}` for generateContent, streamGenerateContent (SSE with `alt=sse`, else a JSON
    array of one whole response) and countTokens (ai.google.dev/api/generate-content, .../tokens); another method is a
    404, a model not served a 404. Raises BadRequest (400 INVALID_ARGUMENT) for a body gemini_schema.py refuses."""
    method = request.match_info["method"]
    if method not in ("generateContent", "streamGenerateContent", "countTokens"):
        return error(404, f"method {method!r} is not served here; specd serves generateContent, "
                          "streamGenerateContent and countTokens", "not_found")
    ctx = request.app[CTX]
    refused = check_model(ctx, request.match_info["model"])
    if refused is not None:
        return refused
    body = await read_body(request)
    if method == "countTokens":
        return await count_tokens(request, ctx, body)
    parsed = parse_generate(body)
    params = parsed.params
    params.stream = method == "streamGenerateContent" and request.query.get("alt") == "sse"
    report = speculative.apply_body(ctx, body, params)
    rid = secrets.token_hex(12)
    if ctx.settings.log_prompts:
        log.info("%s messages=%r tools=%d", rid, parsed.messages, len(parsed.tools or ()))
    names = tool_calls.declared_names(parsed.tools)
    shape = GeminiShape(rid, ctx.model_names()[0], speculative=report, names=names, forced_tool=parsed.forced_tool)
    answer = await generate(request, ctx, chat_request(ctx, params, parsed.messages, parsed.tools), params, shape)
    if method == "streamGenerateContent" and not params.stream and answer.status == 200:
        accounting = {k: v for k, v in answer.headers.items() if k.lower().startswith("x-specd-")}
        return web.json_response([json.loads(answer.body)], headers=accounting)
    return answer


async def count_tokens(request: web.Request, ctx: Context, body: dict) -> web.Response:
    """`{totalTokens}`: the prompt as the chat template renders it, counted by a generation of 0 tokens (which
    prefills nothing). Either the request's own `contents`/`systemInstruction` or a whole
    `generateContentRequest` in it."""
    inner = camel(body).get("generateContentRequest")
    parsed = parse_generate(inner if isinstance(inner, dict) else body, counting=True)
    params = parsed.params
    params.max_tokens, params.count_only = 0, True
    return await generate(request, ctx, chat_request(ctx, params, parsed.messages, parsed.tools), params,
                          CountShape("count"))


async def models(request: web.Request) -> web.Response:
    """`models.list()` (the served model) and `models.get()` (a name it serves, else 404 NOT_FOUND) in Google's
    shape: the Gemini API's `Model`, or on Vertex paths (`publishers/google`) a `PublisherModel` listed under
    `publisherModels`. Paging (`pageSize`, `pageToken`) is ignored: one page, no `nextPageToken`."""
    ctx = request.app[CTX]
    vertex = "/publishers/" in request.path
    name, aliases = ctx.model_names()
    requested = request.match_info.get("model")
    if requested is None:
        return web.json_response({"publisherModels" if vertex else "models": [model_resource(ctx, name, vertex)]})
    if requested.lower() not in aliases:
        return error(404, f"models/{requested} is not found; this daemon serves {name!r} (also accepted: 'specd')",
                     "not_found")
    return web.json_response(model_resource(ctx, requested, vertex))


def model_resource(ctx: Context, model_id: str, vertex: bool = False) -> dict:
    """The model as Google describes one (ai.google.dev/api/models#Model; Vertex's PublisherModel): its token
    limits are the context window, which prompt and answer share."""
    window = int((ctx.scheduler.engine_info() or {}).get("max_context") or ctx.settings.max_context)
    described = {"displayName": f"{ctx.model_names()[0]} (specd)",
                 "description": "The verifier specd serves, with speculative decoding"}
    if vertex:
        return {"name": f"publishers/google/models/{model_id}", "versionId": __version__, **described}
    return {"name": f"models/{model_id}", "baseModelId": model_id, "version": __version__, **described,
            "inputTokenLimit": window, "outputTokenLimit": window,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 0.0, "maxTemperature": 2.0, "topP": 1.0}


# ---- answer --------------------------------------------------------------------------------------------

def usage_metadata(stats: dict) -> dict:
    """promptTokenCount includes the cached part, as Gemini's does (cachedContentTokenCount is within it)."""
    prompt, completion = int(stats.get("prompt_tokens", 0)), int(stats.get("completion_tokens", 0))
    return {"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion,
            "cachedContentTokenCount": int(stats.get("cached_tokens", 0))}


class GeminiShape(Shape):
    """A candidate whose parts are the model's text cut into text and functionCall parts (tool_calls.py) when the
    request declared functions (a call of a function it did not declare, or `allowedFunctionNames` left out, stays
    text: google-genai's automatic function calling fails on a name it has no function for), or one functionCall
    part when it forced a call (mode ANY: the whole answer is the call's JSON, held back in a stream until it is
    whole). Whitespace before any text and after a call makes no part (`_parts`), in a stream as in a whole answer,
    so both carry the same text and calls; an answer with a call ends with `STOP`, as Gemini's do.

    A stream sends each event's parts one event late, so that the last event carries parts with its `finishReason`
    (as Gemini's does): google-genai's chats drop a streamed turn from their history when any event has no parts,
    and the Gemini CLI refuses a part whose text is ""."""

    done = b""  # Gemini's stream just ends

    def __init__(self, rid: str, model: str, speculative: dict | None = None, names: set[str] | None = None,
                 forced_tool: bool = False) -> None:
        """`names`: the functions the model may call (None: no function calling, the answer is text)."""
        super().__init__(rid, model, speculative)
        self.names = names
        self.parser = tool_calls.ToolCallParser(names) if names is not None and not forced_tool else None
        self.forced_tool = forced_tool
        self.forced_text = ""  # a forced call's text so far (a stream)
        self.streamed = tool_calls.StreamedBlocks()
        self.lagging: list[dict] = []  # the parts of the stream's previous event, sent with the next one
        self.called = False

    def _response(self, parts: list[dict], finish_reason: str | None = None, stats: dict | None = None) -> dict:
        candidate: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish_reason is not None:
            candidate["finishReason"] = "STOP" if self.called else FINISH_REASONS.get(finish_reason, "OTHER")
        answer = {"candidates": [candidate], "modelVersion": self.model, "responseId": self.rid}
        if stats is not None:
            answer["usageMetadata"] = usage_metadata(stats)
            answer["specd"] = stats
        return answer

    def _parts(self, pieces: list, last: bool) -> list[dict]:
        """Parts for settled pieces (text or ToolCall), by the Anthropic and Bedrock doors' whitespace rule
        (tool_calls.StreamedBlocks); `last`: the answer's end, where an answer of whitespace alone is that text."""
        parts: list[dict] = []
        for piece in self.streamed.settle(pieces):
            if isinstance(piece, tool_calls.ToolCall):
                self.called = True
                parts.append({"functionCall": {"id": "call_" + secrets.token_hex(12), "name": piece.name,
                                               "args": piece.input}})
            else:
                parts.append({"text": piece.text})
        rest = self.streamed.rest() if last else None
        if rest:
            parts.append({"text": rest})
        return [part for part in parts if part.get("text") != ""]

    def _pieces(self, text: str) -> list:
        if self.forced_tool:
            return tool_calls.forced_pieces(text)
        return tool_calls.split(text, self.names) if self.parser is not None else [text]

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return self._response(self._parts(self._pieces(text), last=True), finish_reason, stats)

    def delta(self, text: str) -> dict | list[dict]:
        if self.forced_tool:
            self.forced_text += text
            return []
        parts = self._parts(self.parser.feed(text) if self.parser is not None else [text], last=False)
        if not parts:
            return []
        ready, self.lagging = self.lagging, parts
        return self._response(ready) if ready else []

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        if self.forced_tool:
            pieces = self._pieces(self.forced_text)
        else:
            pieces = self.parser.finish() if self.parser is not None else []
        parts, self.lagging = self.lagging + self._parts(pieces, last=True), []
        return self._response(parts, finish_reason, stats)

    def error_event(self, failure: web.Response) -> bytes:
        """Google sends an error after the 200 as the bare JSON error body, not as a `data:` event: google-genai
        (Python) reads lines without `data: ` as raw JSON and raises on `{"error": ...}`; the JavaScript SDK
        (Gemini CLI) raises only when a whole network chunk parses as `{"error": ...}`."""
        if isinstance(failure, ErrorResponse):
            failure = error(failure.status, failure.message, failure.kind)
        return failure.body + b"\n"


class CountShape(Shape):
    """countTokens' answer: `{"totalTokens": N}`, the prompt's tokens (CountTokensResponse)."""

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return {"totalTokens": int(stats.get("prompt_tokens", 0))}
