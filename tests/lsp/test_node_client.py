"""VS Code's protocol layer (`vscode-languageserver-protocol`, Node) drives `specd lsp` against the real daemon.

Skips when node/npm are missing or the package cannot be installed (no registry); `npm ci` installs the
locked version into tests/lsp/node/node_modules when it is not there yet.
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
from .real_daemon import cancelled_by_disconnect, long_document

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the VS Code protocol client test")
    if not (NODE_DIR / "node_modules" / "vscode-languageserver-protocol").is_dir():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm ci failed (registry unreachable?): {done.stderr.strip().splitlines()[-1:]}")
    return NODE_DIR / "drive_specd.js"


async def test_vscode_protocol_client(node_client, real_daemon_home, monkeypatch):
    monkeypatch.setenv("SPECD_HOME", str(real_daemon_home))
    long_lines = long_document().count("\n")  # the slow request's document: this many `import os` lines
    cancelled_before = cancelled_by_disconnect()
    env = dict(os.environ, SPECD_HOME=str(real_daemon_home))
    done = subprocess.run(["node", str(node_client), json.dumps(SERVER_COMMAND), str(long_lines)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["inlineProvider"] is True and result["positionEncoding"] == "utf-16"
    assert result["completionIncomplete"] is True
    assert result["completionItems"] == result["inlineItems"] <= 1
    if result["inlineItems"]:
        assert result["inlineRange"]["start"] == {"line": 1, "character": 18}
    assert result["slowCancelled"] is True
    await eventually(lambda: cancelled_by_disconnect() == cancelled_before + 1, "the daemon cancelled the job")
