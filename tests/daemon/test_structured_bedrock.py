"""Bedrock Converse's structured output through boto3 against the real daemon (tiny random-weight models): a forced
tool call (toolConfig.toolChoice any / tool) is one toolUse block whose input validates against the tool's
inputSchema ($defs included), whole or streamed, stopReason tool_use; a call cut by maxTokens is text with stopReason
max_tokens; outputConfig.textFormat makes the text a document of its schema; a bad schema, or a tool schema that is
not an object, is a ValidationException naming it."""

from __future__ import annotations

import json

import jsonschema
import pytest

from .door_checks import daemon  # noqa: F401 - the fixture

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

from .test_bedrock import bedrock, keys_of  # noqa: E402

WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
           "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["celsius", "fahrenheit"]}}}
TOOLS = [{"toolSpec": {"name": "get_weather", "description": "Weather in a city", "inputSchema": {"json": WEATHER}}},
         {"toolSpec": {"name": "get_time", "inputSchema": {"json": {
             "type": "object", "properties": {"zone": {"type": "string", "maxLength": 8}}, "required": ["zone"]}}}}]


def converse(daemon, choice, max_tokens=120, stream=False, tools=TOOLS, **extra):
    client = bedrock(daemon.url, keys_of(daemon))
    args = {"modelId": "specd", "messages": [{"role": "user", "content": [{"text": "Weather in Oslo?"}]}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0}, **extra}
    if choice is not None:
        args["toolConfig"] = {"tools": tools, "toolChoice": choice}
    if not stream:
        return client.converse(**args)
    return list(client.converse_stream(**args)["stream"])


@pytest.mark.parametrize("choice, names", [({"tool": {"name": "get_weather"}}, {"get_weather"}),
                                           ({"any": {}}, {"get_weather", "get_time"})])
def test_a_forced_tool_call_is_one_tool_use_block(daemon, choice, names):
    answer = converse(daemon, choice)
    (block,) = answer["output"]["message"]["content"]
    use = block["toolUse"]
    assert use["name"] in names and answer["stopReason"] == "tool_use"
    jsonschema.validate(use["input"], {t["toolSpec"]["name"]: t["toolSpec"]["inputSchema"]["json"]
                                       for t in TOOLS}[use["name"]])
    events = converse(daemon, choice, stream=True)
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
    assert start["start"]["toolUse"]["name"] == use["name"]
    assert json.loads("".join(d["toolUse"]["input"] for d in deltas)) == use["input"]
    assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"


def test_a_forced_call_cut_short_is_text(daemon):
    answer = converse(daemon, {"tool": {"name": "get_weather"}}, max_tokens=4)
    assert "text" in answer["output"]["message"]["content"][0] and answer["stopReason"] == "max_tokens"


def test_a_tool_schema_with_defs_is_forced_whole(daemon):
    place = {"type": "object", "additionalProperties": False, "required": ["city"],
             "properties": {"city": {"type": "string", "maxLength": 8}}}
    # `default` names a property here: its $ref is rebased too, though `default` is a keyword elsewhere
    schema = {"type": "object", "additionalProperties": False, "required": ["default", "days"],
              "$defs": {"Place": place},
              "properties": {"default": {"$ref": "#/$defs/Place"}, "days": {"type": "integer", "minimum": 1,
                                                                                "maximum": 7}}}
    tools = [{"toolSpec": {"name": "forecast", "inputSchema": {"json": schema}}}] + TOOLS
    schemas = {tool["toolSpec"]["name"]: tool["toolSpec"]["inputSchema"]["json"] for tool in tools}
    for choice in ({"any": {}}, {"tool": {"name": "forecast"}}):
        use = converse(daemon, choice, max_tokens=200, tools=tools)["output"]["message"]["content"][0]["toolUse"]
        assert "tool" not in choice or use["name"] == "forecast"
        jsonschema.validate(use["input"], schemas[use["name"]])


def test_output_config_text_format_makes_the_text_a_document_of_the_schema(daemon):
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "tags"],
              "properties": {"name": {"type": "string", "maxLength": 12},
                             "tags": {"type": "array", "maxItems": 2, "items": {"enum": ["a", "b"]}}}}
    text_format = {"type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "x"}}}
    answer = converse(daemon, None, max_tokens=200, outputConfig={"textFormat": text_format})
    assert answer["stopReason"] == "end_turn"
    jsonschema.validate(json.loads(answer["output"]["message"]["content"][0]["text"]), schema)
    for bad, named in [({"type": "strang"}, "strang"), ({"type": "integer", "minimum": -1e20, "maximum": -1e19},
                                                         "minimum")]:
        bad_format = {"type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(bad)}}}
        with pytest.raises(ClientError) as error:
            converse(daemon, None, outputConfig={"textFormat": bad_format})
        assert error.value.response["Error"]["Code"] == "ValidationException"
        assert "outputConfig.textFormat" in error.value.response["Error"]["Message"]
        assert named in error.value.response["Error"]["Message"]


def test_a_bad_tool_schema_or_name_is_a_validation_exception(daemon):
    bad = [{"toolSpec": {"name": "t", "inputSchema": {"json": {"type": "object", "properties": {
        "when": {"type": "string", "format": "weird-format"}}}}}}]
    not_object = [{"toolSpec": {"name": "t", "inputSchema": {"json": {"type": "string"}}}}]
    for tools, choice, named in [(bad, {"any": {}}, "weird-format"), (TOOLS, {"tool": {"name": "nope"}}, "nope"),
                                 (not_object, {"any": {}}, "of type 'object'")]:
        with pytest.raises(ClientError) as error:
            converse(daemon, choice, tools=tools)
        assert error.value.response["Error"]["Code"] == "ValidationException"
        assert named in error.value.response["Error"]["Message"]
