"""Tool calls in a chat model's text, in the format chat templates teach: Qwen2.5/Qwen3, Hermes and the many
models trained on their template write

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

(Qwen2.5's `tokenizer_config.json` chat template; NousResearch Hermes-2-Pro's function-calling format; some
models write `"parameters"` for `"arguments"`). The parser is incremental, so a stream and a whole answer are cut
into the same pieces: text, and a call once its closing tag is in. A call whose JSON does not parse stays text.
A model that writes no call gives text only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass
class ToolCall:
    """One tool call the model wrote: the function's `name` and its arguments as a JSON object (`input`)."""

    name: str
    input: dict


def _call(payload: str) -> ToolCall | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return ToolCall(value["name"], arguments) if isinstance(arguments, dict) else None


def parse_call(payload: str) -> ToolCall | None:
    """One call's JSON without the tags (`{"name", "arguments"}`), as a forced call's constrained answer is written;
    None when it is not a whole call (cut short by max_tokens)."""
    return _call(payload.strip())


def forced_pieces(text: str) -> list[str | ToolCall]:
    """A forced call's answer: the call's JSON alone (no tags), parsed whole, as one piece. It is not searched for
    the closing tag: a string in the arguments may hold `</tool_call>` (an open schema allows any property and any
    string). A call cut short (max_tokens) does not parse: its text."""
    call = parse_call(text)
    return [call if call is not None else text]


def _held_back(text: str) -> int:
    """How many trailing characters could be the start of the opening tag."""
    for n in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-n:]):
            return n
    return 0


def declared_names(tools: list[dict] | None) -> set[str] | None:
    """The function names of a request's tools in OpenAI's form (`[{"type": "function", "function": {"name":
    ...}}]`, as every door passes them to the chat template); None when the request has no tools."""
    return None if tools is None else {tool["function"]["name"] for tool in tools}


class ToolCallParser:
    """`feed` text as it comes, then `finish`; each returns the pieces that are settled: str (text) or ToolCall.
    With `names`, a call of any other function stays text too: the hosted APIs never answer one, and clients that
    run every call they get fail on it (google-genai's automatic function calling, the OpenAI Agents SDK)."""

    def __init__(self, names: set[str] | None = None) -> None:
        self.buffer = ""
        self.in_call = False
        self.names = names

    def feed(self, text: str) -> list[str | ToolCall]:
        self.buffer += text
        pieces: list[str | ToolCall] = []
        while True:
            if not self.in_call:
                start = self.buffer.find(OPEN)
                if start < 0:
                    keep = _held_back(self.buffer)
                    settled, self.buffer = self.buffer[: len(self.buffer) - keep], self.buffer[len(self.buffer) - keep:]
                    if settled:
                        pieces.append(settled)
                    return pieces
                if start:
                    pieces.append(self.buffer[:start])
                self.buffer, self.in_call = self.buffer[start + len(OPEN):], True
            end = self.buffer.find(CLOSE)
            if end < 0:
                return pieces
            payload, self.buffer, self.in_call = self.buffer[:end], self.buffer[end + len(CLOSE):], False
            call = _call(payload.strip())
            if call is not None and self.names is not None and call.name not in self.names:
                call = None
            pieces.append(call if call is not None else OPEN + payload + CLOSE)

    def finish(self) -> list[str | ToolCall]:
        rest = (OPEN if self.in_call else "") + self.buffer
        self.buffer, self.in_call = "", False
        return [rest] if rest else []


@dataclass
class Text:
    """A settled piece of text; `opens`: it begins a new text block (the first text, or the first after a call)."""
    text: str
    opens: bool


class StreamedBlocks:
    """The rule the Anthropic, Bedrock and Gemini doors stream text next to calls by, so that pieces cut anywhere
    give the blocks of the whole answer (where `split` joined the text and whitespace-only pieces make no block):
    whitespace at the start of an answer or after a call waits for text, and is dropped when a call comes first;
    once text has begun, whitespace goes out with it."""

    def __init__(self) -> None:
        self.pending = ""  # whitespace not yet in a block
        self.text_open = False
        self.blocks = 0  # blocks begun so far

    def settle(self, pieces: list[str | ToolCall]) -> list[Text | ToolCall]:
        settled: list[Text | ToolCall] = []
        for piece in pieces:
            if isinstance(piece, ToolCall):
                self.pending, self.text_open = "", False
                self.blocks += 1
                settled.append(piece)
            elif self.text_open:
                settled.append(Text(piece, opens=False))
            else:
                self.pending += piece
                if self.pending.strip():
                    settled.append(Text(self.pending, opens=True))
                    self.pending, self.text_open = "", True
                    self.blocks += 1
        return settled

    def rest(self) -> str | None:
        """At the end: the whitespace still held when the answer began no block (the answer is that whitespace,
        or nothing: ""), else None."""
        return None if self.blocks else self.pending


def split(text: str, names: set[str] | None = None) -> list[str | ToolCall]:
    """A whole answer's pieces, adjacent text joined (`names` as ToolCallParser's)."""
    parser = ToolCallParser(names)
    pieces: list[str | ToolCall] = []
    for piece in parser.feed(text) + parser.finish():
        if isinstance(piece, str) and pieces and isinstance(pieces[-1], str):
            pieces[-1] += piece
        else:
            pieces.append(piece)
    return pieces
