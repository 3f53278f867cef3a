"""The server's pure parts, without a process: line store, cleaning, typed-ahead, pace, settings, context."""

from __future__ import annotations

import random

import pytest
from lsprotocol import types

from specd.lsp import config, context, postprocess
from specd.lsp.debounce import TypingPace
from specd.lsp.documents import Document, index_to_units, split_lines, units_to_index
from specd.lsp.typed_ahead import TypedAhead

ENCODINGS = [types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf32]
ALPHABET = ["a", "b", " ", "\n", "\r\n", "é", "中", "😀", "(", ")"]


def _offset(text: str, line: int, column: int) -> int:
    lines = split_lines(text)
    return sum(len(l) for l in lines[:line]) + column


def test_split_lines_ends_lines_as_lsp_does():
    rng = random.Random(3)
    for _ in range(500):
        text = "".join(rng.choice(["a", "\r", "\n", "\r\n", "\x0b", "\u2028", "é"]) for _ in range(rng.randrange(12)))
        lines = split_lines(text)
        assert "".join(lines) == text
        for line in lines[:-1]:
            body = line[:-2] if line.endswith("\r\n") else line[:-1]
            assert line.endswith(("\r", "\n")) and "\r" not in body and "\n" not in body
        assert "\r" not in lines[-1] and "\n" not in lines[-1]
        assert len(lines) == text.count("\n") + text.count("\r") - text.count("\r\n") + 1
    # a long unterminated last line (a minified file) is split in one pass, not rescanned from each character
    assert split_lines("x" * 1_000_000) == ["x" * 1_000_000]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_random_incremental_edits_match_whole_text_edits(encoding):
    rng = random.Random(7)
    text = "".join(rng.choice(ALPHABET) for _ in range(200))
    doc = Document("file:///t", "python", 1, split_lines(text))
    for _ in range(300):
        lines = split_lines(text)
        points = []
        for _ in range(2):
            line = rng.randrange(len(lines))
            body = lines[line].rstrip("\r\n")
            points.append((line, rng.randrange(len(body) + 1)))
        start, end = sorted(points)
        new = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(4)))
        rng_range = types.Range(doc.client_position(*start, encoding), doc.client_position(*end, encoding))
        doc.apply(types.TextDocumentContentChangePartial(range=rng_range, text=new), encoding)
        text = text[: _offset(text, *start)] + new + text[_offset(text, *end):]
        assert doc.text() == text


def test_columns_in_each_encoding():
    line = "s = '😀中é"
    assert [index_to_units(line, 8, e) for e in ENCODINGS] == [len(line.encode()), 9, 8]
    for e in ENCODINGS:
        assert units_to_index(line, index_to_units(line, 8, e), e) == 8
    # A column inside a surrogate pair or a UTF-8 sequence lands before the character, never after.
    assert units_to_index(line, 6, types.PositionEncodingKind.Utf16) == 5
    assert units_to_index(line, 7, types.PositionEncodingKind.Utf8) == 5


def test_windows_are_cut_by_size_at_line_boundaries():
    doc = Document("file:///t", "python", 1, split_lines("aaaa\nbbbb\ncccc\ndddd\neeee\n"))
    assert doc.prefix(2, 2, 11) == "bbbb\ncc" and doc.prefix(2, 2, 12) == "aaaa\nbbbb\ncc" and doc.prefix(2, 2, 4) == "cc"
    assert doc.suffix(2, 2, 12) == "cc\ndddd\n" and doc.suffix(2, 2, 1) == "c"
    assert doc.prefix(0, 0, 10) == "" and doc.suffix(5, 0, 10) == ""


def _type(doc: Document, line: int, column: int, text: str) -> list[str]:
    """Type `text` at (line, column) one character at a time; the prefix window after each keystroke."""
    windows = []
    for char in text:
        here = types.Position(line, column)
        doc.apply(types.TextDocumentContentChangePartial(range=types.Range(here, here), text=char),
                  types.PositionEncodingKind.Utf32)
        line, column = (line + 1, 0) if char == "\n" else (line, column + 1)
        windows.append(doc.prefix(line, column, 6000))
    return windows


def test_typing_in_a_long_file_keeps_the_window_start_for_dozens_of_lines():
    # The daemon reuses its cache only up to the first token that changed: a window whose first line moved
    # costs the whole prompt's prefill again. Cut at the farthest line that fits, it moved every ~40 characters.
    rng = random.Random(3)
    words = ["self", "value", "return", "result", "=", "(", ")", "items", "for", "in", "if", "not", "None"]
    line_of = lambda: "    " * rng.randint(1, 3) + " ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) + "\n"
    lines = [line_of() for _ in range(2000)]
    doc = Document("file:///long.py", "python", 1, lines + [""])
    typed = "".join(line_of() for _ in range(40))  # ~1,400 characters: ~40 lines pushed out of the window
    windows = _type(doc, 1000, 0, typed)
    moves = sum(a[:100] != b[:100] for a, b in zip(windows, windows[1:]))
    assert moves <= 2, moves
    before_cursor = doc.text()[: _offset(doc.text(), 1040, 0)]
    for w in windows[-1:] + windows[::97]:  # whole lines, at most a quarter of the budget given up
        assert 4400 <= len(w) <= 6000
    start = len(before_cursor) - len(windows[-1])
    assert before_cursor[start:] == windows[-1] and before_cursor[start - 1] == "\n"


def test_the_window_start_moves_by_at_most_a_quarter_of_what_it_holds():
    # A line too long for the window stops it early; the window must not then give up the little it holds.
    doc = Document("file:///wide.py", "python", 1, ["x" * 5950 + "\n"] * 100 + ["a = 1\n"] * 28 + ["y = 2"])
    assert doc.prefix(128, 5, 6000) == "a = 1\n" * 24 + "y = 2"


def test_a_window_that_reaches_the_document_start_is_not_cut():
    doc = Document("file:///short.py", "python", 1, split_lines("import os\n" * 50))
    assert _type(doc, 50, 0, "x = 1\n")[-1] == "import os\n" * 50 + "x = 1\n"


def test_postprocess():
    assert postprocess.clean("'hi')", ")\n", "line") == "'hi'"
    assert postprocess.clean("a])", "])", "line") == "a"
    assert postprocess.clean("f(x))", ")", "line") == "f(x)"
    assert postprocess.clean(")(a)", ")", "line") == ")(a)"  # the final `)` closes its own `(`
    assert postprocess.clean("x = 1\nmore", "", "line") == "x = 1"
    assert postprocess.clean("    return x\n", "\n    return x\n", "block") == ""
    # The second line re-types the line below the cursor: accepting it would duplicate that line.
    assert postprocess.clean("    y = 2\n    return x", "\n    return x\n", "block") == "    y = 2"
    assert postprocess.clean("  \n ", "", "block") == ""


@pytest.mark.parametrize("before, text, rest, line, inserted_only", [
    ("  return Math.max(", "a, b);", ");", "  return Math.max(a, b);", "a, b"),
    ('print(f"hello {', 'n}!")', '}")', 'print(f"hello {n}!")', "n"),
    ("y = x['", "b']", "']", "y = x['b']", "b"),
    ('x = "', 'hello"', '"', 'x = "hello"', "hello"),
    ("if (a", " && b) {", ") {", "if (a && b) {", " && b"),
    ("foo(\n    a, b", ", c)", ")", "    a, b, c)", ", c"),  # the `(` opened a line above
    ("g(", "a(b), c)", ")", "g(a(b), c)", "a(b), c"),
    # More after the auto-closed run: only the run is replaced (a user's trial: `end="x")")  # note`).
    ('print("x", end="', 'x")', '")  # note', 'print("x", end="x")  # note', "x"),
    ("  return Math.max(", "a, b);", "); x = 1", "  return Math.max(a, b); x = 1", "a, b"),
    ("foo(bar(", "1)", "), 2", "foo(bar(1)), 2", None),
    # Kept: the completion's closer closes its own opener, or the completion does not retype the rest.
    ("foo(bar(", "1)", ")", "foo(bar(1))", None),
    ("foo(\n    a, b", ", bar(c)", ")", "    a, b, bar(c))", None),
    ("f(", "x", ")", "f(x)", None),
    ("f(", "x\ny)", ")", "y))", None),  # only the first line may retype the rest
])
def test_a_suggestion_that_retypes_the_closers_after_the_cursor_replaces_them(before, text, rest, line,
                                                                              inserted_only):
    replaced = postprocess.rest_to_replace(before, text, rest)
    assert (before + text + rest[replaced or 0:]).split("\n")[-1] == line
    assert (replaced is None) == (inserted_only is None)
    if inserted_only is not None:  # what a client that can only insert at the cursor gets
        assert postprocess.cut_before_rest(text, rest[:replaced]) == inserted_only


def test_typed_ahead_follows_matching_typing_and_reports_the_accept():
    typed = TypedAhead()
    typed.remember("u", (0, 4), "ab\ncd")
    assert typed.remainder("u", (0, 4)) == "ab\ncd"
    assert typed.edited("u", (0, 4), (0, 4), "ab") is None
    assert typed.remainder("u", (0, 6)) == "\ncd"
    assert typed.edited("u", (0, 6), (0, 6), "\ncd") == (1, 2)  # accepted: cursor after it
    assert typed.remainder("u", (1, 2)) is None
    typed.remember("u", (0, 4), "abc")
    typed.edited("u", (0, 4), (0, 4), "x")
    assert typed.remainder("u", (0, 5)) is None


def test_typing_pace_waits_longer_for_fast_typists_from_the_last_key():
    pace = TypingPace()
    assert pace.delay("u", 0.1, now=0.0) == pytest.approx(0.1)
    for i in range(6):
        pace.keystroke("u", i * 0.2)
    assert pace.delay("u", 0.1, now=1.0) == pytest.approx(0.3)  # 1.5 x 0.2 s gaps
    assert pace.delay("u", 0.1, now=1.25) == pytest.approx(0.05)
    assert pace.delay("u", 0.0, now=1.0) == 0.0


def test_settings_merge_reports_bad_values_and_keeps_the_old_ones():
    settings, problems = config.merge(config.Settings(), {"debounceMs": 20, "maxTokens": "many", "mode": "x",
                                                          "excludedLanguages": ["md"], "colour": 1})
    assert (settings.debounce_ms, settings.max_tokens, settings.mode, settings.excluded_languages) == (20, 64, "auto", ("md",))
    assert len(problems) == 3 and any('maxTokens="many"' in p.message for p in problems)
    assert [p.unknown_key for p in problems if "colour" in p.message] == [True]
    assert not settings.allows("md") and settings.allows("python")
    assert config.merge(settings, "yes")[1] == [config.Problem("specd settings must be an object, got str; ignored")]


def test_settings_null_is_false_for_switches_and_draft_tokens_stay_within_the_daemons_limit():
    # eglot sends Emacs's nil as null: `:warmUp nil` (editor-configs/emacs/README.md) means off
    settings, problems = config.merge(config.Settings(), {"warmUp": None, "enable": None, "draftTokens": 300})
    assert (settings.warm_up, settings.enable, settings.draft_tokens) == (False, False, None)
    assert [p.message for p in problems] == ["specd setting draftTokens=300 must be at most 256; kept null"]
    assert config.merge(config.Settings(), {"draftTokens": 256})[0].draft_tokens == 256


def test_settings_the_editor_side_owns_are_no_problem():
    # What VS Code answers for the `specd` section: the extension's own keys come with the server's.
    section = {"enable": True, "serverPath": "/home/u/.local/bin/specd", "trace": {"server": "messages"},
               "debounceMs": 40}
    settings, problems = config.merge(config.Settings(), section)
    assert problems == [] and settings.debounce_ms == 40


def test_context_prefers_imported_then_nearby_documents_within_budget():
    def doc(uri, text, lang="python"):
        return Document(uri, lang, 1, split_lines(text))

    current = doc("file:///p/src/main.py", "import util\n\n" + "x = 1\n" * 2000 + "far = near\n")
    others = [doc("file:///p/src/near.py", "N = 1\n" * 100), doc("file:///p/lib/util.py", "def u(): ...\n"),
              doc("file:///x/far.py", "F = 1\n"), doc("file:///p/src/readme.md", "# r\n", "markdown")]
    got = context.snippets(current, [current, *others], budget=300)
    assert [s["path"] for s in got] == ["/p/lib/util.py", "/p/src/near.py", "/x/far.py"]
    assert sum(len(s["text"]) for s in got) <= 300


@pytest.mark.parametrize("body, shown", [
    (b'{"error": "busy"}', "HTTP 503 busy"),  # another server on the daemon's old port
    (b'{"error": {"message": "no"}}', "HTTP 503 no"),
    (b'[1]', "HTTP 503"),
])
def test_an_error_body_of_any_shape_is_a_daemon_error(body, shown):
    from specd.lsp.client import DaemonError, _decode

    with pytest.raises(DaemonError) as raised:
        _decode(503, body)
    assert str(raised.value).endswith(shown)


def test_the_client_waits_past_the_daemons_request_timeout(monkeypatch):
    """By its request_timeout the daemon answers (a cut answer or a 504): a shorter wait threw finished answers away
    (a first completion in a 20,000-line file on a busy machine took 30.03 s against the old fixed 30 s)."""
    from specd.daemon import discovery
    from specd.lsp import locate
    from specd.lsp.client import DaemonClient

    state = {"url": "http://127.0.0.1:7411/", "pid": 1, "status": "ready", "settings": {"request_timeout": 60}}
    monkeypatch.setattr(discovery, "live_state", lambda paths: state)
    monkeypatch.setattr(discovery, "read_token", lambda path: "t")
    found = locate.find()
    assert found == locate.Endpoint("http://127.0.0.1:7411", "t", 60.0)
    client = DaemonClient(timeout_s=30)
    assert client._wait_s(found) == 65.0
    assert client._wait_s(locate.Endpoint("u", "t", 10.0)) == client._wait_s(locate.Endpoint("u", "t")) == 30.0
    state["settings"] = {"request_timeout": "soon"}
    assert locate.find().request_timeout is None
