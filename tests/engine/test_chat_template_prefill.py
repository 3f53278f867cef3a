"""Engine.apply_chat_template with `continue_final` (a prefill: the answer continues the final assistant message):
the prompt ends with that message's text, with no end of turn after it and no new turn; a template that cannot
render it so is a RequestError (the doors' 400), never a prompt that silently closes the turn."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from specd.daemon.engine.loop import Engine
from specd.daemon.engine.requests import RequestError
from tests.fixtures.tiny_models import CHAT_TEMPLATE, build_tokenizer

ASK = {"role": "user", "content": "Count from 1 to 10 separated by commas."}
PREFILL = {"role": "assistant", "content": "1, 2, 3,"}
# Llama 3's way: every message's text trimmed, each turn closed by <|eot_id|>
TRIMMING = ("{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content | trim }}"
            "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
            "{% endif %}")
# a template that writes only the user's turns: an assistant's text never reaches the prompt
DROPPING = ("{% for m in messages %}{% if m.role == 'user' %}Q: {{ m.content }}\n{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}A:{% endif %}")


def render(template: str | None, messages: list[dict], **kwargs) -> str:
    tokenizer = build_tokenizer(512, fim=False)
    tokenizer.chat_template = template
    return Engine.apply_chat_template(SimpleNamespace(tokenizer=tokenizer), messages, **kwargs)


def test_the_prompt_ends_with_the_prefill_where_the_new_turn_would_begin():
    opened = render(CHAT_TEMPLATE, [ASK])
    assert opened.endswith("<|im_start|>assistant\n")
    assert render(CHAT_TEMPLATE, [ASK, PREFILL], continue_final=True) == opened + PREFILL["content"]
    # without continue_final the assistant's message is a finished turn and a new one begins (OpenAI's chat)
    assert render(CHAT_TEMPLATE, [ASK, PREFILL]).endswith("1, 2, 3,<|im_end|>\n<|im_start|>assistant\n")
    tools = [{"type": "function", "function": {"name": "f", "description": "", "parameters": {"type": "object"}}}]
    with_tools = render(CHAT_TEMPLATE, [ASK, PREFILL], tools=tools, continue_final=True)
    assert "<tools>" in with_tools and with_tools.endswith("<|im_start|>assistant\n1, 2, 3,")


def test_a_trimming_template_ends_with_the_trimmed_text_and_one_that_drops_it_is_refused():
    spaced = {"role": "assistant", "content": "  {"}
    assert render(TRIMMING, [ASK, spaced], continue_final=True).endswith("<|end_header_id|>\n\n{")
    with pytest.raises(RequestError, match="cannot continue the final assistant message"):
        render(DROPPING, [ASK, PREFILL], continue_final=True)


def test_a_model_without_a_template_continues_the_transcripts_last_line():
    assert render(None, [ASK, PREFILL], continue_final=True) == \
        "user: Count from 1 to 10 separated by commas.\nassistant: 1, 2, 3,"
    assert render(None, [ASK]).endswith("\nassistant:")


def test_a_model_without_a_template_reads_earlier_calls_as_json_lines():
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    messages = [ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "22 C"}]
    assert render(None, messages) == ("user: Count from 1 to 10 separated by commas.\nassistant: \n"
                                      '{"name": "get_weather", "arguments": {"city": "Oslo"}}\ntool: 22 C\nassistant:')
