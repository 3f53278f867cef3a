"""What the real-editor tests share: `specd` on PATH as this checkout, a small Python project, a daemon
stand-in with a known answer, and running an editor without blocking that daemon's event loop.

Each test then does what a user does in the editor with the shipped config (type the start of a line, ask
for a completion, accept it) and asserts the buffer's text: the fake daemon answers `REPLY` only when the
prefix it is sent ends with what was typed, so that text shows the whole path worked.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.lsp.fake_daemon import FakeDaemon

SOURCE = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        pass\n"
TYPED = "        return js"  # what the editor types in place of `pass` (line 6)
REPLY = "on.load(f)"
COMPLETED_LINE = "        return json.load(f)"
COMPLETED = SOURCE.replace("        pass", COMPLETED_LINE)


def python_project(tmp_path: Path) -> Path:
    """A project (it has .git) with one Python file; returns the file."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    source = project / "store.py"
    source.write_text(SOURCE)
    return source


def specd_on_path(tmp_path: Path, env: dict) -> dict:
    """`env` with a `specd` first on PATH that runs this checkout with this interpreter, because the shipped
    configs start plain `specd lsp`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "specd"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m specd.daemon.cli "$@"\n')
    wrapper.chmod(0o755)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


@pytest.fixture
async def answering_daemon(tmp_path, monkeypatch):
    """A fake daemon in a fresh SPECD_HOME that completes TYPED with REPLY; yields (daemon, env)."""
    home = tmp_path / "specd-home"
    home.mkdir()
    monkeypatch.setenv("SPECD_HOME", str(home))
    daemon = await FakeDaemon(reply=lambda body: REPLY if body["prefix"].endswith(TYPED) else "").start()
    try:
        yield daemon, {**os.environ, "SPECD_HOME": str(home)}
    finally:
        await daemon.stop()


async def run_editor(command: list[str], env: dict, cwd: Path, timeout: float = 180) -> tuple[int, str]:
    """Run an editor to its end while this event loop keeps serving the fake daemon; (exit code, output)."""
    process = await asyncio.create_subprocess_exec(*command, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        output, _ = await process.communicate()
    return process.returncode, output.decode(errors="replace")
