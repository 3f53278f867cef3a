"""A Bedrock Converse (or CountTokens `converse`) body, checked and turned into the chat messages and tools a chat
template reads.

Wire format: botocore's service model `bedrock-runtime/2023-09-30/service-2.json` (ConverseRequest, Message,
ContentBlock, ToolUseBlock, ToolResultBlock, ToolConfiguration, ToolChoice, OutputConfig, ConverseTokensRequest) and
the Bedrock API reference; ../shared/notes/api-doors.md section 3.

What reaches the template:
- `system` text blocks form the system message; text blocks are joined per message; reasoning and `cachePoint`
  blocks are skipped; image, document, video and audio blocks are refused (the served model reads text).
- Tool use as Hugging Face chat templates read it (OpenAI's function form), as the OpenAI and Anthropic doors give
  it: an assistant's `toolUse` blocks become its `tool_calls`, `toolResult` blocks `role: "tool"` messages (ahead
  of the turn's text; text and `json` content joined, "Error: " before a result with `status: error`), and
  `toolConfig.tools[].toolSpec` the tools. `toolChoice` `auto` (the default) lets the model write calls (cut out of
  its text by tool_calls.py), `any` or `tool` forces one (structured output: `{"name", "arguments"}` with the tool's
  `inputSchema.json`).
- A final assistant message with text is a prefill, as Claude on Bedrock reads one: the answer continues it. Its
  text may not end with whitespace (ValidationException, as on Anthropic's API) and it cannot be combined with a
  forced tool call or `outputConfig.textFormat`; an empty one is dropped, one with tool blocks is a finished turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .schema import (BadRequest, CompletionParams, _float, _int, _object, _stop, _wrong, blocks_text,
                     checked_json_schema, forced_call_schema, object_schema)

DEFAULT_MAX_TOKENS = 4096  # Converse and InvokeModel without a limit; the engine also stops at the context's end
ROLES = ("user", "assistant")
TOOL_BLOCKS = ("toolUse", "toolResult")
MEDIA_BLOCKS = {"image", "document", "video", "audio"}
# the members of botocore's ContentBlock and SystemContentBlock unions: a block holds one
CONTENT_BLOCKS = {"text", *TOOL_BLOCKS, *MEDIA_BLOCKS, "guardContent", "cachePoint", "reasoningContent",
                  "citationsContent", "searchResult"}
SYSTEM_BLOCKS = {"text", "guardContent", "cachePoint"}


@dataclass
class ConverseRequest:
    """A checked Converse body: the chat `messages` in Hugging Face's form, `tools` in OpenAI's function form (None
    without toolConfig), the CompletionParams, whether the final assistant message's text is continued (`prefill`) and
    whether one call is forced (`forced_tool`, its schema in params.json_schema)."""

    messages: list[dict]  # Hugging Face chat messages
    tools: list[dict] | None  # OpenAI function form; None without toolConfig
    params: CompletionParams
    prefill: bool = False  # the final (assistant) message's text is continued
    forced_tool: bool = False  # toolChoice any/tool: the answer is one call (params.json_schema)


def parse_converse(body: dict, counting: bool = False) -> ConverseRequest:
    """POST /model/{id}/converse(-stream), or CountTokens' `input.converse` with `counting` (no inference or output
    configuration). Raises BadRequest naming the field."""
    messages = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, list):
            raise _wrong("system", "an array of {text} blocks", system)
        messages.append({"role": "system", "content": blocks_text(system, "system", "system", TOOL_BLOCKS,
                                                                   MEDIA_BLOCKS, SYSTEM_BLOCKS, tools_as_text=False)})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'messages' must be a non-empty array of {role, content} objects", "messages")
    for i, message in enumerate(raw):
        messages += _message(message, f"messages[{i}]")
    _check_turns(raw)
    prefill = _prefill(messages, raw[-1])
    params = CompletionParams(prompt="", max_tokens=DEFAULT_MAX_TOKENS, token_healing=False)
    tools, paths, choice = _tool_config(body)
    call = forced_call_schema(tools, _object(choice, "tool").get("name"), paths, "toolConfig.toolChoice.tool.name") \
        if "any" in choice or "tool" in choice else None
    if counting:
        return ConverseRequest(messages, tools, params, prefill)
    config = {f"inferenceConfig.{k}": v for k, v in _object(body, "inferenceConfig").items()}
    params.max_tokens = _int(config, "inferenceConfig.maxTokens", DEFAULT_MAX_TOKENS, low=1)
    params.temperature = _float(config, "inferenceConfig.temperature", 0.0, 0.0, 2.0)
    params.top_p = _float(config, "inferenceConfig.topP", 1.0, 0.0, 1.0)
    if params.top_p == 0.0:
        raise BadRequest("'inferenceConfig.topP' must be > 0", "inferenceConfig")
    params.stop = _stop(config, "inferenceConfig.stopSequences", one_string=False)
    text_format = output_format(body)
    if prefill and call is not None:
        raise BadRequest("a prefill (a final assistant message with text) cannot be combined with a forced tool "
                         "call (toolConfig.toolChoice any or tool): the call must start the answer", "messages")
    if prefill and text_format is not None:
        raise BadRequest("a prefill (a final assistant message with text) cannot be combined with "
                         "outputConfig.textFormat: the answer must be a document of the schema from its start",
                         "messages")
    params.json_schema = text_format
    if call is not None:  # takes precedence, as on the Anthropic door
        params.force_call(call)
    return ConverseRequest(messages, tools, params, prefill, forced_tool=call is not None)


def _check_turns(raw: list[dict]) -> None:
    """Bedrock's own rules for a conversation (its ValidationException messages): it starts with a user message and
    the roles alternate (read alike, two messages of one role would be one turn the caller did not write)."""
    if raw[0]["role"] != "user":
        raise BadRequest("A conversation must start with a user message. Try again with a conversation that starts "
                         "with a user message.", "messages")
    for i in range(1, len(raw)):
        if raw[i]["role"] == raw[i - 1]["role"]:
            raise BadRequest(f"A conversation must alternate between user and assistant roles (messages[{i - 1}] and "
                             f"messages[{i}] are both {raw[i]['role']}). Make sure the conversation alternates "
                             "between user and assistant roles and try again.", "messages")


def _message(message: Any, where: str) -> list[dict]:
    """One Message as chat messages: an assistant's text and calls, or a user's tool results and text."""
    if not isinstance(message, dict):
        raise _wrong(where, "an object", message)
    role = message.get("role")
    if role not in ROLES:
        raise BadRequest(f"'{where}.role' must be 'user' or 'assistant', got {role!r}", "messages")
    content = message.get("content")
    if not isinstance(content, list):
        raise _wrong(f"{where}.content", "an array of content blocks", content)
    content = [_guarded_text(block) for block in content]
    text = blocks_text(content, f"{where}.content", "messages", TOOL_BLOCKS, MEDIA_BLOCKS, CONTENT_BLOCKS,
                       tools_as_text=False)
    kinds = {kind: [(j, block[kind]) for j, block in enumerate(content) if isinstance(block, dict) and kind in block]
             for kind in TOOL_BLOCKS}
    wrong, home = ("toolResult", "a user") if role == "assistant" else ("toolUse", "an assistant")
    if kinds[wrong]:
        raise BadRequest(f"'{where}.content[{kinds[wrong][0][0]}]' is a {wrong} block in {role} message "
                         f"'{where}'; {wrong} blocks belong in {home} message", "messages")
    if role == "assistant":
        reply: dict = {"role": "assistant", "content": text}
        calls = [_tool_use(use, f"{where}.content[{j}].toolUse") for j, use in kinds["toolUse"]]
        if calls:
            reply["tool_calls"] = calls
        return [reply]
    results = [_tool_result(result, f"{where}.content[{j}].toolResult") for j, result in kinds["toolResult"]]
    if not text and not results:  # Bedrock: "The content field in the Message object ... is empty" / "is blank"
        raise BadRequest(f"'{where}' is a user message without text or a toolResult: nothing to answer", "messages")
    return results + ([{"role": "user", "content": text}] if text or not results else [])


def _guarded_text(block: Any) -> Any:
    """A `guardContent` block's text as a text block: the model reads it (a guardrail, which specd does not run,
    would only check it); other blocks as they are."""
    if isinstance(block, dict) and isinstance(block.get("guardContent"), dict) \
            and isinstance(block["guardContent"].get("text"), dict) and "text" in block["guardContent"]["text"]:
        return {"text": block["guardContent"]["text"]["text"]}
    return block


def _tool_use(use: Any, where: str) -> dict:
    if not isinstance(use, dict):
        raise _wrong(where, "an object {toolUseId, name, input}", use)
    for key in ("toolUseId", "name"):
        if not isinstance(use.get(key), str):
            raise _wrong(f"{where}.{key}", "a string", use.get(key))
    if not isinstance(use.get("input", {}), dict):
        raise _wrong(f"{where}.input", "an object", use.get("input"))
    return {"id": use["toolUseId"], "type": "function",
            "function": {"name": use["name"], "arguments": use.get("input", {})}}


def _tool_result(result: Any, where: str) -> dict:
    if not isinstance(result, dict):
        raise _wrong(where, "an object {toolUseId, content, status}", result)
    if not isinstance(result.get("toolUseId"), str):
        raise _wrong(f"{where}.toolUseId", "a string", result.get("toolUseId"))
    blocks = result.get("content", [])
    if not isinstance(blocks, list):
        raise _wrong(f"{where}.content", "an array of {text} or {json} blocks", blocks)
    texts = []
    for k, block in enumerate(blocks):
        here = f"{where}.content[{k}]"
        if not isinstance(block, dict):
            raise _wrong(here, "an object", block)
        if "json" in block:
            texts.append(json.dumps(block["json"], ensure_ascii=False))
        elif "text" in block:
            if not isinstance(block["text"], str):
                raise _wrong(f"{here}.text", "a string", block["text"])
            texts.append(block["text"])
        else:
            raise BadRequest(f"'{here}': specd reads text and json blocks in a tool result, not "
                             f"{', '.join(sorted(block)) or 'an empty block'}", "messages")
    text = "\n\n".join(t for t in texts if t)
    return {"role": "tool", "tool_call_id": result["toolUseId"],
            "content": f"Error: {text}" if result.get("status") == "error" else text}


def _prefill(messages: list[dict], last: dict) -> bool:
    """Whether the final message (`last` as sent) is an assistant's text for the answer to continue. An empty one
    is dropped (the answer starts a new turn, as without it); one with tool blocks is a finished turn."""
    if last["role"] != "assistant" or "tool_calls" in messages[-1]:
        return False
    text = messages[-1]["content"]
    if not text:
        if len(messages) > 1:
            messages.pop()
        return False
    if text != text.rstrip():
        raise BadRequest("messages: final assistant content cannot end with trailing whitespace", "messages")
    return True


def _tool_config(body: dict) -> tuple[list[dict] | None, list[str], dict]:
    """`toolConfig`: the tools in OpenAI's function form (None without any), where each one's input schema is in the
    request, and `toolChoice` ({} when absent: auto)."""
    config = _object(body, "toolConfig")
    choice = _object(config, "toolChoice", "toolConfig.toolChoice")
    if choice and (len(choice) != 1 or not set(choice) <= {"auto", "any", "tool"}):
        raise BadRequest("'toolConfig.toolChoice' must be one of {\"auto\": {}}, {\"any\": {}} or {\"tool\": "
                         "{\"name\"}}", "toolConfig")
    if "tool" in choice and not isinstance(_object(choice, "tool", "toolConfig.toolChoice.tool").get("name"), str):
        raise _wrong("toolConfig.toolChoice.tool.name", "a string", choice["tool"].get("name"))
    if not config:
        return None, [], choice
    raw = config.get("tools")
    if not isinstance(raw, list):
        raise _wrong("toolConfig.tools", "an array of {toolSpec} objects", raw)
    functions, paths = [], []
    for i, tool in enumerate(raw):
        where = f"toolConfig.tools[{i}]"
        if not isinstance(tool, dict) or not set(tool) & {"toolSpec", "systemTool", "cachePoint"}:
            raise _wrong(where, "an object {toolSpec}, {systemTool} or {cachePoint}", tool)
        if "toolSpec" not in tool:
            continue  # a cachePoint, or a systemTool that Bedrock itself runs
        spec = _object(tool, "toolSpec", f"{where}.toolSpec")
        name, description = spec.get("name"), spec.get("description")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"'{where}.toolSpec.name' must be a non-empty string, got {json.dumps(name)}", "toolConfig")
        if name in {f["function"]["name"] for f in functions}:
            raise BadRequest(f"'{where}.toolSpec.name': {name!r} names two tools", "toolConfig")
        if description is not None and not isinstance(description, str):
            raise _wrong(f"{where}.toolSpec.description", "a string", description)
        path = f"{where}.toolSpec.inputSchema.json"
        schema = object_schema(_object(_object(spec, "inputSchema", f"{where}.toolSpec.inputSchema"), "json", path),
                               path, "toolConfig")
        functions.append({"type": "function", "function": {"name": name, "description": description or "",
                                                            "parameters": schema}})
        paths.append(path)
    if not functions and ("any" in choice or "tool" in choice):
        raise BadRequest("'toolConfig.toolChoice' forces a tool call but 'toolConfig.tools' has none", "toolConfig")
    return functions or None, paths, choice


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
