"""Cleaning a raw completion before it is shown: what would be noise on screen is removed."""

from __future__ import annotations

import re

_PAIRS = {")": "(", "]": "[", "}": "{"}
_OPENERS = set(_PAIRS.values())
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the LSP's line terminators
CONTEXT_CHARS = 2000  # text before the cursor whose open brackets the suggestion may close
_WORD_CHAR = re.compile(r"\w")


def choose_mode(setting: str, line_before: str, line_after: str) -> str:
    """The completion mode for a cursor: `auto` is `block` on an empty line, else `line` (the rest of the line);
    any other setting as it is."""
    if setting != "auto":
        return setting
    return "block" if not (line_before + line_after).strip() else "line"


def clean(text: str, suffix: str, mode: str, cut_short: bool = False) -> str:
    """The completion as it should be inserted at the cursor, or "" when it adds nothing.

    `suffix` is the document's text after the cursor; `cut_short` says the completion ended at its token limit,
    so its last line may be a truncated copy of a line below the cursor (see trim_repeated_lines). Right before a
    word (`return |total`) a completion that ends in a word character would be glued to it (`a + btotal`): none;
    one that ends in a blank keeps one (`await ` before `foo()`)."""
    if mode == "line":
        text = LINE_BREAK.split(text)[0] if text.strip() else ""
    trimmed = trim_repeated_lines(text, suffix, cut_short)
    text = trimmed.rstrip()
    after = trimmed[len(text) : len(text) + 1]
    blank_after = after if after in (" ", "\t") else ""
    if not text.strip():
        return ""
    text = drop_closers_in_suffix(text, suffix)
    if _WORD_CHAR.match(suffix[:1]) and text:  # the cursor stands right before a word (`return |total`)
        if blank_after:
            return text + blank_after  # `await ` before `foo()`: the blank that parts them stays
        if _WORD_CHAR.match(text[-1]):
            return ""  # it would be glued to that word: `a + btotal`
    return text


def _key(line: str) -> str:
    """A line as compared for repetition: indentation and runs of blanks do not count."""
    return " ".join(line.split())


# A line that only closes something (`}`, `});`, `end`, `fi`, `else:`) is as likely a nested block's own end as
# a copy of the one below the cursor; a repeat needs at least one line with more in it.
_STRUCTURAL = re.compile(r"[)\]}>;,.: ]+|[)\]}]*\w+[:;]?")


def _substantial(keys: list[str]) -> bool:
    return any(not _STRUCTURAL.fullmatch(key) for key in keys)


def trim_repeated_lines(text: str, suffix: str, cut_short: bool = False) -> str:
    """`text` up to where it starts repeating the text after the cursor, line by line.

    A repeat runs from the start of one of the completion's lines to its end and equals, line for line, the
    lines that follow the cursor (blank lines, indentation and runs of blanks aside). The completion's first
    line continues the cursor's line: it repeats the rest of that line, or the next line when the cursor is at
    the end of its line. With `cut_short`, the repeat's last line may be any start of the line it copies (the
    token limit cut it), unless it is the completion's only line, which is then as likely new text. Lines that
    only close something (`}`, `end`) do not make a repeat on their own: they may close the completion's own block.
    Returns `text` cut before the repeat ("" when all of it repeats), or `text` itself.
    """
    lines = LINE_BREAK.split(text)
    starts = [0] + [m.end() for m in LINE_BREAK.finditer(text)]
    after = [_key(line) for line in LINE_BREAK.split(suffix)]
    rest_of_line, below = after[0], [key for key in after[1:] if key]
    for i in range(len(lines)):
        keys = [_key(line) for line in lines[i:]]
        if i == 0 and rest_of_line:
            if keys[0] != rest_of_line:
                continue
            rest = [key for key in keys[1:] if key]  # the first line restates the rest of the cursor's line
            if not rest or _repeats(rest, below, cut_short) and _substantial(keys):
                return ""
            continue
        keys = [key for key in keys if key]
        if keys and _repeats(keys, below, cut_short and (i > 0 or len(keys) > 1)) and _substantial(keys):
            return text[: starts[i]]
    return text


def cut_at_repeat(text: str, suffix: str, cut_short: bool) -> str:
    """`text` up to where it starts re-typing the text after the cursor, for a completion that no mode ended.

    The language server's cut (trim_repeated_lines) takes off a repeat at the end of a completion,
    which is where a line or block mode completion that re-types the lines below ends. Without a mode the text
    runs on past such a repeat, so the cut is looked for at the end of each of its lines in turn, and the first
    one found applies: the lines after a copy of the text below continue that text, not the cursor's spot."""
    below = {_key(line) for line in LINE_BREAK.split(suffix)} - {""}
    spans, start = [], 0
    for line_break in LINE_BREAK.finditer(text):
        spans.append((start, line_break.start()))
        start = line_break.end()
    spans.append((start, len(text)))
    for start, end in spans:
        last = end == len(text)
        if not last and _key(text[start:end]) not in below:
            continue  # a repeat ends with a line the text below has; only the last line may be cut short
        kept = trim_repeated_lines(text[:end], suffix, cut_short and last)
        if kept != text[:end]:
            return kept
    return text


def _repeats(keys: list[str], below: list[str], last_may_be_cut: bool) -> bool:
    """True when `keys` are the first lines of `below` (the last one possibly cut short)."""
    if len(keys) > len(below):
        return False
    *whole, last = keys
    if whole != below[: len(whole)]:
        return False
    copied = below[len(whole)]
    return last == copied or (last_may_be_cut and copied.startswith(last))


def _scan_brackets(text: str) -> tuple[list[int], list[str]]:
    """(positions of closing brackets in `text` that close something opened before it, openers left open)."""
    stack: list[str] = []
    excess: list[int] = []
    for i, ch in enumerate(text):
        if ch in _OPENERS:
            stack.append(ch)
        elif ch in _PAIRS:
            if stack and stack[-1] == _PAIRS[ch]:
                stack.pop()
            else:
                excess.append(i)
    return excess, stack


def unmatched_closers(text: str) -> list[int]:
    """Positions of closing brackets in `text` that close something opened before it."""
    return _scan_brackets(text)[0]


_QUOTES = "\"'`"
_CLOSING_RUN = ")]}\"'`;:,"  # what editors auto-close, and the punctuation that usually follows it


def rest_to_replace(before: str, text: str, rest: str) -> int | None:
    """Where the completion retypes the closers and quotes after the cursor, the length of the line's rest
    (`rest`: the text after the cursor up to the line's end) that the completion should replace; None when it
    is inserted before the rest as usual.

    Editors auto-close brackets and quotes, and a model that never saw the text after the cursor (no FIM
    tokens) writes them again: `print(f"hello {|}")` gets `n}!")`, which inserted gives `{n}!")}")`. The rest is
    replaced when its characters (whitespace aside) appear in order in the completion's first line and the
    cursor's line then balances better: fewer closing brackets without an opener (counted from the `before`
    text, the document before the cursor, so a call opened lines above still counts), then fewer brackets left
    open, then fewer quote characters without a partner on the line. `foo(bar(1)|)` + `)` is therefore kept:
    the completion's `)` closes its own `(`. When more follows on the line (`end="|")  # note`), only the run of
    closers, quotes and `;:,` right after the cursor is considered for replacing, the longest part of it that works.
    """
    first = LINE_BREAK.split(text)[0]
    line_start = before[before.rfind("\n") + 1:]
    run = len(rest) - len(rest.lstrip(_CLOSING_RUN))
    inserted = None  # the line with the rest kept, scored once a candidate needs it
    for length in dict.fromkeys([len(rest)] + list(range(run, 0, -1))):  # the whole rest, then the run's prefixes
        part, after = rest[:length], rest[length:]
        wanted = [ch for ch in part if not ch.isspace()]
        if not wanted or not _in_order(wanted, first):
            continue
        inserted = inserted or _imbalance(before, line_start, first + rest)
        if _imbalance(before, line_start, first + after) < inserted:
            return length
    return None


def cut_before_rest(text: str, rest: str) -> str:
    """The completion's first line up to where it starts retyping `rest` (for clients that can only insert at
    the cursor), matching `rest` as late in the line as it goes: `n}!")` before `}")` becomes `n`, `a(b), c)`
    before `)` becomes `a(b), c`. `rest` (the part rest_to_replace chose) must appear in the line in order."""
    first = LINE_BREAK.split(text)[0]
    end = len(first)
    for ch in reversed([ch for ch in rest if not ch.isspace()]):
        end = first.rindex(ch, 0, end)
    return first[:end]


def _in_order(chars: list[str], text: str) -> bool:
    found = iter(text)
    return all(ch in found for ch in chars)


def _imbalance(before: str, line_start: str, line_end: str) -> tuple[int, int, int]:
    """(closers without an opener, openers left open, quote characters without a partner) for the document
    `before` the cursor followed by `line_end`; quotes are counted on the cursor's line alone."""
    stray, opened = _scan_brackets(before + line_end)
    line = line_start + line_end
    return len(stray), len(opened), sum(line.count(q) % 2 for q in _QUOTES)


def drop_closers_in_suffix(text: str, suffix: str) -> str:
    """Trailing closers of the completion that the line after the cursor already has (auto-closed
    brackets) are removed, so accepting `x)` before an existing `)` does not leave `foo(x))`."""
    rest = LINE_BREAK.split(suffix)[0].lstrip()
    present = ""
    for ch in rest:
        if ch not in _PAIRS:
            break
        present += ch
    excess = unmatched_closers(text)
    for k in range(min(len(present), len(excess)), 0, -1):
        tail = excess[-k:]
        if tail == list(range(len(text) - k, len(text))) and text.endswith(present[:k]):
            return text[:-k]
    return text
