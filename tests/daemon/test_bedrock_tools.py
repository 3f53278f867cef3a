"""Tool use on Bedrock Converse through boto3: with `toolConfig` (toolChoice auto) a call the model writes is cut out
of its text into a toolUse block, whole and streamed in Bedrock's block events, stopReason tool_use; a tool loop's
history (toolUse and toolResult blocks) reaches the chat template as calls and tool results, as the OpenAI door gives
the same conversation; misplaced or malformed tool blocks are a ValidationException naming them. Forced calls are
in test_structured_bedrock.py."""

from __future__ import annotations

import json
import re

import openai
import pytest

from .fake_engine import SCRIPTED_CALL
from .served_engine import AWS_KEYS, TOKEN

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

from .test_bedrock import bedrock  # noqa: E402

WEATHER = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather in a city",
                                 "inputSchema": {"json": WEATHER}}},
                   {"cachePoint": {"type": "default"}}]}
QUESTION = {"role": "user", "content": [{"text": "What is the weather in Oslo?"}]}


@pytest.fixture(scope="module")
def scripted(scripted_daemon):
    served, engine = scripted_daemon
    return engine, bedrock(served.url, AWS_KEYS)


def converse(client, messages=(QUESTION,), stream=False, **extra):
    args = {"modelId": "specd", "messages": list(messages), "inferenceConfig": {"maxTokens": 200}, **extra}
    return list(client.converse_stream(**args)["stream"]) if stream else client.converse(**args)


def test_a_call_the_model_writes_is_a_tool_use_block_whole_and_streamed(scripted):
    engine, client = scripted
    answer = converse(client, toolConfig=TOOLS)
    text, (use,) = answer["output"]["message"]["content"][0], answer["output"]["message"]["content"][1:]
    assert text == {"text": "Let me check. "} and answer["stopReason"] == "tool_use"
    assert use["toolUse"]["name"] == "get_weather" and use["toolUse"]["input"] == {"city": "Oslo"}
    assert use["toolUse"]["toolUseId"].startswith("tooluse_")
    assert [t["function"]["name"] for t in engine.templated[-1][1]] == ["get_weather"]
    events = converse(client, stream=True, toolConfig=TOOLS)
    kinds = [(next(iter(e)), next(iter(e.values())).get("contentBlockIndex")) for e in events]
    assert kinds == [("messageStart", None), ("contentBlockDelta", 0), ("contentBlockDelta", 0), ("contentBlockStop", 0),
                     ("contentBlockStart", 1), ("contentBlockDelta", 1), ("contentBlockStop", 1),
                     ("messageStop", None), ("metadata", None)]
    assert "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e) == \
        "Let me check. "
    start = next(e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e)
    streamed_input = next(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                          if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {}))
    assert start["name"] == "get_weather" and json.loads(streamed_input) == {"city": "Oslo"}
    assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"
    # without toolConfig the same text is text, and the template gets no tools
    plain = converse(client)
    assert plain["output"]["message"]["content"] == [{"text": SCRIPTED_CALL}] and plain["stopReason"] == "end_turn"
    assert engine.templated[-1][1] is None



def test_a_call_of_a_tool_not_declared_stays_text(scripted):
    _, client = scripted
    clock = {"tools": [{"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}}]}
    answer = converse(client, toolConfig=clock)
    assert answer["output"]["message"]["content"] == [{"text": SCRIPTED_CALL}] and answer["stopReason"] == "end_turn"
    events = converse(client, stream=True, toolConfig=clock)
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == SCRIPTED_CALL
    assert not any("contentBlockStart" in e for e in events)

def test_a_tool_loop_reaches_the_template_as_calls_and_results(scripted):
    engine, client = scripted
    first = converse(client, toolConfig=TOOLS)["output"]["message"]
    use = first["content"][1]["toolUse"]
    result = {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [
        {"text": "22 C"}, {"json": {"wind": "calm"}}]}}, {"text": "Thanks."}]}
    converse(client, messages=(QUESTION, first, result), toolConfig=TOOLS)
    messages, tools = engine.templated[-1]
    assert messages[1] == {"role": "assistant", "content": "Let me check. ", "tool_calls": [
        {"id": use["toolUseId"], "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}
    assert messages[2] == {"role": "tool", "tool_call_id": use["toolUseId"], "content": '22 C\n\n{"wind": "calm"}'}
    assert messages[3] == {"role": "user", "content": "Thanks."} and tools is not None
    failed = {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "status": "error",
                                                          "content": [{"text": "no such city"}]}}]}
    converse(client, messages=(QUESTION, first, failed), toolConfig=TOOLS)
    assert engine.templated[-1][0][-1] == {"role": "tool", "tool_call_id": use["toolUseId"],
                                           "content": "Error: no such city"}


def test_a_tool_loop_counts_as_the_openai_door_renders_it(chat_daemon):
    """The same conversation and tools, in Bedrock's form (CountTokens with toolConfig) and OpenAI's, give the chat
    template the same prompt."""
    client = bedrock(chat_daemon.url, AWS_KEYS)
    history = [QUESTION,
               {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather",
                                                              "input": {"city": "Oslo"}}}]},
               {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "22 C"}]}}]}]
    counted = client.count_tokens(modelId="specd", input={"converse": {"messages": history, "toolConfig": TOOLS}})
    openai_history = [{"role": "user", "content": "What is the weather in Oslo?"},
                      {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function", "function": {
                          "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
                      {"role": "tool", "tool_call_id": "t1", "content": "22 C"}]
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": WEATHER}}]
    with openai.OpenAI(base_url=chat_daemon.url + "/v1", api_key=TOKEN, max_retries=0) as sdk:
        answer = sdk.chat.completions.create(model="specd", messages=openai_history, tools=tools, max_tokens=1)
    assert counted["inputTokens"] == answer.usage.prompt_tokens
    without_tools = client.count_tokens(modelId="specd", input={"converse": {"messages": history}})["inputTokens"]
    assert without_tools < counted["inputTokens"]


@pytest.mark.parametrize("messages, extra, words", [
    ([{"role": "user", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]}], {},
     "messages[0].content[0]' is a toolUse block in user message"),
    ([QUESTION, {"role": "assistant", "content": [{"toolResult": {"toolUseId": "t", "content": []}}]}], {},
     "messages[1].content[0]' is a toolResult block in assistant message"),
    ([{"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"image": {
        "format": "png", "source": {"bytes": b"\x89PNG"}}}]}}]}], {},
     "messages[0].content[0].toolResult.content[0]': specd reads text and json blocks in a tool result, not image"),
    ([QUESTION], {"toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "string"}}}}]}},
     "toolConfig.tools[0].toolSpec.inputSchema.json"),
])
def test_misplaced_or_malformed_tool_blocks_are_a_validation_exception(scripted, messages, extra, words):
    _, client = scripted
    for stream in (False, True):
        with pytest.raises(ClientError) as raised:
            converse(client, messages=messages, stream=stream, **extra)
        assert raised.value.response["Error"]["Code"] == "ValidationException"
        assert words in raised.value.response["Error"]["Message"], raised.value.response["Error"]["Message"]


@pytest.mark.parametrize("block, words", [
    ({"toolUse": {"name": "f", "input": {}}}, "messages[1].content[0].toolUse.toolUseId"),
    ({"toolUse": {"toolUseId": "t", "name": "f", "input": [1]}}, "messages[1].content[0].toolUse.input"),
    ({"toolUse": {"toolUseId": "t", "input": {}}}, "messages[1].content[0].toolUse.name"),
])
def test_tool_use_blocks_boto3_would_not_send_are_refused_by_name(block, words):
    """botocore checks these shapes before sending; other clients may not."""
    from specd.daemon.api.bedrock_schema import parse_converse
    from specd.daemon.api.schema import BadRequest

    with pytest.raises(BadRequest, match=re.escape(words)):
        parse_converse({"messages": [QUESTION, {"role": "assistant", "content": [block]}]})


def spec(name="f", **extra) -> dict:
    return {"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}, **extra}}


@pytest.mark.parametrize("config, words", [
    ({"tools": [spec(), spec()]}, "'toolConfig.tools[1].toolSpec.name': 'f' names two tools"),
    ({"tools": [spec("")]}, "'toolConfig.tools[0].toolSpec.name' must be a non-empty string"),
    ({"tools": [spec(description=5)]}, "'toolConfig.tools[0].toolSpec.description' must be a string"),
    ({"tools": [spec()], "toolChoice": {"tool": {}}}, "'toolConfig.toolChoice.tool.name' must be a string"),
    ({"tools": [spec()], "toolChoice": {"tool": "f"}}, "'toolConfig.toolChoice.tool' must be an object"),
    ({"tools": [5]}, "'toolConfig.tools[0]' must be an object {toolSpec}"),
    ({"tools": [{"fooSpec": {}}]}, "'toolConfig.tools[0]' must be an object {toolSpec}"),
    ({"tools": [{"toolSpec": "f"}]}, "'toolConfig.tools[0].toolSpec' must be an object"),
    ({"tools": [{"toolSpec": {"name": "f", "inputSchema": []}}]}, "'toolConfig.tools[0].toolSpec.inputSchema'"),
])
def test_tool_configurations_bedrock_would_refuse_are_refused_by_name(config, words):
    from specd.daemon.api.bedrock_schema import parse_converse
    from specd.daemon.api.schema import BadRequest

    with pytest.raises(BadRequest, match=re.escape(words)):
        parse_converse({"messages": [QUESTION], "toolConfig": config})


def test_a_tool_result_holding_a_tool_use_block_is_refused_by_name():
    from specd.daemon.api.bedrock_schema import parse_converse
    from specd.daemon.api.schema import BadRequest

    result = {"toolResult": {"toolUseId": "t", "content": [{"text": "ok"}, {"toolUse": {"toolUseId": "u"}}]}}
    with pytest.raises(BadRequest, match=re.escape("'messages[0].content[0].toolResult.content[1]': specd reads")):
        parse_converse({"messages": [{"role": "user", "content": [result]}]})


@pytest.mark.parametrize("text", [SCRIPTED_CALL, " \n" + SCRIPTED_CALL + " and more ", "plain text \n", "  "])
def test_a_stream_cut_anywhere_carries_the_whole_answers_blocks(text):
    from specd.daemon.api.bedrock import ConverseShape

    def blocks_of(events: list[dict]) -> list:
        blocks: dict[int, list] = {}
        for event in events:
            if "contentBlockDelta" in event:
                delta = event["contentBlockDelta"]["delta"]
                blocks.setdefault(event["contentBlockDelta"]["contentBlockIndex"], []).append(
                    delta.get("text", json.loads(delta["toolUse"]["input"]) if "toolUse" in delta else None))
            elif "contentBlockStop" in event:
                blocks.setdefault(event["contentBlockStop"]["contentBlockIndex"], [])
        return [("".join(v) if all(isinstance(x, str) for x in v) else v[0]) for _, v in sorted(blocks.items())]

    body = ConverseShape("r", "m", names={"get_weather"}).body(text, "stop", {"total_s": 0})
    whole = [b["text"] if "text" in b else b["toolUse"]["input"] for b in body["output"]["message"]["content"]]
    for i in range(len(text) + 1):
        shape = ConverseShape("r", "m", names={"get_weather"})
        events = [e for piece in (text[:i], text[i:]) if piece for e in shape.delta(piece)]
        events += shape.stream_end("stop", {"total_s": 0})
        assert blocks_of(events) == whole, (text[:i], text[i:])
