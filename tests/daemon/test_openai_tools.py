"""Tool calls on OpenAI's chat route through the official `openai` SDK: a forced call (`tool_choice` naming a
function, "required", allowed_tools) is constrained to the tool's `parameters`, so even a random-weight model answers
`message.tool_calls` whose arguments parse and validate, whole and streamed (`delta.tool_calls`, read by the SDK's
stream helpers); a tool loop's history (assistant `tool_calls`, `role: "tool"` results) is accepted and rendered as
the Anthropic door renders the same conversation; `auto` cuts a call the model writes out of its text; bad tool
definitions are a 400 naming the field."""

from __future__ import annotations

import json

import jsonschema
import openai
import pydantic
import pytest

from specd.daemon.api.schema import parse_chat, parse_chat_tools

from .fake_engine import SCRIPTED_CALL
from .served_engine import TOKEN

WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
           "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["celsius", "fahrenheit"]}}}
TIME = {"type": "object", "additionalProperties": False, "required": ["zone"],
        "properties": {"zone": {"type": "string", "maxLength": 8}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "description": "Time in a zone", "parameters": TIME}}]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
FORCED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def sdk(chat_daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=chat_daemon.url + "/v1", api_key=TOKEN, max_retries=0)


def create(sdk, **kwargs):
    return sdk.chat.completions.create(**{"model": "specd", "messages": MESSAGES, "max_tokens": 200, **kwargs})


def assert_call(call, names) -> dict:
    assert call.type == "function" and call.id.startswith("call_") and call.function.name in names
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    return arguments


@pytest.mark.parametrize("choice, names", [(FORCED, {"get_weather"}), ("required", {"get_weather", "get_time"})])
def test_a_forced_call_is_a_tool_call_whose_arguments_fit_the_schema(sdk, choice, names):
    for sampling in ({"temperature": 0}, {"temperature": 1.0, "seed": 5}):
        answer = create(sdk, tools=TOOLS, tool_choice=choice, **sampling)
        choice_0 = answer.choices[0]
        assert choice_0.finish_reason == "tool_calls" and choice_0.message.content is None
        (call,) = choice_0.message.tool_calls
        assert_call(call, names)
        assert answer.usage.completion_tokens > 0 and answer.model_extra["specd"]["json_complete"] is True


def test_stop_strings_do_not_cut_a_forced_call(sdk):
    """Stop strings end text; a forced call is none (a '"' ended one right after its "{", leaving text "{")."""
    answer = create(sdk, tools=TOOLS, tool_choice=FORCED, temperature=0, stop=['"', "Paris"])
    assert answer.choices[0].finish_reason == "tool_calls"
    assert_call(answer.choices[0].message.tool_calls[0], {"get_weather"})


def test_a_pydantic_function_tool_with_a_nested_model_is_forced_whole(sdk):
    """`openai.pydantic_function_tool` writes a nested model as `$defs` + `$ref`, which must resolve inside the
    forced call's schema."""
    class Place(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        city: str = pydantic.Field(max_length=8)

    class Forecast(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        place: Place
        days: int = pydantic.Field(ge=1, le=7)

    tool = openai.pydantic_function_tool(Forecast)
    assert "$defs" in tool["function"]["parameters"]
    for choice in ("required", {"type": "function", "function": {"name": "Forecast"}}):
        answer = create(sdk, tools=[tool, *TOOLS], tool_choice=choice, temperature=0)
        (call,) = answer.choices[0].message.tool_calls
        if call.function.name == "Forecast":
            Forecast.model_validate_json(call.function.arguments)
    parsed = sdk.chat.completions.parse(model="specd", messages=MESSAGES, max_tokens=200, tools=[tool],
                                        tool_choice="required", temperature=0)
    assert isinstance(parsed.choices[0].message.tool_calls[0].function.parsed_arguments, Forecast)


def test_a_streamed_forced_call_comes_as_delta_tool_calls_with_the_same_arguments(sdk):
    whole = create(sdk, tools=TOOLS, tool_choice=FORCED, temperature=0).choices[0].message.tool_calls[0]
    chunks = list(create(sdk, tools=TOOLS, tool_choice=FORCED, temperature=0, stream=True))
    deltas = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    assert deltas[0].index == 0 and deltas[0].id.startswith("call_") and deltas[0].type == "function"
    assert deltas[0].function.name == "get_weather" and all(d.index == 0 for d in deltas)
    assert "".join(d.function.arguments or "" for d in deltas) == whole.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not "".join(chunk.choices[0].delta.content or "" for chunk in chunks)


def test_the_sdk_stream_helper_and_parse_read_the_call(sdk):
    """`chat.completions.stream` assembles the deltas; with a strict pydantic tool, `parse` and the helper validate
    the arguments into the model class."""
    with sdk.chat.completions.stream(model="specd", messages=MESSAGES, max_tokens=200, tools=TOOLS,
                                     tool_choice="required", temperature=0) as stream:
        done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert done and done[0].arguments == call.function.arguments and final.choices[0].finish_reason == "tool_calls"
    assert_call(call, SCHEMAS)

    class Zone(pydantic.BaseModel):
        zone: str = pydantic.Field(max_length=8)

    parsed = sdk.chat.completions.parse(model="specd", messages=MESSAGES, max_tokens=200, temperature=0,
                                        tools=[openai.pydantic_function_tool(Zone, name="get_time")],
                                        tool_choice={"type": "function", "function": {"name": "get_time"}})
    arguments = parsed.choices[0].message.tool_calls[0].function.parsed_arguments
    assert isinstance(arguments, Zone) and len(arguments.zone) <= 8


def test_allowed_tools_required_forces_a_call_of_a_listed_tool(sdk):
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_time"}}]}}
    for seed in range(3):
        call = create(sdk, tools=TOOLS, tool_choice=choice, temperature=1.0, seed=seed).choices[0].message.tool_calls[0]
        assert_call(call, {"get_time"})


def test_a_forced_call_cut_short_is_text_with_length(sdk):
    for stream in (False, True):
        if stream:
            chunks = list(create(sdk, tools=TOOLS, tool_choice=FORCED, max_tokens=5, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
            finish = chunks[-1].choices[0].finish_reason
            assert not any(c.choices[0].delta.tool_calls for c in chunks)
        else:
            answer = create(sdk, tools=TOOLS, tool_choice=FORCED, max_tokens=5).choices[0]
            text, finish = answer.message.content, answer.finish_reason
            assert answer.message.tool_calls is None
        assert text.startswith('{"name"') and finish == "length"


def test_a_two_turn_tool_loop_is_accepted_and_rendered_as_the_anthropic_door_renders_it(chat_daemon, sdk):
    first = create(sdk, tools=TOOLS, tool_choice=FORCED, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    result = {"role": "tool", "tool_call_id": call.id, "content": "22 C and sunny"}
    history = [*MESSAGES, first.choices[0].message, result]  # the SDK's own message object, content None
    for choice in ("auto", "none", FORCED):
        second = create(sdk, messages=history, tools=TOOLS, tool_choice=choice, max_tokens=8)
        assert second.choices[0].finish_reason in ("stop", "length", "tool_calls")
    # The same conversation in Anthropic's form counts the same prompt tokens: both doors render it alike.
    openai_prompt = create(sdk, messages=history, tools=TOOLS, max_tokens=1).usage.prompt_tokens
    anthropic_messages = [*MESSAGES,
                          {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                             "input": json.loads(call.function.arguments)}]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                        "content": "22 C and sunny"}]}]
    anthropic_tools = [{"name": t["function"]["name"], "description": t["function"]["description"],
                        "input_schema": t["function"]["parameters"]} for t in TOOLS]
    counted = chat_daemon.post("/v1/messages/count_tokens", {"model": "specd", "messages": anthropic_messages,
                                                        "tools": anthropic_tools})
    assert counted.status == 200 and counted.body["input_tokens"] == openai_prompt
    assert openai_prompt > create(sdk, messages=history[:1], tools=TOOLS, max_tokens=1).usage.prompt_tokens


def test_an_assistants_refusal_part_reads_as_its_text():
    """OpenAI's assistant messages may hold refusal parts (a transcript replayed from OpenAI): they were a 400."""
    messages, _ = parse_chat({"messages": [*MESSAGES, {"role": "assistant", "content": [
        {"type": "refusal", "refusal": "I cannot help with that."}]}, {"role": "user", "content": "Why?"}]})
    assert messages[1] == {"role": "assistant", "content": "I cannot help with that."}


def test_the_chat_template_sees_the_calls_and_results(chat_model):
    from transformers import AutoTokenizer

    body = {"messages": [*MESSAGES,
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "call_1", "type": "function",
                              "function": {"name": "get_weather",
                                           "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
                         {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "22 C"}]}],
            "tools": TOOLS}
    messages, _ = parse_chat(body)
    tools, forced = parse_chat_tools(body)
    prompt = AutoTokenizer.from_pretrained(chat_model).apply_chat_template(messages, tools=tools, tokenize=False,
                                                                      add_generation_prompt=True)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}' in prompt
    assert "<tool_response>\n22 C\n</tool_response>" in prompt and '"name": "get_time"' in prompt
    assert "None" not in prompt and forced is None
    assert parse_chat_tools({**body, "tool_choice": "none"}) == (None, None)


# -- tool_choice auto: a call the model writes (a scripted engine), and the 400s ------------------------------------

@pytest.fixture(scope="module")
def scripted(scripted_daemon):
    served, engine = scripted_daemon
    return served, engine, openai.OpenAI(base_url=served.url + "/v1", api_key=TOKEN, max_retries=0)


def test_auto_cuts_a_written_call_out_of_the_text_whole_and_streamed(scripted):
    _, engine, sdk = scripted
    whole = create(sdk, tools=TOOLS).choices[0]
    assert whole.finish_reason == "tool_calls" and whole.message.content == "Let me check. \n"  # text around the call
    assert whole.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(whole.message.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert engine.templated[-1][1] == [{"type": "function", "function": t["function"]} for t in TOOLS]
    with sdk.chat.completions.stream(model="specd", messages=MESSAGES, max_tokens=200, tools=TOOLS) as stream:
        streamed = stream.get_final_completion().choices[0]
    assert streamed.message.content == whole.message.content and streamed.finish_reason == "tool_calls"
    assert streamed.message.tool_calls[0].function.arguments == whole.message.tool_calls[0].function.arguments
    # without tools (or tool_choice none) the same text is plain text, and the template gets no tools
    for extra in ({}, {"tools": TOOLS, "tool_choice": "none"}):
        plain = create(sdk, **extra).choices[0]
        assert plain.message.content == SCRIPTED_CALL and plain.finish_reason == "stop" and not plain.message.tool_calls
        assert engine.templated[-1][1] is None


def test_a_call_of_a_function_not_declared_or_not_allowed_stays_text(scripted):
    """OpenAI never answers a call of a function the request did not declare, and agent frameworks fail on one
    (the OpenAI Agents SDK raises ModelBehaviorError)."""
    _, _, sdk = scripted
    allowed = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "get_time"}}]}}
    for extra in ({"tools": TOOLS[1:]}, {"tools": TOOLS, "tool_choice": allowed}):
        answer = create(sdk, **extra).choices[0]
        assert answer.message.content == SCRIPTED_CALL and not answer.message.tool_calls
        assert answer.finish_reason == "stop"
        with sdk.chat.completions.stream(model="specd", messages=MESSAGES, max_tokens=200, **extra) as stream:
            streamed = stream.get_final_completion().choices[0]
        assert streamed.message.content == SCRIPTED_CALL and not streamed.message.tool_calls


def tool(name="f", parameters=None, **extra):
    return {"type": "function", "function": {"name": name, "parameters": parameters or {"type": "object"}}, **extra}


@pytest.mark.parametrize("body, field", [
    ({"tools": [{"type": "function", "function": {"parameters": {"type": "object"}}}]}, "tools[0].function.name"),
    ({"tools": [tool(parameters=[1])]}, "tools[0].function.parameters"),
    ({"tools": [tool(parameters={"type": "string"})]}, "tools[0].function.parameters"),
    ({"tools": [tool(), tool("g", type="custom")]}, "tools[1].type"),
    ({"tools": [tool(), tool()]}, "tools[1].function.name"),
    ({"tools": {"f": 1}}, "'tools'"),
    ({"tools": [tool()], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name"),
    ({"tools": [tool()], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "'tools' has none"),
    ({"tools": [tool(parameters={"type": "object", "properties": {"d": {"type": "string", "format": "weird"}}})],
      "tool_choice": "required"}, "tools[0].function.parameters"),
    ({"tools": [tool()], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "g"}}]}}}, "tool_choice.allowed_tools.tools[0]"),
    ({"messages": [*MESSAGES, {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id"),
    ({"messages": [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]}]},
     "messages[1].tool_calls[0].function"),
    ({"messages": [*MESSAGES, {"role": "assistant", "content": None}]}, "messages[1].content"),
    # silently ignored, they answered text where a call was required, or no audio where it was asked for
    ({"extra_body": {"functions": [{"name": "f", "parameters": {"type": "object"}}], "function_call": {"name": "f"}}},
     "'functions' and 'function_call' (deprecated by OpenAI) are not supported: send them as 'tools'"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio output"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_bad_tools_and_tool_messages_are_a_400_naming_the_field(scripted, body, field, stream):
    sdk = scripted[2]
    with pytest.raises(openai.BadRequestError) as raised:
        create(sdk, **body, stream=stream)
    assert field in raised.value.body["message"]


@pytest.mark.parametrize("text", [SCRIPTED_CALL, " \n" + SCRIPTED_CALL + " and more ", "plain text \n", "  ",
                                  SCRIPTED_CALL.replace("check. ", "check. \n\n") * 2])
def test_a_stream_cut_anywhere_carries_the_whole_answers_content_and_calls(text):
    from specd.daemon.api.openai import ChatShape

    def streamed(pieces: list[str]) -> tuple:
        shape = ChatShape("c", "model", names={"get_weather"})
        chunks = [shape.stream_start()[0]]
        for piece in pieces:
            out = shape.delta(piece) if piece else []
            chunks += out if isinstance(out, list) else [out]
        end = shape.stream_end("stop", {})
        chunks += end if isinstance(end, list) else [end]
        deltas = [c["choices"][0]["delta"] for c in chunks]
        content = [d["content"] for d in deltas if d.get("content") is not None]
        calls = [json.loads(c["function"]["arguments"]) for d in deltas for c in d.get("tool_calls") or ()
                 if c["function"].get("arguments")]
        return ("".join(content) if content else None), calls

    message = ChatShape("c", "model", names={"get_weather"}).body(text, "stop", {})["choices"][0]["message"]
    whole = (message["content"] or None, [json.loads(c["function"]["arguments"]) for c in message.get("tool_calls", [])])
    for i in range(len(text) + 1):
        assert streamed([text[:i], text[i:]]) == whole, (text[:i], text[i:])
    assert streamed(list(text)) == whole
