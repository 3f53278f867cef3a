"""`specd stop` waits for the daemon it signalled, not for the lock: a daemon that another start brings up while the
old one exits (an editor's language server starts one on demand) takes the lock at once, and the stop must neither
wait for that one nor signal it."""

from __future__ import annotations

import subprocess
import sys
import threading

from specd.daemon.config.paths import Paths
from specd.daemon.process.lifecycle import stop_daemon
from specd.daemon.process.state import live_state

from .conftest import specd_env
from .stand_in import start_stand_in

NEXT_DAEMON = """
import os, time
from specd.daemon.config.paths import get_paths
from specd.daemon.process.state import DaemonLock, write_state
paths = get_paths()
lock = DaemonLock(paths.lock_file)
print("waiting", flush=True)
assert lock.acquire(attempts=1200)  # takes it the moment the old daemon is gone
write_state(paths, {"pid": os.getpid(), "url": "http://127.0.0.1:10", "host": "127.0.0.1", "port": 10,
                    "status": "ready"})
time.sleep(600)
"""


def test_stop_returns_when_its_daemon_is_gone_and_leaves_the_next_one_running(tmp_path):
    paths = Paths(tmp_path / "config", tmp_path / "cache", tmp_path / "state")
    old = start_stand_in(tmp_path, {})
    following = subprocess.Popen([sys.executable, "-c", NEXT_DAEMON], env=specd_env(tmp_path),
                                 stdout=subprocess.PIPE, text=True)
    try:
        assert following.stdout.readline().strip() == "waiting"
        stopped, lines = [], []
        stopping = threading.Thread(target=lambda: stopped.append(stop_daemon(paths, lines.append, timeout=3)),
                                    daemon=True)
        stopping.start()
        stopping.join(timeout=30)
        assert not stopping.is_alive(), lines  # the old code waited for the lock, which the next daemon holds
        assert stopped[0]["pid"] == old.pid and old.wait(timeout=5) is not None
        assert lines == [f"stopping specd (pid {old.pid})"]  # no SIGKILL after the timeout
        assert following.poll() is None
        for _ in range(100):
            if (live_state(paths) or {}).get("pid") == following.pid:
                break
            threading.Event().wait(0.05)
        assert live_state(paths)["pid"] == following.pid
    finally:
        for process in (old, following):
            process.kill()
            process.wait()
