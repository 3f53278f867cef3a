"""A real Emacs loads editor-configs/emacs/specd.el from the user's init file, starts `specd lsp` through
the client that file sets up, and completes a line of a Python file: what an Emacs user sees.

eglot (Debian 12: emacs 28.2 + elpa-eglot 1.9; built into Emacs 29) runs in CI. The lsp-mode path (ghost
text) needs lsp-mode 9.0.1 or later, which is in neither Debian 12 (elpa-lsp-mode 8.0), PyPI nor npm: its
test runs where Emacs can load lsp-inline-completion.el, or with SPECD_TEST_LSP_MODE naming a checkout of
lsp-mode, and otherwise skips saying so.

`emacs --batch` reads no init file and activates no packages; the command below does both, in the order
Emacs's startup does (packages, then ~/.emacs.d/init.el), with HOME in a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from .conftest import EDITOR_CONFIGS
from .real_editors import COMPLETED, COMPLETED_LINE, REPLY, TYPED, python_project, run_editor, specd_on_path
from .real_editors import answering_daemon  # noqa: F401  (a fixture)

EMACS = shutil.which("emacs")
DRIVERS = Path(__file__).parent / "emacs"
LSP_MODE_DIR = os.environ.get("SPECD_TEST_LSP_MODE")

pytestmark = pytest.mark.skipif(EMACS is None, reason="emacs is not installed (CI: apt-get install -y emacs-nox elpa-eglot)")

# What Emacs may say in *Messages* during a clean session; anything else (a warning, an error, a server's
# window/showMessage, which eglot shows as "[eglot] Server reports ...") fails the eglot test.
CLEAN_MESSAGES = re.compile(r"Loading .*\.\.\.(done)?|\[eglot\] (Connected! Server `specd' .*|Waiting in background .*)")


async def run_emacs(tmp_path: Path, env: dict, drive: str, load_path: tuple[str, ...] = ()) -> dict:
    source = python_project(tmp_path)
    home = tmp_path / "home"
    (home / ".emacs.d").mkdir(parents=True)
    init = home / ".emacs.d" / "init.el"
    init.write_text(f"(load {json.dumps(str(EDITOR_CONFIGS / 'emacs' / 'specd.el'))})\n")  # step 2 of the README
    out = tmp_path / "emacs.json"
    startup = "(progn (package-activate-all)" + "".join(f" (push {json.dumps(d)} load-path)" for d in load_path) + ")"
    run_env = {**specd_on_path(tmp_path, env), "HOME": str(home), "SPECD_EMACS_FILE": str(source),
               "SPECD_EMACS_OUT": str(out)}
    code, output = await run_editor([EMACS, "--batch", "--eval", startup, "-l", str(init), "-l", str(DRIVERS / drive)],
                                    run_env, source.parent)
    assert out.exists(), f"emacs stopped early (exit {code}):\n{output}"
    result = json.loads(out.read_text())
    assert "lisp-error" not in result, f"{result['lisp-error']}\n{output}"
    return result


async def test_emacs_eglot_completes_the_line_with_specd_el(answering_daemon, tmp_path):
    daemon, env = answering_daemon
    result = await run_emacs(tmp_path, env, "specd-test-eglot.el")
    if "no-eglot" in result:
        pytest.skip(f"{result['no-eglot']} (apt-get install -y elpa-eglot; Emacs 29 has it built in)")

    assert result["major-mode"] == "python-mode"
    assert result["managed"], "eglot never connected"
    # M-x eglot picked specd.el's entry, not a Python server of eglot's own list.
    assert result["server-command"] == ["specd", "lsp"]
    # C-c s completed the typed line: "js" became "json.load(f)", the rest of the file is untouched.
    assert result["buffer"] == COMPLETED
    assert result["before-point"] == COMPLETED_LINE
    # Where point rested (after the indentation of the `pass` line), specd.el's hint had the daemon read the
    # prompt first. Then the server saw the typed text (eglot's didChange) and specd-eglot-settings
    # (initializationOptions). (The server may prefetch after the accept: a request on the completed line.)
    assert len(daemon.requests) >= 2, daemon.requests
    warm_up, request = daemon.requests[:2]
    assert warm_up["prefill_only"] is True and warm_up["prefix"].endswith("\n        ")
    assert warm_up["suffix"].startswith("pass\n")
    assert "prefill_only" not in request
    assert request["prefix"].endswith(TYPED) and REPLY not in request["prefix"]
    assert (request["mode"], request["max_tokens"]) == ("line", 64)

    events = result["events"]
    assert ":error" not in events and "window/showMessage" not in events, events
    # No error or warning from the server (window/logMessage or showMessage, MessageType 1 or 2): an unknown
    # key in specd-eglot-settings would be one.
    assert re.search(r":type [12] :message", events) is None, events
    assert "Traceback" not in result["stderr"] and "ERROR" not in result["stderr"], result["stderr"]
    unexpected = [line for line in result["messages"].splitlines() if not CLEAN_MESSAGES.fullmatch(line)]
    assert not unexpected, result["messages"]


async def test_emacs_lsp_mode_ghost_text_with_specd_el(answering_daemon, tmp_path):
    daemon, env = answering_daemon
    load_path = (LSP_MODE_DIR, os.path.join(LSP_MODE_DIR, "clients")) if LSP_MODE_DIR else ()
    result = await run_emacs(tmp_path, env, "specd-test-lsp-mode.el", load_path)
    if "no-lsp-mode" in result:
        pytest.skip("lsp-mode 9.0.1+ (lsp-inline-completion.el) is not installable here: Debian 12 has "
                    "elpa-lsp-mode 8.0, MELPA is not reachable; set SPECD_TEST_LSP_MODE to an lsp-mode checkout")

    assert result["workspaces"] == ["specd"], result
    # specd.el turned on lsp-mode's inline completion, shown after a short pause in typing (an idle timer,
    # which batch Emacs does not run: C-c s below asks at once).
    assert result["enabled"] is True and result["idle-delay"] == 0.3
    # C-c s showed the suggestion as ghost text: an overlay, with the buffer itself unchanged ...
    assert result["ghost-text"] and result["buffer-shown"] == COMPLETED.replace(COMPLETED_LINE, TYPED)
    # ... and C-Return accepted it.
    assert result["buffer"] == COMPLETED
    assert result["before-point"] == COMPLETED_LINE
    assert daemon.requests and daemon.requests[0]["prefix"].endswith(TYPED)
    specd_errors = [line for line in result["messages"].splitlines()
                    if "specd" in line and re.search(r"error|fail|warn", line, re.I)]
    assert not specd_errors, result["messages"]
