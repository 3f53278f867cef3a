"""`specd config <editor>`: the editor snippet for this machine, and `--write` to merge it into the editor.

The snippet goes to stdout (so it can be piped into a file), explanations to stderr. `--write` keeps the
user's comments and other settings, makes a backup, writes atomically, changes nothing on a second run and
refuses a file it cannot parse, leaving it untouched. The daemon's token is never written anywhere: settings
files get synced (VS Code Settings Sync) and shared in dotfile repositories; editors that need the token
read it from an environment variable instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePath

from specd.daemon.config import jsonc
from specd.daemon.process.state import live_state, read_token
from .client_config import CLIENTS, client_setup
from .editor_files import ChangedUnderUs, read_text, write_file
from specd.daemon.config.paths import get_paths
from specd.daemon.config.settings import SettingsError, load_settings

EDITORS = ("vscode", "cursor", "zed", "neovim", "helix", "emacs")
TOOLS = ("claude-code",)  # terminal tools with a settings file that --write merges into
# Installed as the data-only package specd.editor_configs (the repo's editor-configs/ folder).
EDITOR_CONFIGS = Path(next(iter(importlib.util.find_spec("specd.editor_configs").submodule_search_locations)))
ZED_KEY_ENV = "ZED_OPEN_AI_COMPATIBLE_EDIT_PREDICTION_API_KEY"
ZED_PROVIDER = "specd"  # Zed reads this provider's key from SPECD_API_KEY (its name upper-cased + _API_KEY)
ZED_MAX_OUTPUT_TOKENS = 64

# specd's FIM family (daemon/fim.py) -> Zed's `prompt_format` that writes the same markers.
ZED_PROMPT_FORMATS = {
    "qwen2.5-coder": "qwen",
    "starcoder": "star_coder",
    "codegemma": "code_gemma",
    "deepseek-coder": "deepseek_coder",
    "codellama": "code_llama",
    "codestral": "codestral",
}
# Model-name fragments -> FIM family, a guess for hub models whose tokenizer is not on this disk yet (a name
# tells nothing for sure: the embedded SmolLM2's GGUF tokenizer has no FIM tokens, though SmolLM's family shares
# StarCoder's vocabulary).
_NAME_FAMILIES = (
    ("qwen", "qwen2.5-coder"),
    ("starcoder", "starcoder"),
    ("santacoder", "starcoder"),
    ("codegemma", "codegemma"),
    ("deepseek", "deepseek-coder"),
    ("codellama", "codellama"),
    ("code-llama", "codellama"),
    ("codestral", "codestral"),
)


class ConfigError(RuntimeError):
    """Something the user must fix; the message says what."""


@dataclass(frozen=True)
class Facts:
    """What the snippets are filled with."""

    base_url: str  # http://127.0.0.1:PORT
    port: int
    model: str
    fim_family: str | None
    max_context: int
    token_file: Path
    running: bool
    specd_path: str
    # Where fim_family comes from: "served" (the running daemon's tokenizer), "tokenizer" (one on this disk),
    # "name" (a guess from the model's name) or "unknown".
    fim_source: str = "unknown"
    # SPECD_HOME as this shell sets it (absolute), which an editor's `specd lsp` must get too; None when unset
    specd_home: str | None = None


def _family_from_tokenizer(source: str | Path) -> str | None:
    from transformers import AutoTokenizer

    from specd.daemon.engine.fim import detect_template

    template = detect_template(AutoTokenizer.from_pretrained(source, local_files_only=True))
    return template.family if template else None


def _tokenizer_sources(model: str) -> list[str | Path]:
    """Where a tokenizer of `model` may already be on this disk: its folder, the folder specd converted an
    embedded model or a .gguf file into, the Hugging Face cache (hub ids)."""
    from specd.daemon.models.embedded import EMBEDDED

    path = Path(model).expanduser()
    if path.is_dir():
        return [path]
    stem = Path(EMBEDDED[model].gguf_name).stem if model in EMBEDDED else path.stem if path.suffix == ".gguf" else None
    if stem is not None:
        return sorted(get_paths().models_dir.glob(f"{stem}-*/tokenizer_config.json"))
    return [model] if model.count("/") == 1 else []


def local_fim_family(model: str) -> tuple[str | None, str]:
    """(FIM family or None, where that comes from: "tokenizer", "name" or "unknown") for `model` as settings name
    it, without a running daemon: from a tokenizer on this disk, else guessed from a hub id's name."""
    for source in _tokenizer_sources(model):
        folder = source.parent if isinstance(source, Path) and source.is_file() else source
        try:
            return _family_from_tokenizer(folder), "tokenizer"
        except (OSError, ValueError):
            continue
    if model.count("/") == 1 and not Path(model).expanduser().exists():  # a hub id not downloaded yet
        name = model.lower()
        family = next((family for fragment, family in _NAME_FAMILIES if fragment in name), None)
        if family is not None:
            return family, "name"
    return None, "unknown"


def fim_family(model: str) -> str | None:
    """The FIM family of `model` as far as this disk tells (see local_fim_family), or None."""
    return local_fim_family(model)[0]


def served_model_name(spec: str) -> str:
    """The name the daemon serves a model under (GET /v1/models): a folder's own name, else the spec."""
    return PurePath(spec).name if ("/" in spec and os.path.exists(spec)) else spec


def _daemon_status(state: dict, token_file: Path) -> dict:
    """The running daemon's /specd/v1/status: the settings it actually uses (flags and environment included)
    and, once loaded, its models (`fim_template` is what its tokenizer has); {} when it does not answer."""
    token = read_token(token_file)
    request = urllib.request.Request(state["url"].rstrip("/") + "/specd/v1/status",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            status = json.loads(response.read())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def gather_facts() -> Facts:
    """The Facts for this machine: settings.json and, when a daemon runs, its state and /specd/v1/status (its URL, port,
    token file, the model and context it uses, the FIM family its tokenizer has); otherwise the settings' host and port
    and the FIM family this disk tells (`local_fim_family`). Raises ConfigError for a settings.json that does not
    load."""
    paths = get_paths()
    try:
        settings = load_settings(paths.settings_file)
    except SettingsError as e:
        raise ConfigError(str(e)) from None
    state = live_state(paths)
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    port = int(state["port"]) if state else settings.port
    base_url = state["url"].rstrip("/") if state else f"http://{host}:{port}"
    token_file = Path(state["token_file"]) if state and state.get("token_file") else paths.token_file
    status = _daemon_status(state, token_file) if state else {}
    running = status.get("settings") if isinstance(status.get("settings"), dict) else {}
    verifier = running.get("verifier") or settings.verifier
    models = status.get("models")
    if isinstance(models, dict) and "fim_template" in models:  # loaded: what it serves decides
        family, source = models["fim_template"], "served"
    else:
        family, source = local_fim_family(verifier)
    return Facts(
        base_url=base_url,
        port=port,
        model=served_model_name(verifier),
        fim_family=family,
        max_context=int(running.get("max_context") or settings.max_context),
        token_file=token_file,
        running=state is not None,
        specd_path=shutil.which("specd") or "specd",
        fim_source=source,
        specd_home=str(Path(os.environ["SPECD_HOME"]).expanduser().resolve()) if os.environ.get("SPECD_HOME") else None,
    )


# ---- snippets ------------------------------------------------------------------------------------------


def vscode_settings(facts: Facts) -> dict:
    """VS Code's (and Cursor's) settings for specd: only `specd.serverPath`, the `specd` executable's path."""
    # Only the executable path: an editor started from the desktop often lacks the shell's PATH.
    # Everything else has a default in the extension and the server finds the daemon by itself.
    return {"specd.serverPath": facts.specd_path}


def zed_prompt_format(facts: Facts) -> str:
    """Zed's name for the model's FIM markers; "infer" (Zed's default, which guesses from the model's name and
    turns edit predictions off when it cannot) for a model without FIM tokens or of unknown family."""
    return ZED_PROMPT_FORMATS.get(facts.fim_family or "", "infer")


def zed_settings(facts: Facts) -> dict:
    """Zed's settings: edit predictions from `/v1/completions` (`open_ai_compatible_api`, prompt_format from the FIM
    family, at most ZED_MAX_OUTPUT_TOKENS tokens) and an OpenAI-compatible assistant provider named ZED_PROVIDER at
    `/v1` (max_tokens the context window, in tokens). No token: Zed reads it from the environment."""
    return {
        "edit_predictions": {
            "provider": "open_ai_compatible_api",
            "open_ai_compatible_api": {
                "api_url": f"{facts.base_url}/v1/completions",
                "model": facts.model,
                "prompt_format": zed_prompt_format(facts),
                "max_output_tokens": ZED_MAX_OUTPUT_TOKENS,
            },
        },
        "language_models": {
            "openai_compatible": {
                ZED_PROVIDER: {
                    "api_url": f"{facts.base_url}/v1",
                    "available_models": [
                        {
                            "name": facts.model,
                            "display_name": f"{facts.model} (specd)",
                            "max_tokens": facts.max_context,
                            "max_output_tokens": 1024,
                            "capabilities": {
                                "tools": False,
                                "images": False,
                                "parallel_tool_calls": False,
                                "prompt_cache_key": False,
                            },
                        }
                    ],
                }
            }
        },
    }


def neovim_snippet_name(version: tuple[int, int] | None) -> str:
    """The Neovim snippet for a Neovim `version` (major, minor): "specd-0.7.lua" before 0.12 (no LSP inline completion),
    else "specd.lua" (also when the version is unknown)."""
    return "specd-0.7.lua" if version is not None and version < (0, 12) else "specd.lua"


def nvim_version() -> tuple[int, int] | None:
    """(major, minor) from `nvim --version`, or None when nvim is not on PATH, fails, takes over 10 s, or prints no
    version."""
    nvim = shutil.which("nvim")
    if not nvim:
        return None
    try:
        out = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"NVIM v(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def snippet_file(editor: str) -> Path:
    """The snippet file in specd's editor-configs for `editor` ("neovim", "helix" or "emacs"; Neovim's by its version).
    Raises ConfigError when the Helix or Emacs file is missing."""
    names = {"helix": "helix/languages.toml", "emacs": "emacs/specd.el"}
    if editor == "neovim":
        return EDITOR_CONFIGS / "neovim" / neovim_snippet_name(nvim_version())
    path = EDITOR_CONFIGS / names[editor]
    if not path.is_file():
        raise ConfigError(f"{path} is missing; `specd config {editor}` needs specd's editor-configs folder")
    return path


def claude_code_settings(facts: Facts) -> dict:
    """Claude Code's ~/.claude/settings.json (code.claude.com/docs/en/settings, .../env-vars): `env` points it at
    specd and names the served model for every role (the main model, and the opus/sonnet/haiku aliases its subagents
    and background tasks use); `apiKeyHelper` reads the token from specd's token file when Claude Code needs it
    (sent as `Authorization: Bearer`), so the token itself is never copied into settings."""
    model = facts.model
    return {
        "apiKeyHelper": f"cat {shlex.quote(str(facts.token_file))}",
        "env": {
            "ANTHROPIC_BASE_URL": facts.base_url,  # no /v1: Claude Code appends /v1/messages itself
            "ANTHROPIC_MODEL": model,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
            "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",  # no attribution block (specd drops it anyway)
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry or update checks to anthropic.com
        },
    }


def snippet(editor: str, facts: Facts) -> str:
    """The text `specd config <editor>` prints: JSON settings for Claude Code, VS Code, Cursor and Zed, else the
    editor's snippet file, made to start the `specd` executable found on this shell's PATH, with this shell's
    SPECD_HOME when it is set. Raises ConfigError as `snippet_file` and `with_launch` do."""
    if editor == "claude-code":
        return json.dumps(claude_code_settings(facts), indent=2) + "\n"
    if editor in ("vscode", "cursor"):
        return json.dumps(vscode_settings(facts), indent=2) + "\n"
    if editor == "zed":
        return json.dumps(zed_settings(facts), indent=2) + "\n"
    return with_launch(editor, snippet_file(editor).read_text(encoding="utf-8"), facts.specd_path, facts.specd_home)


# How each language-server snippet starts `specd lsp`, as shipped: `with_launch` replaces it with the `specd`
# executable's path (an editor started from the desktop lacks the shell's PATH, where a virtual environment's
# `specd` lives) and this shell's SPECD_HOME (else `specd lsp` would look for, and start, a daemon in the default home).
SHIPPED_LAUNCH = {
    "neovim": '  cmd = { "specd", "lsp" },\n',
    "helix": 'command = "specd"\nargs = ["lsp"]\n',
    "emacs": "(defcustom specd-command '(\"specd\" \"lsp\")",
}


def launch(editor: str, command: str, home: str | None) -> str:
    """The snippet's lines that start `command lsp`, with SPECD_HOME=`home` when given (Neovim's `cmd_env`, Helix's
    `environment`, `env` for Emacs); values quoted as strings of Lua, TOML and Lisp alike (no \\u escapes: LuaJIT
    has none)."""
    quoted = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    if editor == "neovim":
        return (f'  cmd = {{ {quoted(command)}, "lsp" }},\n'
                + (f"  cmd_env = {{ SPECD_HOME = {quoted(home)} }},\n" if home else ""))
    if editor == "helix":
        return (f'command = {quoted(command)}\nargs = ["lsp"]\n'
                + (f"environment = {{ SPECD_HOME = {quoted(home)} }}\n" if home else ""))
    env = f'"env" {quoted("SPECD_HOME=" + home)} ' if home else ""
    return f"(defcustom specd-command '({env}{quoted(command)} \"lsp\")"


def with_launch(editor: str, text: str, command: str = "specd", home: str | None = None) -> str:
    """The snippet `text` starting `specd lsp` as `launch` writes it. Raises ConfigError when the snippet has no
    launch line to change."""
    shipped = SHIPPED_LAUNCH[editor]
    if text.count(shipped) != 1:
        raise ConfigError(f"the {editor} snippet does not start `specd lsp` where specd expects; the command "
                          f"{command!r}" + (f" and SPECD_HOME={home}" if home else "") + " cannot be set in it")
    return text.replace(shipped, launch(editor, command, home))


# ---- where each editor keeps its settings ------------------------------------------------------------------


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def settings_file(editor: str) -> Path:
    """The settings file `--write` merges into for `editor`: Claude Code's settings.json ($CLAUDE_CONFIG_DIR or
    ~/.claude), VS Code's and Cursor's User/settings.json, Zed's settings.json, Neovim's plugin/specd.lua (under
    $NVIM_APPNAME when set) or Helix's
    languages.toml, per platform ($XDG_CONFIG_HOME, ~/Library/Application Support, %APPDATA%). Raises ConfigError for an
    editor it cannot write (Emacs)."""
    if editor == "claude-code":
        return Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude") / "settings.json"
    app = {"vscode": "Code", "cursor": "Cursor"}
    if editor in app:
        if sys.platform == "darwin":
            return Path.home() / "Library" / "Application Support" / app[editor] / "User" / "settings.json"
        if sys.platform == "win32":
            return Path(os.environ["APPDATA"]) / app[editor] / "User" / "settings.json"
        return _config_home() / app[editor] / "User" / "settings.json"
    if editor == "zed":
        if sys.platform == "win32":
            return Path(os.environ["APPDATA"]) / "Zed" / "settings.json"
        return _config_home() / "zed" / "settings.json"  # macOS too
    if editor == "neovim":  # Neovim's stdpath("config"), which $NVIM_APPNAME names
        base = Path(os.environ["LOCALAPPDATA"]) if sys.platform == "win32" else _config_home()
        return base / (os.environ.get("NVIM_APPNAME") or "nvim") / "plugin" / "specd.lua"
    if editor == "helix":
        return _config_home() / "helix" / "languages.toml"
    raise ConfigError(f"`specd config {editor} --write` is not supported: paste the snippet into your init file")


# ---- --write ---------------------------------------------------------------------------------------------------


def _show(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def write_json_settings(path: Path, patch: dict, out) -> bool:
    """Merge `patch` into the JSONC settings file at `path` (jsonc.merge: comments, order and other keys kept), print
    each added (+) or changed (~) key to `out`, and write it (backup, atomic); True when the file changed. Raises
    ConfigError when the file does not parse or changed while being edited."""
    old = read_text(path)
    try:
        new, changes = jsonc.merge(old or "", patch)
    except jsonc.JSONCError as e:
        raise ConfigError(f"{path}: cannot parse it ({e}); left unchanged. Fix it, or paste the snippet by hand.") from None
    for change in changes:
        where = ".".join(change.path)
        if jsonc.is_added(change):
            print(f"  + {where} = {_show(change.new)}", file=out)
        else:
            print(f"  ~ {where}: {_show(change.old)} -> {_show(change.new)}", file=out)
    return _write(path, new, old, out)


def write_neovim_plugin(path: Path, text: str, out) -> bool:
    """Write Neovim's plugin file `path` with `text`; True when it changed. Raises ConfigError when the file exists,
    differs and was not written by specd (it does not start with "-- specd for Neovim"), or changed while being
    edited."""
    old = read_text(path)
    if old is not None and old != text and not old.startswith("-- specd for Neovim"):
        raise ConfigError(f"{path} exists and was not written by specd; left unchanged. Remove or rename it first.")
    return _write(path, text, old, out)


def write_helix_languages(path: Path, snippet_text: str, out) -> bool:
    """Append `snippet_text` to Helix's languages.toml at `path`; False (nothing written) when it already has a
    `language-server.specd`. Raises ConfigError when the file is not TOML, already configures one of the snippet's
    languages (appending would replace those settings), or changed while being edited."""
    old = read_text(path)
    try:
        current = tomllib.loads(old or "")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: cannot parse it ({e}); left unchanged.") from None
    if "specd" in current.get("language-server", {}):
        print(f"{path} already configures specd; nothing changed.", file=out)
        return False
    ours = {lang["name"] for lang in tomllib.loads(snippet_text)["language"]}
    clash = sorted(ours & {lang.get("name") for lang in current.get("language", [])})
    if clash:
        raise ConfigError(
            f"{path} already configures {', '.join(clash)}; left unchanged, because appending would replace "
            f'your settings for them. Add "specd" to their language-servers and copy the '
            f"[language-server.specd] tables from the snippet by hand."
        )
    separator = "" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
    return _write(path, (old or "") + separator + snippet_text, old, out)


def _write(path: Path, new: str, old: str | None, out) -> bool:
    try:
        result = write_file(path, new, old)
    except ChangedUnderUs as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot write it ({e.strerror}); nothing changed. Make it writable, or paste "
                          "the settings `specd config` prints without --write.") from None
    if not result.changed:
        print(f"{path} already has these settings; nothing changed.", file=out)
    elif result.backup:
        print(f"Updated {path} (previous version: {result.backup}).", file=out)
    else:
        print(f"Created {path}.", file=out)
    return result.changed


def write(editor: str, facts: Facts, path: Path, out) -> bool:
    """`specd config <editor> --write`: merge the editor's settings into `path` (JSON editors and Claude Code), or write
    Neovim's plugin or append to Helix's languages.toml; True when the file changed. Raises ConfigError for an editor it
    cannot write and as the writers do."""
    if editor in ("vscode", "cursor"):
        return write_json_settings(path, vscode_settings(facts), out)
    if editor == "claude-code":
        return write_json_settings(path, claude_code_settings(facts), out)
    if editor == "zed":
        return write_json_settings(path, zed_settings(facts), out)
    if editor == "neovim":
        return write_neovim_plugin(path, snippet(editor, facts), out)
    if editor == "helix":
        return write_helix_languages(path, snippet(editor, facts), out)
    raise ConfigError(f"`specd config {editor} --write` is not supported: paste the snippet into your init file")


# ---- what to tell the user ---------------------------------------------------------------------------------


def zed_fim_notes(facts: Facts) -> list[str]:
    """Why prompt_format is what it is, when that is not read from the tokenizer the daemon serves."""
    if facts.fim_source == "served" and facts.fim_family is None:
        return [f"{facts.model} has no fill-in-the-middle tokens (the daemon serves it with fim_template: null), so "
                'no FIM format is written (prompt_format "infer"): Zed\'s edit predictions send FIM prompts, which '
                "this model would not understand. Serve a FIM model (e.g. verifier Qwen/Qwen2.5-Coder-1.5B) for "
                "edit predictions; the assistant settings work with any model."]
    if facts.fim_source == "served":
        return []
    if facts.fim_source == "tokenizer":
        if facts.fim_family is None:
            return [f"{facts.model}'s tokenizer has no fill-in-the-middle tokens, so no FIM format is written "
                    '(prompt_format "infer"); Zed\'s edit predictions need a FIM model.']
        return []
    if facts.fim_source == "name":
        return [f"prompt_format {zed_prompt_format(facts)!r} is guessed from the name {facts.model!r}; run this again "
                "while the daemon runs (`specd start`) to take it from the tokenizer it serves."]
    return [f"Could not tell whether {facts.model} has fill-in-the-middle tokens (its tokenizer is not on this "
            'disk and the daemon is not serving it), so no FIM format is written (prompt_format "infer"). Run '
            "`specd start`, then this command again, to take it from the tokenizer the daemon serves."]


def notes(editor: str, facts: Facts) -> list[str]:
    """The lines `specd config <editor>` prints to stderr: where the daemon and its token are, how to install or start
    the editor with specd, and what to watch for (Zed's FIM format, SPECD_HOME, port 0)."""
    daemon = f"daemon at {facts.base_url}" + ("" if facts.running else " (not running now: `specd start`)")
    lines = [f"specd {daemon}, model {facts.model}, token in {facts.token_file}"]
    if editor in ("vscode", "cursor"):
        lines.append(vscode_install_note("code" if editor == "vscode" else "cursor"))
        lines.append("The extension finds the daemon and its token by itself; no token goes into settings.json.")
        if editor == "cursor":
            lines.append("Turn Cursor Tab off (Cursor Settings > Tab), or it hides specd's suggestions.")
    elif editor == "claude-code":
        lines.append("Claude Code reads the token through apiKeyHelper; ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN set in "
                     "the shell take precedence over it. For one shell instead of settings.json:")
        lines.append(f'  ANTHROPIC_BASE_URL={facts.base_url} ANTHROPIC_AUTH_TOKEN="$(cat {facts.token_file})" '
                     f"claude --model {facts.model}")
        lines.append(f"Its prompts are long (a 6k-character system prompt and two dozen tools, ~20k tokens): the "
                     f"context window is {facts.max_context} tokens (max_context), and a longer prompt is refused "
                     "with a message naming it. A small model answers, but cannot drive Claude Code's tools well.")
        lines.append("On a CPU the first prompt's prefill may take longer than request_timeout (30 s by default): "
                     "raise it in specd's settings.json for Claude Code.")
    elif editor == "zed":
        lines.extend(zed_fim_notes(facts))
        lines.append("The token is not in settings.json (it may be synced or shared). Start Zed from a shell with:")
        lines.append(f'  export {ZED_KEY_ENV}="$(cat {facts.token_file})"')
        lines.append(f'  export {ZED_PROVIDER.upper()}_API_KEY="$(cat {facts.token_file})"   # the assistant')
    else:
        lines.append("`specd lsp` finds the daemon and its token by itself; nothing secret in this snippet.")
        if facts.specd_home:
            lines.append(f"It starts `specd lsp` with SPECD_HOME={facts.specd_home}, as this shell has it.")
    if facts.specd_home and editor in ("vscode", "cursor"):
        lines.append(f"SPECD_HOME is {facts.specd_home} here: start {'VS Code' if editor == 'vscode' else 'Cursor'} "
                     "from a shell that sets it, or its `specd lsp` looks for a daemon in the default home.")
    if not facts.running and facts.port == 0:
        lines.append("settings.json has port 0 (a new port at each start): set a fixed port for editors.")
    return lines


def vscode_install_note(command: str) -> str:
    """How to build and install the extension from where this specd has its sources: a source checkout's
    editor-configs/vscode is built in place; an installed one (site-packages/specd/editor_configs/vscode, which
    may not be writable) is copied first."""
    folder = EDITOR_CONFIGS / "vscode"
    if (EDITOR_CONFIGS.parent / "pyproject.toml").is_file():  # the repository (an editable install)
        return (f"Install the extension: build it in {folder} as its README.md says (`npm ci && npm run package`), "
                f"then `{command} --install-extension {folder / 'specd.vsix'}`.")
    return (f"Install the extension: its sources came with specd in {folder} (its README.md says how); build a copy "
            f"with Node.js 20: `cp -r {shlex.quote(str(folder))} ~/specd-vscode && cd ~/specd-vscode && npm ci && "
            f"npm run package`, then `{command} --install-extension ~/specd-vscode/specd.vsix`.")


def main(argv: list[str] | None = None) -> int:
    """`specd config EDITOR [--write] [--file PATH]`: print the editor's snippet (stdout) and notes (stderr), or with
    --write merge it into the editor's settings file; for an API client ("gemini", "bedrock") print its setup. Returns
    0, or 1 after printing a ConfigError; argparse exits with 2 for bad arguments."""
    parser = argparse.ArgumentParser(prog="specd config", description=__doc__.split("\n")[0])
    parser.add_argument("editor", choices=EDITORS + TOOLS + CLIENTS)
    parser.add_argument("--write", action="store_true", help="merge the snippet into the editor's settings file")
    parser.add_argument("--file", type=Path, help="the settings file to write instead of the editor's usual one")
    args = parser.parse_args(argv)
    try:
        facts = gather_facts()
        if args.editor in CLIENTS:  # API clients: printed setup only (client_config.py)
            if args.write:
                raise ConfigError(f"--write is for editors; `specd config {args.editor}` prints the setup")
            sys.stdout.write(client_setup(args.editor, facts.base_url, facts.model, facts.token_file))
            return 0
        if args.write:
            path = args.file or settings_file(args.editor)
            write(args.editor, facts, path, sys.stdout)
        else:
            sys.stdout.write(snippet(args.editor, facts))
        for line in notes(args.editor, facts):
            print(line, file=sys.stderr)
    except ConfigError as e:
        print(f"specd config: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
