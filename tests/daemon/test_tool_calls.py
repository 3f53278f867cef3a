"""Tool calls cut out of a model's text (daemon/api/tool_calls.py): the same pieces whether the text comes whole or
a few characters at a time, and text wherever the format is not met."""

from __future__ import annotations

import pytest

from specd.daemon.api.tool_calls import ToolCall, ToolCallParser, split

TWO_CALLS = ('I will read both.\n<tool_call>\n{"name": "read", "arguments": {"path": "a.py"}}\n</tool_call>\n'
             '<tool_call>\n{"name": "read", "parameters": {"path": "b.py"}}\n</tool_call>')


def fed(text: str, size: int) -> list:
    parser = ToolCallParser()
    pieces = [p for i in range(0, len(text), size) for p in parser.feed(text[i:i + size])] + parser.finish()
    joined: list = []
    for piece in pieces:  # adjacent text joined, as split() does
        if isinstance(piece, str) and joined and isinstance(joined[-1], str):
            joined[-1] += piece
        else:
            joined.append(piece)
    return joined


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_calls_are_cut_out_the_same_way_at_any_chunk_size(size):
    assert fed(TWO_CALLS, size) == split(TWO_CALLS) == [
        "I will read both.\n", ToolCall("read", {"path": "a.py"}), "\n", ToolCall("read", {"path": "b.py"})]


@pytest.mark.parametrize("text", [
    "no call at all, but a < and a <tool",  # a partial opening tag at the end is text
    '<tool_call>\n{"name": "read", "arguments": {"pa',  # cut by max_tokens inside a call
    "<tool_call>not json</tool_call> then text",
    '<tool_call>{"arguments": {}}</tool_call>',  # no name
    '<tool_call>{"name": "read", "arguments": [1]}</tool_call>',  # arguments not an object
])
def test_what_is_not_a_complete_call_stays_text(text):
    assert "".join(p for p in split(text) if isinstance(p, str)) == text
    assert fed(text, 3) == [text]


def test_arguments_written_as_a_json_string_are_read():
    assert split('<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>') == [ToolCall("f", {"x": 1})]
