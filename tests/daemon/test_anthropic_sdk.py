"""The Anthropic door of a real daemon (`specd serve`, a tiny random chat model with a tool-rendering template)
through the official `anthropic` SDK: create, stream, count tokens, stop reasons, the context window, errors in
Anthropic's shape (401, 400, 529), a disconnect cancelling, the same text as the OpenAI door, the example script,
a prefill (a final assistant message) continued, and Claude Code's second turn reusing the first turn's prefix
although its JSON differs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

from .conftest import specd_env, start_real_daemon, stop_real_daemon

REPO = Path(__file__).resolve().parents[2]
MAX_CONTEXT = 4096
SYSTEM = "You answer in JSON."
MESSAGES = [{"role": "user", "content": "def parse_args(argv):\n    parser = "}]
# SDK 2.x has no `temperature` argument (API version 2026-10-21 refuses it); specd still honours it in the body
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    from tests.fixtures.tiny_models import write_tiny_chat_model

    return write_tiny_chat_model(tmp_path_factory.mktemp("chat-model") / "tiny-chat", max_positions=MAX_CONTEXT)


@pytest.fixture(scope="module")
def daemon(chat_model, tmp_path_factory):
    model = chat_model
    home = tmp_path_factory.mktemp("specd-home")
    args = ["--port", "0", "--verifier", str(model), "--device", "cpu", "--max-context", str(MAX_CONTEXT),
            "--queue-size", "1", "--request-timeout", "120"]
    started = start_real_daemon(home, specd_env(home), args)
    yield started
    stop_real_daemon(started)


@pytest.fixture
def sdk(daemon) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=daemon.url, api_key=daemon.token, max_retries=0)


def metric(daemon, name: str, labels: str) -> float:
    request = urllib.request.Request(daemon.url + "/metrics", headers=daemon.auth)
    text = urllib.request.urlopen(request).read().decode()
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_create_has_anthropics_fields_usage_and_specds_accounting(sdk):
    raw = sdk.messages.with_raw_response.create(model="specd", max_tokens=12, system=SYSTEM, messages=MESSAGES,
                                                extra_body=GREEDY, extra_headers={"anthropic-beta": "whatever-2025"})
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    stats = message.model_extra["specd"]
    assert message.usage.output_tokens == stats["completion_tokens"] > 0
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == stats["prompt_tokens"]
    assert message.usage.cache_read_input_tokens == stats["cached_tokens"]
    assert raw.headers["x-specd-completion-tokens"] == str(stats["completion_tokens"])
    assert raw.headers["x-specd-drafted-tokens"] == str(stats["drafted_tokens"])
    assert stats["speculative"] == {"enabled": True, "max_draft_tokens": 8, "drafting_model": "ngram"}


def test_streamed_text_equals_the_whole_answer_at_temperature_0(sdk):
    whole = sdk.messages.create(model="specd", max_tokens=24, system=SYSTEM, messages=MESSAGES, extra_body=GREEDY)
    deltas, names = [], []
    with sdk.messages.stream(model="specd", max_tokens=24, system=SYSTEM, messages=MESSAGES, extra_body=GREEDY) as stream:
        for event in stream:
            names.append(event.type)
            if event.type == "content_block_delta":
                deltas.append(event.delta.text)
        final = stream.get_final_message()
    assert "".join(deltas) == whole.content[0].text == final.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens == \
        whole.usage.input_tokens + whole.usage.cache_read_input_tokens
    assert names[0] == "message_start" and names[-1] == "message_stop"


def test_the_same_prompt_gives_the_same_text_as_chat_completions(daemon, sdk):
    chat = openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.token, max_retries=0)
    for temperature_0_prompt in (MESSAGES[0]["content"], "import json\n\nclass Decoder:"):
        messages = [{"role": "user", "content": temperature_0_prompt}]
        ours = sdk.messages.create(model="specd", max_tokens=20, system=SYSTEM, messages=messages, extra_body=GREEDY)
        theirs = chat.chat.completions.create(model="specd", max_tokens=20, temperature=0,
                                              messages=[{"role": "system", "content": SYSTEM}, *messages])
        assert ours.content[0].text == theirs.choices[0].message.content
        assert ours.usage.output_tokens == theirs.usage.completion_tokens


def test_count_tokens_matches_the_prompt_of_a_create(sdk):
    counted = sdk.messages.count_tokens(model="specd", system=SYSTEM, messages=MESSAGES)
    created = sdk.messages.create(model="specd", max_tokens=1, system=SYSTEM, messages=MESSAGES)
    assert counted.input_tokens == created.usage.input_tokens + created.usage.cache_read_input_tokens > 0


def test_tools_reach_the_chat_template_and_a_model_that_calls_none_answers_text(sdk):
    tool = {"name": "read_file", "description": "Read a file of the project",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
    plain = sdk.messages.count_tokens(model="specd", messages=MESSAGES).input_tokens
    with_tool = sdk.messages.count_tokens(model="specd", messages=MESSAGES, tools=[tool]).input_tokens
    assert with_tool > plain + 20  # the template's tools section and the tool's JSON
    none = sdk.messages.count_tokens(model="specd", messages=MESSAGES, tools=[tool], tool_choice={"type": "none"})
    assert none.input_tokens == plain
    with sdk.messages.stream(model="specd", max_tokens=12, messages=MESSAGES, tools=[tool], extra_body=GREEDY) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["text"] and message.stop_reason in ("end_turn", "max_tokens")


def test_a_stop_sequence_is_reported_with_its_string(sdk):
    whole = sdk.messages.create(model="specd", max_tokens=24, messages=MESSAGES, extra_body=GREEDY).content[0].text
    stop = whole[len(whole) // 2:][:3]
    for stream in (False, True):
        kwargs = dict(model="specd", max_tokens=24, messages=MESSAGES, stop_sequences=["\x00", stop], extra_body=GREEDY)
        if stream:
            with sdk.messages.stream(**kwargs) as events:
                message = events.get_final_message()
        else:
            message = sdk.messages.create(**kwargs)
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", stop)
        assert message.content[0].text == whole[:whole.index(stop)]


# ---- a prefill: the answer continues a final assistant message ------------------------------------------------------

COUNT = [{"role": "user", "content": "Count from 1 to 10 separated by commas."}]
PREFILL = "1, 2, 3,"


def greedy_continuation(model: Path, prompt: str, max_tokens: int) -> tuple[int, str]:
    """(prompt tokens, text): the verifier's own greedy decoding of `prompt` with transformers alone, as the engine
    tokenizes a chat prompt (no special tokens added), stopping at end of sequence."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    verifier = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = verifier.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    new = [t for t in out[0, len(ids):].tolist() if t != tokenizer.eos_token_id]
    return len(ids), tokenizer.decode(new)


def test_a_final_assistant_message_is_a_prefill_the_answer_continues(chat_model, sdk):
    """Anthropic's prefill: the prompt ends with the assistant's text (no end of turn after it) and the answer is
    the greedy continuation of that prompt, without the prefill; streamed as sent whole; counted as input."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    opened = tokenizer.apply_chat_template(COUNT, tokenize=False, add_generation_prompt=True)
    prompt_tokens, expected = greedy_continuation(chat_model, opened + PREFILL, 16)
    # the prompt as it was rendered before: the prefill a finished turn, then a new assistant turn
    closed = tokenizer.apply_chat_template([*COUNT, {"role": "assistant", "content": PREFILL}], tokenize=False,
                                           add_generation_prompt=True)
    assert closed != opened + PREFILL
    _, closed_answer = greedy_continuation(chat_model, closed, 16)
    assert expected and expected != closed_answer  # the test tells the two prompts apart

    messages = [*COUNT, {"role": "assistant", "content": PREFILL}]
    whole = sdk.messages.create(model="specd", max_tokens=16, messages=messages, extra_body=GREEDY)
    assert [b.type for b in whole.content] == ["text"] and whole.content[0].text == expected
    assert whole.usage.input_tokens + whole.usage.cache_read_input_tokens == prompt_tokens
    assert whole.model_extra["specd"]["prompt_tokens"] == prompt_tokens
    with sdk.messages.stream(model="specd", max_tokens=16, messages=messages, extra_body=GREEDY) as stream:
        deltas = [e.delta.text for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "".join(deltas) == final.content[0].text == expected
    assert (final.stop_reason, final.usage.output_tokens) == (whole.stop_reason, whole.usage.output_tokens)
    counted = sdk.messages.count_tokens(model="specd", messages=messages).input_tokens
    without = sdk.messages.count_tokens(model="specd", messages=COUNT).input_tokens
    assert counted == prompt_tokens > without


def test_a_prefill_with_stop_sequences_thinking_blocks_and_an_empty_final_message(sdk):
    """Stop sequences are looked for in the answer only (the prefill's text does not end it); thinking blocks in
    the final message are dropped and its text continued; an empty final assistant message is no prefill."""
    messages = [*COUNT, {"role": "assistant", "content": PREFILL}]
    answer = sdk.messages.create(model="specd", max_tokens=16, messages=messages, extra_body=GREEDY)
    whole = answer.content[0].text
    # "," ends the prefill: a stop sequence found there would end every answer at once, empty
    cut = sdk.messages.create(model="specd", max_tokens=16, messages=messages, stop_sequences=[","],
                              extra_body=GREEDY)
    if "," in whole:
        assert (cut.content[0].text, cut.stop_reason, cut.stop_sequence) == (whole[:whole.index(",")],
                                                                             "stop_sequence", ",")
    else:
        assert (cut.content[0].text, cut.stop_reason) == (whole, answer.stop_reason)
    thinking = sdk.messages.create(model="specd", max_tokens=16, extra_body=GREEDY, messages=[*COUNT, {
        "role": "assistant", "content": [{"type": "thinking", "thinking": "counting", "signature": "s"},
                                         {"type": "text", "text": PREFILL}]}])
    assert thinking.content[0].text == whole
    plain = sdk.messages.create(model="specd", max_tokens=16, messages=COUNT, extra_body=GREEDY)
    empty = sdk.messages.create(model="specd", max_tokens=16, messages=[*COUNT, {"role": "assistant", "content": ""}],
                                extra_body=GREEDY)
    assert empty.content[0].text == plain.content[0].text
    assert empty.usage.input_tokens + empty.usage.cache_read_input_tokens == \
        plain.usage.input_tokens + plain.usage.cache_read_input_tokens


def test_a_prefill_refused_as_anthropic_refuses_it(sdk):
    """Trailing whitespace (Anthropic's own 400), and a prefill with a forced tool call or a JSON schema, which
    constrain the answer from its first token."""
    tool = {"name": "count", "description": "Count", "input_schema": {"type": "object", "properties": {
        "numbers": {"type": "array", "items": {"type": "integer"}}}}}
    cases = (({"messages": [*COUNT, {"role": "assistant", "content": "1, 2, 3, "}]},
              "messages: final assistant content cannot end with trailing whitespace"),
             ({"messages": [*COUNT, {"role": "assistant", "content": [{"type": "text", "text": "{\n"}]}]},
              "final assistant content cannot end with trailing whitespace"),
             ({"messages": [*COUNT, {"role": "assistant", "content": "{"}], "tools": [tool],
               "tool_choice": {"type": "any"}}, "cannot be combined with tool_choice 'any'"),
             ({"messages": [*COUNT, {"role": "assistant", "content": "{"}], "tools": [tool],
               "tool_choice": {"type": "tool", "name": "count"}}, "cannot be combined with tool_choice 'tool'"),
             ({"messages": [*COUNT, {"role": "assistant", "content": "{"}],
               "output_config": {"format": {"type": "json_schema", "schema": tool["input_schema"]}}},
              "cannot be combined with output_config.format"))
    for body, words in cases:
        with pytest.raises(anthropic.BadRequestError) as refused:
            sdk.post("/v1/messages", body={"model": "specd", "max_tokens": 4, **body}, cast_to=object)
        assert refused.value.body["error"]["type"] == "invalid_request_error"
        assert words in refused.value.body["error"]["message"]


def test_max_tokens_beyond_the_context_is_clamped_and_a_prompt_beyond_it_is_a_400_naming_it(sdk):
    long_text = "def f(x):\n    return x\n" * 800
    sample = long_text[: len(long_text) // 8]
    tokens = sdk.messages.count_tokens(model="specd", messages=[{"role": "user", "content": sample}]).input_tokens
    fits = len(sample) * (MAX_CONTEXT - 100) // tokens  # leaves about 100 tokens to generate
    with sdk.messages.stream(model="specd", max_tokens=32000, extra_body=GREEDY,  # as Claude Code sends it
                             messages=[{"role": "user", "content": long_text[:fits]}]) as stream:
        message = stream.get_final_message()
    total = message.usage.input_tokens + message.usage.cache_read_input_tokens + message.usage.output_tokens
    assert message.stop_reason == "max_tokens" and total == MAX_CONTEXT
    counted = sdk.messages.count_tokens(model="specd", messages=[{"role": "user", "content": long_text}])
    assert counted.input_tokens > MAX_CONTEXT  # counted all the same: a client asks whether it fits
    with pytest.raises(anthropic.BadRequestError) as too_long:
        sdk.messages.create(model="specd", max_tokens=10, messages=[{"role": "user", "content": long_text}])
    assert too_long.value.body["type"] == "error"
    assert too_long.value.body["error"]["type"] == "invalid_request_error"
    assert f"the context window is {MAX_CONTEXT} tokens" in too_long.value.body["error"]["message"]


def test_errors_bad_key_401_bad_body_400_and_a_wrong_drafting_model(daemon, sdk):
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        anthropic.Anthropic(base_url=daemon.url, api_key="not-the-token", max_retries=0).messages.create(
            model="specd", max_tokens=4, messages=MESSAGES)
    assert bad_key.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as bad_body:
        sdk.messages.create(model="specd", max_tokens=4, messages=[{"role": "robot", "content": "hi"}])
    assert bad_body.value.body["error"] == {"type": "invalid_request_error", "message":
                                            "'messages[0].role' must be 'user', 'assistant' or 'system', got 'robot'"}
    with pytest.raises(anthropic.BadRequestError) as wrong_drafter:
        sdk.messages.create(model="specd", max_tokens=4, messages=MESSAGES, extra_body={"draftingModel": "eagle3"})
    assert "the loaded drafter is 'ngram'" in wrong_drafter.value.body["error"]["message"]
    plain = sdk.messages.create(model="specd", max_tokens=8, messages=MESSAGES,
                                extra_body={"speculativeDecoding": {"enabled": False}})
    assert plain.model_extra["specd"]["drafted_tokens"] == 0
    assert plain.model_extra["specd"]["speculative"]["enabled"] is False


def test_a_full_queue_is_529_and_a_client_that_disconnects_cancels(daemon, sdk):
    """queue_size 1: one stream generating, one request waiting, the third is overloaded. Closing the stream
    cancels its generation, and the waiting request is served."""
    disconnects = metric(daemon, "specd_cancelled_total", 'reason="disconnect"')
    long = dict(model="specd", max_tokens=1500, messages=MESSAGES, extra_body=GREEDY)
    with sdk.messages.stream(**long) as stream:
        next(e for e in stream if e.type == "content_block_delta")  # generating
        waiting: list = []
        thread = threading.Thread(target=lambda: waiting.append(sdk.messages.create(**{**long, "max_tokens": 2})))
        thread.start()
        status = urllib.request.Request(daemon.url + "/specd/v1/status", headers=daemon.auth)
        while json.load(urllib.request.urlopen(status))["queue_depth"] < 1:
            time.sleep(0.01)
        with pytest.raises(anthropic.InternalServerError) as overloaded:
            sdk.messages.create(**long)
        assert overloaded.value.status_code == 529
        assert overloaded.value.body["error"]["type"] == "overloaded_error"
    thread.join()  # served once the stream's generation was cancelled
    assert waiting[0].usage.output_tokens == 2
    assert metric(daemon, "specd_cancelled_total", 'reason="disconnect"') == disconnects + 1


def test_the_example_script_prints_the_answer_and_the_token_count(daemon):
    env = {**os.environ, "SPECD_HOME": str(daemon.home)}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "examples" / "anthropic_messages.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("text: ")  # the tiny random model's text, whatever it is
    lines = done.stdout.splitlines()
    tokens_line = next(line for line in lines if line.startswith("input + output tokens: "))
    assert int(tokens_line.rsplit(" ", 1)[1]) > 0
    assert re.search(r"^specd: drafted \d+, accepted \d+, verifier passes \d+, cached \d+ tokens$", done.stdout, re.M)


# ---- Claude Code's two turns (the shape recorded from claude 2.1.197 against a local server, cli-clients.md) --------

def _claude_code_turns() -> tuple[dict, dict]:
    """Turn 1 and turn 2 as Claude Code sends them: an attribution block first in `system` (its cch value differs
    between requests), two cached system blocks, a dozen tools, a role "system" message inside `messages`, and
    cache_control markers that move to the newest user block on the second turn, where the system message also turns
    from text blocks into a plain string."""
    prose = ("You are an interactive agent that helps users with software engineering tasks. Use the tools "
             "available to you. Keep answers short; prefer editing files to creating them. ")
    tools = [{"name": f"Tool{i}", "description": f"Tool number {i}: reads or changes the files under a path.",
              "input_schema": {"type": "object", "properties": {"path": {"type": "string", "description": "a path"},
                                                                "count": {"type": "integer"}},
                               "required": ["path"], "additionalProperties": False}} for i in range(12)]
    ephemeral = {"type": "ephemeral"}

    def system(nonce: str) -> list[dict]:
        return [{"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.197.1c9; cc_entrypoint=sdk-cli; cch={nonce};"},
                {"type": "text", "text": "You are a Claude agent.", "cache_control": ephemeral},
                {"type": "text", "text": prose * 3, "cache_control": ephemeral}]

    reminder = "<system-reminder>\nToday's date is 2026-11-30.\n</system-reminder>\n"
    environment = "Working directory: /home/user/project\nPlatform: linux\n"
    common = {"model": "specd", "max_tokens": 32000, "stream": True, "thinking": {"type": "adaptive"},
              "output_config": {"effort": "high"}, "context_management": {"edits": []},
              "metadata": {"user_id": "user_1"}, "tools": tools}
    first = {**common, "system": system("a1b2c"), "messages": [
        {"role": "user", "content": [{"type": "text", "text": reminder},
                                     {"type": "text", "text": "say hello", "cache_control": ephemeral}]},
        {"role": "system", "content": [{"type": "text", "text": environment}]}]}
    second_messages = [
        {"role": "user", "content": [{"type": "text", "text": reminder}, {"type": "text", "text": "say hello"}]},
        {"role": "system", "content": environment},
        None,  # the first turn's answer
        {"role": "user", "content": [{"type": "text", "text": "and again", "cache_control": ephemeral}]}]
    return first, {**common, "system": system("9f8e7"), "messages": second_messages}


def test_claude_codes_second_turn_reuses_the_first_turns_prefix(sdk, capsys):
    first, second = _claude_code_turns()
    for body in (first, second):
        body.update(max_tokens=16, stream=False)
    answer = sdk.post("/v1/messages?beta=true", body=first, cast_to=object)
    second["messages"][2] = {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "", "signature": "sig"}, *answer["content"]]}
    again = sdk.post("/v1/messages?beta=true", body=second, cast_to=object)
    usage = again["usage"]
    prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
    reused = usage["cache_read_input_tokens"] / prompt
    with capsys.disabled():
        print(f"\nClaude Code's second turn: {usage['cache_read_input_tokens']} of {prompt} prompt tokens from cache "
              f"({reused:.1%})")
    assert reused >= 0.9, usage
