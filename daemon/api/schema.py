"""Parsing and validating HTTP request bodies into plain parameters (no aiohttp, no engine here).

Every refusal is a BadRequest whose message names the field and what was expected.
Unknown top-level fields are ignored, as OpenAI-compatible servers usually do: clients send extras.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag

from specd.daemon.engine.json_schema import map_schema
from specd.daemon.engine.requests import ContextFile

MAX_STOP_STRINGS = 16
MODES = ("line", "block")


class BadRequest(ValueError):
    """A request body specd refuses (an HTTP 400, or 415 for UnsupportedEncoding); the message names the field and what
    was expected, `param` the field (OpenAI's error `param`) when there is one."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class CompletionParams:
    """A request as every door's parser leaves it: the prompt and optional FIM `suffix` (text), `max_tokens` (tokens),
    sampling (`temperature`, `top_p`, `seed`), `stop` strings, `mode`, `draft_tokens` (None: adaptive), `document_id`
    (the cache slot, and a newer request for it cancels an older one), `stream`, `include_usage` (OpenAI's
    stream_options), the requested `model`, and the options commented below; the engine's GenerationRequest is built
    from it (generation.generation_request)."""

    prompt: str
    suffix: str | None = None
    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    mode: str | None = None
    draft_tokens: int | None = None
    document_id: str | None = None
    stream: bool = False
    fit_context: bool = False  # trim prefix/suffix ends to the context window instead of answering 400
    token_healing: bool = True  # completions only: a chat prompt ends in the template's own tokens
    include_usage: bool = False
    model: str | None = None
    json_schema: dict | bool | None = None  # structured output: the answer is a JSON document of this schema
    text_choices: tuple[str, ...] | None = None  # or exactly one of these strings (Gemini's text/x.enum)
    prefill_only: bool = False  # native route: read the prompt into the document's cache, generate nothing
    count_only: bool = False  # count_tokens routes: the prompt's tokens, also beyond the context window
    context_files: tuple[ContextFile, ...] = ()  # native route: other files, put before the prompt by the engine
    path: str | None = None  # native route: the current file's path and LSP language id
    language: str | None = None

    def force_call(self, call_schema: dict) -> None:
        """Make the answer one tool call of `call_schema` (forced_call_schema). Stop strings end text and a call is
        none: they no longer apply (a '"' ended a forced call right after its "{")."""
        self.json_schema, self.stop = call_schema, []


def parse_json_body(raw: bytes) -> dict:
    """The request body as a JSON object. Raises BadRequest when it is not UTF-8, is empty, is not JSON (line and
    column; NaN and Infinity refused), is nested too deeply, holds an integer of over 4300 digits, is not an object, or holds an unpaired UTF-16 surrogate in
    any key or string."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"request body is not valid UTF-8 (invalid byte at offset {e.start})") from None
    if not text.strip():
        raise BadRequest("request body is empty; expected a JSON object")

    def no_constants(name: str) -> Any:
        raise BadRequest(f"request body is not valid JSON: {name} is not a JSON number")

    try:
        body = json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except BadRequest:  # NaN or Infinity (no_constants)
        raise
    except ValueError:  # an integer of more digits than Python converts (sys.set_int_max_str_digits)
        raise BadRequest("request body holds a number too long to read (over 4300 digits)") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    _refuse_unpaired_surrogates(body)
    return body


_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_unpaired_surrogates(body: dict) -> None:
    """JSON may spell half of a UTF-16 surrogate pair (`"\\ud83d"`) alone; such a string is not Unicode text
    and no tokenizer can read it. Refused (BadRequest) with the field's path (`prompt`, `messages[0].content`,
    `extra_context[1].text`) and the character offset, in every field of every route."""
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                raise BadRequest(
                    f"'{where}' is not valid Unicode: an unpaired UTF-16 surrogate (\\u{ord(found.group()):04x}) at "
                    f"character {found.start()}; send text as UTF-8, or both halves of a \\u surrogate pair",
                    param=re.split(r"[.\[]", where)[0])
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    raise BadRequest(f"{f'{where!r}' if where else 'the request body'} has a key that is not valid "
                                     "Unicode (an unpaired UTF-16 surrogate)", param=where or None)
                pending.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            pending.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _wrong(name: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(f"'{name}' must be {expected}, got {_type_name(value)}", param=name)


def _int(body: dict, name: str, default: int | None, low: int | None = None, high: int | None = None,
         nullable: bool = True) -> int | None:
    value = body.get(name)
    if value is None:
        if name in body and not nullable:
            raise _wrong(name, "an integer", value)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _wrong(name, "an integer", value)
    if low is not None and value < low:
        raise BadRequest(f"'{name}' must be >= {low}, got {value}", param=name)
    if high is not None and value > high:
        raise BadRequest(f"'{name}' must be <= {high}, got {value}", param=name)
    return value


def _float(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default  # Zed sends "temperature": null
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _wrong(name, "a number", value)
    if not low <= value <= high:
        raise BadRequest(f"'{name}' must be between {low} and {high}, got {value}", param=name)
    return float(value)


def _str(body: dict, name: str, default: str | None = None, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required", param=name)
        return default
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    return value


def _bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _wrong(name, "a boolean", value)
    return value


def _object(body: dict, name: str, where: str | None = None) -> dict:
    """`body[name]`, an object or absent ({}); else BadRequest naming `where` (the member's whole path; `name`)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(where or name, "an object", value)
    return value


def _stop(body: dict, name: str = "stop", one_string: bool = True) -> list[str]:
    """The stop strings under `name`: an array of strings, or (OpenAI's, with `one_string`) one string."""
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str) and one_string:
        value = [value]
    if not isinstance(value, list):
        raise _wrong(name, "a string or an array of strings" if one_string else "an array of strings", value)
    for i, string in enumerate(value):
        if not isinstance(string, str):
            raise _wrong(f"{name}[{i}]", "a string", string)
    if len(value) > MAX_STOP_STRINGS:
        raise BadRequest(f"'{name}' has {len(value)} strings; at most {MAX_STOP_STRINGS} are supported", name)
    if any(s == "" for s in value):
        raise BadRequest(f"'{name}' strings must not be empty", name)
    return list(value)


def _refuse_unsupported(body: dict) -> None:
    """Fields whose non-default values we cannot honour: refusing beats silently ignoring them."""
    n = _int(body, "n", 1, low=1)
    if n != 1:
        raise BadRequest("'n' > 1 is not supported; send separate requests", "n")
    best_of = _int(body, "best_of", 1, low=1)
    if best_of != 1:
        raise BadRequest("'best_of' > 1 is not supported", "best_of")
    if _bool(body, "echo", False):
        raise BadRequest("'echo' is not supported", "echo")
    if body.get("logprobs") not in (None, False, 0):
        raise BadRequest("'logprobs' are not supported", "logprobs")
    for name in ("presence_penalty", "frequency_penalty"):
        if _float(body, name, 0.0, -2.0, 2.0) != 0.0:
            raise BadRequest(f"'{name}' is not supported; leave it at 0", name)
    if body.get("logit_bias"):
        raise BadRequest("'logit_bias' is not supported", "logit_bias")


def _refuse_unsupported_chat(body: dict) -> None:
    """Chat fields that ask for what specd cannot give; silently ignored, they left an answer without it."""
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise BadRequest("'functions' and 'function_call' (deprecated by OpenAI) are not supported: send them as "
                         "'tools' ([{\"type\": \"function\", \"function\": {...}}]) and 'tool_choice'",
                         "functions" if body.get("functions") is not None else "function_call")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise BadRequest("audio output ('modalities' with \"audio\", 'audio') is not supported: the served model "
                         "writes text", "modalities")


def _sampling(body: dict, params: CompletionParams, default_max_tokens: int) -> None:
    params.max_tokens = _int(body, "max_tokens", default_max_tokens, low=0)
    params.temperature = _float(body, "temperature", 0.0, 0.0, 2.0)
    params.top_p = _float(body, "top_p", 1.0, 0.0, 1.0)
    if params.top_p == 0.0:
        raise BadRequest("'top_p' must be > 0", "top_p")
    params.seed = _int(body, "seed", None, low=-(2**63), high=2**64 - 1)  # what torch.Generator takes
    params.stop = _stop(body)


def checked_json_schema(schema: Any, param: str) -> dict | bool:
    """A request's JSON Schema, checked by the engine's grammar compiler before the request is queued (a stream
    has no status line left for a late 400): BadRequest naming the field and the problem."""
    from specd.daemon.engine.grammar import schema_grammar
    from specd.daemon.engine.requests import RequestError

    try:
        schema_grammar(schema)
    except RequestError as error:
        raise BadRequest(f"'{param}': {error}", param.split(".")[0]) from None
    return schema


def _response_format(body: dict, params: CompletionParams) -> None:
    """OpenAI's `response_format`: {"type": "text"} (free text), {"type": "json_object"} (any JSON object) or
    {"type": "json_schema", "json_schema": {"name", "schema", "strict"}} (the schema's documents)."""
    from specd.daemon.engine.grammar import ANY_OBJECT

    fmt = _object(body, "response_format")
    kind = fmt.get("type", "text") if fmt else "text"
    if kind == "text":
        return
    if kind == "json_object":
        params.json_schema = ANY_OBJECT
    elif kind == "json_schema":
        if fmt.get("json_schema") is None:  # as OpenAI answers
            raise BadRequest("'response_format.json_schema' is required when 'response_format.type' is json_schema",
                             "response_format")
        spec = _object(fmt, "json_schema", "response_format.json_schema")
        if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
            raise _wrong("response_format.json_schema.strict", "a boolean", spec["strict"])
        schema = spec.get("schema", True)
        if not isinstance(schema, (dict, bool)):
            raise _wrong("response_format.json_schema.schema", "an object (a JSON Schema)", schema)
        params.json_schema = checked_json_schema(schema, "response_format.json_schema.schema")
    else:
        raise BadRequest(f"'response_format.type' must be text, json_object or json_schema, got {kind!r}",
                         "response_format")


def forced_call_schema(functions: list[dict] | None, name: str | None, paths: list[str],
                       name_path: str = "tool_choice") -> dict | None:
    """A forced tool call (OpenAI tool_choice required/function, Anthropic tool_choice any/tool, Bedrock
    toolChoice any/tool): the JSON a chat template's tool call holds, {"name": ..., "arguments": <the tool's input
    schema>}, as one schema (anyOf over the tools; only the one called `name` when given), each input schema
    checked first (`checked_json_schema`, `paths[i]` naming the i-th tool's in the request; `name_path` names
    where the request gave `name`). The input schemas' local `$ref`s ("#", "#/$defs/...") are rebased onto where
    each sits in the call's schema. `functions`: OpenAI's function form; None when empty."""
    if not functions:
        return None
    if name is not None:
        paths = [path for t, path in zip(functions, paths) if t["function"]["name"] == name]
        functions = [t for t in functions if t["function"]["name"] == name]
        if not functions:
            raise BadRequest(f"'{name_path}' is {name!r}, which is not one of the tools", name_path)
    functions = [t["function"] for t in functions]
    for function, path in zip(functions, paths):
        checked_json_schema(function["parameters"] or {"type": "object"}, path)
    where = ["#/properties/arguments"] if len(functions) == 1 else \
        [f"#/anyOf/{i}/properties/arguments" for i in range(len(functions))]
    calls = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
              "properties": {"name": {"const": f["name"]},
                             "arguments": rebased_refs(f["parameters"] or {"type": "object"}, base)}}
             for f, base in zip(functions, where)]
    return checked_json_schema(calls[0] if len(calls) == 1 else {"anyOf": calls}, paths[0])


def rebased_refs(schema: Any, base: str) -> Any:
    """`schema` (a JSON Schema) with every `$ref` that is a JSON pointer into its own document ("#", "#/...", or
    the same written after the document's own `$id` URL) pointing to the same place once the schema sits at `base`
    (a pointer, "#/properties/arguments") inside another. The root's `$id` goes: inside another document it would
    make "#" mean the embedded schema again (JSON Schema 2020-12, Core section 8.2.1). Anchors and other URLs are
    kept as they are."""
    own_id = schema.get("$id") if isinstance(schema, dict) else None
    own_url = urldefrag(own_id).url if isinstance(own_id, str) else None
    if own_url:  # (a draft-7 `"$id": "#name"` is an anchor and stays)
        schema = {key: value for key, value in schema.items() if key != "$id"}

    def rebase(node: dict, path: str) -> dict:
        ref = node.get("$ref")
        if isinstance(ref, str) and own_url and urldefrag(ref).url == own_url:
            ref = "#" + urldefrag(ref).fragment
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            return {**node, "$ref": base + ref[1:]}
        return node

    return map_schema(schema, rebase)


def object_schema(schema: Any, where: str, param: str) -> dict:
    """A tool's input schema, which must be a JSON Schema of type object (a missing `type` is taken as object, as
    OpenAI does): the schema with `"type": "object"`, else BadRequest naming `where`."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise BadRequest(f"'{where}' must be a JSON Schema of type 'object', got {json.dumps(schema)[:80]}", param)
    return {"type": "object", **schema}


def _specd_options(body: dict, params: CompletionParams) -> None:
    options = _object(body, "specd")
    params.draft_tokens = _int(options, "draft_tokens", None, low=0, high=256)
    params.mode = _mode(options)
    params.document_id = _str(options, "document_id")
    params.token_healing = _bool(options, "token_healing", True)


def _mode(body: dict) -> str | None:
    mode = _str(body, "mode")
    if mode is not None and mode not in MODES:
        raise BadRequest(f"'mode' must be one of {', '.join(MODES)} or null, got {mode!r}", "mode")
    return mode


def _stream(body: dict, params: CompletionParams) -> None:
    params.stream = _bool(body, "stream", False)
    params.include_usage = _bool(_object(body, "stream_options"), "include_usage", False)


def parse_completion(body: dict) -> CompletionParams:
    """OpenAI POST /v1/completions. The prompt is used as is (Zed sends a ready FIM prompt);
    with `suffix` the engine applies the verifier's FIM template."""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise BadRequest("'prompt' must be a string or an array of exactly one string "
                             "(token-id prompts and batches are not supported)", "prompt")
        prompt = prompt[0]
    if prompt is None:
        raise BadRequest("'prompt' is required", "prompt")
    if not isinstance(prompt, str):
        raise _wrong("prompt", "a string", prompt)
    params = CompletionParams(prompt=prompt, suffix=_str(body, "suffix"), model=_str(body, "model"))
    _refuse_unsupported(body)
    _sampling(body, params, default_max_tokens=16)
    _stream(body, params)
    _specd_options(body, params)
    _response_format(body, params)
    return params


CHAT_ROLES = ("system", "user", "assistant", "developer", "tool")


def parse_chat(body: dict) -> tuple[list[dict], CompletionParams]:
    """OpenAI POST /v1/chat/completions: the messages as Hugging Face chat templates read them (assistant
    `tool_calls` with their arguments as objects, `role: "tool"` results with `tool_call_id`) and the parameters.
    `tools` and `tool_choice` are read by parse_chat_tools."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of {role, content} objects", "messages")
    clean = [_chat_message(message, f"messages[{i}]") for i, message in enumerate(messages)]
    params = CompletionParams(prompt="", model=_str(body, "model"))
    _refuse_unsupported(body)
    _refuse_unsupported_chat(body)
    if body.get("max_completion_tokens") is not None:  # the newer name; checked under it
        body = {**body, "max_tokens": _int(body, "max_completion_tokens", None, low=0)}
    _sampling(body, params, default_max_tokens=256)
    _stream(body, params)
    _specd_options(body, params)
    params.token_healing = _bool(_object(body, "specd"), "token_healing", False)
    _response_format(body, params)
    return clean, params


def _chat_message(message: Any, where: str) -> dict:
    if not isinstance(message, dict):
        raise _wrong(where, "an object", message)
    role, content = message.get("role"), message.get("content")
    if role not in CHAT_ROLES:
        raise BadRequest(f"'{where}.role' must be one of {', '.join(CHAT_ROLES)}, got {role!r}", "messages")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise _wrong(f"{where}.tool_call_id", "a string", call_id)
        return {"role": "tool", "tool_call_id": call_id, "content": _chat_content(content, where)}
    if role == "assistant" and message.get("tool_calls") is not None:  # a turn that called tools: content may be null
        return {"role": "assistant", "content": "" if content is None else _chat_content(content, where),
                "tool_calls": _history_calls(message["tool_calls"], f"{where}.tool_calls")}
    return {"role": "system" if role == "developer" else role, "content": _chat_content(content, where)}


def _history_calls(calls: Any, where: str) -> list[dict]:
    """An earlier turn's `tool_calls`: [{id, type: "function", function: {name, arguments}}], `arguments` a JSON
    string as OpenAI writes it; it reaches the template as an object (what Hugging Face templates expect), or as
    the string itself when it is not a JSON object (a model's malformed call, sent back as it was)."""
    if not isinstance(calls, list):
        raise _wrong(where, "an array of tool calls", calls)
    out = []
    for j, call in enumerate(calls):
        at = f"{where}[{j}]"
        if not isinstance(call, dict):
            raise _wrong(at, "an object {id, type, function}", call)
        if call.get("type", "function") != "function":
            raise BadRequest(f"'{at}.type' must be 'function', got {call.get('type')!r}", "messages")
        function = call.get("function")
        if not isinstance(function, dict):
            raise _wrong(f"{at}.function", "an object {name, arguments}", function)
        call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments", "{}")
        if not isinstance(call_id, str):
            raise _wrong(f"{at}.id", "a string", call_id)
        if not isinstance(name, str):
            raise _wrong(f"{at}.function.name", "a string", name)
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments)
            except ValueError:
                parsed = None
            arguments = parsed if isinstance(parsed, dict) else arguments
        elif not isinstance(arguments, dict):
            raise _wrong(f"{at}.function.arguments", "a string (JSON)", arguments)
        out.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    return out


def _chat_content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]; an assistant's refusal reads as its text
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "refusal") or not isinstance(part.get(kind), str):
                raise BadRequest(f"'{where}.content' parts must be {{\"type\": \"text\", \"text\": string}} (or an "
                                 "assistant's refusal part); other content types are not supported", "messages")
            parts.append(part[kind])
        return "".join(parts)
    raise _wrong(f"{where}.content", "a string or an array of text parts", content)


def parse_chat_tools(body: dict) -> tuple[list[dict] | None, dict | None]:
    """OpenAI chat `tools` and `tool_choice`: the tools for the chat template (OpenAI's function form; None when
    there are none or `tool_choice` is "none") and, when `tool_choice` names a function or is "required" (also
    as `allowed_tools` with mode "required"), the forced call's checked schema, else None. `parallel_tool_calls`
    is accepted and ignored: a forced answer is one call."""
    tools = _chat_tools(body.get("tools"))
    _bool(body, "parallel_tool_calls", True)
    choice = "auto" if body.get("tool_choice") is None else body["tool_choice"]
    forced, name = False, None
    if choice == "none":
        return None, None
    if choice == "required":
        forced = True
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise _wrong("tool_choice.function.name", "a string", name)
        forced = True
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        tools, forced = _allowed_tools(tools, _object(choice, "allowed_tools"))
    elif choice != "auto":
        raise BadRequest("'tool_choice' must be 'none', 'auto', 'required', {\"type\": \"function\", \"function\": "
                         "{\"name\"}} or {\"type\": \"allowed_tools\", ...}", "tool_choice")
    if not forced:
        return tools, None
    if not tools:
        raise BadRequest("'tool_choice' forces a tool call but 'tools' has none", "tool_choice")
    if name is not None and name not in {t["function"]["name"] for t in tools}:
        raise BadRequest(f"'tool_choice.function.name' is {name!r}, which is not one of 'tools'", "tool_choice")
    return tools, forced_call_schema(tools, name, [f"tools[{i}].function.parameters" for i in range(len(tools))])


def _chat_tools(value: Any) -> list[dict] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _wrong("tools", "an array of {type: \"function\", function} objects", value)
    tools: list[dict] = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _wrong(where, "an object", tool)
        if tool.get("type") != "function":
            raise BadRequest(f"'{where}.type' must be 'function' (specd serves function tools), got "
                             f"{tool.get('type')!r}", "tools")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _wrong(f"{where}.function", "an object {name, description, parameters}", function)
        name, description = function.get("name"), function.get("description") or ""
        if not isinstance(name, str) or not name:
            raise BadRequest(f"'{where}.function.name' must be a non-empty string, got {json.dumps(name)}", "tools")
        if not isinstance(description, str):
            raise _wrong(f"{where}.function.description", "a string", description)
        if name in {t["function"]["name"] for t in tools}:
            raise BadRequest(f"'{where}.function.name': {name!r} names two tools", "tools")
        parameters = object_schema({} if function.get("parameters") is None else function["parameters"],
                                   f"{where}.function.parameters", "tools")
        tools.append({"type": "function", "function": {"name": name, "description": description,
                                                       "parameters": parameters}})
    return tools or None


def _allowed_tools(tools: list[dict] | None, allowed: dict) -> tuple[list[dict] | None, bool]:
    """`tool_choice: {"type": "allowed_tools", "allowed_tools": {mode, tools: [{type, function: {name}}]}}`: the
    listed tools only; mode "required" forces a call of one of them."""
    mode, listed = allowed.get("mode"), allowed.get("tools")
    if mode not in ("auto", "required"):
        raise BadRequest(f"'tool_choice.allowed_tools.mode' must be 'auto' or 'required', got {mode!r}", "tool_choice")
    if not isinstance(listed, list):
        raise _wrong("tool_choice.allowed_tools.tools", "an array of {type, function: {name}}", listed)
    names = [t["function"].get("name") if isinstance(t, dict) and isinstance(t.get("function"), dict) else None
             for t in listed]
    known = {t["function"]["name"]: t for t in tools or ()}
    for j, name in enumerate(names):
        if not isinstance(name, str) or name not in known:
            raise BadRequest(f"'tool_choice.allowed_tools.tools[{j}]' names {name!r}, which is not one of 'tools'",
                             "tool_choice")
    return [known[n] for n in dict.fromkeys(names)] or None, mode == "required"


def blocks_text(blocks: list, where: str, param: str, tool_keys: tuple[str, str], media_keys: set[str],
                known: set[str], tools_as_text: bool = True) -> str:
    """The text of a message's content blocks (Gemini's parts, Bedrock's content blocks): text as is, tool calls
    and results of earlier turns as `kind: <JSON>` (the transcript keeps them; skipped without `tools_as_text`,
    for a door that gives them to the template as calls), the model's own reasoning (`thought: true`) and the
    other `known` kinds skipped, media refused. A block of none of the `known` kinds (a typo such as `txt`) is a
    BadRequest naming it, as on Google's and AWS's servers: skipped, it left a turn the caller did not send."""
    texts = []
    for j, block in enumerate(blocks):
        if not isinstance(block, dict):
            raise _wrong(f"{where}[{j}]", "an object", block)
        if block.get("thought"):
            continue
        if not set(block) & known:
            found = ", ".join(repr(key) for key in block) or "no field"
            raise BadRequest(f"'{where}[{j}]' holds {found}: a block holds one of {', '.join(sorted(known))}", param)
        if "text" in block:
            if not isinstance(block["text"], str):
                raise _wrong(f"{where}[{j}].text", "a string", block["text"])
            texts.append(block["text"])
        elif tool_keys[0] in block or tool_keys[1] in block:
            if not tools_as_text:
                continue
            kind = tool_keys[0] if tool_keys[0] in block else tool_keys[1]
            texts.append(f"{kind}: {json.dumps(block[kind], ensure_ascii=False)}")
        elif set(block) & media_keys:
            raise BadRequest(f"'{where}[{j}]': only text is supported by specd, not {sorted(set(block) & media_keys)[0]}",
                             param)
    return "".join(texts)


def parse_native(body: dict) -> CompletionParams:
    """POST /specd/v1/complete, the language server's route."""
    prefix = _str(body, "prefix", required=True)
    params = CompletionParams(prompt=prefix, suffix=_str(body, "suffix", ""), fit_context=True)
    params.language = _str(body, "language")
    params.path = _str(body, "path")
    params.document_id = _str(body, "document_id")
    params.mode = _mode(body)
    _sampling(body, params, default_max_tokens=64)
    params.stream = _bool(body, "stream", False)  # the last event carries usage anyway
    params.draft_tokens = _int(body, "draft_tokens", None, low=0, high=256)
    params.token_healing = _bool(body, "token_healing", True)
    params.prefill_only = _bool(body, "prefill_only", False)
    if body.get("json_schema") is not None:
        params.json_schema = checked_json_schema(body["json_schema"], "json_schema")
    raw_snippets = body.get("extra_context")
    if raw_snippets is not None:
        if not isinstance(raw_snippets, list):
            raise _wrong("extra_context", "an array of {path, text} objects", raw_snippets)
        for i, item in enumerate(raw_snippets):
            if not isinstance(item, dict):
                raise _wrong(f"extra_context[{i}]", "an object", item)
            params.context_files += (ContextFile(_str(item, "path", "") or "", _str(item, "text", required=True)),)
    return params
