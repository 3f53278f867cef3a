"""`specd config <editor> [--write]`: what it prints, and what --write does to the user's files."""

import json
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from specd.daemon.cli import editor_config
from specd.daemon.config import jsonc

USER_SETTINGS = """// My VS Code settings
{
    "editor.fontSize": 14, // I like it big
    /* the theme I use */
    "workbench.colorTheme": "Default Dark+",
    "files.exclude": {
        "**/.git": true,
    },
}
"""


def backups(path):
    return sorted(path.parent.glob(path.name + ".specd-backup-*"))


def run(argv, capsys):
    code = editor_config.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_vscode_write_keeps_comments_makes_a_backup_and_is_idempotent(specd_home, tmp_path, capsys):
    settings = tmp_path / "settings.json"
    settings.write_text(USER_SETTINGS)
    code, out, _ = run(["vscode", "--write", "--file", str(settings)], capsys)
    assert code == 0
    text = settings.read_text()
    for line in ("// My VS Code settings", "// I like it big", "/* the theme I use */", '"**/.git": true,'):
        assert line in text
    values = jsonc.loads(text)
    assert values["editor.fontSize"] == 14 and values["files.exclude"] == {"**/.git": True}
    assert values["specd.serverPath"]
    [backup] = backups(settings)
    assert backup.read_text() == USER_SETTINGS
    assert "+ specd.serverPath" in out

    code, out, _ = run(["vscode", "--write", "--file", str(settings)], capsys)
    assert code == 0 and "nothing changed" in out
    assert settings.read_text() == text
    assert len(backups(settings)) == 1


@pytest.mark.parametrize("editor", ["vscode", "zed"])
def test_unparsable_settings_are_refused_and_left_byte_identical(specd_home, tmp_path, capsys, editor):
    settings = tmp_path / "settings.json"
    broken = b'{\n  "editor.fontSize": 14\n  "oops": true\n}\n'
    settings.write_bytes(broken)
    code, _, err = run([editor, "--write", "--file", str(settings)], capsys)
    assert code == 1
    assert "cannot parse" in err and "line 3" in err and "left unchanged" in err
    assert settings.read_bytes() == broken
    assert backups(settings) == []


def test_zed_write_never_puts_the_token_in_the_file(specd_home, tmp_path, capsys):
    token_file = specd_home / "state" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("secret-token-value\n")
    settings = tmp_path / "zed" / "settings.json"
    code, out, err = run(["zed", "--write", "--file", str(settings)], capsys)
    assert code == 0 and "Created" in out
    text = settings.read_text()
    assert "secret-token-value" not in text
    api = jsonc.loads(text)["edit_predictions"]["open_ai_compatible_api"]
    assert api["api_url"] == "http://127.0.0.1:7411/v1/completions"
    assert editor_config.ZED_KEY_ENV in err and str(token_file) in err


def test_write_through_a_symlink_keeps_the_link(specd_home, tmp_path, capsys):
    real = tmp_path / "dotfiles" / "settings.json"
    real.parent.mkdir()
    real.write_text("{}\n")
    link = tmp_path / "settings.json"
    link.symlink_to(real)
    assert run(["cursor", "--write", "--file", str(link)], capsys)[0] == 0
    assert link.is_symlink()
    assert "specd.serverPath" in jsonc.loads(real.read_text())


def test_neovim_write_creates_the_plugin_file_and_refuses_a_foreign_one(specd_home, tmp_path, capsys):
    plugin = tmp_path / "nvim" / "plugin" / "specd.lua"
    assert run(["neovim", "--write", "--file", str(plugin)], capsys)[0] == 0
    assert plugin.read_text().startswith("-- specd for Neovim")
    assert run(["neovim", "--write", "--file", str(plugin)], capsys)[0] == 0
    assert backups(plugin) == []

    foreign = tmp_path / "other.lua"
    foreign.write_text("print('mine')\n")
    code, _, err = run(["neovim", "--write", "--file", str(foreign)], capsys)
    assert code == 1 and "not written by specd" in err
    assert foreign.read_text() == "print('mine')\n"


def test_helix_write_appends_once_and_refuses_to_shadow_the_users_languages(specd_home, tmp_path, capsys):
    languages = tmp_path / "languages.toml"
    original = '# mine\n[[language]]\nname = "c"\nauto-format = false\n'
    languages.write_text(original)
    assert run(["helix", "--write", "--file", str(languages)], capsys)[0] == 0
    text = languages.read_text()
    assert text.startswith(original)
    parsed = tomllib.loads(text)
    # the executable's path: Helix started from the desktop lacks the shell's PATH, where a virtual env's specd is
    assert parsed["language-server"]["specd"]["command"] == (shutil.which("specd") or "specd")
    assert run(["helix", "--write", "--file", str(languages)], capsys)[0] == 0
    assert languages.read_text() == text

    clash = tmp_path / "clash.toml"
    clash.write_text('[[language]]\nname = "python"\nlanguage-servers = ["pyright"]\n')
    code, _, err = run(["helix", "--write", "--file", str(clash)], capsys)
    assert code == 1 and "python" in err
    assert backups(clash) == []


def test_emacs_write_is_refused_with_a_reason(specd_home, capsys):
    code, _, err = run(["emacs", "--write"], capsys)
    assert code == 1 and "not supported" in err


def test_specd_config_prints_a_snippet_filled_for_this_machine(specd_home, tmp_path):
    (specd_home / "config").mkdir(parents=True)
    (specd_home / "config" / "settings.json").write_text('{"port": 9123, // mine\n "verifier": "Qwen/Qwen2.5-Coder-1.5B"}')
    env = {**os.environ, "SPECD_HOME": str(specd_home)}
    done = subprocess.run([sys.executable, "-m", "specd.daemon.cli", "config", "zed"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    api = json.loads(done.stdout)["edit_predictions"]["open_ai_compatible_api"]
    assert api == {"api_url": "http://127.0.0.1:9123/v1/completions", "model": "Qwen/Qwen2.5-Coder-1.5B",
                   "prompt_format": "qwen", "max_output_tokens": 64}
    assert str(specd_home / "state" / "token") in done.stderr


def test_claude_code_write_fills_env_keeps_the_rest_and_never_copies_the_token(specd_home, tmp_path, capsys):
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    theirs = '{\n  "model": "opus",\n  "env": {"MY_VARIABLE": "kept"},\n  "permissions": {"allow": ["Bash(ls:*)"]}\n}\n'
    settings.write_text(theirs)
    code, out, _ = run(["claude-code", "--write", "--file", str(settings)], capsys)
    assert code == 0
    values = json.loads(settings.read_text())
    assert values["permissions"] == {"allow": ["Bash(ls:*)"]} and values["env"]["MY_VARIABLE"] == "kept"
    assert values["env"]["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")
    assert values["env"]["ANTHROPIC_MODEL"] == values["env"]["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "smollm2-135m"
    assert values["apiKeyHelper"] == f"cat {specd_home / 'state' / 'token'}"
    assert "ANTHROPIC_AUTH_TOKEN" not in values["env"] and "+ env.ANTHROPIC_BASE_URL" in out
    [backup] = backups(settings)
    assert backup.read_text() == theirs
    code, out, _ = run(["claude-code", "--write", "--file", str(settings)], capsys)
    assert code == 0 and "nothing changed" in out and len(backups(settings)) == 1


def vscode_notes(editor: str) -> str:
    facts = editor_config.Facts(base_url="http://127.0.0.1:7411", port=7411, model="m", fim_family=None,
                                max_context=4096, token_file=editor_config.Path("token"), running=True,
                                specd_path="specd")
    return "\n".join(editor_config.notes(editor, facts))


@pytest.mark.parametrize("editor, command", [("vscode", "code"), ("cursor", "cursor")])
def test_vscode_notes_name_where_the_extension_is_installed(tmp_path, monkeypatch, editor, command):
    # Installed from a wheel, the extension's sources are in site-packages (pyproject.toml: specd.editor_configs),
    # where no repository's editor-configs/ folder exists; that place may not be writable, so a copy is built.
    installed = tmp_path / "site-packages" / "specd" / "editor_configs"
    (installed / "vscode").mkdir(parents=True)
    (installed / "vscode" / "README.md").write_text("# specd for VS Code\n")
    monkeypatch.setattr(editor_config, "EDITOR_CONFIGS", installed)
    text = vscode_notes(editor)
    assert "editor-configs/vscode" not in text
    assert f"{installed / 'vscode'} (its README.md says how)" in text
    assert (f"cp -r {installed / 'vscode'} ~/specd-vscode && cd ~/specd-vscode && npm ci && npm run package" in text
            and f"`{command} --install-extension ~/specd-vscode/specd.vsix`" in text), text
    # In a source checkout (an editable install) the folder is built where it is.
    checkout = editor_config.Path(__file__).resolve().parents[2] / "editor-configs"
    monkeypatch.setattr(editor_config, "EDITOR_CONFIGS", checkout)
    text = vscode_notes(editor)
    assert (f"build it in {checkout / 'vscode'} as its README.md says (`npm ci && npm run package`), then "
            f"`{command} --install-extension {checkout / 'vscode' / 'specd.vsix'}`" in text), text


def test_neovims_plugin_file_follows_nvim_appname(monkeypatch, tmp_path):
    """Neovim reads $XDG_CONFIG_HOME/$NVIM_APPNAME (stdpath("config")), not always .../nvim."""
    from specd.daemon.cli.editor_config import settings_file

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("NVIM_APPNAME", raising=False)
    assert settings_file("neovim") == tmp_path / "nvim" / "plugin" / "specd.lua"
    monkeypatch.setenv("NVIM_APPNAME", "work")
    assert settings_file("neovim") == tmp_path / "work" / "plugin" / "specd.lua"


def test_write_keeps_owner_and_hard_links_and_refuses_a_read_only_file(specd_home, tmp_path, capsys, monkeypatch):
    import os

    settings = tmp_path / "settings.json"
    settings.write_text(USER_SETTINGS)
    linked = tmp_path / "linked.json"
    os.link(settings, linked)
    if os.geteuid() == 0:  # as root (CI), a file of another user's keeps its owner (sudo specd config ...)
        os.chown(settings, 65534, 65534)
    assert run(["vscode", "--write", "--file", str(settings)], capsys)[0] == 0
    assert "specd.serverPath" in jsonc.loads(linked.read_text())  # the other link sees the new settings
    if os.geteuid() == 0:
        assert (settings.stat().st_uid, settings.stat().st_gid) == (65534, 65534)

    other = tmp_path / "other.json"
    other.write_text(USER_SETTINGS)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(other) else real_access(path, mode))
    code, _, err = run(["vscode", "--write", "--file", str(other)], capsys)
    assert code == 1 and "cannot write it (the file is read-only for you)" in err
    assert other.read_text() == USER_SETTINGS and backups(other) == []
