"""`specd restart` keeps the flags of the last start even when that start failed: they are remembered in the state
folder (start_flags.json), not only in the running daemon's state file, which a daemon that could not start never
leaves behind. `specd stop` drops them, as `specd status` says.

The first daemon is a stand-in (a process that holds the daemon's lock and wrote its state file, as `specd serve`
does); the restarted ones fail fast and before any model loads: the port they are given is taken."""

from __future__ import annotations

import contextlib
import json
import socket

from specd.daemon.config.paths import Paths
from specd.daemon.process.state import forget_start_flags, read_start_flags, write_start_flags

from .conftest import run_cli, specd_env
from .stand_in import start_stand_in

def busy_port(stack: list[socket.socket]) -> int:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    stack.append(taken)
    return taken.getsockname()[1]


@contextlib.contextmanager
def running_stand_in(home, state: dict):
    """start_stand_in's stand-in for the length of the block, killed after it."""
    stand_in = start_stand_in(home, state)
    try:
        yield stand_in
    finally:
        stand_in.kill()
        stand_in.wait()


def test_a_failed_restart_keeps_the_flags_of_the_last_start(tmp_path):
    env, sockets = specd_env(tmp_path), []
    try:
        flagged, in_settings = busy_port(sockets), busy_port(sockets)
        # settings.json names another taken port: a restart that forgot the flags fails on that one instead.
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "settings.json").write_text(json.dumps({"port": in_settings}))
        with running_stand_in(tmp_path, {"flags": ["--port", str(flagged)], "port": flagged}):
            failed = run_cli(env, "restart", "--cache-slots", "1")
        assert failed.returncode == 1 and f"cannot listen on 127.0.0.1:{flagged}" in failed.stderr, failed.stderr

        # Nothing runs now; the next restart still gives the flags of the last start, these replacing theirs.
        again = run_cli(env, "restart", "--cache-slots", "2")
        assert again.returncode == 1, again.stderr
        assert f"cannot listen on 127.0.0.1:{flagged}" in again.stderr, again.stderr
        assert ("specd is not running; starting it with the flags of its last start, those given here replacing "
                f"theirs: --port {flagged} --cache-slots 2") in again.stderr, again.stderr
        status = run_cli(env, "status")
        assert status.returncode == 3
        assert (f"last start's flags: --port {flagged} --cache-slots 2 (`specd restart` gives them again, "
                "`specd stop` and `specd start` drop them)") in status.stdout, status.stdout
        assert json.loads(run_cli(env, "status", "--json").stdout)["start_flags"] == \
            ["--port", str(flagged), "--cache-slots", "2"]

        # `specd stop` drops them: the restart after it runs on settings.json's port.
        assert run_cli(env, "stop").returncode == 0
        dropped = run_cli(env, "restart")
        assert dropped.returncode == 1 and f"cannot listen on 127.0.0.1:{in_settings}" in dropped.stderr, \
            dropped.stderr
        assert "last start's flags" not in run_cli(env, "status").stdout
    finally:
        for taken in sockets:
            taken.close()


def test_a_start_remembers_its_flags_and_a_running_daemons_own_win(tmp_path):
    """The running daemon's flags (its state file) decide while it runs: it may have been started by another
    program (the language server starts one with no flags)."""
    paths = Paths(tmp_path / "config", tmp_path / "cache", tmp_path / "state")
    assert read_start_flags(paths) is None
    write_start_flags(paths, ["--port", "0", "--log-prompts"])
    assert read_start_flags(paths) == ["--port", "0", "--log-prompts"]
    forget_start_flags(paths)
    assert read_start_flags(paths) is None
    (tmp_path / "state" / "start_flags.json").write_text('{"flags": [1, 2]}')  # not flags: as if none
    assert read_start_flags(paths) is None

    env, sockets = specd_env(tmp_path), []
    write_start_flags(paths, ["--threads", "many"])  # an earlier start's, but another daemon runs now
    try:
        taken = busy_port(sockets)
        with running_stand_in(tmp_path, {"flags": ["--port", str(taken)], "port": taken}):
            restarted = run_cli(env, "restart")  # the remembered flags would be refused: `--threads many`
    finally:
        for taken_socket in sockets:
            taken_socket.close()
    assert restarted.returncode == 1 and f"cannot listen on 127.0.0.1:{taken}" in restarted.stderr, restarted.stderr
    assert "not running" not in restarted.stderr
    assert read_start_flags(paths) == ["--port", str(taken)]


def test_a_restart_onto_a_taken_port_or_an_unknown_model_leaves_the_daemon_running(tmp_path):
    env, sockets = specd_env(tmp_path), []
    try:
        taken = busy_port(sockets)
        with running_stand_in(tmp_path, {"flags": []}) as stand_in:  # listening on port 9
            for flags, message in [(["--port", str(taken)], f"cannot listen on 127.0.0.1:{taken}: Address already "
                                                            "in use: another program uses the port"),
                                   (["--verifier", "smollm2-135"], "unknown model 'smollm2-135'"),
                                   (["--device", "tpu"], "expected auto, cpu, cuda, cuda:N, mps or xpu"),
                                   (["--host", "not a host!!"], "expected an IP address or a host name"),
                                   (["--host", "my-box.invalid"], "`host` names no address of this machine")]:
                refused = run_cli(env, "restart", *flags)
                assert refused.returncode == 2 and message in refused.stderr, refused.stderr
                assert f"not restarted: specd keeps running at http://127.0.0.1:9 (pid {stand_in.pid})" in \
                    refused.stderr
                assert stand_in.poll() is None
    finally:
        for taken_socket in sockets:
            taken_socket.close()


def test_specd_status_prints_an_upstream_key_given_as_a_flag_only_as_a_fingerprint(tmp_path):
    upstream = json.dumps({"url": "http://gpu-box:8000", "key": "sekrit-key-123", "model": "m"})
    env = specd_env(tmp_path)
    with running_stand_in(tmp_path, {"flags": ["--upstream", upstream, "--port", "9"]}):
        human = run_cli(env, "status")
        machine = run_cli(env, "status", "--json")
    assert "sekrit" not in human.stdout + machine.stdout
    flags = json.loads(machine.stdout)["flags"]
    assert json.loads(flags[1])["key"].startswith("sha256:") and flags[2:] == ["--port", "9"]
    assert '"url": "http://gpu-box:8000"' in human.stdout
