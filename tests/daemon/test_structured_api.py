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


@pytest.mark.parametrize("body, named", [
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": openai_format([1])}, "response_format.json_schema.schema"),
    ({"response_format": openai_format({"type": "string", "minLength": 5, "maxLength": 2})}, "Unsatisfiable"),
])
def test_a_bad_response_format_is_a_400_naming_it(daemon, body, named):
    answer = daemon.post("/v1/chat/completions", {"messages": MESSAGES, **body})
    assert answer.status == 400 and named in answer.body["error"]["message"]
