"""When a completion ends, and how much of its text is safe to stream.

A completion ends at the end-of-sequence token, at max tokens, at a stop string (cut before it), at the end of
the line (`line` mode), or when a line's indentation falls below the cursor's block (`block` mode; at top level,
see StopState._block_end). Tokens are
fed one at a time, also those a speculative round accepted together, so speculative output stops exactly where
plain decoding would.

The text is made of whole characters only (see token_bytes): a character split over several tokens appears once
all of them are in, so no end of a completion (max tokens, a stop string, cancellation, the context budget)
leaves half of one behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .token_bytes import ByteReader, byte_reader, whole_characters


def indent_width(line: str) -> int:
    """The width of `line`'s leading spaces and tabs, in columns, a tab to the next multiple of 4."""
    stripped = line.lstrip(" \t")
    return len(line[: len(line) - len(stripped)].expandtabs(4))


# Block mode at top level: a column-0 line that goes on with the statement above rather than starting a new one: a
# closer (`}`, `)`, `]`, `</div>`) or a word that opens the next branch or ends the statement (Python, JS/C, Ruby,
# Lua, shell, the C preprocessor). A word counts as a word only (`elsewhere` does not) and not as a name being
# assigned (`end = time()`, `done = True`); Ruby's `rescue => e` does count.
_CONTINUATION_WORDS = ("else", "elif", "elsif", "elseif", "except", "finally", "catch", "rescue", "ensure", "when",
                       "then", "do", "until", "end", "fi", "done", "esac", "#else", "#elif", "#elifdef",
                       "#elifndef", "#endif")
_CONTINUES = re.compile(r"[)\]}]|</|(?:%s)(?![\w$])(?!\s*(?:[-+*/%%&|^:]|//|\*\*|<<|>>)?=(?![=>]))"
                        % "|".join(_CONTINUATION_WORDS))
_FENCES = ("```", "~~~")
_OPERATOR_TAIL = " \t-+*/%&|^:<>="  # what may follow a continuation word before the line shows an assignment


def _undecided(line: str) -> bool:
    """Whether more characters could still change what a column-0 last line is to a top-level block: a fence
    (`` ` ``), a continuation (`els`, `end`, which `endpoint` would undo, `end =`) or neither."""
    if not line:
        return False
    if any(marker.startswith(line) and marker != line for marker in (*_FENCES, "</")):
        return True
    if any(word.startswith(line) for word in _CONTINUATION_WORDS):
        return True
    return line.rstrip(_OPERATOR_TAIL) in _CONTINUATION_WORDS


@dataclass
class StopRules:
    """What ends a completion: `eos_ids` (token ids), `stop` strings (cut before), `mode` (None, "line": at the first
    line break, "block": where the indentation falls below `cursor_indent` columns, see StopState), and `max_tokens`
    (tokens)."""

    eos_ids: frozenset[int]
    stop: tuple[str, ...] = ()
    mode: str | None = None  # None | "line" | "block"
    cursor_indent: int = 0  # block mode: indentation of the line the cursor is on
    max_tokens: int = 64


@dataclass
class StopState:
    """Feeds tokens, decodes incrementally and decides where the completion ends."""

    rules: StopRules
    tokenizer: object
    anchor: tuple[int, ...] = ()  # decoded before the tokens and cut off again (see fim.decode_anchor)
    skip: int = 0  # leading bytes of the tokens that the prompt already holds (token healing): not text
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    stop_sequence: str | None = None  # the stop string that ended the text (Anthropic's stop_sequence)
    _emitted: int = 0
    _anchor_text: str = ""
    _read: ByteReader | None = None  # token id -> its UTF-8 bytes, for tokenizers that split characters
    _bytes: bytearray = field(default_factory=bytearray)  # the bytes of `tokens`, while `_read` is known
    _tokens_read: int = 0

    def __post_init__(self) -> None:
        self._anchor_text = self.tokenizer.decode(list(self.anchor), skip_special_tokens=False) if self.anchor else ""
        self._read = byte_reader(self.tokenizer, self._decode_ids)

    def add(self, token: int) -> bool:
        """Append one token; returns True when the completion is finished."""
        if token in self.rules.eos_ids:
            self.finish_reason = "stop"
            return True
        self.tokens.append(token)
        self.text = self._decode()
        cut = self._cut_position()
        if cut is not None:
            self.text = self.text[:cut]
            self.finish_reason = "stop"
            return True
        if len(self.tokens) >= self.rules.max_tokens:
            self.finish_reason = "length"
            return True
        return False

    def add_text(self, piece: str) -> bool:
        """Append text decoded elsewhere (an upstream server streams text, not token ids: engine/remote.py);
        returns True when a stop string or the mode ends the completion in it. EOS and max tokens are the
        sender's to apply."""
        self.text += piece
        cut = self._cut_position()
        if cut is None:
            return False
        self.text, self.finish_reason = self.text[:cut], "stop"
        return True

    def _decode(self) -> str:
        if self._read is None:
            return self._decode_whole(self.tokens)
        for token in self.tokens[self._tokens_read:]:
            self._bytes += self._read(token)
        self._tokens_read = len(self.tokens)
        return whole_characters(self._bytes[self.skip:])

    def _decode_whole(self, ids: list[int]) -> str:
        """Without a byte reader: the decoded text, or, when it ends in U+FFFD, that of the longest run of at
        least all but 3 tokens (a character has at most 4 bytes) that does not, if it is a start of it."""
        text = self._decode_ids(ids)
        if not text.endswith("\ufffd"):
            return text
        for drop in range(1, min(3, len(ids)) + 1):
            shorter = self._decode_ids(ids[:-drop])
            if not shorter.endswith("\ufffd") and text.startswith(shorter):
                return shorter
        return text

    def _decode_ids(self, ids: list[int]) -> str:
        if self.anchor:
            text = self.tokenizer.decode([*self.anchor, *ids], skip_special_tokens=False)
            if text.startswith(self._anchor_text):
                return text[len(self._anchor_text):]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _cut_position(self) -> int | None:
        found = sorted((i, s) for i, s in ((self.text.find(s), s) for s in self.rules.stop if s) if i >= 0)
        cuts = [i for i, _ in found]
        if self.rules.mode == "line":
            newline = self.text.find("\n")
            if newline >= 0:
                cuts.append(newline)
        elif self.rules.mode == "block":
            block_end = self._block_end()
            if block_end is not None:
                cuts.append(block_end)
        cut = min(cuts) if cuts else None
        self.stop_sequence = next((s for i, s in found if i == cut), None)
        return cut

    def _block_end(self) -> int | None:
        # A line ends the block once its first visible character shows an indentation below the cursor's. Until
        # that character arrives the line could still be deeper, so an all-blank last line decides nothing yet.
        # At top level (cursor_indent 0) no indentation is below the cursor's, so a column-0 line ends the block
        # when it follows a blank line, when it is a Markdown fence (``` or ~~~) the completion did not open (a
        # model trained on chat answers closes a fence the code never opened), or when it follows an indented
        # body (or a closer ending one) and does not go on with that statement (_CONTINUES: `}`, `else:`, `end`,
        # `fi`): a top-level completion is a run of one-line statements, or a statement with its body down to
        # its closing line, and not the example usage a model writes after a definition. A last line that could
        # still become a fence or a continuation (`els`) waits for more characters; stable_delta holds it back.
        lines = self.text.split("\n")
        offset = len(lines[0]) + 1
        top = self.rules.cursor_indent == 0
        fence_open = top and lines[0].startswith(_FENCES)  # a fence the completion opens keeps its closing fence
        after_body = top and (indent_width(lines[0]) > 0 or bool(_CONTINUES.match(lines[0])))
        previous_blank = False
        for i, line in enumerate(lines[1:], 1):
            if line.strip():
                width = indent_width(line)
                if width < self.rules.cursor_indent:
                    return offset - 1
                if top and width == 0:
                    if previous_blank:
                        return offset - 1
                    if i == len(lines) - 1 and _undecided(line):
                        return None
                    if line.startswith(_FENCES):
                        if not fence_open:
                            return offset - 1
                        fence_open, after_body = False, True
                    elif _CONTINUES.match(line):
                        after_body = True
                    elif after_body:
                        return offset - 1
                elif top and not line.lstrip(" \t").startswith("*"):  # ` * ` lines of a /** */ comment: no body
                    after_body = True
                previous_blank = False
            else:
                previous_blank = True
            offset += len(line) + 1
        return None

    def stable_delta(self) -> str:
        """Text not yet streamed that can no longer change: held back while it could start a stop string or
        ends in an incomplete character."""
        if self.finish_reason is not None:
            end = len(self.text)
        else:
            end = len(self.text.rstrip("\ufffd"))
            for stop in self.rules.stop:
                for k in range(min(len(stop) - 1, end), 0, -1):
                    if self.text[:end].endswith(stop[:k]):
                        end -= k
                        break
            if self.rules.mode is not None:
                # A trailing line break may still be cut (line mode) or end the block (block mode).
                newline = self.text.rfind("\n", 0, end)
                if newline >= 0 and self.rules.mode == "block" and not self.text[newline + 1 : end].strip():
                    end = newline
            if self.rules.mode == "block" and self.rules.cursor_indent == 0:
                # At top level a last line that could still become a fence or a continuation (_block_end) may
                # still end the block: hold it back from the line break before it.
                newline = self.text.rfind("\n")
                if newline >= 0 and _undecided(self.text[newline + 1 :]):
                    end = min(end, newline)
        delta = self.text[self._emitted : max(end, self._emitted)]
        self._emitted = max(end, self._emitted)
        return delta
