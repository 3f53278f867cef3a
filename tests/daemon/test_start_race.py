"""Two `specd start` at the same moment (README: "A second `specd start` reports the running daemon"): one daemon is
started, the other start waits for it and reports it, or reports its failure. Real processes, tiny models."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from specd.daemon.process.state import DaemonLock, lock_is_held

from .conftest import READY_WAIT_S, run_cli, specd_env, unloadable_model

STARTED = re.compile(r"^specd is running at (\S+) \(pid (\d+)\)$", re.M)
ALREADY = re.compile(r"^specd is already running at (\S+) \(pid (\d+)\)$", re.M)


def start_both(env: dict, *flags: str) -> list[tuple[int, str, str]]:
    """Two `specd start` launched together; their (exit code, stdout, stderr)."""
    command = [sys.executable, "-m", "specd.daemon.cli", "start", "--port", "0", "--device", "cpu", *flags]
    starts = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=READY_WAIT_S) for p in starts]
        return [(p.returncode, out, err) for p, (out, err) in zip(starts, outputs)]
    finally:
        for p in starts:
            if p.poll() is None:
                p.kill()


def test_two_starts_at_once_start_one_daemon_and_both_report_it(tmp_path, tiny_pair):
    env = specd_env(tmp_path)
    try:
        results = start_both(env, "--verifier", str(tiny_pair[0]))
        assert [code for code, _, _ in results] == [0, 0], results
        started = [STARTED.search(out) for _, out, _ in results]
        already = [ALREADY.search(out) for _, out, _ in results]
        assert sum(m is not None for m in started) == 1 and sum(m is not None for m in already) == 1, results
        first, second = next(filter(None, started)), next(filter(None, already))
        assert first.groups() == second.groups()  # the same daemon: one URL, one pid
        waiter_err = results[[m is not None for m in already].index(True)][2]
        assert "already being started" in waiter_err and "loading" in waiter_err  # it showed the progress
        status = run_cli(env, "status", "--json")
        assert status.returncode == 0 and f'"pid": {first.group(2)}' in status.stdout
        assert "already running" not in run_cli(env, "logs", "-n", "200").stdout  # no second daemon was spawned
    finally:
        run_cli(env, "stop")
    assert not lock_is_held(tmp_path / "state" / "daemon.lock")


def test_two_starts_at_once_of_a_model_that_cannot_load_both_report_why(tmp_path):
    env = specd_env(tmp_path)
    try:
        results = start_both(env, "--verifier", unloadable_model(tmp_path))
        for code, out, err in results:
            assert code == 1, (out, err)
            assert "no-such-model" in err and "already running" not in err, err
        assert sum("another start was bringing up" in err for _, _, err in results) == 1, results
    finally:
        run_cli(env, "stop")
    assert not (tmp_path / "state" / "daemon.json").exists()


def test_a_start_waits_while_another_holds_the_lock_and_reports_when_that_one_ends(tmp_path):
    env = specd_env(tmp_path)
    lock = DaemonLock(tmp_path / "state" / "daemon.lock")
    assert lock.acquire()  # as a start that has not written its state yet
    try:
        waiting = subprocess.Popen([sys.executable, "-m", "specd.daemon.cli", "start", "--port", "0",
                                    "--verifier", unloadable_model(tmp_path)],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        give_up = time.monotonic() + 5  # the old start spawned a daemon that gave up on the lock after 1 s
        while time.monotonic() < give_up and waiting.poll() is None:
            time.sleep(0.1)
        assert waiting.poll() is None, waiting.communicate()
        assert not (tmp_path / "state" / "daemon.log").exists()  # it spawned no daemon of its own
    finally:
        lock.release()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 1, (out, err)
    assert "already being started" in err and "exited before it was ready" in err, err
