"""The real daemon for end-to-end tests: `specd start` in a temporary SPECD_HOME with tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from specd.daemon.discovery import find_daemon

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


_long_documents: dict[str, str] = {}


def long_document() -> str:
    """A document whose completion at its end (block mode, up to 2000 tokens, no drafts, as the tests ask) keeps
    the daemon decoding for 500 tokens or more, long enough to cancel or kill it mid-way. A tiny random model's
    logits are nearly flat, so where it meets its end-of-text token turns on the prompt's exact tokens, and may
    turn on rounding (a cached prefix or not): the document is found by asking the running daemon, once cold and
    once from its cache, once per daemon."""
    info = find_daemon()
    assert info is not None, "no daemon is running"
    if info.url not in _long_documents:
        for lines in range(8, 64):
            text = "import os\n" * lines
            body = {"prefix": text, "suffix": "", "language": "python", "mode": "block", "max_tokens": 2000,
                    "draft_tokens": 0, "temperature": 0, "document_id": f"probe-{lines}"}
            if all(_complete(info, body)["usage"]["completion_tokens"] >= 500 for _ in range(2)):
                _long_documents[info.url] = text
                break
        else:
            raise AssertionError("no document of 8-63 import lines keeps the tiny model decoding for 500 tokens")
    return _long_documents[info.url]


def _complete(info, body: dict) -> dict:
    request = urllib.request.Request(info.url + "/specd/v1/complete", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {info.token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
