"""An Anthropic Messages request body, checked and turned into the chat messages and tools a chat template reads.

Wire format: https://docs.anthropic.com/en/api/messages (the `anthropic` SDK 2.14.0's `types/message_create_params.py`
for the fields and content blocks). Wrong types are a BadRequest naming the field; fields specd does not implement
are accepted and ignored (IGNORED_FIELDS, listed in the README), since clients such as Claude Code always send them.

What reaches the template:
- `system` (a string or text blocks) and the `role: "system"` messages that come before the conversation (Claude
  Code puts its environment there) form one leading system message; a later system message becomes user text, so
  templates that allow a system message only first still render.
- Claude Code's attribution block (`x-anthropic-billing-header: cc_version=…; cch=…;`) is dropped: it differs
  between requests and would end prefix reuse at the first token.
- Text blocks are joined into one string per message, so moving `cache_control` markers and a block that becomes
  a plain string on the next turn render the same text (and reuse the same cached prefix).
- `tool_use` blocks become the assistant's `tool_calls`, `tool_result` blocks `role: "tool"` messages, and `tools`
  OpenAI's function form, as Hugging Face chat templates read them; `thinking` blocks are dropped.
- A final assistant message with text is a prefill (docs.claude.com/en/docs/prefill-claudes-response): the answer
  continues it, and holds the continuation only. As on Anthropic's API its text may not end with whitespace (400
  "messages: final assistant content cannot end with trailing whitespace"); an empty one (or one of thinking blocks
  alone) is no prefill and is dropped; one with `tool_use` blocks is a finished turn, as before. A prefill cannot
  be combined with a forced tool call or `output_config.format` (400): both constrain the answer from its first
  token, and the prefill's text would not be part of the call or the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .schema import (BadRequest, CompletionParams, _bool, _float, _int, _str, _wrong, checked_json_schema,
                     forced_call_schema, object_schema)

BILLING_HEADER = "x-anthropic-billing-header:"
MAX_STOP_SEQUENCES = 16
IGNORED_FIELDS = ("top_k", "metadata", "thinking", "output_config (all but its format)", "context_management",
                  "service_tier",
                  "container", "mcp_servers", "inference_geo", "speed", "cache_control (on any block)",
                  "tool_choice.disable_parallel_tool_use", "tools[].strict", "tools[].defer_loading",
                  "server tools (tools with a `type` such as web_search_*)", "citations")
DROPPED_BLOCKS = ("thinking", "redacted_thinking")


@dataclass
class MessagesRequest:
    """A checked Anthropic Messages body: the chat `messages` in Hugging Face's form, `tools` in OpenAI's function form
    (None: the model must not call any), the CompletionParams, whether one call is forced (`forced_tool`) and the final
    assistant message's text the answer continues (`prefill`; None: none)."""

    messages: list[dict]  # Hugging Face chat messages
    tools: list[dict] | None  # OpenAI function form, None when the model must not call any
    params: CompletionParams
    # tool_choice any/tool: the answer is one call, constrained to {"name", "arguments"} with the tool's
    # input_schema (params.json_schema), turned into a tool_use block by the door
    forced_tool: bool = False
    # a final assistant message's text, which the answer continues (the chat template leaves that turn open);
    # None when the conversation ends with a user turn
    prefill: str | None = None


def parse_messages_request(body: dict, count_only: bool = False) -> MessagesRequest:
    """POST /v1/messages (or /v1/messages/count_tokens with `count_only`: no max_tokens)."""
    params = CompletionParams(prompt="", model=_str(body, "model", required=True), token_healing=False)
    if not count_only:
        if body.get("max_tokens") is None:
            raise BadRequest("'max_tokens' is required", "max_tokens")
        # Larger values are clamped to what the context window leaves (Claude Code sends 32000).
        params.max_tokens = _int(body, "max_tokens", None, low=1)
        params.temperature = _float(body, "temperature", 1.0, 0.0, 1.0)  # Anthropic's default is 1
        params.top_p = _float(body, "top_p", 1.0, 0.0, 1.0)
        if params.top_p == 0.0:
            raise BadRequest("'top_p' must be > 0", "top_p")
        _int(body, "top_k", None, low=0)  # accepted, not implemented
        params.stop = _stop_sequences(body)
        params.stream = _bool(body, "stream", False)
    system = _system_text(body.get("system"))
    messages = _chat_messages(system, body.get("messages"))
    prefill = _prefill(messages)
    tools, tool_paths = _tools(body.get("tools"), body.get("tool_choice"))
    for name in ("metadata", "thinking", "output_config", "context_management"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise _wrong(name, "an object", body[name])
    params.json_schema = _output_format(body)
    choice = body.get("tool_choice")
    forced = isinstance(choice, dict) and choice.get("type") in ("any", "tool")
    call = forced_call_schema(tools, choice.get("name") if choice["type"] == "tool" else None,
                              tool_paths, "tool_choice.name") if forced else None
    if call is not None:
        params.force_call(call)
    if prefill is not None and not count_only:
        if call is not None:
            raise BadRequest(f"a prefill (a final assistant message with text) cannot be combined with tool_choice "
                             f"{choice['type']!r}: the forced tool call must start the answer", "messages")
        if params.json_schema is not None:
            raise BadRequest("a prefill (a final assistant message with text) cannot be combined with "
                             "output_config.format: the answer must be a document of the schema from its start",
                             "messages")
    return MessagesRequest(messages, tools, params, forced_tool=call is not None, prefill=prefill)


def _prefill(messages: list[dict]) -> str | None:
    """The text a final assistant message puts in the model's mouth, else None. An empty final assistant message
    (no text, or thinking blocks alone) is removed: the answer starts a new turn, as without it."""
    last = messages[-1] if messages else None
    if last is None or last["role"] != "assistant" or "tool_calls" in last:
        return None
    if not last["content"]:
        if len(messages) > 1:
            messages.pop()
        return None
    if last["content"] != last["content"].rstrip():
        raise BadRequest("messages: final assistant content cannot end with trailing whitespace", "messages")
    return last["content"]


def _output_format(body: dict) -> dict | None:
    """`output_config.format`, or the top-level `output_format` of the structured-outputs beta
    (`structured-outputs-2025-11-13`, which the GA API renamed): {"type": "json_schema", "schema": {...}}, the
    answer's text is a document of it. Both at once is a 400."""
    config_format = (body.get("output_config") or {}).get("format")
    if config_format is not None and body.get("output_format") is not None:
        raise BadRequest("give 'output_config.format' or the beta's 'output_format', not both", "output_format")
    where, fmt = ("output_format", body.get("output_format")) if config_format is None else \
        ("output_config.format", config_format)
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise BadRequest(f"'{where}' must be {{\"type\": \"json_schema\", \"schema\": {{...}}}}", where)
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise _wrong(f"{where}.schema", "an object (a JSON Schema)", schema)
    return checked_json_schema(schema, f"{where}.schema")


def _stop_sequences(body: dict) -> list[str]:
    value = body.get("stop_sequences")
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong("stop_sequences", "an array of strings", value)
    for i, sequence in enumerate(value):
        if not isinstance(sequence, str):
            raise _wrong(f"stop_sequences[{i}]", "a string", sequence)
    if len(value) > MAX_STOP_SEQUENCES:
        raise BadRequest(f"'stop_sequences' has {len(value)} strings; at most {MAX_STOP_SEQUENCES} are supported",
                         "stop_sequences")
    return [s for s in value if s]


def _blocks(content: Any, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _wrong(where, "a string or an array of content blocks", content)
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BadRequest(f"'{where}[{i}]' must be a content block: an object with a string 'type'", where)
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise _wrong(f"{where}[{i}].text", "a string", block.get("text"))
        if block["type"] in ("image", "document"):
            article = "an" if block["type"] == "image" else "a"
            raise BadRequest(f"'{where}[{i}]' is {article} {block['type']} block; the served model reads text only",
                             where)
    return content


def _text(blocks: list[dict]) -> str:
    return "\n\n".join(b["text"] for b in blocks
                       if b["type"] == "text" and not b["text"].startswith(BILLING_HEADER))


def _system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, list):
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise BadRequest(f"'system[{i}]' must be a text block {{\"type\": \"text\", \"text\": string}}",
                                 "system")
    elif not isinstance(system, str):
        raise _wrong("system", "a string or an array of text blocks", system)
    return _text(_blocks(system, "system"))


def _tool_result_text(block: dict, where: str) -> str:
    content = block.get("content")
    text = "" if content is None else _text(_blocks(content, f"{where}.content"))
    return f"Error: {text}" if block.get("is_error") is True else text


def _chat_messages(system: str, messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of {role, content} objects", "messages")
    out: list[dict] = []
    leading_system = [system] if system else []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _wrong(where, "an object", message)
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise BadRequest(f"'{where}.role' must be 'user', 'assistant' or 'system', got {role!r}", "messages")
        blocks = _blocks(message.get("content"), f"{where}.content")
        if role == "user" and message.get("content") in ("", []):  # Anthropic's 400; answered, it asked nothing
            raise BadRequest(f"{where}: all messages must have non-empty content except for the optional final "
                             "assistant message", "messages")
        if role == "system":
            if not out:
                leading_system.append(_text(blocks))
            else:
                _append(out, {"role": "user", "content": _text(blocks)})
            continue
        if role == "assistant":
            calls = [_tool_call(b, f"{where}.content[{j}]") for j, b in enumerate(blocks) if b["type"] == "tool_use"]
            reply: dict = {"role": "assistant", "content": _text(blocks)}
            if calls:
                reply["tool_calls"] = calls
            _append(out, reply)
            continue
        for j, block in enumerate(blocks):  # tool results first: Anthropic requires them to lead a user turn
            if block["type"] == "tool_result":
                tool_use_id = block.get("tool_use_id")
                if not isinstance(tool_use_id, str):
                    raise _wrong(f"{where}.content[{j}].tool_use_id", "a string", tool_use_id)
                out.append({"role": "tool", "tool_call_id": tool_use_id,
                            "content": _tool_result_text(block, f"{where}.content[{j}]")})
        text = _text(blocks)
        if text or not any(b["type"] == "tool_result" for b in blocks):
            _append(out, {"role": "user", "content": text})
    system_text = "\n\n".join(t for t in leading_system if t)
    return ([{"role": "system", "content": system_text}] if system_text else []) + out


def _append(out: list[dict], message: dict) -> None:
    """Adjacent messages of one role become one (templates that insist on alternating roles stay happy)."""
    last = out[-1] if out else None
    if last is not None and last["role"] == message["role"] and message["role"] in ("user", "assistant") \
            and "tool_calls" not in last:
        last["content"] = "\n\n".join(t for t in (last["content"], message["content"]) if t)
        if "tool_calls" in message:
            last["tool_calls"] = message["tool_calls"]
        return
    out.append(message)


def _tool_call(block: dict, where: str) -> dict:
    name, arguments = block.get("name"), block.get("input", {})
    if not isinstance(name, str):
        raise _wrong(f"{where}.name", "a string", name)
    if not isinstance(arguments, dict):
        raise _wrong(f"{where}.input", "an object", arguments)
    return {"id": block.get("id"), "type": "function", "function": {"name": name, "arguments": arguments}}


def _tools(tools: Any, choice: Any) -> tuple[list[dict] | None, list[str]]:
    """The custom tools in OpenAI's function form (None when there are none or tool_choice is none) and where
    each one's input schema is in the request ("tools[2].input_schema")."""
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise BadRequest("'tool_choice' must be an object with 'type' auto, any, tool or none", "tool_choice")
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise _wrong("tool_choice.name", "a string", choice.get("name"))
    if tools is None:
        return None, []
    if not isinstance(tools, list):
        raise _wrong("tools", "an array of tool definitions", tools)
    functions, paths = [], []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _wrong(f"tools[{i}]", "an object", tool)
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, code execution): Anthropic runs those, specd cannot
        name = tool.get("name")
        if not isinstance(name, str):
            raise _wrong(f"tools[{i}].name", "a string", name)
        if any(f["function"]["name"] == name for f in functions):  # a call of it could not say which one
            raise BadRequest(f"tools: Tool names must be unique ('tools[{i}].name' {name!r} is taken)", "tools")
        schema = object_schema(tool.get("input_schema", {}), f"tools[{i}].input_schema", "tools")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise _wrong(f"tools[{i}].description", "a string", description)
        functions.append({"type": "function", "function": {"name": name, "description": description or "",
                                                            "parameters": schema}})
        paths.append(f"tools[{i}].input_schema")
    if choice is not None and choice["type"] == "none":
        return None, []
    return functions or None, paths
