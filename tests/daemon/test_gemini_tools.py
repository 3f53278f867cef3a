"""Function calling on the Gemini door through Google's own SDK (google-genai): mode ANY forces a call constrained
to the declared parameters (Google's Schema or JSON Schema), so even a random-weight model answers a
`functionCall` part whose args validate, whole and streamed; `allowedFunctionNames` limits the choice; AUTO cuts
a call the model writes out of its text (a scripted engine) and the SDK's automatic function calling runs the
Python function and sends its result back, which reaches the chat template as a tool message; a tool loop's
history renders as the OpenAI door renders the same conversation; bad declarations are a 400 naming the field."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest


from .fake_engine import SCRIPTED_CALL
from .served_engine import TOKEN

genai = pytest.importorskip("google.genai")
from google.genai import errors, types  # noqa: E402

WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
           "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["celsius", "fahrenheit"]}}}
# get_weather in JSON Schema, get_time in Google's Schema (upper-case types)
DECLARATIONS = [types.FunctionDeclaration(name="get_weather", description="Weather in a city",
                                          parameters_json_schema=WEATHER),
                types.FunctionDeclaration(name="get_time", description="Time in a zone", parameters=types.Schema(
                    type="OBJECT", required=["zone"], properties={"zone": types.Schema(type="STRING", max_length=8)}))]
TOOLS = [types.Tool(function_declarations=DECLARATIONS)]
# get_time as the door reads it (an object lists its properties only; the SDK writes `properties` first)
TIME = {"type": "object", "properties": {"zone": {"maxLength": 8, "type": "string"}}, "required": ["zone"],
        "additionalProperties": False}
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
QUESTION = "What is the weather in Paris?"
NO_RETRY = types.HttpRetryOptions(attempts=1)


def client(url: str) -> "genai.Client":
    return genai.Client(api_key=TOKEN, http_options=types.HttpOptions(base_url=url, retry_options=NO_RETRY))


def calling(mode: str, allowed: list[str] | None = None, **extra) -> types.GenerateContentConfig:
    config = types.FunctionCallingConfig(mode=mode, allowed_function_names=allowed)
    return types.GenerateContentConfig(**{"tools": TOOLS, "tool_config": types.ToolConfig(function_calling_config=config),
                                          "max_output_tokens": 200, "temperature": 0, **extra})


@pytest.fixture(scope="module")
def gemini(chat_daemon) -> "genai.Client":
    return client(chat_daemon.url)


def only_call(answer) -> types.FunctionCall:
    (part,) = answer.candidates[0].content.parts
    assert part.function_call is not None and part.text is None
    return part.function_call


def test_mode_any_is_one_function_call_whose_args_fit_the_declared_schema(gemini):
    for sampling in ({"temperature": 0}, {"temperature": 1.0, "seed": 5}):
        answer = gemini.models.generate_content(model="specd", contents=QUESTION, config=calling("ANY", **sampling))
        call = only_call(answer)
        assert call.name in SCHEMAS and call.id
        jsonschema.validate(call.args, SCHEMAS[call.name])
        assert answer.function_calls == [call]
        assert answer.candidates[0].finish_reason == types.FinishReason.STOP
        assert answer.usage_metadata.candidates_token_count > 0


def test_allowed_function_names_limit_the_forced_call(gemini):
    for seed in range(3):
        answer = gemini.models.generate_content(model="specd", contents=QUESTION, config=calling(
            "ANY", ["get_time"], temperature=1.0, seed=seed))
        call = only_call(answer)
        assert call.name == "get_time" and len(call.args["zone"]) <= 8 and set(call.args) == {"zone"}


def test_a_streamed_forced_call_arrives_whole_with_the_same_args(gemini):
    whole = only_call(gemini.models.generate_content(model="specd", contents=QUESTION, config=calling("ANY")))
    chunks = list(gemini.models.generate_content_stream(model="specd", contents=QUESTION, config=calling("ANY")))
    calls = [part.function_call for chunk in chunks for part in chunk.candidates[0].content.parts or []
             if part.function_call]
    assert [(c.name, c.args) for c in calls] == [(whole.name, whole.args)]
    assert not any(part.text for chunk in chunks for part in chunk.candidates[0].content.parts or [])
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_a_forced_call_cut_short_is_text_with_max_tokens(gemini):
    answer = gemini.models.generate_content(model="specd", contents=QUESTION, config=calling(
        "ANY", max_output_tokens=4))
    assert answer.text.startswith('{"name"') and not answer.function_calls
    assert answer.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_a_tool_loop_renders_as_the_openai_door_renders_it(chat_daemon, gemini):
    """The model's call and the function's response, in Gemini's form, count the same prompt tokens as the same
    conversation in OpenAI's: both doors give the template the same calls, results and tools."""
    call = only_call(gemini.models.generate_content(model="specd", contents=QUESTION, config=calling(
        "ANY", ["get_weather"])))
    contents = [types.Content(role="user", parts=[types.Part.from_text(text=QUESTION)]),
                types.Content(role="model", parts=[types.Part(function_call=call)]),
                types.Content(role="user", parts=[types.Part.from_function_response(
                    name=call.name, response={"output": "22 C and sunny"})])]
    counted = gemini.models.count_tokens(model="specd", contents=contents).total_tokens  # no tools: countTokens'
    answer = gemini.models.generate_content(model="specd", contents=contents, config=calling(
        "AUTO", max_output_tokens=1))
    openai_tools = [{"type": "function", "function": {"name": d.name, "description": d.description,
                                                      "parameters": SCHEMAS[d.name]}} for d in DECLARATIONS]
    history = [{"role": "user", "content": QUESTION},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                   "name": call.name, "arguments": json.dumps(call.args)}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "22 C and sunny"}]
    with openai.OpenAI(base_url=chat_daemon.url + "/v1", api_key=TOKEN, max_retries=0) as sdk:
        def prompt_tokens(**extra) -> int:
            return sdk.chat.completions.create(model="specd", messages=history, max_tokens=1,
                                               **extra).usage.prompt_tokens

        assert answer.usage_metadata.prompt_token_count == prompt_tokens(tools=openai_tools)
        assert counted == prompt_tokens() < answer.usage_metadata.prompt_token_count


def test_the_chat_template_sees_calls_results_and_tools(chat_model):
    from transformers import AutoTokenizer

    from specd.daemon.api.gemini_schema import parse_generate

    body = {"contents": [{"role": "user", "parts": [{"text": QUESTION}]},
                         {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                                       "args": {"city": "Paris", "unit": "celsius"}}}]},
                         {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                          "response": {"output": "22 C"}}},
                                                    {"text": "And in Oslo?"}]}],
            "tools": [{"function_declarations": [{"name": "get_weather", "parametersJsonSchema": WEATHER}]},
                      {"googleSearch": {}}]}
    parsed = parse_generate(body)
    prompt = AutoTokenizer.from_pretrained(chat_model).apply_chat_template(parsed.messages, tools=parsed.tools,
                                                                      tokenize=False, add_generation_prompt=True)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}' in prompt
    assert "<tool_response>\n22 C\n</tool_response>" in prompt and '"name": "get_weather"' in prompt
    assert prompt.index("</tool_response>") < prompt.index("And in Oslo?")
    assert "functionCall" not in prompt and "None" not in prompt and not parsed.forced_tool
    none = parse_generate({**body, "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}})
    assert none.tools is None and none.messages == parsed.messages


# -- mode AUTO: a call the model writes (a scripted engine), the SDK's automatic function calling, the 400s ----------

@pytest.fixture(scope="module")
def scripted(scripted_daemon):
    served, engine = scripted_daemon
    return engine, client(served.url)


def test_auto_cuts_a_written_call_out_of_the_text_whole_and_streamed(scripted):
    engine, sdk = scripted
    whole = sdk.models.generate_content(model="specd", contents=QUESTION, config=calling("AUTO"))
    parts = whole.candidates[0].content.parts
    assert [p.text for p in parts] == ["Let me check. ", None]  # the trailing newline makes no part
    assert parts[1].function_call.name == "get_weather" and parts[1].function_call.args == {"city": "Oslo"}
    assert whole.candidates[0].finish_reason == types.FinishReason.STOP
    assert [t["function"]["name"] for t in engine.templated[-1][1]] == ["get_weather", "get_time"]
    chunks = list(sdk.models.generate_content_stream(model="specd", contents=QUESTION, config=calling("AUTO")))
    streamed = [p for c in chunks for p in c.candidates[0].content.parts or []]
    assert "".join(p.text or "" for p in streamed) == "Let me check. "
    assert [(p.function_call.name, p.function_call.args) for p in streamed if p.function_call] == \
        [("get_weather", {"city": "Oslo"})]
    # mode NONE (or no tools): the same text is text, and the template gets no tools
    for config in (calling("NONE"), types.GenerateContentConfig(max_output_tokens=200)):
        plain = sdk.models.generate_content(model="specd", contents=QUESTION, config=config)
        assert plain.text == SCRIPTED_CALL and not plain.function_calls and engine.templated[-1][1] is None


def test_automatic_function_calling_runs_the_function_and_sends_its_result_back(scripted):
    engine, sdk = scripted
    ran = []

    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"22 C in {city}"

    config = types.GenerateContentConfig(
        tools=[get_weather], max_output_tokens=200,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(maximum_remote_calls=2))
    answer = sdk.models.generate_content(model="specd", contents=QUESTION, config=config)
    assert ran == ["Oslo"]
    messages, tools = engine.templated[-1]  # the request that carried the function's result
    assert [t["function"]["name"] for t in tools] == ["get_weather"]
    assert tools[0]["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert messages[-2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert messages[-1]["role"] == "tool" and messages[-1]["content"] == "22 C in Oslo"
    assert messages[-1]["tool_call_id"] == messages[-2]["tool_calls"][0]["id"]
    assert len(answer.automatic_function_calling_history) == 3


@pytest.mark.parametrize("body, field", [
    ({"tools": [{"functionDeclarations": [{"parameters": {"type": "OBJECT"}}]}]}, "functionDeclarations[0].name"),
    ({"tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "STRING"}}]}]},
     "tools[0].functionDeclarations[0].parameters"),
    ({"tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"},
                                           "parametersJsonSchema": {"type": "object"}}]}]}, "parametersJsonSchema"),
    ({"tools": [{"functionDeclarations": [{"name": "f"}]}, {"functionDeclarations": [{"name": "f"}]}]},
     "tools[1].functionDeclarations[0].name"),
    ({"tools": [{"functionDeclarations": {"name": "f"}}]}, "tools[0].functionDeclarations"),
    ({"tools": [{"functionDeclarations": [{"name": "f"}]}], "toolConfig": {"functionCallingConfig": {
        "mode": "SOMETIMES"}}}, "functionCallingConfig.mode"),
    ({"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}, "declares no function"),
    ({"tools": [{"functionDeclarations": [{"name": "f"}]}], "toolConfig": {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["g"]}}}, "allowedFunctionNames"),
    ({"tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": -1e20, "maximum": -1e19}}}}]}],
      "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}, "/properties/n/minimum"),
    ({"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f", "args": {}}}]}]}, "functionCall part"),
    ({"contents": [{"role": "model", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     "functionResponse part"),
    ({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]}]},
     "contents[0].parts[0].functionCall.args"),
    ({"contents": [{"role": "user", "parts": [{"functionResponse": {"response": {}}}]}]},
     "contents[0].parts[0].functionResponse.name"),
    ({"contents": [{"role": "model", "parts": [{"functionCall": "f"}]}]}, "contents[0].parts[0].functionCall' must be"),
    ({"contents": [{"role": {"a": None}, "parts": [{"text": "hi"}]}]}, "contents[0].role"),
    ({"toolConfig": {"functionCallingConfig": [1]}}, "toolConfig.functionCallingConfig"),
])
def test_bad_declarations_and_function_parts_are_a_400_naming_the_field(scripted, body, field):
    _, sdk = scripted
    raw = {"contents": [{"role": "user", "parts": [{"text": QUESTION}]}], **body}
    for method in ("generateContent", "streamGenerateContent?alt=sse"):
        with pytest.raises(errors.ClientError) as raised:
            sdk._api_client.request("post", f"models/specd:{method}", raw)
        assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
        assert field in raised.value.message, raised.value.message


def test_a_streamed_chat_keeps_its_history_and_automatic_calls_pair_with_their_results(scripted):
    """Every streamed event carries parts (the last one with finishReason), so google-genai's chats record the turn;
    the SDK keeps a streamed answer as one Content per event, which the door reads back as one model turn."""
    engine, sdk = scripted
    ran = []

    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"22 C in {city}"

    chat = sdk.chats.create(model="specd", config=types.GenerateContentConfig(
        tools=[get_weather], max_output_tokens=200,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(maximum_remote_calls=2)))
    chunks = list(chat.send_message_stream(QUESTION))
    assert ran == ["Oslo"] and all(chunk.candidates[0].content.parts for chunk in chunks)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    messages = engine.templated[-1][0]  # the request that carried the function's result
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["content"] == "Let me check. " and messages[2]["content"] == "22 C in Oslo"
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"]
    plain = sdk.chats.create(model="specd", config=types.GenerateContentConfig(max_output_tokens=200))
    for question in ("first", "second"):
        list(plain.send_message_stream(question))
    roles = [content.role for content in plain.get_history(curated=True)]
    assert [role for i, role in enumerate(roles) if i == 0 or role != roles[i - 1]] == ["user", "model"] * 2
    assert [m["content"] for m in engine.templated[-1][0]] == ["first", SCRIPTED_CALL, "second"]


def test_a_call_of_a_function_not_declared_or_not_allowed_stays_text(scripted):
    """google-genai's automatic function calling fails on a name it has no function for; Gemini itself never
    answers one."""
    _, sdk = scripted
    time_only = types.GenerateContentConfig(max_output_tokens=200, tools=[types.Tool(function_declarations=[
        DECLARATIONS[1]])])
    for config in (time_only, calling("AUTO", ["get_time"]), calling("VALIDATED", ["get_time"])):
        answer = sdk.models.generate_content(model="specd", contents=QUESTION, config=config)
        assert answer.text == SCRIPTED_CALL and not answer.function_calls


def test_google_schema_refs_defs_and_limits_as_strings_constrain_a_forced_call(gemini):
    point = {"type": "OBJECT", "properties": {"x": {"type": "INTEGER", "minimum": 0, "maximum": 9}},
             "required": ["x"]}
    parameters = {"type": "OBJECT", "defs": {"Point": point}, "required": ["at", "tags", "counts"],
                  "properties": {"at": {"ref": "#/defs/Point"},
                                 "tags": {"type": "ARRAY", "items": {"type": "STRING", "max_length": "4"},
                                          "max_items": "2"},
                                 "counts": {"type": "OBJECT", "additionalProperties": {"type": "INTEGER"},
                                            "maxProperties": "2"}}}
    body = {"contents": [{"role": "user", "parts": [{"text": QUESTION}]}], "generationConfig": {"maxOutputTokens": 200},
            "tools": [{"functionDeclarations": [{"name": "place", "parameters": parameters}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}
    expected = {"type": "object", "required": ["at", "tags", "counts"], "additionalProperties": False,
                "$defs": {"Point": {"type": "object", "required": ["x"], "additionalProperties": False,
                                    "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9}}}},
                "properties": {"at": {"$ref": "#/$defs/Point"},
                               "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 4}},
                               "counts": {"type": "object", "maxProperties": 2,
                                          "additionalProperties": {"type": "integer"}}}}
    for seed in range(3):
        answer = gemini._api_client.request("post", "models/specd:generateContent",
                                            {**body, "generationConfig": {"maxOutputTokens": 200, "temperature": 1,
                                                                          "seed": seed}})
        (part,) = answer.body and json.loads(answer.body)["candidates"][0]["content"]["parts"]
        jsonschema.validate(part["functionCall"]["args"], expected)


def test_google_schema_with_json_schemas_spelling_of_refs_and_defs():
    from specd.daemon.api.gemini_schema import json_schema

    point = {"type": "OBJECT", "properties": {"x": {"type": "INTEGER"}}}
    for defs, ref in (("defs", "#/defs/P"), ("$defs", "#/$defs/P")):
        reference = {"$ref" if defs.startswith("$") else "ref": ref}
        assert json_schema({"type": "OBJECT", defs: {"P": point}, "properties": {"p": reference}}) == {
            "type": "object", "additionalProperties": False, "properties": {"p": {"$ref": "#/$defs/P"}},
            "$defs": {"P": {"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": False}}}


def test_history_without_ids_gets_ids_that_pair_each_response_with_its_call():
    from specd.daemon.api.gemini_schema import parse_generate

    read = {"functionCall": {"name": "read_file", "args": {"path": "a"}}}
    parsed = parse_generate({"contents": [
        {"role": "user", "parts": [{"text": "read a and b"}]},
        {"role": "model", "parts": [{"text": "Reading "}]},  # a streamed answer: one content per event
        {"role": "model", "parts": [read, {"functionCall": {"name": "read_file", "args": {"path": "b"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "read_file", "response": {"output": "A"}}},
                                   {"functionResponse": {"name": "read_file", "response": {"error": "no b"}}}]}],
        "tools": [{"functionDeclarations": [{"name": "read_file"}]}],
        "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": []}}})
    reply, first, second = parsed.messages[1:]
    assert reply["content"] == "Reading " and [c["id"] for c in reply["tool_calls"]] == ["call_1_0", "call_1_1"]
    assert (first["tool_call_id"], first["content"]) == ("call_1_0", "A")
    assert (second["tool_call_id"], second["content"]) == ("call_1_1", "Error: no b")
    assert [t["function"]["name"] for t in parsed.tools] == ["read_file"]  # an empty allowed list: all of them


def test_a_written_call_ends_the_answer_with_stop_even_when_text_after_it_was_cut():
    from specd.daemon.api.gemini import GeminiShape

    answer = GeminiShape("r", "m", names={"get_weather"}).body(SCRIPTED_CALL + "and then", "length", {})
    assert answer["candidates"][0]["finishReason"] == "STOP"
    assert answer["candidates"][0]["content"]["parts"][1]["functionCall"]["name"] == "get_weather"


@pytest.mark.parametrize("text", [SCRIPTED_CALL, " \n" + SCRIPTED_CALL + " and more ", "plain text \n", "  ",
                                  SCRIPTED_CALL.replace("check. ", "check. \n\n") * 2])
def test_a_stream_cut_anywhere_carries_the_whole_answers_text_and_calls(text):
    """Whatever pieces the engine streams (a tokenizer may give whitespace its own token), the parts join to what
    the whole answer holds."""
    from specd.daemon.api.gemini import GeminiShape

    def joined(answers: list[dict]) -> tuple[str, list]:
        parts = [p for a in answers for p in a["candidates"][0]["content"]["parts"]]
        return "".join(p.get("text", "") for p in parts), [p["functionCall"]["args"] for p in parts
                                                           if "functionCall" in p]

    whole = joined([GeminiShape("r", "m", names={"get_weather"}).body(text, "stop", {})])
    cuts = [[text[:i], text[i:j], text[j:]] for i in range(len(text) + 1) for j in range(i, len(text) + 1, 5)]
    for pieces in cuts + [list(text)]:
        shape = GeminiShape("r", "m", names={"get_weather"})
        events = []
        for piece in pieces:
            out = shape.delta(piece) if piece else []
            events += out if isinstance(out, list) else [out]
        events.append(shape.stream_end("stop", {}))
        assert joined(events) == whole, pieces


def test_text_x_enum_answers_exactly_one_of_the_values_and_the_sdk_parses_it(gemini):
    """responseMimeType text/x.enum: the answer is one enum value as written (no JSON quotes), whole or streamed;
    google-genai turns it into the Enum class it was given."""
    import enum

    class Mood(enum.Enum):
        POSITIVE = "positive"
        NEGATIVE = "negative"
        MIXED = "mixed feelings"

    for seed in range(4):
        config = types.GenerateContentConfig(response_mime_type="text/x.enum", response_schema=Mood,
                                             temperature=1.0, seed=seed, max_output_tokens=20)
        answer = gemini.models.generate_content(model="specd", contents="How does this review feel?", config=config)
        assert answer.text in {m.value for m in Mood} and answer.parsed in set(Mood)
        assert answer.candidates[0].finish_reason == types.FinishReason.STOP
        streamed = "".join(c.text or "" for c in gemini.models.generate_content_stream(
            model="specd", contents="How does this review feel?", config=config))
        assert streamed == answer.text
    with pytest.raises(errors.ClientError) as raised:
        gemini.models.generate_content(model="specd", contents="hi", config=types.GenerateContentConfig(
            response_mime_type="text/x.enum", response_schema={"type": "OBJECT", "properties": {}}))
    assert raised.value.code == 400 and "text/x.enum needs" in raised.value.message
