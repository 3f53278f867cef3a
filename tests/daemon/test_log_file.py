"""The daemon's log stays bounded while it runs: past MAX_LOG_BYTES it moves to `daemon.log.1` and the daemon writes
its next lines (stdout and stderr) to a new file with the same permissions; `specd logs -f` follows the name into
the new file; the real daemon started by `specd start` does it within seconds."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from specd.daemon.process.log_file import MAX_LOG_BYTES, follow, older, rotate_while_running

from .conftest import run_cli, specd_env

WRITER = """
import logging, sys
from pathlib import Path
from specd.daemon.process.log_file import rotate_while_running
log = Path(sys.argv[1])
print("before " * 40, flush=True)
print("not yet", rotate_while_running(log, max_bytes=10_000), flush=True)
print("moved", rotate_while_running(log, max_bytes=100), flush=True)
logging.basicConfig(stream=sys.stderr)
logging.getLogger("x").error("after, on stderr")
print("after, on stdout", flush=True)
"""


def test_a_log_past_the_limit_moves_aside_and_the_process_writes_a_new_one(tmp_path):
    log = tmp_path / "daemon.log"
    log.touch(mode=0o640)
    os.chmod(log, 0o640)
    with open(log, "ab") as out:
        subprocess.run([sys.executable, "-c", "import os; os.umask(0o077)\n" + WRITER, str(log)], stdout=out,
                       stderr=subprocess.STDOUT, check=True)
    moved = older(log).read_text()
    assert "before" in moved and "not yet False" in moved and "after" not in moved
    assert log.read_text() == "moved True\nERROR:x:after, on stderr\nafter, on stdout\n"
    assert stat.S_IMODE(log.stat().st_mode) == 0o640  # as before, whatever the umask
    assert not log.with_name("daemon.log.new").exists()


def test_stderr_that_went_elsewhere_stays_there(tmp_path):
    log, errors = tmp_path / "daemon.log", tmp_path / "errors.txt"
    with open(log, "ab") as out, open(errors, "ab") as err:
        subprocess.run([sys.executable, "-c", WRITER, str(log)], stdout=out, stderr=err, check=True)
    assert log.read_text() == "moved True\nafter, on stdout\n" and "after, on stderr" in errors.read_text()


def test_a_process_whose_stdout_is_not_the_log_leaves_it_alone(tmp_path):
    log = tmp_path / "daemon.log"
    log.write_text("x" * 1000)
    assert rotate_while_running(log, max_bytes=10) is False  # pytest's stdout is not this file
    assert log.read_text() == "x" * 1000 and not older(log).exists()


def test_follow_goes_on_in_the_new_file_after_a_rotation(tmp_path):
    log = tmp_path / "daemon.log"
    log.write_text("old line\n")
    lines: list[str] = []
    done = threading.Event()
    follower = threading.Thread(target=follow, args=(log, lines.append),
                                kwargs={"start": log.stat().st_size, "poll_s": 0.01, "stop": done.is_set})
    with open(log, "a") as f:  # before the follower even opened the file: shown all the same
        f.write("first\n")
    follower.start()
    try:
        until(lambda: lines == ["first\n"])
        os.replace(log, older(log))
        with open(older(log), "a") as f:  # a line the daemon wrote just before it reopened
            f.write("late\n")
        until(lambda: lines == ["first\n", "late\n"])
        log.write_text("second\n")
        until(lambda: lines == ["first\n", "late\n", "second\n"])
    finally:
        done.set()
        follower.join(timeout=10)
    assert not follower.is_alive()


def until(condition, timeout: float = 20.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "the condition did not come true"
        time.sleep(0.01)


def test_the_running_daemon_starts_a_new_log_and_specd_logs_follows_it(tmp_path, tiny_pair):
    env = specd_env(tmp_path)
    started = run_cli(env, "start", "--port", "0", "--verifier", str(tiny_pair[0]), "--device", "cpu")
    assert started.returncode == 0, started.stderr
    log = tmp_path / "state" / "daemon.log"
    follower = subprocess.Popen([sys.executable, "-m", "specd.daemon.cli", "logs", "-f", "-n", "0"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with open(log, "a") as f:  # as if weeks of requests had been logged
            f.write(("filler " * 15 + "\n") * (MAX_LOG_BYTES // 100 + 10))
        until(lambda: older(log).exists())
        state = json.loads((tmp_path / "state" / "daemon.json").read_text())
        token = Path(state["token_file"]).read_text().strip()
        request = urllib.request.Request(state["url"] + "/specd/v1/status", headers={"Authorization": f"Bearer {token}"})
        urllib.request.urlopen(request, timeout=30).read()
        until(lambda: "GET /specd/v1/status -> 200" in log.read_text())
        assert "the log grew beyond 5 MiB" in log.read_text() and "filler" not in log.read_text()
        assert older(log).stat().st_size > MAX_LOG_BYTES
    finally:
        assert run_cli(env, "stop").returncode == 0
        follower.terminate()
        out, _ = follower.communicate(timeout=30)
    assert "GET /specd/v1/status -> 200" in out  # `specd logs -f` went on in the new file
