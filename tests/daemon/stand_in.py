"""A stand-in for a running daemon: a process that holds the daemon's lock and wrote its state file, as `specd
serve` does, so that start/restart/status checks need neither torch nor a model. It does not answer HTTP, like a
daemon still loading."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import specd_env

STAND_IN = """
import json, os, sys, time
from specd.daemon.config.paths import get_paths
from specd.daemon.process.state import DaemonLock, write_state
paths = get_paths()
lock = DaemonLock(paths.lock_file)
assert lock.acquire()
write_state(paths, {"pid": os.getpid(), "url": "http://127.0.0.1:9", "host": "127.0.0.1", "port": 9,
                    "token_file": str(paths.token_file), "version": "test", "started_at": 0, "status": "ready",
                    **json.loads(sys.argv[1])})
print("ready", flush=True)
time.sleep(600)
"""


def start_stand_in(home, state: dict) -> subprocess.Popen:
    """The stand-in under SPECD_HOME=`home`, its state file holding `state` (e.g. {"flags": [...]}) over the
    usual keys; returns once it holds the lock. The caller kills it."""
    child = subprocess.Popen([sys.executable, "-c", STAND_IN, json.dumps(state)], env=specd_env(home),
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child
