"""Property tests of the language server's request path (in process, see tests/lsp/inprocess.py) over random
documents as editors hold them and random cursors, in each position encoding: whatever the document and the
daemon's answer, no request fails, every range is valid, no U+FFFD is made up, a suggestion never re-types the
lines below the cursor, and the indentation typed on the cursor's line stays."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types

from specd.lsp.documents import index_to_units, split_lines, units_to_index
from tests.lsp.inprocess import Editor

ENCODINGS = [types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf32]
URI = "file:///work/project/doc.py"
LINE_BREAK = re.compile(r"\r\n|\r|\n")
SURROGATE = re.compile("[\ud800-\udfff]")
PROPERTY = settings(max_examples=120, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Characters of every width in UTF-8 and UTF-16, blanks, a zero-width space, U+FFFD itself, a lone surrogate.
pieces = st.sampled_from(["a", "x", "_", "(", ")", ":", "=", " ", "  ", "\t", "é", "ß", "中", "😀", "👩‍💻", "\u200b",
                          "\ufffd", "\ud83d", "def", "return", "if n < 2", "pass"])
line_text = st.one_of(
    st.lists(pieces, max_size=12).map("".join),
    st.builds(lambda indent, body: indent + body, st.sampled_from(["", "    ", "\t", "        "]),
              st.lists(pieces, max_size=6).map("".join)),
    st.lists(pieces, min_size=1, max_size=3).map(lambda p: "".join(p) * 400),  # a very long line
)


@st.composite
def documents(draw) -> str:
    lines = draw(st.lists(line_text, max_size=8))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r", "mixed"]))
    endings = [draw(st.sampled_from(["\n", "\r\n", "\r"])) if ending == "mixed" else ending for _ in lines]
    text = "".join(line + end for line, end in zip(lines, endings))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")  # no final line break
    return ("\ufeff" if draw(st.booleans()) else "") + text  # a byte-order mark, as some editors keep it


@st.composite
def cursors(draw, text: str, encoding: str) -> types.Position:
    """A position in client units: the document's start or end, or anywhere, also past a line's end, inside a
    character's code units or below the last line."""
    lines = [LINE_BREAK.sub("", line) for line in split_lines(text)]
    where = draw(st.sampled_from(["start", "end", "any"]))
    if where == "start":
        return types.Position(0, 0)
    if where == "end":
        return types.Position(len(lines) - 1, index_to_units(lines[-1], len(lines[-1]), encoding))
    line = draw(st.integers(0, len(lines)))
    width = index_to_units(lines[line], len(lines[line]), encoding) if line < len(lines) else 0
    return types.Position(line, draw(st.integers(0, width + 2)))


@st.composite
def answers(draw):
    """How the stand-in daemon answers a payload: new text, then maybe a re-typing of the lines below the cursor
    (cut short by the token limit or not)."""
    new = draw(st.lists(st.one_of(pieces, st.just("\n"), st.just("\n    ")), max_size=8).map("".join))
    repeat = draw(st.integers(0, 3))
    cut = draw(st.none() | st.integers(1, 12))

    def reply(payload: dict) -> tuple[str, str]:
        below = LINE_BREAK.split(payload["suffix"])[1:]
        text = new + "".join("\n" + line for line in below[:repeat])
        if cut is not None and repeat and len(text) > cut:
            return text[:-cut], "length"
        return text, "stop"

    return reply


def key_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in LINE_BREAK.split(text) if line.strip()]


CLOSES_ONLY = re.compile(r"[)\]}>;,.: ]+|[)\]}]*\w+[:;]?")  # `}`, `});`, `end`, `else:`: may close its own block


def retypes_lines_below(shown: str, suffix: str) -> bool:
    """True when the suggestion, from the start of one of its lines (after its first) to its end, equals the
    non-blank lines after the cursor's line, and not all of those only close something."""
    below = key_lines("".join(LINE_BREAK.split(suffix, maxsplit=1)[1:]))
    lines = LINE_BREAK.split(shown)
    for i in range(1, len(lines)):
        tail = key_lines("\n".join(lines[i:]))
        if tail and tail == below[: len(tail)] and not all(CLOSES_ONLY.fullmatch(line) for line in tail):
            return True
    return False


@pytest.mark.parametrize("encoding", ENCODINGS)
@PROPERTY
@given(data=st.data())
def test_any_document_any_cursor(encoding, data):
    text = data.draw(documents(), "document")
    position = data.draw(cursors(text, encoding), "cursor")
    editor = Editor(data.draw(answers(), "answer"), encoding=encoding)
    editor.open(URI, text)
    doc, (line, column) = editor.find(URI, position)
    line_text = doc.line_text(line)

    found = editor.inline(URI, position)
    assert not editor.logged, editor.logged  # no internal error, no daemon failure
    assert len(found.items) <= 1
    if not editor.daemon.payloads:
        assert found.items == []
        return
    payload = editor.daemon.payloads[-1]
    # The daemon gets Unicode text only; U+FFFD stands exactly where the buffer had U+FFFD or a lone surrogate.
    for field in ("prefix", "suffix"):
        assert not SURROGATE.search(payload[field])
    window = doc.prefix(line, column, editor.completer.settings.prefix_chars)
    assert payload["prefix"] == SURROGATE.sub("\ufffd", window)
    if not found.items:
        return
    item = found.items[0]
    shown = item.insert_text
    # The range is the cursor itself, on a character boundary of its line, in the client's units.
    here = item.range.start
    assert item.range.end == here and here.line == line
    assert here.character == index_to_units(line_text, column, encoding)
    assert index_to_units(line_text, units_to_index(line_text, here.character, encoding), encoding) == here.character
    assert editor.find(URI, here)[1] == (line, column)
    # Nothing made up: U+FFFD only where the answer had it; no re-typing of the lines below the cursor.
    raw = editor.daemon.reply(payload)[0]
    assert shown.count("\ufffd") <= raw.count("\ufffd")
    assert not retypes_lines_below(shown, doc.suffix(line, column, editor.completer.settings.suffix_chars))
    # No trailing blanks, but one before a word right after the cursor; never glued to that word.
    word_follows = bool(re.match(r"\w", line_text[column : column + 1]))
    assert shown.strip() and shown.rstrip() == (shown[:-1] if word_follows and shown[-1] in " \t" else shown)
    assert not (word_follows and re.match(r"\w", shown[-1]))

    menu = editor.menu(URI, position)
    assert len(menu.items) == 1
    edit = menu.items[0].text_edit
    start, end = edit.range.start, edit.range.end
    assert start.line == end.line == line and start.character <= end.character == here.character
    first, last = units_to_index(line_text, start.character, encoding), units_to_index(line_text, end.character, encoding)
    assert edit.new_text == line_text[first:last] + shown
    # The indentation typed before the cursor is still there once the item is accepted.
    typed = line_text[:column]
    accepted = line_text[:first] + edit.new_text + line_text[last:]
    indent = typed[: len(typed) - len(typed.lstrip(" \t"))]
    assert accepted.startswith(indent) and accepted.startswith(typed[:first])


@pytest.fixture(scope="module")
def tiny_daemon(tmp_path_factory):
    from specd.daemon.engine.loop import EngineConfig
    from specd.daemon.models.loading import load_engine
    from tests.daemon.served_engine import serve
    from tests.fixtures.tiny_models import write_tiny_pair

    verifier, _ = write_tiny_pair(tmp_path_factory.mktemp("tiny"))
    config = EngineConfig(verifier=str(verifier), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(PROPERTY, max_examples=12, suppress_health_check=[*PROPERTY.suppress_health_check,
                                                           HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_document_through_the_real_native_route(tiny_daemon, encoding, data):
    """The same request path with the daemon's own route and a tiny engine behind it (byte-level BPE: emoji and
    CJK are split over tokens): the ghost text is whole characters, with no U+FFFD the document did not have."""
    text = data.draw(documents(), "document")
    position = data.draw(cursors(text, encoding), "cursor")

    def reply(payload: dict) -> tuple[str, str]:
        answer = tiny_daemon.post("/specd/v1/complete", {**payload, "max_tokens": 8})
        assert answer.status == 200, answer.body
        return answer.body["text"], answer.body["finish_reason"]

    editor = Editor(reply, encoding=encoding, max_tokens=8)
    editor.open(URI, text)
    found = editor.inline(URI, position)
    assert not editor.logged, editor.logged
    for item in found.items:
        assert "\ufffd" not in item.insert_text or "\ufffd" in SURROGATE.sub("\ufffd", text)
