"""The real daemon for end-to-end tests: `specd start` in a temporary SPECD_HOME with tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from specd.daemon.discovery import find_daemon

# The tiny model does not stop early on this prompt: a 2000-token decode takes many seconds on a CPU.
LONG_PROMPT = "import os\n" * 10


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECD_")}
    env["SPECD_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "specd.daemon.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def start_daemon(home: Path) -> None:
    from tests.fixtures.tiny_models import write_tiny_pair

    verifier, drafter = write_tiny_pair(home / "models")
    (home / "config").mkdir()
    settings = {"verifier": str(verifier), "drafter": str(drafter), "port": 0, "request_timeout": 120}
    (home / "config" / "settings.json").write_text(json.dumps(settings))
    started = run_cli(home, "start")
    assert started.returncode == 0, started.stderr


def _get(path: str) -> bytes:
    info = find_daemon()
    request = urllib.request.Request(info.url + path, headers={"Authorization": f"Bearer {info.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def daemon_status() -> dict:
    return json.loads(_get("/specd/v1/status"))


def served() -> int:
    return daemon_status()["requests_served"]


def cancelled_by_disconnect() -> int:
    for line in _get("/metrics").decode().splitlines():
        if line.startswith('specd_cancelled_total{reason="disconnect"}'):
            return int(float(line.split()[-1]))
    return 0
