"""Shared fixtures for the editor-integration tests: paths, the daemon's route table, a real daemon."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EDITOR_CONFIGS = REPO / "editor-configs"


def daemon_routes() -> set[tuple[str, str]]:
    """(METHOD, path) pairs the modules of daemon/api/ register, read from their source so that this check
    needs neither torch nor a running daemon."""
    routes = set()
    nodes = (n for f in sorted((REPO / "daemon" / "api").glob("*.py")) for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))))
    for node in nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, args = node.func.attr, node.args
            if name in ("add_get", "add_post", "add_put", "add_delete") and args and isinstance(args[0], ast.Constant):
                routes.add((name[4:].upper(), args[0].value))
            elif name == "add_route" and len(args) >= 2 and all(isinstance(a, ast.Constant) for a in args[:2]):
                routes.add((args[0].value.upper(), args[1].value))
    return routes


@pytest.fixture
def specd_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "specd-home"
    monkeypatch.setenv("SPECD_HOME", str(home))
    return home


def _specd(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specd.daemon.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_verifier(tmp_path_factory) -> Path:
    from tests.fixtures.tiny_models import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-starcoder")


@pytest.fixture(scope="module")
def running_daemon(tmp_path_factory, tiny_verifier):
    """A real `specd start` on a free port with the tiny model; yields (state dict, token, env)."""
    home = tmp_path_factory.mktemp("daemon-home")
    env = {**os.environ, "SPECD_HOME": str(home)}
    started = _specd("start", "--verifier", str(tiny_verifier), "--port", "0", "--device", "cpu", env=env)
    if started.returncode != 0:
        log = home / "state" / "daemon.log"
        pytest.fail(f"specd start failed: {started.stderr}\n{log.read_text() if log.exists() else ''}")
    state = json.loads((home / "state" / "daemon.json").read_text())
    token = Path(state["token_file"]).read_text().strip()
    try:
        yield state, token, env
    finally:
        _specd("stop", env=env, timeout=60)
