"""`specd complete` prints what an editor would insert: the language server's cleaning (lsp/postprocess.py) applied
to the daemon's text, and the language server's mode when none is given. The daemon is the LSP tests' stand-in
(tests/lsp/fake_daemon.py), which answers the text a test chooses."""

from __future__ import annotations

import asyncio

import pytest

from specd.daemon.cli.main import main
from tests.lsp.fake_daemon import FakeDaemon

SOURCE = "def read_lines(path):\n    pass\n"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECD_HOME", str(tmp_path))
    (tmp_path / "state").mkdir()
    return tmp_path


async def complete(capsys, reply: str, *argv: str, stdin: str | None = None, monkeypatch=None):
    daemon = await FakeDaemon(lambda body: reply).start()
    try:
        if stdin is not None:
            import io
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = await asyncio.to_thread(main, ["complete", *argv])
    finally:
        await daemon.stop()
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err, daemon.requests[-1]


async def test_closers_already_after_the_cursor_are_not_printed_again(home, capsys):
    (home / "a.py").write_text(SOURCE)
    where = [str(home / "a.py"), "--line", "1", "--column", "20", "--mode", "line"]  # def read_lines(path|):
    out, err, _ = await complete(capsys, "):", *where)
    assert out == ""  # `):` follows the cursor already: an editor inserts nothing
    assert "nothing to insert" in err
    out, _, _ = await complete(capsys, ", encoding):", *where)
    assert out == ", encoding\n"
    out, _, _ = await complete(capsys, "):\n    pass", *where)  # line mode: the first line only
    assert out == ""


async def test_a_completion_that_replaces_the_rest_of_the_line_says_so(home, capsys):
    (home / "a.py").write_text('print(f"{}")\n')
    out, err, _ = await complete(capsys, 'n}!")', str(home / "a.py"), "--line", "1", "--column", "10")
    assert out == 'n}!")\n' and 'replaces }") after the cursor' in err


async def test_lines_that_repeat_the_text_below_are_cut(home, capsys):
    (home / "b.py").write_text("def f(x):\n    \n    return y\n")
    out, _, _ = await complete(capsys, "y = x + 1\n    return y\n", str(home / "b.py"), "--line", "2", "--column", "5",
                               "--mode", "block")
    assert out == "y = x + 1\n"


async def test_the_mode_is_the_language_servers_unless_given(home, capsys, monkeypatch):
    _, _, sent = await complete(capsys, " name in names:", stdin="names = [1]\nfor ", monkeypatch=monkeypatch)
    assert sent["mode"] == "line"  # text before the cursor on its line: the rest of the line
    _, _, sent = await complete(capsys, "x = 1", stdin="def f():\n    ", monkeypatch=monkeypatch)
    assert sent["mode"] == "block"  # an empty line: a block
    _, _, sent = await complete(capsys, "x", "--mode", "none", stdin="for ", monkeypatch=monkeypatch)
    assert sent["mode"] is None  # the model's text as it comes, up to --max-tokens


async def test_json_prints_the_daemons_answer_as_it_came(home, capsys):
    (home / "a.py").write_text(SOURCE)
    out, _, _ = await complete(capsys, "):", str(home / "a.py"), "--line", "1", "--column", "20", "--json")
    assert '"text": "):"' in out
