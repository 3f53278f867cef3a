"""A real editor's LSP client: headless Neovim drives `specd lsp` against the real daemon.

This is the protocol as Neovim's own client speaks it (incremental didChange after an emoji, a raw
textDocument/inlineCompletion, $/cancelRequest on a timeout), with a client the script starts itself. The
shipped editor-configs/neovim/specd-0.7.lua is what tests/editors/test_neovim_headless.py runs.

Skips when `nvim` is not installed (CI installs it: `apt-get install -y neovim`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import SERVER_COMMAND
from .lsp_helpers import eventually
from .real_daemon import cancelled_by_disconnect, long_document, served

NVIM = shutil.which("nvim")
SCRIPT = Path(__file__).parent / "nvim" / "drive_specd.lua"


@pytest.mark.skipif(NVIM is None, reason="nvim is not installed (apt-get install -y neovim)")
async def test_neovim_edits_completes_and_cancels(real_daemon_home, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECD_HOME", str(real_daemon_home))
    out = tmp_path / "nvim.json"
    env = dict(os.environ, SPECD_HOME=str(real_daemon_home), SPECD_NVIM_OUT=str(out),
               SPECD_LSP_CMD=json.dumps(SERVER_COMMAND), SPECD_SLOW_LINES=str(long_document().count("\n")),
               XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_DATA_HOME=str(tmp_path / "data"))
    served_before, cancelled_before = served(), cancelled_by_disconnect()
    done = subprocess.run([NVIM, "--headless", "-u", "NONE", "-c", f"luafile {SCRIPT}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert out.exists(), done.stderr
    result = json.loads(out.read_text())
    assert "lua_error" not in result, result["lua_error"]
    assert result["initialized"] and result["inline_provider"]
    assert result["buffer"] == ["def add(a, b):", "    x = '😀' + ret"]
    assert result["completion_incomplete"] is True
    assert result["inline_error"] is None
    # The tiny model's text may clean up to nothing; both requests then agree on that.
    assert result["completion_items"] == result["inline_items"] <= 1
    if result["inline_items"]:
        assert result["inline_range"]["start"] == {"line": 1, "character": 18}
    assert result["slow_result"] and "timeout" in str(result["slow_error"]), (result["slow_result"], result["slow_error"], result.get("slow_debug"))
    await eventually(lambda: cancelled_by_disconnect() == cancelled_before + 1, "the daemon cancelled the job")
    assert served() > served_before
