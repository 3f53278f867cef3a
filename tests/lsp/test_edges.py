"""Issue 11's edges in the language server: suggestions that re-type the text below the cursor are trimmed,
a buffer holding an unpaired surrogate still gets completions, and ghost text never shows half a character."""

from __future__ import annotations

import pytest
from lsprotocol import types

from specd.lsp import postprocess
from specd.lsp.documents import index_to_units

from .inprocess import Editor
from .lsp_helpers import inline, inline_text, open_doc

URI = "file:///work/project/fib.py"
FIB = "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"
BODY = FIB[len("def fib(n):"):]  # the text after a cursor at the end of line 1
ENCODINGS = [types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf32]


@pytest.mark.parametrize("raw, cut_short, shown", [
    # A FIM model that re-types the body it was shown; a plain model that never saw it (which first adds a line).
    (BODY.rstrip("\n"), False, ""),
    ('\n    """The n-th Fibonacci number."""' + BODY.rstrip("\n"), False, '\n    """The n-th Fibonacci number."""'),
    # The token limit cut the repeat inside its last line.
    ("\n    if n < 2:\n        return n\n    return fib(n", True, ""),
    ("\n    # base case\n    if n < 2:\n        ret", True, "\n    # base case"),
    # Re-typed with other blanks and line ends: still the same lines.
    ("\r\n    if  n < 2:\r\n\treturn n", False, ""),
    ("\n\n    if n < 2:\n\n        return n", False, ""),
])
def test_a_suggestion_is_cut_where_it_starts_repeating_the_lines_below(raw, cut_short, shown):
    assert postprocess.clean(raw, BODY, "block", cut_short=cut_short) == shown


@pytest.mark.parametrize("raw, suffix, cut_short, shown", [
    # Only a cut-short last line may be a start of the line it copies, and never as the only line.
    ("\n    if n < 2:\n        ret", BODY, False, "\n    if n < 2:\n        ret"),
    ("1", " + 2\n1 + 2\n", True, "1"),
    # A repeat must run to the end of the suggestion: what follows a copied line is new text.
    ("\n    if n < 2:\n        return 0", BODY, False, "\n    if n < 2:\n        return 0"),
    # Re-typing the rest of the cursor's line and the lines below it is a repeat too.
    ("foo()\nbar()", "foo()\nbar()\n", False, ""),
    ("x = 1", "\nx = 1\n", False, ""),
    # A line that only closes something may close the suggestion's own block: not a repeat on its own.
    ("if (y) {\n  bar();\n}", "\n}\n", False, "if (y) {\n  bar();\n}"),
    ("if y then\n  bar()\nend", "\nend\n", False, "if y then\n  bar()\nend"),
    ("bar();\n}\n\nfunction next() {", "\n}\n\nfunction next() {\n  x\n}\n", False, "bar();"),
])
def test_what_is_not_a_repeat_is_kept(raw, suffix, cut_short, shown):
    assert postprocess.clean(raw, suffix, "block", cut_short=cut_short) == shown


@pytest.mark.parametrize("finish_reason", ["stop", "length"])
def test_ghost_text_does_not_duplicate_the_body_below_the_cursor(finish_reason):
    retyped = BODY.rstrip("\n") if finish_reason == "stop" else BODY[:30]
    editor = Editor(lambda payload: (retyped, finish_reason), mode="block")
    editor.open(URI, FIB)
    assert editor.inline(URI, types.Position(0, 11)).items == []
    assert editor.daemon.payloads[0]["suffix"] == BODY


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_buffer_with_an_unpaired_surrogate_still_gets_completions(encoding):
    editor = Editor(lambda payload: ("x", "stop"), encoding=encoding)
    lines = ["s = '\ud83d' + t", "u = '\udc00'"]
    editor.open(URI, "\n".join(lines))
    for line, text in enumerate(lines):
        position = types.Position(line, index_to_units(text, len(text), encoding))  # the end of the line
        found = editor.inline(URI, position)
        assert [item.insert_text for item in found.items] == ["x"], editor.logged
        here = found.items[0].range.start
        assert editor.find(URI, here)[1] == editor.find(URI, position)[1]
    # The daemon refuses text that is not Unicode; it gets U+FFFD in the surrogate's place.
    assert editor.daemon.payloads[0]["prefix"] == "s = '\ufffd' + t"
    assert editor.daemon.payloads[1]["prefix"] == "s = '\ufffd' + t\nu = '\ufffd'"


# ---- against the real daemon (tiny random model) ---------------------------------------------------------------


@pytest.fixture
def specd_home(real_daemon_home, monkeypatch):
    monkeypatch.setenv("SPECD_HOME", str(real_daemon_home))
    return real_daemon_home


EMOJI_LINES = ["s = '😀😀😀😀", "# 中文中文中文", "name = 'Zoë ✓ 中", "😀", "é"]


@pytest.mark.parametrize("max_tokens", [3, 8])
async def test_ghost_text_never_shows_half_a_character(start_lsp, max_tokens):
    client = await start_lsp(init_options={"debounceMs": 0, "maxTokens": max_tokens})
    shown = []
    for i, line in enumerate(EMOJI_LINES):
        uri = f"file:///work/project/emoji{i}.py"
        open_doc(client, uri, line)
        shown.append(inline_text(await inline(client, uri, (0, len(line.encode("utf-16-le")) // 2))))
    assert not any("\ufffd" in text for text in shown), shown


@pytest.mark.parametrize("line, column, reply, shown", [
    ("    return a", 11, "a + b", ""),  # `return |a`: glued to `a` (`a + ba`)
    ("    result = compute(x)", 13, "a + b", ""),
    ("    result = compute(x)", 13, "await ", "await "),  # a blank parts them
    ("    result = compute(x)", 13, "self.", "self."),
    ("    x = f(a, b)", 14, "a + b", "a + b"),  # before a closer
    ("    return a", 12, "a + b", "a + b"),  # the end of the line
])
def test_a_suggestion_is_never_glued_to_the_word_after_the_cursor(line, column, reply, shown):
    editor = Editor(lambda payload: (reply, "stop"))
    editor.open(URI, f"def f(a, b):\n{line}\n")
    assert inline_text(editor.inline(URI, types.Position(1, column))) == shown
