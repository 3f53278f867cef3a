"""The AWS Bedrock runtime door: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream and
CountTokens for the model specd serves, as boto3's `bedrock-runtime` client calls them with `endpoint_url`.

Wire format: botocore's service model `bedrock-runtime/2023-09-30/service-2.json` (rest-json; shapes
ConverseRequest/Response, ConverseStreamOutput, InvokeModel*, CountTokens*, the exceptions) and the Bedrock API
reference (docs.aws.amazon.com/bedrock/latest/APIReference); ../shared/notes/api-doors.md section 3.

- `POST /model/{modelId}/converse` and `/converse-stream`: `messages[{role, content[{text}]}]`, `system[{text}]`,
  `inferenceConfig{maxTokens, temperature, topP, stopSequences}`; `additionalModelRequestFields` carries the
  speculative knobs (`speculativeDecoding`, `maxDraftTokens`, `draftingModel`); `toolConfig.toolChoice` `any` or
  `tool` forces a call (structured output: the answer is `{"name", "arguments"}` with the tool's
  `inputSchema.json`, returned as one `toolUse` block, `stopReason: tool_use`); `outputConfig.textFormat`
  (`json_schema`) makes the answer's text a document of its schema; otherwise `toolConfig`,
  `guardrailConfig`, `performanceConfig`, `requestMetadata`, `cachePoint` and reasoning blocks are accepted and
  ignored; image,
  document, video and audio blocks are refused. Tool use and results in earlier turns go into the transcript as
  JSON text. A final assistant message with text is a prefill, as Claude on Bedrock reads one (Bedrock user guide,
  "Anthropic Claude Messages API": the response continues immediately from that message's content): the answer
  is the continuation only; its text may not end with whitespace, as on Anthropic's API (ValidationException), and
  cannot be combined with a forced tool call; an empty one is dropped, one with toolUse/toolResult blocks is a
  finished turn. `usage.inputTokens` is the uncached part, `cacheReadInputTokens` specd's cached tokens; specd's
  accounting is in `additionalModelResponseFields.specd` and the `x-specd-*` headers.
- `POST /model/{modelId}/invoke` and `/invoke-with-response-stream`: specd's own body, a completion prompt as on
  `/v1/completions`: `{prompt, suffix?, max_tokens, temperature, top_p, stop, seed, speculativeDecoding:
  {enabled, maxDraftTokens}}`, answered `{id, text, finish_reason, usage, specd}`; the stream's `chunk` events
  carry `{text}` pieces, the last one the rest and `amazon-bedrock-invocationMetrics`.
- `POST /model/{modelId}/count-tokens`: `{input: {converse: {messages, system}} | {invokeModel: {body}}}` →
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

from aiohttp import web

from . import eventstream, speculative
from .generation import (CTX, Door, Shape, add_door, chat_request, generate, generation_request, log, log_prompt,
                         read_body)
from .native import NativeShape
from .openai import check_model
from .schema import (BadRequest, CompletionParams, _float, _int, _object, _stop, _wrong, blocks_text,
                     checked_json_schema, forced_call_schema, object_schema, parse_completion, parse_json_body)
from .security import ErrorResponse

DEFAULT_MAX_TOKENS = 4096  # Converse and InvokeModel without a limit; the engine also stops at the context's end
EXCEPTIONS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
              408: "ModelTimeoutException", 429: "ThrottlingException", 500: "InternalServerException",
              503: "ServiceUnavailableException"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "cancelled": "end_turn"}
ROLES = ("user", "assistant")
TOOL_BLOCKS = ("toolUse", "toolResult")
MEDIA_BLOCKS = {"image", "document", "video", "audio"}


def add_routes(app: web.Application) -> None:
    add_door(app, Door("bedrock", lambda request: request.path.startswith("/model/"), error))
    app.router.add_post("/model/{model}/converse", converse)
    app.router.add_post("/model/{model}/converse-stream", converse)
    app.router.add_post("/model/{model}/invoke", invoke)
    app.router.add_post("/model/{model}/invoke-with-response-stream", invoke)
    app.router.add_post("/model/{model}/count-tokens", count_tokens)


def exception_name(status: int, message: str, kind: str) -> tuple[int, str]:
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
    status, name = exception_name(status, message, kind)
    return web.json_response({"message": message}, status=status,
                             headers={**(headers or {}), "x-amzn-ErrorType": name})


async def converse(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    if (refused := check_model(ctx, request.match_info["model"])) is not None:
        return refused
    body = await read_body(request)
    messages, params, prefill = parse_converse(body)
    params.stream = request.path.endswith("/converse-stream")
    knobs = speculative.parse(_object(body, "additionalModelRequestFields"), "additionalModelRequestFields.")
    report = speculative.apply(ctx, knobs, params)
    rid = secrets.token_hex(12)
    if ctx.settings.log_prompts:
        log.info("%s messages=%r", rid, messages)
    params.json_schema = output_format(body)
    tools, call = forced_tool(body)
    if prefill and tools is not None:
        raise BadRequest("a prefill (a final assistant message with text) cannot be combined with a forced tool "
                         "call (toolConfig.toolChoice any or tool): the call must start the answer", "messages")
    if prefill and params.json_schema is not None:
        raise BadRequest("a prefill (a final assistant message with text) cannot be combined with "
                         "outputConfig.textFormat: the answer must be a document of the schema from its start",
                         "messages")
    params.json_schema = call or params.json_schema
    shape = ConverseShape(rid, ctx.model_names()[0], speculative=report, forced_tool=tools is not None)
    return await generate(request, ctx, chat_request(ctx, params, messages, tools, prefill), params, shape)


async def invoke(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    if (refused := check_model(ctx, request.match_info["model"])) is not None:
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
    if (refused := check_model(ctx, request.match_info["model"])) is not None:
        return refused
    query = _object(await read_body(request), "input")
    if isinstance(query.get("converse"), dict):
        messages, params, prefill = parse_converse(query["converse"])
        params.max_tokens, params.count_only = 0, True
        build = chat_request(ctx, params, messages, None, prefill)
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

def parse_invoke(body: dict) -> CompletionParams:
    """specd's InvokeModel body: /v1/completions' fields (prompt used as sent, FIM with `suffix`)."""
    params = parse_completion(body)
    if body.get("max_tokens") is None:
        params.max_tokens = DEFAULT_MAX_TOKENS
    return params


def parse_converse(body: dict) -> tuple[list[dict], CompletionParams, bool]:
    """The chat messages, the parameters, and whether the final (assistant) message is a prefill to continue."""
    messages = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, list):
            raise _wrong("system", "an array of {text} blocks", system)
        messages.append({"role": "system", "content": blocks_text(system, "system", "system", TOOL_BLOCKS, MEDIA_BLOCKS)})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'messages' must be a non-empty array of {role, content} objects", "messages")
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _wrong(where, "an object", message)
        if message.get("role") not in ROLES:
            raise BadRequest(f"'{where}.role' must be 'user' or 'assistant', got {message.get('role')!r}", "messages")
        content = message.get("content")
        if not isinstance(content, list):
            raise _wrong(f"{where}.content", "an array of content blocks", content)
        messages.append({"role": message["role"], "content": blocks_text(content, f"{where}.content", "messages", TOOL_BLOCKS, MEDIA_BLOCKS)})
    prefill = _prefill(messages, raw[-1])
    params = CompletionParams(prompt="", max_tokens=DEFAULT_MAX_TOKENS, token_healing=False)
    config = {f"inferenceConfig.{k}": v for k, v in _object(body, "inferenceConfig").items()}
    params.max_tokens = _int(config, "inferenceConfig.maxTokens", DEFAULT_MAX_TOKENS, low=1)
    params.temperature = _float(config, "inferenceConfig.temperature", 0.0, 0.0, 2.0)
    params.top_p = _float(config, "inferenceConfig.topP", 1.0, 0.0, 1.0)
    if params.top_p == 0.0:
        raise BadRequest("'inferenceConfig.topP' must be > 0", "inferenceConfig")
    params.stop = _stop(config, "inferenceConfig.stopSequences")
    return messages, params, prefill


def _prefill(messages: list[dict], last: dict) -> bool:
    """Whether the final message (`last` as sent) is an assistant's text for the answer to continue. An empty one
    is dropped (the answer starts a new turn, as without it); one with tool blocks is a finished turn."""
    if last["role"] != "assistant" or any(isinstance(b, dict) and set(b) & set(TOOL_BLOCKS) for b in last["content"]):
        return False
    text = messages[-1]["content"]
    if not text:
        if len(messages) > 1:
            messages.pop()
        return False
    if text != text.rstrip():
        raise BadRequest("messages: final assistant content cannot end with trailing whitespace", "messages")
    return True


def output_format(body: dict) -> dict | bool | None:
    """`outputConfig.textFormat` (botocore's OutputFormat): {"type": "json_schema", "structure": {"jsonSchema":
    {"schema": "<a JSON Schema as a string>", "name", "description"}}}, the answer's text is a document of the
    schema (checked as every door's); None without one."""
    fmt = _object(_object(body, "outputConfig"), "textFormat")
    if not fmt:
        return None
    if fmt.get("type") != "json_schema":
        raise BadRequest(f"'outputConfig.textFormat.type' must be json_schema, got {fmt.get('type')!r}", "outputConfig")
    text = _object(_object(fmt, "structure"), "jsonSchema").get("schema")
    where = "outputConfig.textFormat.structure.jsonSchema.schema"
    if not isinstance(text, str):
        raise _wrong(where, "a string (a JSON Schema as JSON text)", text)
    try:
        schema = json.loads(text)
    except ValueError as error:
        raise BadRequest(f"'{where}' is not JSON: {error}", "outputConfig") from None
    return checked_json_schema(schema, where)


def forced_tool(body: dict) -> tuple[list[dict] | None, dict | None]:
    """`toolConfig` with `toolChoice` `any` or `tool`: the tools in OpenAI's function form (for the chat template)
    and the forced call's checked schema; (None, None) when no call is forced."""
    config = _object(body, "toolConfig")
    choice = _object(config, "toolChoice")
    if "any" not in choice and "tool" not in choice:
        return None, None
    raw = config.get("tools")
    if not isinstance(raw, list):
        raise _wrong("toolConfig.tools", "an array of {toolSpec} objects", raw)
    functions, paths = [], []
    for i, tool in enumerate(raw):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if not isinstance(spec, dict):
            continue  # a cachePoint
        name, path = spec.get("name"), f"toolConfig.tools[{i}].toolSpec.inputSchema.json"
        schema = object_schema(_object(_object(spec, "inputSchema"), "json"), path, "toolConfig")
        if not isinstance(name, str):
            raise _wrong(f"toolConfig.tools[{i}].toolSpec.name", "a string", name)
        functions.append({"type": "function", "function": {"name": name, "description": spec.get("description") or "",
                                                            "parameters": schema}})
        paths.append(path)
    name = _object(choice, "tool").get("name") if "tool" in choice else None
    call = forced_call_schema(functions, name, paths)
    if call is None:
        raise BadRequest("'toolConfig.toolChoice' forces a tool call but 'toolConfig.tools' has none", "toolConfig")
    return functions, call


# ---- answers -------------------------------------------------------------------------------------------

def token_usage(stats: dict) -> dict:
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
    def __init__(self, rid: str, model: str, speculative: dict | None = None, forced_tool: bool = False) -> None:
        super().__init__(rid, model, speculative)
        self.forced_tool = forced_tool  # the answer is a call's JSON: one toolUse block, sent when it is whole
        self.held = ""
        self.called = False

    def block(self, text: str) -> dict:
        """The answer's content block: a forced call's toolUse, or text (also a forced call cut short)."""
        try:
            call = json.loads(text) if self.forced_tool else None
        except ValueError:
            call = None
        if not isinstance(call, dict):
            return {"text": text}
        self.called = True
        return {"toolUse": {"toolUseId": "tooluse_" + secrets.token_hex(12), "name": call["name"],
                            "input": call["arguments"]}}

    def stop_reason(self, finish_reason: str) -> str:
        if self.called:
            return "tool_use"
        return "stop_sequence" if finish_reason == "stop" and self.stop_sequence else STOP_REASONS.get(
            finish_reason, "end_turn")

    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return {"output": {"message": {"role": "assistant", "content": [self.block(text)]}},
                "stopReason": self.stop_reason(finish_reason), "usage": token_usage(stats),
                "metrics": {"latencyMs": _latency_ms(stats)}, "additionalModelResponseFields": {"specd": stats}}

    def stream_start(self) -> list[dict]:
        return [{"messageStart": {"role": "assistant"}}]

    def delta(self, text: str) -> dict | list[dict]:
        if self.forced_tool:
            self.held += text
            return []
        return {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": text}}}

    def _held_block(self) -> list[dict]:
        block = self.block(self.held)
        if "text" in block:
            return [{"contentBlockDelta": {"contentBlockIndex": 0, "delta": block}}]
        use = block["toolUse"]
        return [{"contentBlockStart": {"contentBlockIndex": 0, "start": {"toolUse": {
                    "toolUseId": use["toolUseId"], "name": use["name"]}}}},
                {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolUse": {
                    "input": json.dumps(use["input"], ensure_ascii=False)}}}}]

    def stream_end(self, finish_reason: str, stats: dict) -> list[dict]:
        return (self._held_block() if self.forced_tool else []) + [{"contentBlockStop": {"contentBlockIndex": 0}},
                {"messageStop": {"stopReason": self.stop_reason(finish_reason),
                                 "additionalModelResponseFields": {"specd": stats}}},
                {"metadata": {"usage": token_usage(stats), "metrics": {"latencyMs": _latency_ms(stats)}}}]


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
    def body(self, text: str, finish_reason: str, stats: dict) -> dict:
        return {"inputTokens": int(stats.get("prompt_tokens", 0))}
