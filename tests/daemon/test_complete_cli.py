"""`specd complete` prints what an editor would insert: the language server's cleaning (lsp/postprocess.py) applied
to the daemon's text, and the language server's mode when none is given; `--mode none` stops where the text runs
into the lines below the cursor; an empty text is refused with a clear message; the command imports neither the
language server's protocol stack nor torch. The daemon is the LSP tests' stand-in
(tests/lsp/fake_daemon.py), which answers the text a test chooses."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import subprocess
import sys

import pytest

from specd.daemon.cli.main import main
from tests.lsp.fake_daemon import FakeDaemon

from .conftest import specd_env

SOURCE = "def read_lines(path):\n    pass\n"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECD_HOME", str(tmp_path))
    (tmp_path / "state").mkdir()
    return tmp_path


async def run_complete(capsys, reply: str, *argv: str, stdin: str | None = None, monkeypatch=None):
    """(exit code, stdout, stderr, the requests the daemon got) of `specd complete ARGV` in this process."""
    daemon = await FakeDaemon(lambda body: reply).start()
    try:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = await asyncio.to_thread(main, ["complete", *argv])
    finally:
        await daemon.stop()
    out, err = capsys.readouterr()
    return code, out, err, daemon.requests


async def complete(capsys, reply: str, *argv: str, stdin: str | None = None, monkeypatch=None):
    """(stdout, stderr, the request) of a `specd complete ARGV` that succeeds."""
    code, out, err, requests = await run_complete(capsys, reply, *argv, stdin=stdin, monkeypatch=monkeypatch)
    assert code == 0, err
    return out, err, requests[-1]


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


# ---- --mode none: the text is cut where it re-types the lines below the cursor -------------------------------

async def test_mode_none_stops_where_the_text_runs_into_the_next_line(home, capsys):
    (home / "a.py").write_text("x = 1\n\nprint(x)\n")
    where = [str(home / "a.py"), "--line", "2", "--mode", "none"]
    # The model wrote a line, then the line below the cursor again, then went on past it.
    code, out, err, _ = await run_complete(capsys, "y = 2\nprint(x)\nprint(y)\n", *where)
    assert code == 0, err
    assert out == "y = 2\n"
    code, out, _, _ = await run_complete(capsys, "y = 2\nz = 3\n", *where)  # nothing below is re-typed: all of it
    assert out == "y = 2\nz = 3\n"


async def test_mode_none_text_that_retypes_the_rest_of_the_line_inserts_nothing(home, capsys):
    (home / "a.py").write_text("total = add(a, b)\nprint(total)\n")
    where = [str(home / "a.py"), "--line", "1", "--column", "13", "--mode", "none"]  # total = add(|a, b)
    code, out, err, _ = await run_complete(capsys, "a, b)\nprint(total)\nprint(total * 2)\n", *where)
    assert code == 0 and out == ""
    assert "nothing to insert: the text repeats what follows the cursor" in err


async def test_mode_none_keeps_a_closing_line_that_may_end_its_own_block(home, capsys):
    # `}` alone is as likely the end of the completion's own block as a copy of the one below (lsp/postprocess.py).
    (home / "a.js").write_text("function f() {\n\n}\n")
    code, out, _, _ = await run_complete(capsys, "  if (x) {\n    y();\n  }\n", str(home / "a.js"), "--line", "2",
                                         "--mode", "none")
    assert code == 0 and out == "  if (x) {\n    y();\n  }\n"


# ---- an empty text: nothing to complete ------------------------------------------------------------------

@pytest.mark.parametrize("text, why", [("", "is empty"), ("\n  \n", "holds only whitespace")])
async def test_empty_stdin_is_refused_with_exit_code_2(home, capsys, monkeypatch, text, why):
    code, out, err, sent = await run_complete(capsys, "junk", stdin=text, monkeypatch=monkeypatch)
    assert code == 2 and out == "" and sent == []
    assert f"nothing to complete: the text from stdin {why}" in err and "give a FILE" in err


async def test_options_the_daemon_refuses_exit_with_code_2_and_its_message(home, capsys, monkeypatch):
    from aiohttp import web

    refusal = web.json_response({"error": {"message": "temperature must be in [0, 2]"}}, status=400)
    code, _, err, _ = await run_complete(capsys, refusal, "--temperature", "9", stdin="x = ", monkeypatch=monkeypatch)
    assert code == 2 and "400: temperature must be in [0, 2]" in err


async def test_an_empty_file_is_refused_with_exit_code_2(home, capsys):
    (home / "empty.py").write_text("")
    code, out, err, sent = await run_complete(capsys, "junk", str(home / "empty.py"), "--json")
    assert code == 2 and out == "" and sent == []
    assert f"nothing to complete: {home / 'empty.py'} is empty" in err


def test_help_states_what_an_empty_text_does(capsys):
    with pytest.raises(SystemExit):
        main(["complete", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "an empty text exits with code 2" in shown


def test_stdin_on_a_terminal_says_it_is_waiting_for_text(tmp_path):
    """`specd complete` typed alone used to wait silently for text on the terminal."""
    controller, terminal = pty.openpty()
    try:
        child = subprocess.Popen([sys.executable, "-m", "specd.daemon.cli", "complete"], stdin=terminal,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=specd_env(tmp_path), text=True)
        os.write(controller, b"\x04")  # Ctrl-D at a line's start: the end of the input, nothing typed
        out, err = child.communicate(timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)
    assert "reading the text to complete from the terminal; end it with Ctrl-D" in err, err
    assert child.returncode == 2 and "nothing to complete" in err and out == ""


def test_a_closed_stdin_is_a_clear_message_not_a_traceback(tmp_path):
    done = subprocess.run(["bash", "-c", 'exec "$0" -m specd.daemon.cli complete <&-', sys.executable],
                          env=specd_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == "specd: no text to complete: stdin is closed; give a FILE, or " \
        "pipe code in\n", done.stderr


# ---- a light command: no protocol stack, no torch ------------------------------------------------------------

HEAVY = ("aiohttp", "lsprotocol", "pygls", "torch")


async def test_complete_imports_neither_the_lsp_stack_nor_torch(home):
    (home / "a.py").write_text('print(f"{}")\n')
    daemon = await FakeDaemon(lambda body: 'n}!")').start()
    code = ("import sys\nfrom specd.daemon.cli.main import main\n"
            f"code = main(['complete', {str(home / 'a.py')!r}, '--line', '1', '--column', '10'])\n"
            f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))")
    try:
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], env=dict(os.environ),
                                       capture_output=True, text=True, timeout=120)
    finally:
        await daemon.stop()
    # The whole path ran (the language server's cleaning included: the note says what the text replaces).
    assert 'replaces }") after the cursor' in done.stderr, done.stderr
    assert done.stdout.splitlines() == ['n}!")', "0 []"]
