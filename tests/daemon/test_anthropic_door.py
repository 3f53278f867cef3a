"""The Anthropic door driven step by step with the fake engine, through the real aiohttp app and the official
`anthropic` SDK: tool calls, errors in Anthropic's body (401, 400, 404, 529), pings, cancellation on disconnect,
Claude Code's request shapes, the model list and the probe."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import anthropic
import pytest

from specd.daemon.api.anthropic import MessageShape

from .conftest import fake_daemon
from .fake_engine import SCRIPTED_CALL
from .test_scheduler import until, wait_event

WEATHER_TOOL = {"name": "get_weather", "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
TOOL_ANSWER = ('Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}\n'
               '</tool_call>\n')


def client(d, **kw) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=d.url, api_key=d.token, max_retries=0, **kw)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def without_ids(content) -> list[dict]:
    return [{k: v for k, v in block.model_dump(exclude_none=True).items() if k != "id"} for block in content]


async def test_a_tool_call_comes_back_as_a_tool_use_block_whole_and_streamed():
    async with fake_daemon() as d, client(d) as sdk:
        d.engine.script = TOOL_ANSWER
        message = await sdk.messages.create(model="specd", max_tokens=64, messages=user("weather?"),
                                            tools=[WEATHER_TOOL], tool_choice={"type": "auto"})
        assert message.stop_reason == "tool_use"
        text, call = message.content
        assert (text.type, text.text) == ("text", "Let me look.\n")
        assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris", "days": [1, 2]})
        assert call.id.startswith("toolu_")
        # the tool reached the chat template in the function form Hugging Face templates read
        assert d.engine.templated[-1][1] == [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather of a city", "parameters": WEATHER_TOOL["input_schema"]}}]

        kinds = []
        async with sdk.messages.stream(model="specd", max_tokens=64, messages=user("weather?"),
                                       tools=[WEATHER_TOOL]) as stream:
            async for event in stream:
                kinds.append(event.type if event.type != "content_block_delta" else event.delta.type)
            final = await stream.get_final_message()
        assert "input_json_delta" in kinds and kinds[0] == "message_start" and kinds[-1] == "message_stop"
        assert final.stop_reason == "tool_use"
        assert without_ids(final.content) == without_ids(message.content)


async def test_without_tools_or_with_tool_choice_none_the_same_text_stays_text():
    async with fake_daemon() as d, client(d) as sdk:
        d.engine.script = TOOL_ANSWER
        for extra in ({}, {"tools": [WEATHER_TOOL], "tool_choice": {"type": "none"}}):
            message = await sdk.messages.create(model="specd", max_tokens=64, messages=user("weather?"), **extra)
            assert [b.type for b in message.content] == ["text"] and message.content[0].text == TOOL_ANSWER
            assert message.stop_reason == "end_turn"
            assert d.engine.templated[-1][1] is None


async def test_a_call_of_a_tool_not_declared_stays_text_whole_and_streamed():
    """The Anthropic API never answers a call of a tool the request did not declare; clients look it up."""
    clock = {**WEATHER_TOOL, "name": "get_time"}
    async with fake_daemon() as d, client(d) as sdk:
        d.engine.script = TOOL_ANSWER
        message = await sdk.messages.create(model="specd", max_tokens=64, messages=user("weather?"), tools=[clock])
        assert [b.type for b in message.content] == ["text"] and message.content[0].text == TOOL_ANSWER
        assert message.stop_reason == "end_turn"
        async with sdk.messages.stream(model="specd", max_tokens=64, messages=user("weather?"), tools=[clock]) as stream:
            final = await stream.get_final_message()
        assert without_ids(final.content) == without_ids(message.content)


async def test_errors_are_in_anthropics_body_with_its_statuses():
    async with fake_daemon(hold=True, queue_size=1) as d:
        with pytest.raises(anthropic.AuthenticationError) as bad_key:
            async with anthropic.AsyncAnthropic(base_url=d.url, api_key="wrong", max_retries=0) as wrong:
                await wrong.messages.create(model="specd", max_tokens=4, messages=user("hi"))
        assert bad_key.value.status_code == 401 and bad_key.value.body["error"]["type"] == "authentication_error"
        assert bad_key.value.body["type"] == "error" and "token" in bad_key.value.body["error"]["message"]

        sdk = client(d)  # closed with the test's event loop below
        with pytest.raises(anthropic.BadRequestError) as bad_body:
            await sdk.post("/v1/messages", body={"model": "specd", "max_tokens": "4", "messages": user("hi")},
                           cast_to=object)
        assert bad_body.value.body["error"] == {"type": "invalid_request_error",
                                                "message": "'max_tokens' must be an integer, got string"}
        for body, message in (({"model": "specd", "messages": user("hi")}, "'max_tokens' is required"),
                              ({"model": "specd", "max_tokens": 4, "messages": []}, "'messages' must be a non-empty"),
                              ({"model": "specd", "max_tokens": 4, "messages": user("hi"), "system": 3},
                               "'system' must be a string or an array of text blocks"),
                              ({"model": "specd", "max_tokens": 4, "messages": user("hi"), "tools": [{"name": 1}]},
                               "'tools[0].name' must be a string"),
                              ({"model": "specd", "max_tokens": 4, "messages": [{"role": "user", "content": [
                                  {"type": "image", "source": {}}]}]}, "is an image block; the served model reads"),
                              ({"model": "specd", "max_tokens": 4, "messages": user("hi"), "stop_sequences": [1]},
                               "'stop_sequences[0]' must be a string, got integer"),
                              ({"model": "specd", "max_tokens": 4, "messages": [{"role": "user", "content": ""}]},
                               "messages[0]: all messages must have non-empty content except for the optional final"),
                              ({"model": "specd", "max_tokens": 4, "messages": user("hi"),
                                "tools": [WEATHER_TOOL, WEATHER_TOOL]}, "Tool names must be unique")):
            with pytest.raises(anthropic.BadRequestError) as refused:
                await sdk.post("/v1/messages", body=body, cast_to=object)
            assert message in refused.value.body["error"]["message"]
        with pytest.raises(anthropic.NotFoundError) as unknown:
            await sdk.messages.create(model="claude-opus-4", max_tokens=4, messages=user("hi"))
        assert "this daemon serves 'fake-model'" in unknown.value.body["error"]["message"]

        # the queue: one generating (held), one waiting, the third is overloaded (529, with Retry-After)
        first = asyncio.create_task(sdk.messages.create(model="specd", max_tokens=3, messages=user("a")))
        await until(lambda: d.engines)
        await wait_event(d.engine.entered)
        second = asyncio.create_task(sdk.messages.create(model="specd", max_tokens=3, messages=user("b")))
        await until(lambda: d.scheduler.queue_depth == 1)
        with pytest.raises(anthropic.InternalServerError) as overloaded:
            await sdk.messages.create(model="specd", max_tokens=3, messages=user("c"))
        assert overloaded.value.status_code == 529
        assert overloaded.value.body["error"]["type"] == "overloaded_error"
        assert overloaded.value.response.headers["retry-after"] == "1"
        d.engine.release.set()
        assert (await first).content[0].text == "t0 t1 t2 " and (await second).stop_reason == "max_tokens"
        await sdk.close()


async def test_x_api_key_is_the_token_too_and_other_routes_keep_their_shape():
    async with fake_daemon() as d, aiohttp.ClientSession() as s:
        body = {"model": "specd", "max_tokens": 2, "messages": user("hi")}
        async with s.post(d.url + "/v1/messages?beta=true", json=body, headers={"x-api-key": d.token}) as ok:
            assert ok.status == 200 and (await ok.json())["content"][0]["text"] == "t0 t1 "
        async with s.post(d.url + "/v1/messages", json=body, headers={"x-api-key": "nope"}) as refused:
            assert refused.status == 401 and (await refused.json())["error"]["type"] == "authentication_error"
        async with s.post(d.url + "/v1/completions", json={"prompt": "x"}, headers={"x-api-key": "nope"}) as openai:
            assert (await openai.json())["error"]["type"] == "unauthorized"  # OpenAI's door keeps specd's body
        async with s.head(d.url + "/", headers={"x-api-key": d.token}) as probe:
            assert probe.status == 200
        async with s.get(d.url + "/metrics", headers=d.auth) as metrics:
            text = await metrics.text()
        assert 'specd_door_requests_total{door="anthropic",status="200"} 2' in text
        assert 'specd_door_requests_total{door="anthropic",status="401"} 1' in text


async def test_a_forced_call_is_not_cut_by_stop_sequences_and_unserved_routes_answer_in_anthropics_shape():
    async with fake_daemon() as d, client(d) as sdk, aiohttp.ClientSession(headers=d.auth) as s:
        await sdk.messages.create(model="specd", max_tokens=4, messages=user("hi"), stop_sequences=["Paris", '"'],
                                  tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "get_weather"})
        assert list(d.engine.requests[-1].stop) == []  # a '"' ended the constrained call after its "{"
        await sdk.messages.create(model="specd", max_tokens=4, messages=user("hi"), stop_sequences=["Paris"])
        assert list(d.engine.requests[-1].stop) == ["Paris"]
        for path, headers in (("/v1/messages/batches", {}), ("/v1/files", {"anthropic-version": "2023-06-01"})):
            async with s.post(d.url + path, json={}, headers=headers) as response:
                body = await response.json()
            assert response.status == 404 and body["type"] == "error", (path, body)
            assert body["error"] == {"type": "not_found_error", "message": f"no such route: POST {path}"}


async def test_models_list_in_anthropics_shape_only_with_anthropic_version():
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s, client(d) as sdk:
        page = await sdk.models.list()
        assert [m.id for m in page.data] == ["fake-model", "claude-specd"] and page.data[0].type == "model"
        async with s.get(d.url + "/v1/models") as openai_shape:
            assert (await openai_shape.json())["object"] == "list"
        message = await sdk.messages.create(model="claude-specd", max_tokens=1, messages=user("hi"))
        assert message.model == "claude-specd"


async def test_count_tokens_counts_the_templated_prompt_without_generating():
    async with fake_daemon() as d, client(d) as sdk:
        counted = await sdk.messages.count_tokens(model="specd", system="be brief",
                                                        messages=user("one two three"))
        prompt = d.engine.requests[-1].prompt
        assert counted.input_tokens == len(prompt.split()) and d.engine.requests[-1].max_tokens == 0


async def test_claude_codes_system_shapes_reach_the_template_as_one_stable_system_message():
    """Claude Code: system blocks led by its attribution header (different on every first prompt), a role "system"
    message inside messages, text blocks with cache_control that move between turns."""
    async with fake_daemon() as d, client(d) as sdk:
        system = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.1c9; cc_entrypoint=sdk-cli;"},
                  {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]
        first = [{"role": "system", "content": [{"type": "text", "text": "cwd: /tmp"}]},
                 {"role": "user", "content": [{"type": "text", "text": "<reminder>", "cache_control": {"type": "ephemeral"}},
                                              {"type": "text", "text": "say hi"}]}]
        await sdk.post("/v1/messages", cast_to=object, body={
            "model": "specd", "max_tokens": 2, "system": system, "messages": first, "stream": False,
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}, "context_management": {},
            "metadata": {"user_id": "u"}, "top_k": 5})
        second = [{"role": "system", "content": "cwd: /tmp"},
                  {"role": "user", "content": [{"type": "text", "text": "<reminder>"}, {"type": "text", "text": "say hi"}]},
                  {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                                    {"type": "text", "text": "t0 t1 "}]},
                  {"role": "user", "content": [{"type": "text", "text": "again", "cache_control": {"type": "ephemeral"}}]}]
        system[0]["text"] = "x-anthropic-billing-header: cc_version=2.1.197.34c; cc_entrypoint=sdk-cli;"
        await sdk.post("/v1/messages", cast_to=object, body={"model": "specd", "max_tokens": 2, "system": system,
                                                             "messages": second})
        (one, _), (two, _) = d.engine.templated[-2:]
        assert one[0] == {"role": "system", "content": "You are Claude Code.\n\ncwd: /tmp"}
        assert one[1] == {"role": "user", "content": "<reminder>\n\nsay hi"}
        assert two[:2] == one and two[2:] == [{"role": "assistant", "content": "t0 t1 "},
                                              {"role": "user", "content": "again"}]
        prompts = [r.prompt for r in d.engine.requests[-2:]]
        assert prompts[1].startswith(prompts[0].removesuffix("\nassistant:"))


async def test_tool_results_reach_the_template_as_tool_messages():
    async with fake_daemon() as d, client(d) as sdk:
        messages = [{"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                       "input": {"city": "Paris"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                  "content": [{"type": "text", "text": "sunny"}]},
                                                 {"type": "text", "text": "and tomorrow?"}]}]
        await sdk.messages.create(model="specd", max_tokens=1, messages=messages, tools=[WEATHER_TOOL])
        assert d.engine.templated[-1][0] == [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "user", "content": "and tomorrow?"}]


async def test_a_final_assistant_message_is_left_open_for_the_answer_to_continue():
    """A prefill reaches the template as the last message, continued (the fake's transcript then ends with its
    text, no new assistant turn); the answer is the continuation alone. count_tokens counts it. An empty final
    assistant message is dropped; one with tool_use blocks is a finished turn, as before."""
    async with fake_daemon() as d, client(d) as sdk:
        d.engine.script = '"a": 1}'
        messages = [*user("JSON please"), {"role": "assistant", "content": [{"type": "text", "text": "{"}]}]
        message = await sdk.messages.create(model="specd", max_tokens=8, messages=messages)
        assert message.content[0].text == '"a": 1}' and message.stop_reason == "end_turn"
        assert d.engine.requests[-1].prompt == "user: JSON please\nassistant: {"
        counted = await sdk.messages.count_tokens(model="specd", messages=messages)
        assert d.engine.requests[-1].prompt == "user: JSON please\nassistant: {" and counted.input_tokens == 5
        async with sdk.messages.stream(model="specd", max_tokens=8, messages=messages) as stream:
            assert (await stream.get_final_message()).content[0].text == '"a": 1}'
        assert d.engine.requests[-1].prompt == "user: JSON please\nassistant: {"

        await sdk.messages.create(model="specd", max_tokens=2, messages=[
            *user("hi"), {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}])
        assert d.engine.templated[-1][0] == user("hi") and d.engine.requests[-1].prompt == "user: hi\nassistant:"
        call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        await sdk.messages.create(model="specd", max_tokens=2, tools=[WEATHER_TOOL], messages=[
            *user("weather?"), {"role": "assistant", "content": [{"type": "text", "text": "Looking."}, call]}])
        assert d.engine.requests[-1].prompt.endswith("\nassistant:")


async def test_a_stream_sends_pings_while_waiting_and_a_disconnect_cancels(monkeypatch):
    monkeypatch.setattr(MessageShape, "keepalive_s", 0.05)
    async with fake_daemon(hold=True) as d, aiohttp.ClientSession(headers=d.auth) as s:
        body = {"model": "specd", "max_tokens": 50, "messages": user("hi"), "stream": True}
        response = await s.post(d.url + "/v1/messages", json=body)

        async def read_pings(seen: bytes = b"") -> bytes:
            while seen.count(b"event: ping") < 3:  # one after message_start, then one per quiet keepalive_s
                chunk = await response.content.readany()
                if not chunk:  # the stream ended
                    break
                seen += chunk
            return seen

        try:
            seen = await asyncio.wait_for(read_pings(), 60)  # a bound against hanging, not a speed requirement
        finally:
            response.close()  # the client goes away mid-generation
        assert seen.startswith(b"event: message_start\ndata: ") and seen.count(b"event: ping") >= 3
        await until(lambda: d.engine.finished)
        assert d.engine.finished == ["cancelled"]


async def test_stop_sequence_and_max_tokens_stop_reasons():
    async with fake_daemon() as d, client(d) as sdk:
        d.engine.script = "done"
        assert (await sdk.messages.create(model="specd", max_tokens=9, messages=user("x"))).stop_reason == "end_turn"
        d.engine.script = None
        assert (await sdk.messages.create(model="specd", max_tokens=2, messages=user("x"))).stop_reason == "max_tokens"
        shape = MessageShape("msg_1", "specd")
        shape.stop_sequence = "\n\n"
        body = shape.body("text", "stop", {})
        assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "\n\n")
        events = shape.stream_start() + shape.delta("te") + shape.delta("xt") + shape.stream_end("stop", {})
        delta = next(e for e in events if e["type"] == "message_delta")
        assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "\n\n"}
        assert json.loads(shape.encode(events[0]).split(b"data: ", 1)[1])["type"] == "message_start"


@pytest.mark.parametrize("text", [SCRIPTED_CALL, " \n" + SCRIPTED_CALL + " and more ", "plain text \n", "  ",
                                  SCRIPTED_CALL.replace("check. ", "check. \n\n") * 2])
def test_a_stream_cut_anywhere_carries_the_whole_answers_blocks(text):
    """However the engine's pieces fall (a tokenizer may give whitespace its own token), the streamed blocks are
    the whole answer's."""
    def streamed(pieces: list[str]) -> list:
        shape = MessageShape("m", "model", names={"get_weather"})
        events = [e for piece in pieces if piece for e in shape.delta(piece)]
        events += shape.stream_end("stop", {})
        blocks: dict[int, list] = {}
        for event in events:
            if event["type"] == "content_block_start":
                block = event["content_block"]
                blocks[event["index"]] = [block["type"], block.get("name"), ""]
            elif event["type"] == "content_block_delta":
                delta = event["delta"]
                blocks[event["index"]][2] += delta.get("text", delta.get("partial_json", ""))
        return [(kind, name, json.loads(body) if kind == "tool_use" else body)
                for kind, name, body in (blocks[i] for i in sorted(blocks))]

    body = MessageShape("m", "model", names={"get_weather"}).body(text, "stop", {})
    whole = [(b["type"], b.get("name"), b["input"] if b["type"] == "tool_use" else b["text"]) for b in body["content"]]
    for i in range(len(text) + 1):
        assert streamed([text[:i], text[i:]]) == whole, (text[:i], text[i:])
    assert streamed(list(text)) == whole
