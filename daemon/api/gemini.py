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
- Fields arrive camelCase or snake_case (protobuf JSON accepts both). Text parts are read; `thought` parts are
  skipped; function calls and responses in earlier turns are written into the transcript as JSON text. A final
  `model` content is a finished turn (the answer starts a new one): Google documents no prefill, unlike Anthropic's
  and Bedrock's APIs, whose doors continue one (Engine.apply_chat_template's `continue_final`). `tools`,
  `toolConfig`, `safetySettings`, `cachedContent`, `labels`, and in `generationConfig` `topK`, `thinkingConfig`,
  `presencePenalty`, `frequencyPenalty` are accepted and ignored; `candidateCount` above 1 and image/file parts
  are refused (400). `responseMimeType: application/json` makes the answer JSON: a document of
  `responseJsonSchema` (JSON Schema) or `responseSchema` (Google's OpenAPI subset: upper-case types, `nullable`),
  or any JSON value without either (structured output, engine/grammar.py); other MIME types are ignored.
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
from typing import Any

from aiohttp import web

from specd.daemon import __version__

from . import speculative
from .generation import CTX, Context, Door, Shape, add_door, chat_request, generate, log, read_body
from .openai import check_model
from .schema import (BadRequest, CompletionParams, _float, _int, _object, _stop, _wrong, blocks_text,
                     checked_json_schema)
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

DEFAULT_MAX_OUTPUT_TOKENS = 8192  # Gemini's own default for most models; the engine stops at the context's end
FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "cancelled": "OTHER"}
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
                499: "CANCELLED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
ROLES = {"user": "user", "model": "assistant", "function": "user", "tool": "user"}
MEDIA_PARTS = {"inlineData", "fileData", "executableCode", "codeExecutionResult"}


def google_client(request: web.Request) -> bool:
    """A request from Google's SDKs or the Gemini CLI: they send the key as `x-goog-api-key` (or `?key=`) and name
    themselves in `x-goog-api-client`."""
    return "x-goog-api-key" in request.headers or "x-goog-api-client" in request.headers or "key" in request.query


def owns(request: web.Request) -> bool:
    path = request.path
    if _OWNED.match(path):
        return True
    return bool(_LISTING.match(path)) and (not path.startswith("/v1/models") or google_client(request))


def add_routes(app: web.Application) -> None:
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
    messages, params = parse_generate(body)
    params.stream = method == "streamGenerateContent" and request.query.get("alt") == "sse"
    report = speculative.apply_body(ctx, body, params)
    rid = secrets.token_hex(12)
    if ctx.settings.log_prompts:
        log.info("%s messages=%r", rid, messages)
    shape = GeminiShape(rid, ctx.model_names()[0], speculative=report)
    answer = await generate(request, ctx, chat_request(ctx, params, messages), params, shape)
    if method == "streamGenerateContent" and not params.stream and answer.status == 200:
        accounting = {k: v for k, v in answer.headers.items() if k.lower().startswith("x-specd-")}
        return web.json_response([json.loads(answer.body)], headers=accounting)
    return answer


async def count_tokens(request: web.Request, ctx: Context, body: dict) -> web.Response:
    """`{totalTokens}`: the prompt as the chat template renders it, counted by a generation of 0 tokens (which
    prefills nothing). Either the request's own `contents`/`systemInstruction` or a whole
    `generateContentRequest` in it."""
    inner = _camel(body).get("generateContentRequest")
    messages, params = parse_generate(inner if isinstance(inner, dict) else body, counting=True)
    params.max_tokens, params.count_only = 0, True
    return await generate(request, ctx, chat_request(ctx, params, messages), params, CountShape("count"))


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


# ---- request -------------------------------------------------------------------------------------------

def _camel(obj: dict) -> dict:
    """Keys in camelCase: protobuf JSON (and so Google's servers) accept `max_output_tokens` as well."""
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): v for k, v in obj.items()}


def parse_generate(body: dict, counting: bool = False) -> tuple[list[dict], CompletionParams]:
    body = _camel(body)
    messages = []
    system = body.get("systemInstruction")
    if system is not None:
        text = system if isinstance(system, str) else _content_text(system, "systemInstruction")
        messages.append({"role": "system", "content": text})
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("'contents' must be a non-empty array of {role, parts} objects", "contents")
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise _wrong(where, "an object", content)
        role = _camel(content).get("role") or "user"
        if role not in ROLES:
            raise BadRequest(f"'{where}.role' must be 'user' or 'model', got {role!r}", "contents")
        messages.append({"role": ROLES[role], "content": _content_text(content, where)})
    params = CompletionParams(prompt="", max_tokens=DEFAULT_MAX_OUTPUT_TOKENS, token_healing=False)
    if not counting:
        _generation_config(body, params)
    return messages, params


def _content_text(content: Any, where: str) -> str:
    if not isinstance(content, dict):
        raise _wrong(where, "an object {role, parts}", content)
    parts = _camel(content).get("parts")
    if not isinstance(parts, list):
        raise _wrong(f"{where}.parts", "an array of parts", parts)
    parts = [_camel(part) if isinstance(part, dict) else part for part in parts]
    return blocks_text(parts, f"{where}.parts", "contents", ("functionCall", "functionResponse"), MEDIA_PARTS)


def _generation_config(body: dict, params: CompletionParams) -> None:
    config = _camel(_object(body, "generationConfig"))
    named = {f"generationConfig.{k}": v for k, v in config.items()}  # error messages name the whole path
    params.max_tokens = _int(named, "generationConfig.maxOutputTokens", DEFAULT_MAX_OUTPUT_TOKENS, low=1)
    params.temperature = _float(named, "generationConfig.temperature", 0.0, 0.0, 2.0)
    params.top_p = _float(named, "generationConfig.topP", 1.0, 0.0, 1.0)
    if params.top_p == 0.0:
        raise BadRequest("'generationConfig.topP' must be > 0", "generationConfig")
    _float(named, "generationConfig.topK", 0.0, 0.0, float(2**31))  # accepted, not used: specd samples by top_p
    if _int(named, "generationConfig.candidateCount", 1, low=1) != 1:
        raise BadRequest("'generationConfig.candidateCount' must be 1: specd writes one candidate per request; "
                         "send separate requests", "generationConfig")
    params.seed = _int(named, "generationConfig.seed", None, low=-(2**63), high=2**64 - 1)
    params.stop = _stop(named, "generationConfig.stopSequences")
    if config.get("responseLogprobs"):
        raise BadRequest("'generationConfig.responseLogprobs' is not supported", "generationConfig")
    if config.get("responseJsonSchema") is not None and config.get("responseSchema") is not None:
        raise BadRequest("'generationConfig.responseSchema' and 'generationConfig.responseJsonSchema' cannot both be "
                         "set: send one", "generationConfig")
    if config.get("responseMimeType") == "application/json":
        if config.get("responseJsonSchema") is not None:
            name, schema = "generationConfig.responseJsonSchema", config["responseJsonSchema"]
        elif config.get("responseSchema") is not None:
            name, schema = "generationConfig.responseSchema", _json_schema(config["responseSchema"])
        else:
            name, schema = "generationConfig.responseMimeType", True
        params.json_schema = checked_json_schema(schema, name)


def _json_schema(schema: Any) -> Any:
    """Google's Schema (an OpenAPI 3.0 subset: `type: "OBJECT"`, `nullable`, `propertyOrdering`, camelCase or
    snake_case keywords) as JSON Schema; property names are kept as written. An object has the properties it
    lists and no others (Gemini answers hold only the declared properties), written in `propertyOrdering`'s order
    (those it leaves out after them, as listed); `format: "enum"` (a STRING with `enum`) is the enum alone."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    schema = _camel(schema)
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            order = schema.get("propertyOrdering")
            order = [name for name in order if isinstance(name, str) and name in value] \
                if isinstance(order, list) else []
            names = order + [name for name in value if name not in order]
            out[key] = {name: _json_schema(value[name]) for name in names}
        elif key in ("items", "anyOf"):
            out[key] = [_json_schema(sub) for sub in value] if isinstance(value, list) else _json_schema(value)
        elif key == "format" and value == "enum":
            continue
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if "properties" in out:
        out.setdefault("additionalProperties", False)
    return {"anyOf": [out, {"type": "null"}]} if schema.get("nullable") else out


# ---- answer --------------------------------------------------------------------------------------------

def usage_metadata(stats: dict) -> dict:
    """promptTokenCount includes the cached part, as Gemini's does (cachedContentTokenCount is within it)."""
    prompt, completion = int(stats.get("prompt_tokens", 0)), int(stats.get("completion_tokens", 0))
    return {"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion,
            "cachedContentTokenCount": int(stats.get("cached_tokens", 0))}


class GeminiShape(Shape):
    done = b""  # Gemini's stream just ends

    def _response(self, text: str, finish_reason: str | None = None, stats: dict | None = None) -> dict:
        # A last event with no text has no parts: the Gemini CLI refuses a part whose text is "".
        candidate: dict = {"content": {"role": "model", "parts": [{"text": text}] if text else []}, "index": 0}
        if finish_reason is not None:
            candidate["finishReason"] = FINISH_REASONS.get(finish_reason, "OTHER")
        answer = {"candidates": [candidate], "modelVersion": self.model, "responseId": self.rid}
        if stats is not None:
            answer["usageMetadata"] = usage_metadata(stats)
            answer["specd"] = stats
        return answer

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return self._response(text, finish_reason, stats)

    def delta(self, text: str) -> dict:
        return self._response(text)

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        return self._response("", finish_reason, stats)

    def error_event(self, failure: web.Response) -> bytes:
        """Google sends an error after the 200 as the bare JSON error body, not as a `data:` event: google-genai
        (Python) reads lines without `data: ` as raw JSON and raises on `{"error": ...}`; the JavaScript SDK
        (Gemini CLI) raises only when a whole network chunk parses as `{"error": ...}`."""
        if isinstance(failure, ErrorResponse):
            failure = error(failure.status, failure.message, failure.kind)
        return failure.body + b"\n"


class CountShape(Shape):
    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return {"totalTokens": int(stats.get("prompt_tokens", 0))}
