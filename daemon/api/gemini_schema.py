"""A Gemini / Vertex AI `generateContent` body, checked and turned into the chat messages and tools a chat template
reads.

Wire format: the Gemini API reference (ai.google.dev/api/generate-content: GenerateContentRequest, Content, Part,
GenerationConfig; ai.google.dev/api/caching#Tool, #FunctionDeclaration, #FunctionCall, #FunctionResponse,
#ToolConfig), checked against what google-genai 3.6.1 and the Gemini CLI send (../shared/notes/api-doors.md
section 2). Keys arrive camelCase or snake_case, at every level (protobuf JSON accepts both).

What reaches the template:
- `systemInstruction` is the system message; text parts are joined per content; `thought` parts are skipped. A
  final `model` content is a finished turn (the answer starts a new one): Google documents no prefill, unlike
  Anthropic's and Bedrock's APIs, whose doors continue one.
- `generationConfig.responseMimeType: application/json` makes the answer JSON: a document of `responseJsonSchema`
  (JSON Schema) or `responseSchema` (Google's OpenAPI subset, `json_schema`), or any JSON value without either
  (structured output, engine/grammar.py); `text/x.enum` makes it exactly one of a STRING schema's `enum` values,
  as written (no quotes); other MIME types are ignored.
- Function calling as Hugging Face chat templates read it (OpenAI's function form), as the Anthropic and OpenAI
  doors give it: a `model` content's `functionCall` parts become the assistant's `tool_calls`, `functionResponse`
  parts `role: "tool"` messages (ahead of the turn's text) whose content is the response object as JSON, or its
  one string value when it has a single field (the Gemini CLI's `{"output": "<file>"}`: the model reads the text,
  not an escaped string), and `tools[].functionDeclarations` the tools, their `parameters` (Google's OpenAPI
  subset, `_json_schema`) or `parametersJsonSchema` (JSON Schema) the tool's parameters. Google's own tools
  (`googleSearch`, `codeExecution`, `urlContext`, ...) run on Google's servers and are ignored.
- `toolConfig.functionCallingConfig.mode`: `AUTO` (the default) and `VALIDATED` let the model answer text or
  write calls (cut out of its text by tool_calls.py; VALIDATED's constrained calls are not implemented), `ANY`
  forces one call (structured output: `{"name", "arguments"}` with the function's parameters, engine/grammar.py),
  `NONE` gives the template no tools. `allowedFunctionNames` limits the tools to those named. A forced call wins
  over `responseMimeType: application/json`, as on the Anthropic and Bedrock doors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .schema import (BadRequest, CompletionParams, _float, _int, _object, _stop, _wrong, blocks_text,
                     checked_json_schema, forced_call_schema, object_schema)

DEFAULT_MAX_OUTPUT_TOKENS = 8192  # Gemini's own default for most models; the engine stops at the context's end
ROLES = {"user": "user", "model": "assistant", "function": "user", "tool": "user"}
MEDIA_PARTS = {"inlineData", "fileData", "executableCode", "codeExecutionResult"}
DATA_PARTS = {"text", "functionCall", "functionResponse", *MEDIA_PARTS}  # Part's oneof `data`: one is required
CALLING_MODES = ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")


@dataclass
class GenerateRequest:
    """A checked GenerateContentRequest: the chat `messages` in Hugging Face's form, `tools` in OpenAI's function form
    (None: the model must not call any), the CompletionParams, and whether one call is forced (`forced_tool`: function
    calling mode ANY, its schema in params.json_schema)."""

    messages: list[dict]  # Hugging Face chat messages
    tools: list[dict] | None  # OpenAI function form; None when the model must not call any
    params: CompletionParams
    # mode ANY: the answer is one call, constrained to {"name", "arguments"} (params.json_schema), which the door
    # turns into a functionCall part
    forced_tool: bool = False


def camel(obj: dict) -> dict:
    """Keys in camelCase: protobuf JSON (and so Google's servers) accept `max_output_tokens` as well."""
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): v for k, v in obj.items()}


def parse_generate(body: dict, counting: bool = False) -> GenerateRequest:
    """POST ...:generateContent / :streamGenerateContent (or :countTokens with `counting`: no generation fields).
    Raises BadRequest naming the field."""
    body = camel(body)
    messages = []
    system = body.get("systemInstruction")
    if system is not None:
        text = system if isinstance(system, str) else _parts(system, "systemInstruction")[0]
        messages.append({"role": "system", "content": text})
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("'contents' must be a non-empty array of {role, parts} objects", "contents")
    for i, content in enumerate(contents):
        for message in _turn(content, f"contents[{i}]"):
            _append(messages, message)
    _pair_responses(messages)
    params = CompletionParams(prompt="", max_tokens=DEFAULT_MAX_OUTPUT_TOKENS, token_healing=False)
    if not counting:
        _generation_config(body, params)
    tools, paths = _tools(body.get("tools"))
    tools, paths, mode = _calling_config(_object(body, "toolConfig"), tools, paths)
    if counting:  # the prompt alone: no answer to constrain
        return GenerateRequest(messages, None if mode == "NONE" else tools, params)
    forced = forced_call_schema(tools, None, paths) if mode == "ANY" else None
    if mode == "ANY" and forced is None:
        raise BadRequest("'toolConfig.functionCallingConfig.mode' ANY forces a function call but 'tools' declares "
                         "no function", "toolConfig")
    if forced is not None:
        params.force_call(forced)
    return GenerateRequest(messages, None if mode == "NONE" else tools, params, forced_tool=forced is not None)


def _turn(content: Any, where: str) -> list[dict]:
    """One Content as chat messages: a model turn with its calls, or a user turn's function responses and text."""
    if not isinstance(content, dict):
        raise _wrong(where, "an object {role, parts}", content)
    role = camel(content).get("role") or "user"
    if not isinstance(role, str) or role not in ROLES:
        raise BadRequest(f"'{where}.role' must be 'user' or 'model' ('function' and 'tool' read as 'user'), got "
                         f"{json.dumps(role)}", "contents")
    text, calls, responses = _parts(content, where)
    if ROLES[role] == "assistant":
        if responses:
            raise BadRequest(f"'{where}' is a model turn with a functionResponse part; function responses belong "
                             "in a user turn", "contents")
        reply: dict = {"role": "assistant", "content": text}
        if calls:
            reply["tool_calls"] = calls
        return [reply]
    if calls:
        raise BadRequest(f"'{where}' is a {role} turn with a functionCall part; function calls belong in a model "
                         "turn", "contents")
    if not text and not responses:  # Google: "contents.parts must not be empty"; the model would answer nothing
        raise BadRequest(f"'{where}' is a {role} turn without text or a functionResponse: nothing to answer",
                         "contents")
    return responses + ([{"role": "user", "content": text}] if text or not responses else [])


def _append(messages: list[dict], message: dict) -> None:
    """Consecutive model contents are one turn: google-genai's chats keep a streamed answer as one Content per event
    (text pieces, then a call), which the model wrote as one turn; their text is joined as written."""
    last = messages[-1] if messages else None
    if last is None or last["role"] != "assistant" or message["role"] != "assistant":
        messages.append(message)
        return
    last["content"] += message["content"]
    if message.get("tool_calls"):
        last["tool_calls"] = last.get("tool_calls", []) + message["tool_calls"]


def _parts(content: dict, where: str) -> tuple[str, list[dict], list[dict]]:
    """A Content's text (joined), its functionCall parts as tool_calls and its functionResponse parts as tool
    messages."""
    if not isinstance(content, dict):
        raise _wrong(where, "an object {role, parts}", content)
    parts = camel(content).get("parts")
    if not isinstance(parts, list):
        raise _wrong(f"{where}.parts", "an array of parts", parts)
    parts = [camel(part) if isinstance(part, dict) else part for part in parts]
    calls, responses = [], []
    for j, part in enumerate(parts):
        if isinstance(part, dict) and "functionCall" in part:
            calls.append(_call(part["functionCall"], f"{where}.parts[{j}].functionCall"))
        elif isinstance(part, dict) and "functionResponse" in part:
            responses.append(_response(part["functionResponse"], f"{where}.parts[{j}].functionResponse"))
    return blocks_text(parts, f"{where}.parts", "contents", ("functionCall", "functionResponse"), MEDIA_PARTS,
                       DATA_PARTS, tools_as_text=False), calls, responses


def _named_part(value: Any, where: str, member: str) -> tuple[str, dict, str | None]:
    """A FunctionCall or FunctionResponse: its `name`, its `member` object (`args`, `response`; {} when absent)
    and its `id` (None when absent). Raises BadRequest naming the field."""
    if not isinstance(value, dict):
        raise _wrong(where, f"an object {{name, {member}, id}}", value)
    part = camel(value)
    if not isinstance(part.get("name"), str):
        raise _wrong(f"{where}.name", "a string", part.get("name"))
    inner = part.get(member)
    if not isinstance(inner if inner is not None else {}, dict):
        raise _wrong(f"{where}.{member}", "an object", inner)
    return part["name"], inner or {}, part.get("id") if isinstance(part.get("id"), str) else None


def _call(value: Any, where: str) -> dict:
    name, args, call_id = _named_part(value, where, "args")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def _response(value: Any, where: str) -> dict:
    name, result, call_id = _named_part(value, where, "response")
    (key, only), = result.items() if len(result) == 1 else ((None, None),)
    if isinstance(only, str):  # Google's convention: "output" for the function's output, "error" for its failure
        text = f"Error: {only}" if key == "error" else only
    else:
        text = json.dumps(result, ensure_ascii=False)
    return {"role": "tool", "tool_call_id": call_id, "content": text, "name": name}


def _pair_responses(messages: list[dict]) -> None:
    """Ids for calls and responses that came without (google-genai's automatic function calling and the Gemini
    API's own answers often have none): a call gets `call_<turn>_<k>` (the same on every request, so a
    conversation's prompt stays a prefix of the next one's), a response the id of the earliest call of its name
    in the model turn before it that no response answered yet (else its function's name); `name` is only for this
    pairing."""
    unanswered: list[dict] = []
    for turn, message in enumerate(messages):
        if message["role"] == "assistant":
            unanswered = list(message.get("tool_calls") or ())
            for k, call in enumerate(unanswered):
                call["id"] = call["id"] or f"call_{turn}_{k}"
        elif message["role"] == "tool":
            name, wanted = message.pop("name"), message["tool_call_id"]
            call = next((c for c in unanswered if c["function"]["name"] == name and wanted in (None, c["id"])), None)
            if call is not None:
                unanswered.remove(call)
            if wanted is None:
                message["tool_call_id"] = call["id"] if call is not None else name


def _tools(value: Any) -> tuple[list[dict] | None, list[str]]:
    """The declared functions in OpenAI's function form (None when there are none) and where each one's
    parameters are in the request ("tools[0].functionDeclarations[2].parameters")."""
    if value is None:
        return None, []
    if not isinstance(value, list):
        raise _wrong("tools", "an array of Tool objects", value)
    functions, paths = [], []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise _wrong(f"tools[{i}]", "an object", tool)
        declarations = camel(tool).get("functionDeclarations")
        if declarations is None:
            continue  # one of Google's own tools (search, code execution): they run on Google's servers
        if not isinstance(declarations, list):
            raise _wrong(f"tools[{i}].functionDeclarations", "an array of FunctionDeclaration objects", declarations)
        for j, declaration in enumerate(declarations):
            where = f"tools[{i}].functionDeclarations[{j}]"
            function, path = _declaration(declaration, where)
            if function["name"] in {f["function"]["name"] for f in functions}:
                raise BadRequest(f"'{where}.name': {function['name']!r} names two functions", "tools")
            functions.append({"type": "function", "function": function})
            paths.append(path)
    return functions or None, paths


def _declaration(value: Any, where: str) -> tuple[dict, str]:
    if not isinstance(value, dict):
        raise _wrong(where, "an object", value)
    declaration = camel(value)
    name, description = declaration.get("name"), declaration.get("description")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"'{where}.name' must be a non-empty string, got {json.dumps(name)}", "tools")
    if description is not None and not isinstance(description, str):
        raise _wrong(f"{where}.description", "a string", description)
    google, plain = declaration.get("parameters"), declaration.get("parametersJsonSchema")
    if google is not None and plain is not None:
        raise BadRequest(f"'{where}.parameters' and '{where}.parametersJsonSchema' cannot both be set: send one",
                         "tools")
    if plain is not None:
        path, schema = f"{where}.parametersJsonSchema", plain
    else:
        path = f"{where}.parameters"
        schema = json_schema(google) if google is not None else {"type": "object", "properties": {}}
    return {"name": name, "description": description or "", "parameters": object_schema(schema, path, "tools")}, path


def _calling_config(config: dict, tools: list[dict] | None, paths: list[str]
                    ) -> tuple[list[dict] | None, list[str], str]:
    """`toolConfig.functionCallingConfig`: the tools its `allowedFunctionNames` leaves, their paths, and the mode."""
    calling = camel(_object(camel(config), "functionCallingConfig", "toolConfig.functionCallingConfig"))
    mode = calling.get("mode") or "AUTO"
    if not isinstance(mode, str) or mode.upper() not in CALLING_MODES:
        raise BadRequest(f"'toolConfig.functionCallingConfig.mode' must be one of {', '.join(CALLING_MODES)}, got "
                         f"{json.dumps(mode)}", "toolConfig")
    mode = "AUTO" if mode.upper() == "MODE_UNSPECIFIED" else mode.upper()
    allowed = calling.get("allowedFunctionNames")
    if not allowed:  # proto3: an empty repeated field is no field
        return tools, paths, mode
    where = "toolConfig.functionCallingConfig.allowedFunctionNames"
    if not isinstance(allowed, list) or not all(isinstance(name, str) for name in allowed):
        raise _wrong(where, "an array of strings", allowed)
    declared = [t["function"]["name"] for t in tools or ()]
    for name in allowed:
        if name not in declared:
            raise BadRequest(f"'{where}' names {name!r}, which 'tools' does not declare", "toolConfig")
    kept = [(tool, path) for tool, path in zip(tools or (), paths) if tool["function"]["name"] in allowed]
    return [tool for tool, _ in kept] or None, [path for _, path in kept], mode


def _generation_config(body: dict, params: CompletionParams) -> None:
    config = camel(_object(body, "generationConfig"))
    named = {f"generationConfig.{k}": v for k, v in config.items()}  # error messages name the whole path
    params.max_tokens = _int(named, "generationConfig.maxOutputTokens", DEFAULT_MAX_OUTPUT_TOKENS, low=1)
    params.temperature = _float(named, "generationConfig.temperature", 0.0, 0.0, 2.0)
    params.top_p = _float(named, "generationConfig.topP", 1.0, 0.0, 1.0)
    if params.top_p == 0.0:
        raise BadRequest("'generationConfig.topP' must be > 0", "generationConfig")
    _float(named, "generationConfig.topK", 0.0, 0, 2**31 - 1)  # accepted, not used: specd samples by top_p
    if _int(named, "generationConfig.candidateCount", 1, low=1) != 1:
        raise BadRequest("'generationConfig.candidateCount' must be 1: specd writes one candidate per request; "
                         "send separate requests", "generationConfig")
    params.seed = _int(named, "generationConfig.seed", None, low=-(2**63), high=2**64 - 1)
    params.stop = _stop(named, "generationConfig.stopSequences", one_string=False)
    if config.get("responseLogprobs"):
        raise BadRequest("'generationConfig.responseLogprobs' is not supported", "generationConfig")
    if config.get("responseJsonSchema") is not None and config.get("responseSchema") is not None:
        raise BadRequest("'generationConfig.responseSchema' and 'generationConfig.responseJsonSchema' cannot both be "
                         "set: send one", "generationConfig")
    mime = config.get("responseMimeType")
    if mime not in ("application/json", "text/x.enum"):
        return
    if config.get("responseJsonSchema") is not None:
        name, schema = "generationConfig.responseJsonSchema", config["responseJsonSchema"]
    elif config.get("responseSchema") is not None:
        name, schema = "generationConfig.responseSchema", json_schema(config["responseSchema"])
    else:
        name, schema = "generationConfig.responseSchema", True
    if mime == "application/json":
        params.json_schema = checked_json_schema(schema, name)
        return
    values = schema.get("enum") if isinstance(schema, dict) and schema.get("type", "string") == "string" else None
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise BadRequest(f"'generationConfig.responseMimeType' text/x.enum needs '{name}' to be a STRING schema "
                         "with an enum of non-empty strings", "generationConfig")
    params.text_choices = tuple(values)


INT64_KEYWORDS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def json_schema(schema: Any) -> Any:
    """Google's Schema (ai.google.dev/api/caching#Schema, google-genai's types.Schema: an OpenAPI 3.0 subset with
    `type: "OBJECT"`, `nullable`, `propertyOrdering`, `ref`/`defs` (or `$ref`/`$defs`), camelCase or snake_case keywords) as JSON
    Schema; property names are kept as written. An object has the properties it lists and no others unless it says
    `additionalProperties` (Gemini answers hold only the declared properties), written in `propertyOrdering`'s order
    (those it leaves out after them, as listed); `format: "enum"` (a STRING with `enum`) is the enum alone; `ref`
    "#/defs/X" is `$ref` "#/$defs/X"; int64 limits may arrive as strings, as proto3 JSON writes them."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    schema = camel(schema)
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            order = schema.get("propertyOrdering")
            order = [name for name in order if isinstance(name, str) and name in value] \
                if isinstance(order, list) else []
            names = order + [name for name in value if name not in order]
            out[key] = {name: json_schema(value[name]) for name in names}
        elif key in ("defs", "$defs") and isinstance(value, dict):
            out["$defs"] = {name: json_schema(sub) for name, sub in value.items()}
        elif key in ("ref", "$ref") and isinstance(value, str):
            out["$ref"] = "#/$defs/" + value[len("#/defs/"):] if value.startswith("#/defs/") else value
        elif key in ("items", "anyOf", "additionalProperties"):
            out[key] = [json_schema(sub) for sub in value] if isinstance(value, list) else json_schema(value)
        elif key in INT64_KEYWORDS and isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
            out[key] = int(value)
        elif key == "format" and value == "enum":
            continue
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if "properties" in out:
        out.setdefault("additionalProperties", False)
    return {"anyOf": [out, {"type": "null"}]} if schema.get("nullable") else out
