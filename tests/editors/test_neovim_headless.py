"""A real Neovim (0.7 API only) loads editor-configs/neovim/specd-0.7.lua itself, which starts a real
`specd lsp`, which asks a real daemon: the path a Neovim 0.7-0.11 user gets."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import EDITOR_CONFIGS

pytestmark = pytest.mark.slow

NVIM = shutil.which("nvim")

DRIVE = r"""
local result = {}
local function finish()
  local f = io.open(OUT, "w"); f:write(vim.fn.json_encode(result)); f:close()
  vim.cmd("qa!")
end

dofile(SNIPPET)
vim.cmd("edit " .. vim.fn.fnameescape(FILE))
vim.bo.filetype = "python"  -- -u NONE: no filetype detection, so set it as detection would
local bufnr = vim.api.nvim_get_current_buf()

local client
result.attached = vim.wait(60000, function()
  for _, c in pairs(vim.lsp.buf_get_clients(bufnr)) do
    if c.name == "specd" and c.server_capabilities then client = c; return true end
  end
  return false
end, 50)
if not result.attached then return finish() end
result.omnifunc = vim.bo[bufnr].omnifunc

-- A real edit, so Neovim sends didChange itself; the request below then carries the real bufnr,
-- which makes 0.7 flush that change first.
vim.api.nvim_buf_set_lines(bufnr, 4, 5, false, { "        data = json.load(f)", "        return " })
local function call(method, params)
  local responses, err = vim.lsp.buf_request_sync(bufnr, method, params, 120000)
  if not responses then return { error = tostring(err) } end
  local r = responses[client.id] or {}
  return { result = r.result, error = r.err and vim.inspect(r.err) or nil }
end
result.completion = call("textDocument/completion", {
  textDocument = { uri = vim.uri_from_bufnr(bufnr) }, position = { line = 5, character = 15 } })
result.status = call("workspace/executeCommand", { command = "specd.status", arguments = {} })
result.server_text = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
finish()
"""


@pytest.mark.skipif(NVIM is None, reason="nvim not installed (CI installs it: apt-get install -y neovim)")
def test_neovim_07_snippet_gets_completions_from_specd(running_daemon, tmp_path):
    state, _, env = running_daemon
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The snippet runs plain `specd`: make sure that is this checkout, with this interpreter.
    wrapper = bin_dir / "specd"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m specd.daemon.cli "$@"\n')
    wrapper.chmod(0o755)
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    source = project / "store.py"
    source.write_text("import json\n\n\ndef load(path):\n    with open(path) as f:\n        pass\n")
    out = tmp_path / "result.json"
    script = tmp_path / "drive.lua"
    script.write_text(f"SNIPPET = {json.dumps(str(EDITOR_CONFIGS / 'neovim' / 'specd-0.7.lua'))}\n"
                      f"FILE = {json.dumps(str(source))}\nOUT = {json.dumps(str(out))}\n" + DRIVE)
    run_env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "XDG_STATE_HOME": str(tmp_path / "xdg"),
               "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    done = subprocess.run([NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-c", f"luafile {script}"],
                          env=run_env, capture_output=True, text=True, timeout=300, cwd=project)
    assert out.exists(), f"nvim stopped early: {done.stdout}{done.stderr}"
    result = json.loads(out.read_text())

    assert result["attached"], "specd lsp never attached to the buffer"
    assert result["omnifunc"] == "v:lua.vim.lsp.omnifunc"
    completion = result["completion"]
    assert completion.get("error") is None, completion
    assert completion["result"]["isIncomplete"] is True
    status = result["status"]
    assert status.get("error") is None, status
    server = status["result"]
    # The snippet's settings reached the server through workspace/configuration ("line" is not the default).
    assert server["settings"]["mode"] == "line" and server["settings"]["maxTokens"] == 64
    assert server["requests"] >= 1
    assert "error" not in server["daemon"], server["daemon"]
    assert server["daemon"]["requests_served"] >= 1
    for item in completion["result"]["items"]:
        assert item["detail"] == "specd" and "\n" not in item["textEdit"]["newText"]
