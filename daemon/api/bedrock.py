"""The AWS Bedrock runtime door: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream and
CountTokens for the model specd serves, as boto3's `bedrock-runtime` client calls them with `endpoint_url`.

Wire format: botocore's service model `bedrock-runtime/2023-09-30/service-2.json` (rest-json; shapes
ConverseRequest/Response, ConverseStreamOutput, InvokeModel*, CountTokens*, the exceptions) and the Bedrock API
reference (docs.aws.amazon.com/bedrock/latest/APIReference); ../shared/notes/api-doors.md section 3.

- `POST /model/{modelId}/converse` and `/converse-stream`: `messages[{role, content[{text}]}]`, `system[{text}]`,
  `inferenceConfig{maxTokens, temperature, topP, stopSequences}`; `additionalModelRequestFields` carries the
  speculative knobs (`speculativeDecoding`, `maxDraftTokens`, `draftingModel`). Messages, tool use and results,
  `toolConfig` and prefills are read by bedrock_schema.py: with tools the answer's calls are `toolUse` blocks
  (`stopReason: tool_use`), `toolChoice` `any` or `tool` forces one (structured output); `outputConfig.textFormat`
  (`json_schema`) makes the answer's text a document of its schema; `guardrailConfig`, `performanceConfig`,
  `requestMetadata`, `cachePoint` and reasoning blocks are accepted and ignored. `usage.inputTokens` is the
  uncached part, `cacheReadInputTokens` specd's cached tokens; specd's accounting is in
  `additionalModelResponseFields.specd` and the `x-specd-*` headers.
- `POST /model/{modelId}/invoke` and `/invoke-with-response-stream`: specd's own body, a completion prompt as on
  `/v1/completions`: `{prompt, suffix?, max_tokens, temperature, top_p, stop, seed, speculativeDecoding:
  {enabled, maxDraftTokens}}`, answered `{id, text, finish_reason, usage, specd}`; the stream's `chunk` events
  carry `{text}` pieces, the last one the rest and `amazon-bedrock-invocationMetrics`.
- `POST /model/{modelId}/count-tokens`: `{input: {converse: {messages, system, toolConfig}} | {invokeModel: {body}}}` →
  `{inputTokens}`.
- Streams are `application/vnd.amazon.eventstream` messages (eventstream.py); an error after the 200 is an
  exception message (`validationException`, `throttlingException`, ...).
- Errors: the status, `x-amzn-ErrorType: <Name>` and `{"message"}` (botocore raises the named exception):
  ValidationException 400, ResourceNotFoundException 404, ThrottlingException 429 (specd's full queue),
  ModelTimeoutException 408, ServiceUnavailableException 503, InternalServerException 500, and 403 for
  requests that are unsigned, signed with another key or wrongly signed (sigv4.py).
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid

from aiohttp import web

from . import eventstream, speculative, tool_calls
from .bedrock_schema import DEFAULT_MAX_TOKENS, parse_converse
from .generation import (CTX, Door, Shape, add_door, chat_request, generate, generation_request, log, log_prompt,
                         read_body)
from .native import NativeShape
from .openai import check_model
from .schema import BadRequest, CompletionParams, _object, parse_completion, parse_json_body
from .security import ErrorResponse
from .sigv4 import BEDROCK_PATHS

EXCEPTIONS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
              408: "ModelTimeoutException", 429: "ThrottlingException", 500: "InternalServerException",
              503: "ServiceUnavailableException"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "cancelled": "end_turn"}


def add_routes(app: web.Application) -> None:
    """Register the Bedrock door (every `/model/...` path) and its routes on `app`: converse, converse-stream, invoke,
    invoke-with-response-stream and count-tokens."""
    add_door(app, Door("bedrock", lambda request: request.path.startswith(BEDROCK_PATHS), error))
    app.on_response_prepare.append(_request_id)
    app.router.add_post("/model/{model}/converse", converse)
    app.router.add_post("/model/{model}/converse-stream", converse)
    app.router.add_post("/model/{model}/invoke", invoke)
    app.router.add_post("/model/{model}/invoke-with-response-stream", invoke)
    app.router.add_post("/model/{model}/count-tokens", count_tokens)


async def _request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every Bedrock answer, errors included, carries `x-amzn-RequestId` as AWS's do: botocore copies it into
    `ResponseMetadata["RequestId"]`, which programs log."""
    if request.path.startswith(BEDROCK_PATHS) and "x-amzn-RequestId" not in response.headers:
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())


def model_id(requested: str) -> str:
    """The model a `modelId` names: a foundation-model ARN (`arn:aws:bedrock:<region>::foundation-model/<id>`, as
    Bedrock accepts in place of the id) names its last segment; any other id is itself."""
    if requested.startswith("arn:") and "/" in requested:
        return requested.rsplit("/", 1)[1]
    return requested


def exception_name(status: int, message: str, kind: str) -> tuple[int, str]:
    """(status, AWS exception name) for an error of specd's (status, message, kind), as boto3 expects it (botocore's
    bedrock-runtime service model): a kind that is already an exception name (sigv4) stays; 401 becomes 403
    MissingAuthenticationTokenException or UnrecognizedClientException; a full queue 429 ThrottlingException; 504 408
    ModelTimeoutException; other statuses by EXCEPTIONS."""
    if kind.endswith("Exception"):  # named by the check itself (sigv4.SignatureRefused)
        return status, kind
    if status == 401:  # no or a wrong token: AWS answers 403
        return 403, "MissingAuthenticationTokenException" if message.startswith("missing") else \
            "UnrecognizedClientException"
    if kind == "overloaded":  # specd's full queue
        return 429, "ThrottlingException"
    if status == 504:
        return 408, "ModelTimeoutException"
    return status, EXCEPTIONS.get(status, "InternalServerException" if status >= 500 else "ValidationException")


def error(status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
    """A Bedrock error response: `{"message"}` with the `x-amzn-ErrorType` header naming the exception
    (`exception_name`), plus `headers`."""
    status, name = exception_name(status, message, kind)
    return web.json_response({"message": message}, status=status,
                             headers={**(headers or {}), "x-amzn-ErrorType": name})


async def converse(request: web.Request) -> web.StreamResponse:
    """`POST /model/{modelId}/converse` and `/converse-stream` (Bedrock Converse, ConverseStream): the chat answer as a
    ConverseResponse, or as eventstream messages. Raises BadRequest (ValidationException) for a body bedrock_schema.py
    refuses; a model not served is a 404 (ResourceNotFoundException)."""
    ctx = request.app[CTX]
    if (refused := check_model(ctx, model_id(request.match_info["model"]))) is not None:
        return refused
    body = await read_body(request)
    parsed = parse_converse(body)
    params = parsed.params
    params.stream = request.path.endswith("/converse-stream")
    knobs = speculative.parse(_object(body, "additionalModelRequestFields"), "additionalModelRequestFields.")
    report = speculative.apply(ctx, knobs, params)
    rid = secrets.token_hex(12)
    if ctx.settings.log_prompts:
        log.info("%s messages=%r tools=%d", rid, parsed.messages, len(parsed.tools or ()))
    shape = ConverseShape(rid, ctx.model_names()[0], speculative=report, names=tool_calls.declared_names(parsed.tools),
                          forced_tool=parsed.forced_tool)
    return await generate(request, ctx, chat_request(ctx, params, parsed.messages, parsed.tools, parsed.prefill),
                          params, shape)


async def invoke(request: web.Request) -> web.StreamResponse:
    """`POST /model/{modelId}/invoke` and `/invoke-with-response-stream`: specd's completion body (`parse_invoke`)
    answered `{id, text, finish_reason, usage, specd}`, or streamed as eventstream `chunk` events. Raises BadRequest for
    a bad body; a model not served is a 404."""
    ctx = request.app[CTX]
    if (refused := check_model(ctx, model_id(request.match_info["model"]))) is not None:
        return refused
    body = await read_body(request)
    params = parse_invoke(body)
    params.stream = request.path.endswith("/invoke-with-response-stream")
    report = speculative.apply_body(ctx, body, params)
    rid = "spd-" + secrets.token_hex(12)
    log_prompt(ctx, rid, params)
    shape = InvokeShape(rid, ctx.model_names()[0], speculative=report)
    return await generate(request, ctx, generation_request(ctx, params), params, shape)


async def count_tokens(request: web.Request) -> web.Response:
    """The prompt's tokens as a generation would read them: a generation of 0 tokens, which prefills nothing."""
    ctx = request.app[CTX]
    if (refused := check_model(ctx, model_id(request.match_info["model"]))) is not None:
        return refused
    query = _object(await read_body(request), "input")
    if isinstance(query.get("converse"), dict):
        parsed = parse_converse(query["converse"], counting=True)
        params = parsed.params
        params.max_tokens, params.count_only = 0, True
        build = chat_request(ctx, params, parsed.messages, parsed.tools, parsed.prefill)
    elif isinstance(query.get("invokeModel"), dict) and isinstance(query["invokeModel"].get("body"), str):
        try:  # a blob: base64 in rest-json
            raw = base64.b64decode(query["invokeModel"]["body"], validate=True)
        except ValueError:
            raise BadRequest("'input.invokeModel.body' must be base64 (a blob)", "input") from None
        params = parse_invoke(parse_json_body(raw))
        params.max_tokens, params.count_only = 0, True
        build = generation_request(ctx, params)
    else:
        raise BadRequest("'input' must be {converse: {messages, system}} or {invokeModel: {body}}", "input")
    return await generate(request, ctx, build, params, CountShape("count"))


# ---- requests ------------------------------------------------------------------------------------------

# specd's InvokeModel body: what parse_completion and the speculative knobs read (`stream` is the path's to say)
INVOKE_FIELDS = ("prompt", "suffix", "max_tokens", "temperature", "top_p", "stop", "seed", "response_format",
                 "specd", "speculativeDecoding", "maxDraftTokens", "draftingModel", "model", "n", "best_of", "echo",
                 "logprobs", "presence_penalty", "frequency_penalty", "logit_bias")


def parse_invoke(body: dict) -> CompletionParams:
    """specd's InvokeModel body: /v1/completions' fields (prompt used as sent, FIM with `suffix`). A field it does
    not read is a BadRequest naming it: InvokeModel bodies are the model's own format on Bedrock, and another
    provider's limit (Llama's `max_gen_len`) silently dropped let an answer run to the deadline."""
    unknown = [key for key in body if key not in INVOKE_FIELDS]
    if unknown:
        raise BadRequest(f"specd's InvokeModel body has no field {', '.join(repr(key) for key in unknown)}: it is a "
                         f"completion prompt as on /v1/completions ({', '.join(INVOKE_FIELDS[:7])}, ...; see specd's "
                         "README); for chat messages use Converse", unknown[0])
    params = parse_completion(body)
    if body.get("max_tokens") is None:
        params.max_tokens = DEFAULT_MAX_TOKENS
    return params


# ---- answers -------------------------------------------------------------------------------------------

def token_usage(stats: dict) -> dict:
    """Converse's TokenUsage from the engine's accounting (tokens): `inputTokens` the prompt tokens not read from the
    cache, `cacheReadInputTokens` those that were, `outputTokens`, `totalTokens` prompt plus output;
    `cacheWriteInputTokens` always 0."""
    prompt, cached = int(stats.get("prompt_tokens", 0)), int(stats.get("cached_tokens", 0))
    completion = int(stats.get("completion_tokens", 0))
    return {"inputTokens": prompt - cached, "outputTokens": completion, "totalTokens": prompt + completion,
            "cacheReadInputTokens": cached, "cacheWriteInputTokens": 0}


def _latency_ms(stats: dict) -> int:
    return int(round(1000 * float(stats.get("total_s") or 0.0)))


class EventStreamShape(Shape):
    """Stream events are `{event type: payload}` dicts, sent as eventstream messages."""

    content_type = "application/vnd.amazon.eventstream"
    done = b""
    # The exception members of the stream's union (service-2.json: ConverseStreamOutput; ResponseStream adds
    # modelTimeoutException): botocore reads no other name, so a deadline on ConverseStream is modelStreamError.
    exceptions = frozenset({"internalServerException", "modelStreamErrorException", "validationException",
                            "throttlingException", "serviceUnavailableException"})

    def encode(self, payload: dict) -> bytes:
        (event_type, body), = payload.items()
        return eventstream.event(event_type, body)

    def error_event(self, failure: web.Response) -> bytes:
        if not isinstance(failure, ErrorResponse):
            return b""
        _, name = exception_name(failure.status, failure.message, failure.kind)
        member = name[0].lower() + name[1:]  # the stream's member name
        return eventstream.exception(member if member in self.exceptions else "modelStreamErrorException",
                                     failure.message)


class ConverseShape(EventStreamShape):
    """A message whose content is the model's text cut into text and toolUse blocks when the request has tools
    (tool_calls.py), or one toolUse block for a forced call (held back in a stream until its JSON is whole). A text
    piece of whitespace alone makes no block unless the answer has no other, in a stream as in a whole answer. In a
    stream a text block is its deltas (Bedrock sends no contentBlockStart for text), a toolUse block a
    contentBlockStart with its id and name, one delta with its input as JSON text, and a contentBlockStop."""

    def __init__(self, rid: str, model: str, speculative: dict | None = None, names: set[str] | None = None,
                 forced_tool: bool = False) -> None:
        """`names`: the declared tools (None: the request has none, the answer is text)."""
        super().__init__(rid, model, speculative)
        self.parser = tool_calls.ToolCallParser(names) if names is not None and not forced_tool else None
        self.forced_tool = forced_tool
        self.forced_text = ""  # a forced call's JSON so far (a stream)
        self.index = -1  # the current block's index
        self.text_open = False
        self.streamed = tool_calls.StreamedBlocks()
        self.called = False

    def _tool_use(self, call: tool_calls.ToolCall) -> dict:
        self.called = True
        return {"toolUseId": "tooluse_" + secrets.token_hex(12), "name": call.name, "input": call.input}

    def stop_reason(self, finish_reason: str) -> str:
        if self.called:
            return "tool_use"
        return "stop_sequence" if finish_reason == "stop" and self.stop_sequence else STOP_REASONS.get(
            finish_reason, "end_turn")

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        if self.forced_tool:
            pieces = tool_calls.forced_pieces(text)
        else:
            pieces = tool_calls.split(text, self.parser.names) if self.parser is not None else [text]
        content = [{"toolUse": self._tool_use(p)} if isinstance(p, tool_calls.ToolCall) else {"text": p}
                   for p in pieces if not isinstance(p, str) or p.strip()] or [{"text": text}]
        return {"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": self.stop_reason(finish_reason), "usage": token_usage(stats),
                "metrics": {"latencyMs": _latency_ms(stats)}, "additionalModelResponseFields": {"specd": stats}}

    def stream_start(self) -> list[dict]:
        return [{"messageStart": {"role": "assistant"}}]

    def delta(self, text: str) -> list[dict]:
        if self.forced_tool:
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
            self.index, self.text_open = 0, True
            events += [self._text_delta(rest)] if rest else []
        if self.text_open:
            events.append({"contentBlockStop": {"contentBlockIndex": self.index}})
        return events + [{"messageStop": {"stopReason": self.stop_reason(finish_reason),
                                          "additionalModelResponseFields": {"specd": stats}}},
                         {"metadata": {"usage": token_usage(stats), "metrics": {"latencyMs": _latency_ms(stats)}}}]

    def _events(self, pieces: list) -> list[dict]:
        events: list[dict] = []
        for piece in self.streamed.settle(pieces):
            if isinstance(piece, tool_calls.ToolCall):
                if self.text_open:
                    events.append({"contentBlockStop": {"contentBlockIndex": self.index}})
                    self.text_open = False
                use = self._tool_use(piece)
                self.index += 1
                events += [{"contentBlockStart": {"contentBlockIndex": self.index, "start": {"toolUse": {
                               "toolUseId": use["toolUseId"], "name": use["name"]}}}},
                           {"contentBlockDelta": {"contentBlockIndex": self.index, "delta": {"toolUse": {
                               "input": json.dumps(use["input"], ensure_ascii=False)}}}},
                           {"contentBlockStop": {"contentBlockIndex": self.index}}]
            else:
                if piece.opens:
                    self.index, self.text_open = self.index + 1, True
                events.append(self._text_delta(piece.text))
        return events

    def _text_delta(self, text: str) -> dict:
        return {"contentBlockDelta": {"contentBlockIndex": self.index, "delta": {"text": text}}}


class InvokeShape(EventStreamShape, NativeShape):
    """The native route's body; streamed as `chunk` events whose `bytes` are that JSON, base64 in the message."""

    exceptions = EventStreamShape.exceptions | {"modelTimeoutException"}

    def encode(self, payload: dict) -> bytes:
        data = base64.b64encode(json.dumps(payload, ensure_ascii=False).encode()).decode()
        return eventstream.event("chunk", {"bytes": data})

    def stream_end(self, finish_reason: str, stats: dict) -> dict:
        end = NativeShape.stream_end(self, finish_reason, stats)
        end["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": int(stats.get("prompt_tokens", 0)),
            "outputTokenCount": int(stats.get("completion_tokens", 0)),
            "invocationLatency": _latency_ms(stats)}
        return end


class CountShape(Shape):
    """CountTokens' answer: `{"inputTokens": N}`, the prompt's tokens."""

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return {"inputTokens": int(stats.get("prompt_tokens", 0))}
