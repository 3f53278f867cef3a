"""Structured output through the doors: a JSON schema in the request (OpenAI's response_format, the native route's
json_schema, Anthropic's output_config.format and forced tools, Gemini's responseSchema / responseJsonSchema,
Bedrock Converse's forced tools) gives an answer that parses and validates, streamed or not, from a tiny random
model; a cut answer says so; a bad schema is a 400 naming the problem, also for a stream."""

from __future__ import annotations

import json

import jsonschema
import pytest

from specd.daemon.engine.loop import EngineConfig
from specd.daemon.models.loading import load_engine

from .served_engine import answer_text, serve

PRODUCT = {
    "type": "object", "additionalProperties": False, "required": ["name", "price", "tags", "kind"],
    "properties": {"name": {"type": "string", "maxLength": 12},
                   "price": {"type": "integer", "minimum": 1, "maximum": 999},
                   "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "minItems": 1, "maxItems": 3},
                   "kind": {"enum": ["book", "garden tool"]}}}
BAD = {"type": "object", "properties": {"when": {"type": "string", "format": "weird-format"}}}
MESSAGES = [{"role": "user", "content": "Recommend one product as JSON."}]


@pytest.fixture(scope="module")
def daemon(tiny_pair):
    config = EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


def openai_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "product", "schema": schema, "strict": True}}


ROUTES = {
    "chat": ("/v1/chat/completions", {"messages": MESSAGES, "response_format": openai_format(PRODUCT)}),
    "completions": ("/v1/completions", {"prompt": "A product as JSON:\n", "response_format": openai_format(PRODUCT)}),
    "native": ("/specd/v1/complete", {"prefix": "product = ", "suffix": "\n", "json_schema": PRODUCT}),
}


def finish_reason(answer) -> str:
    body = answer.body
    return body["finish_reason"] if "finish_reason" in body else body["choices"][0]["finish_reason"]


@pytest.mark.parametrize("route", ROUTES)
def test_the_answer_is_a_document_of_the_schema_streamed_or_not(daemon, route):
    path, body = ROUTES[route]
    whole = daemon.post(path, {**body, "max_tokens": 200})
    assert whole.status == 200, whole.body
    jsonschema.validate(json.loads(answer_text(whole)), PRODUCT)
    assert finish_reason(whole) == "stop" and whole.body["specd"]["json_complete"] is True
    streamed = daemon.post(path, {**body, "max_tokens": 200, "stream": True})
    assert answer_text(streamed) == answer_text(whole) and streamed.body["specd"]["json_complete"] is True
    sampled = daemon.post(path, {**body, "max_tokens": 200, "temperature": 1.0, "seed": 3})
    jsonschema.validate(json.loads(answer_text(sampled)), PRODUCT)


def test_json_object_is_any_object(daemon):
    answer = daemon.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 300,
                                                  "response_format": {"type": "json_object"}})
    assert isinstance(json.loads(answer_text(answer)), dict)
    text = daemon.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 4,
                                                "response_format": {"type": "text"}})
    assert text.status == 200 and text.body["specd"]["json_complete"] is None


@pytest.mark.parametrize("route", ROUTES)
def test_an_answer_cut_by_max_tokens_ends_with_length_and_is_marked_incomplete(daemon, route):
    path, body = ROUTES[route]
    answer = daemon.post(path, {**body, "max_tokens": 4})
    assert finish_reason(answer) == "length" and answer.body["specd"]["json_complete"] is False


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("stream", [False, True])
def test_an_unsupported_schema_is_a_400_naming_the_problem(daemon, route, stream):
    path, body = ROUTES[route]
    body = {**body, "stream": stream}
    if "json_schema" in body:
        body["json_schema"] = BAD
    else:
        body["response_format"] = openai_format(BAD)
    answer = daemon.post(path, body)
    assert answer.status == 400
    assert "weird-format" in answer.body["error"]["message"]


@pytest.mark.parametrize("schema", [
    {"$ref": "#"},  # only a reference to itself: llguidance allows no first token
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"type": "object", "properties": {"c": {"$ref": "#"}}, "required": ["c"]},  # nests without end
])
@pytest.mark.parametrize("stream", [False, True])
def test_a_schema_no_finite_document_satisfies_is_a_400_not_an_empty_answer_or_a_500(daemon, schema, stream):
    answer = daemon.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 150, "stream": stream,
                                                  "response_format": openai_format(schema)})
    assert answer.status == 400 and "no finite document satisfies it" in answer.body["error"]["message"]
    assert daemon.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 2}).status == 200


@pytest.mark.parametrize("body, named", [
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": openai_format([1])}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema"}}, "'response_format.json_schema' is required"),
    ({"response_format": {"type": "json_schema", "json_schema": "str"}}, "'response_format.json_schema' must be"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": PRODUCT, "strict": "yes"}}},
     "response_format.json_schema.strict"),
    ({"response_format": openai_format({"type": "string", "minLength": 5, "maxLength": 2})}, "Unsatisfiable"),
])
def test_a_bad_response_format_is_a_400_naming_it(daemon, body, named):
    answer = daemon.post("/v1/chat/completions", {"messages": MESSAGES, **body})
    assert answer.status == 400 and named in answer.body["error"]["message"]


@pytest.mark.parametrize("schema, named", [
    # two bounds at or below -2^63 crashed llguidance 1.9.1's validate_grammar, and the daemon with it
    ({"type": "integer", "minimum": -1e20, "maximum": -1e19}, "/minimum is -1e+20"),
    ({"type": "integer", "minimum": -2**63, "maximum": -2**63}, "/minimum"),
    ({"allOf": [{"type": "integer"}, {"exclusiveMinimum": -1e30, "exclusiveMaximum": -1e29}]},
     "/allOf/1/exclusiveMinimum"),
    # beyond 64 bits llguidance clamped them and wrote 9223372036854775807, a number below the minimum
    ({"type": "integer", "minimum": 1e30, "maximum": 1e30 + 5}, "/minimum"),
    ({"type": "object", "properties": {"n": {"type": "integer", "maximum": 2**53}}}, "/properties/n/maximum"),
])
def test_a_bound_beyond_exact_json_integers_is_a_400_and_the_daemon_serves_on(daemon, schema, named):
    answer = daemon.post("/v1/chat/completions", {"messages": MESSAGES, "response_format": openai_format(schema)})
    assert answer.status == 400 and named in answer.body["error"]["message"], answer.body
    assert "9007199254740991" in answer.body["error"]["message"]
    within = {"type": "integer", "minimum": -(2**53 - 1), "maximum": -(2**53 - 10)}
    answer = daemon.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 40,
                                                  "response_format": openai_format(within)})
    assert answer.status == 200 and within["minimum"] <= json.loads(answer_text(answer)) <= within["maximum"]


# -- Anthropic: output_config.format and forced tools ---------------------------------------------------------

WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
           "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["celsius", "fahrenheit"]}}}
# Both input schemas are closed (additionalProperties false) and their strings short, so every call they allow is
# under 200 tokens (at most ~190 bytes: 10 characters of up to 12 bytes each, escaped, and the rest) and a sampled
# answer always ends before max_tokens. An open schema allows calls of any length: a random model sampled at
# temperature 1 wandered into extra properties of `get_time` and was cut by max_tokens 200 in about 1 of 150 calls
# (a text block, rightly: test_anthropic_forced_tool_cut_short_is_text_without_tags), and the Anthropic door takes
# no seed, so the forcing test below failed now and then.
TOOLS = [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER},
         {"name": "get_time", "description": "Time in a zone", "input_schema": {
             "type": "object", "additionalProperties": False, "required": ["zone"],
             "properties": {"zone": {"type": "string", "maxLength": 8}}}}]


def anthropic(daemon, body, stream=False):
    return daemon.post("/v1/messages", {"model": "specd", "max_tokens": 200, "messages": MESSAGES,
                                        "stream": stream, **body})


def test_anthropic_output_config_format(daemon):
    fmt = {"output_config": {"format": {"type": "json_schema", "schema": PRODUCT}}, "temperature": 0}
    answer = anthropic(daemon, fmt)
    assert answer.status == 200, answer.body
    jsonschema.validate(json.loads(answer_text(answer)), PRODUCT)
    assert answer.body["stop_reason"] == "end_turn" and answer.body["specd"]["json_complete"] is True
    assert answer_text(anthropic(daemon, fmt, stream=True)) == answer_text(answer)
    cut = anthropic(daemon, {**fmt, "max_tokens": 3})
    assert cut.body["stop_reason"] == "max_tokens" and cut.body["specd"]["json_complete"] is False
    bad = anthropic(daemon, {"output_config": {"format": {"type": "json_schema", "schema": BAD}}})
    assert bad.status == 400 and "weird-format" in bad.body["error"]["message"]
    assert bad.body["type"] == "error"
    # the structured-outputs beta's top-level `output_format` (structured-outputs-2025-11-13) is the same
    beta = anthropic(daemon, {"output_format": fmt["output_config"]["format"], "temperature": 0})
    assert beta.status == 200 and answer_text(beta) == answer_text(answer)
    both = anthropic(daemon, {**fmt, "output_format": fmt["output_config"]["format"]})
    assert both.status == 400 and "not both" in both.body["error"]["message"]
    wrong = anthropic(daemon, {"output_format": {"type": "json"}})
    assert wrong.status == 400 and "'output_format' must be" in wrong.body["error"]["message"]


@pytest.mark.parametrize("choice, names", [
    ({"type": "tool", "name": "get_weather"}, {"get_weather"}),
    ({"type": "any"}, {"get_weather", "get_time"}),
])
def test_anthropic_tool_choice_forces_a_tool_use_block(daemon, choice, names):
    body = {"tools": TOOLS, "tool_choice": choice}
    for temperature in (0.0, 1.0):
        answer = anthropic(daemon, {**body, "temperature": temperature})
        assert answer.status == 200, answer.body
        (block,) = answer.body["content"]
        assert block["type"] == "tool_use" and block["name"] in names, answer.body
        schema = {t["name"]: t["input_schema"] for t in TOOLS}[block["name"]]
        jsonschema.validate(block["input"], schema)
        assert answer.body["stop_reason"] == "tool_use"
    streamed = anthropic(daemon, {**body, "temperature": 0.0}, stream=True)
    starts = [e for e in streamed.events if e["type"] == "content_block_start"]
    (delta,) = [e for e in streamed.events if e["type"] == "content_block_delta"]
    assert [s["content_block"]["type"] for s in starts] == ["tool_use"]
    whole = anthropic(daemon, {**body, "temperature": 0.0})
    assert json.loads(delta["delta"]["partial_json"]) == whole.body["content"][0]["input"]
    assert streamed.events[-2]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_forced_tool_cut_short_is_text_without_tags(daemon):
    body = {"tools": TOOLS, "tool_choice": {"type": "tool", "name": "get_weather"}, "max_tokens": 6}
    for stream in (False, True):
        answer = anthropic(daemon, body, stream=stream)
        text = answer_text(answer)
        assert text.startswith('{"name": ') and "<tool_call>" not in text and answer.status == 200
    assert answer.events[-2]["delta"]["stop_reason"] == "max_tokens"


@pytest.mark.parametrize("arguments", [
    {"zone": "z", "note": "</tool_call>"}, {"zone": "z", "note": "<tool_call>{}</tool_call> and more"},
    {"zone": "a<b>\"c\\", "note": "line\nnext \u00e9 \U0001f600"}])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_a_forced_call_is_parsed_whole_whatever_its_strings_hold(arguments, ascii_only):
    """A forced call's answer is the call's JSON alone; a string in it that holds the tags (an open input_schema
    allows any string) must not end the call early. Whole and streamed, split anywhere, give one tool_use block."""
    from specd.daemon.api.anthropic import MessageShape

    text = json.dumps({"name": "get_time", "arguments": arguments}, ensure_ascii=ascii_only)
    whole = MessageShape("msg_1", "specd", names={"get_weather"}, forced_tool=True).body(text, "stop", {})
    assert [(b["type"], b.get("input")) for b in whole["content"]] == [("tool_use", arguments)]
    assert whole["stop_reason"] == "tool_use"
    for step in (1, 7):
        shape = MessageShape("msg_1", "specd", names={"get_weather"}, forced_tool=True)
        events = shape.stream_start()
        for start in range(0, len(text), step):
            events += shape.delta(text[start:start + step])
        events += shape.stream_end("stop", {})
        starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
        (delta,) = [e["delta"] for e in events if e["type"] == "content_block_delta"]
        assert [b["type"] for b in starts] == ["tool_use"] and json.loads(delta["partial_json"]) == arguments
        assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_forcing_an_unknown_tool_is_a_400(daemon):
    answer = anthropic(daemon, {"tools": TOOLS, "tool_choice": {"type": "tool", "name": "nope"}})
    assert answer.status == 400 and "nope" in answer.body["error"]["message"]


def test_anthropic_forced_tool_with_defs_an_id_and_a_recursive_ref(daemon):
    """Pydantic writes nested models as `$defs` and `#/$defs/...` pointers, recursive ones point at "#": they must
    resolve inside the tool's schema once it sits in the call's {"name", "arguments"} schema."""
    nested = {"type": "object", "additionalProperties": False, "required": ["place"],
              "$defs": {"Place": {"type": "object", "additionalProperties": False, "required": ["city"],
                                  "properties": {"city": {"type": "string", "maxLength": 8}}}},
              "properties": {"place": {"$ref": "#/$defs/Place"}}}
    tree = {"type": "object", "additionalProperties": False, "required": ["label"],
            "properties": {"label": {"type": "string", "maxLength": 4},
                           "children": {"type": "array", "maxItems": 1, "items": {"$ref": "#"}}}}
    # an `$id` (SchemaStore's schemas have one) makes "#" the tool's schema, written relative or as its URL
    with_id = {**nested, "$id": "https://example.com/place.json",
               "properties": {"place": {"$ref": "#/$defs/Place"},
                              "near": {"$ref": "https://example.com/place.json#/$defs/Place"}}}
    tools = [{"name": "locate", "input_schema": nested}, {"name": "grow", "input_schema": tree},
             {"name": "identified", "input_schema": with_id}] + TOOLS
    for name, schema in (("locate", nested), ("grow", tree), ("identified", with_id)):
        answer = anthropic(daemon, {"tools": tools, "tool_choice": {"type": "tool", "name": name}, "max_tokens": 300})
        assert answer.status == 200, answer.body
        (block,) = answer.body["content"]
        assert block["type"] == "tool_use" and block["name"] == name
        jsonschema.validate(block["input"], schema)
    answer = anthropic(daemon, {"tools": tools, "tool_choice": {"type": "any"}, "max_tokens": 300})
    assert answer.status == 200 and answer.body["content"][0]["type"] == "tool_use", answer.body


def test_anthropic_a_tool_schema_that_is_not_an_object_is_a_400(daemon):
    tools = [{"name": "f", "input_schema": {"type": "string"}}]
    for choice in ({"type": "any"}, {"type": "auto"}):
        answer = anthropic(daemon, {"tools": tools, "tool_choice": choice})
        assert answer.status == 400 and "tools[0].input_schema" in answer.body["error"]["message"]
        assert "of type 'object'" in answer.body["error"]["message"]


# -- Gemini: responseMimeType application/json with responseSchema / responseJsonSchema ---------------------

GOOGLE_PRODUCT = {"type": "OBJECT", "propertyOrdering": ["name", "price", "kind", "note"],
                  "properties": {"name": {"type": "STRING", "maxLength": 12},
                                 "price": {"type": "INTEGER", "minimum": 1, "maximum": 999},
                                 "kind": {"type": "STRING", "enum": ["book", "garden tool"]},
                                 "note": {"type": "STRING", "maxLength": 6, "nullable": True}},
                  "required": ["name", "price", "kind", "note"]}


def gemini(daemon, config, stream=False):
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return daemon.post(f"/v1beta/models/specd:{method}", {
        "contents": [{"role": "user", "parts": [{"text": "Recommend one product as JSON."}]}],
        "generationConfig": {"maxOutputTokens": 200, **config}})


def gemini_text(answer) -> str:
    events = answer.events or [answer.body]
    return "".join(p.get("text", "") for e in events for c in e.get("candidates", [])
                   for p in c.get("content", {}).get("parts", []))


@pytest.mark.parametrize("config, schema", [
    ({"responseMimeType": "application/json", "responseJsonSchema": PRODUCT}, PRODUCT),
    ({"response_mime_type": "application/json", "response_schema": GOOGLE_PRODUCT}, {
        **PRODUCT, "required": ["name", "price", "kind", "note"],
        "properties": {**{k: v for k, v in PRODUCT["properties"].items() if k in ("name", "price", "kind")},
                       "note": {"type": ["string", "null"], "maxLength": 6}}}),
    ({"responseMimeType": "application/json"}, {}),
])
def test_gemini_json_answers(daemon, config, schema):
    answer = gemini(daemon, config)
    assert answer.status == 200, answer.body
    jsonschema.validate(json.loads(gemini_text(answer)), schema)
    assert answer.body["candidates"][0]["finishReason"] == "STOP"
    assert gemini_text(gemini(daemon, config, stream=True)) == gemini_text(answer)


def test_gemini_property_ordering_and_format_enum(daemon):
    schema = {"type": "OBJECT", "propertyOrdering": ["kind", "price"],
              "properties": {"name": {"type": "STRING", "maxLength": 6},
                             "price": {"type": "INTEGER", "minimum": 1, "maximum": 9},
                             "kind": {"type": "STRING", "format": "enum", "enum": ["book", "pen"]}},
              "required": ["name", "price", "kind"]}
    answer = gemini(daemon, {"responseMimeType": "application/json", "responseSchema": schema})
    assert answer.status == 200, answer.body
    document = json.loads(gemini_text(answer))
    assert list(document) == ["kind", "price", "name"] and document["kind"] in ("book", "pen")
    both = gemini(daemon, {"responseMimeType": "application/json", "responseSchema": schema,
                           "responseJsonSchema": PRODUCT})
    assert both.status == 400 and "cannot both be set" in both.body["error"]["message"]


def test_gemini_cut_and_bad_schemas(daemon):
    cut = gemini(daemon, {"responseMimeType": "application/json", "responseJsonSchema": PRODUCT,
                          "maxOutputTokens": 3})
    assert cut.body["candidates"][0]["finishReason"] == "MAX_TOKENS"
    bad = gemini(daemon, {"responseMimeType": "application/json", "responseJsonSchema": BAD})
    assert bad.status == 400 and "weird-format" in bad.body["error"]["message"]
    assert "responseJsonSchema" in bad.body["error"]["message"]
    text = gemini(daemon, {"responseMimeType": "text/plain", "responseJsonSchema": BAD, "maxOutputTokens": 3})
    assert text.status == 200  # no JSON asked: the schema is not used
