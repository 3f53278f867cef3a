"""`specd start/status/stop/complete/logs` as a user runs them, and recovery after SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from specd.daemon.process.state import lock_is_held
from specd.daemon.discovery import ensure_daemon_running, find_daemon
from specd.daemon.config.paths import Paths

from .conftest import process_gone, run_cli, specd_env, unloadable_model
from .stand_in import start_stand_in

RUNNING = re.compile(r"specd is running at (http://127\.0\.0\.1:\d+) \(pid (\d+)\)")


def paths_for(home) -> Paths:
    return Paths(home / "config", home / "cache", home / "state")


def start(env, verifier) -> tuple[str, int, subprocess.CompletedProcess]:
    done = run_cli(env, "start", "--port", "0", "--verifier", str(verifier), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    found = RUNNING.search(done.stdout)
    assert found, done.stdout
    return found.group(1), int(found.group(2)), done


def wait_gone(pid: int) -> None:
    while not process_gone(pid):  # SIGKILL is asynchronous; no time limit is asserted
        time.sleep(0.02)


def assert_nothing_left(home, pid: int, env) -> None:
    assert process_gone(pid)
    assert not (home / "state" / "daemon.json").exists()
    assert not lock_is_held(home / "state" / "daemon.lock")
    status = run_cli(env, "status", "--json")
    assert status.returncode == 3
    assert json.loads(status.stdout)["running"] is False
    assert find_daemon(paths_for(home)) is None


def test_start_status_complete_restart_stop_leaves_no_process_and_no_state(tmp_path, tiny_pair):
    env = specd_env(tmp_path)
    url, pid, first = start(env, tiny_pair[0])
    assert "loading" in first.stderr  # progress was shown while the models loaded

    # The values in effect decide, not the last start's flags: 4 slots is the default, `auto` dtype loaded float32.
    again = run_cli(env, "start", "--port", "0", "--verifier", str(tiny_pair[0]), "--cache-slots", "4",
                    "--dtype", "float32")
    assert again.returncode == 0
    assert f"already running at {url} (pid {pid})" in again.stdout
    assert "restart" not in again.stdout, again.stdout
    other = run_cli(env, "start", "--cache-slots", "3", "--max-context", "4096")
    assert other.returncode == 0
    assert ("other settings: cache_slots 4 -> 3 (--cache-slots); `specd restart --max-context 4096 --cache-slots 3` "
            "applies them" in other.stdout), other.stdout

    status = run_cli(env, "status", "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert (report["url"], report["pid"], report["state"]) == (url, pid, "ready")
    token_file = tmp_path / "state" / "token"
    assert report["token_file"] == str(token_file)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert report["models"]["verifier"] == str(tiny_pair[0])
    human = run_cli(env, "status")
    assert f"running at {url} (pid {pid})" in human.stdout and "requests served" in human.stdout

    found = find_daemon(paths_for(tmp_path))
    assert (found.url, found.pid, found.token) == (url, pid, token_file.read_text().strip())
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as raw:  # HTTP/1.1 without Host
        raw.sendall(b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert raw.recv(100).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    logged = run_cli(env, "logs", "-n", "30").stdout
    assert "refused a malformed HTTP request (400): Missing 'Host' header in request." in logged
    assert "Traceback" not in logged
    for name in ("daemon.json", "token"):  # a /tmp cleaner: the daemon writes them again within seconds
        kept = (tmp_path / "state" / name).read_text()
        (tmp_path / "state" / name).unlink()
        deadline = time.monotonic() + 10
        while not (tmp_path / "state" / name).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "state" / name).read_text() == kept
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text()
    token_file.write_text("a token the user chose\n")  # changed, not gone: left alone
    time.sleep(3)
    assert token_file.read_text() == "a token the user chose\n"
    token_file.write_text(token)

    source = tmp_path / "example.py"
    source.write_text("def double(x):\n    return \n\nprint(double(2))\n")
    from_file = run_cli(env, "complete", str(source), "--line", "2", "--column", "12", "--max-tokens", "4",
                        "--json")
    assert from_file.returncode == 0, from_file.stderr
    answer = json.loads(from_file.stdout)
    assert answer["usage"]["completion_tokens"] > 0
    # Deep in a long file only the editor's windows are sent (whole lines before the cursor), not the whole file.
    source.write_text("".join(f"value_{i} = compute({i})\n" for i in range(3000)) + "total = ")
    windows = [json.loads(run_cli(env, "complete", str(source), "--line", "3001", "--column", "9", "--max-tokens",
                                  "2", "--json", "--prefix-chars", chars).stdout)["usage"]["prompt_tokens"]
               for chars in ("6000", "60")]
    assert 60 < windows[0] < 4000 and windows[1] < 60
    source.write_text("values = [" + "'abc', " * 2000)  # one line longer than the window: its end is the prefix
    one_line = json.loads(run_cli(env, "complete", str(source), "--line", "1", "--column", "14011", "--max-tokens",
                                  "2", "--json", "--prefix-chars", "60").stdout)["usage"]["prompt_tokens"]
    assert 10 < one_line < 60
    from_stdin = subprocess.run([sys.executable, "-m", "specd.daemon.cli", "complete", "--max-tokens", "3"],
                                input="import os\n", env=env, capture_output=True, text=True)
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert "verifier passes" in from_stdin.stderr

    restarted = run_cli(env, "restart", "--cache-slots", "2")  # the flags it was started with, and this one
    assert restarted.returncode == 0, restarted.stderr
    old_pid, (url, pid) = pid, RUNNING.search(restarted.stdout).groups()
    pid = int(pid)
    assert pid != old_pid and process_gone(old_pid)
    assert json.loads(run_cli(env, "status", "--json").stdout)["models"]["verifier"] == str(tiny_pair[0])

    stopped = run_cli(env, "stop")
    assert stopped.returncode == 0 and f"specd stopped (pid {pid})" in stopped.stdout
    assert_nothing_left(tmp_path, pid, env)
    assert "stopped" in run_cli(env, "logs", "-n", "5").stdout
    assert run_cli(env, "logs", "-n", "0").stdout == ""  # it printed the whole log
    negative = run_cli(env, "logs", "-n", "-5")
    assert negative.returncode == 2 and "negative" in negative.stderr and negative.stdout == ""
    assert "was not running" in run_cli(env, "stop").stdout


def test_sigkilled_daemon_leaves_state_that_the_next_start_recovers_from(tmp_path, tiny_pair, monkeypatch):
    env = specd_env(tmp_path)
    _, killed, _ = start(env, tiny_pair[0])
    os.kill(killed, signal.SIGKILL)
    wait_gone(killed)
    assert (tmp_path / "state" / "daemon.json").exists()  # nothing could clean up after SIGKILL

    url, pid, done = start(env, tiny_pair[0])
    assert pid != killed and "already running" not in done.stdout
    assert json.loads(run_cli(env, "status", "--json").stdout)["pid"] == pid
    assert run_cli(env, "stop").returncode == 0
    assert_nothing_left(tmp_path, pid, env)

    # The language server's way in: find it, or start it like `specd start` does.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SPECD_VERIFIER", str(tiny_pair[0]))
    monkeypatch.setenv("SPECD_PORT", "0")
    messages: list[str] = []
    info = ensure_daemon_running(messages.append, paths_for(tmp_path))
    assert info.ready and messages
    assert ensure_daemon_running(messages.append, paths_for(tmp_path)) == info  # found, not started twice
    assert run_cli(env, "stop").returncode == 0
    assert_nothing_left(tmp_path, info.pid, env)


def test_malformed_settings_json_stops_start_with_line_and_column_and_stays_untouched(tmp_path):
    env = specd_env(tmp_path)
    settings = tmp_path / "config" / "settings.json"
    settings.parent.mkdir(parents=True)
    text = '{\n  "port": 0,\n  "verifier" "x"\n}\n'
    settings.write_text(text)
    for command in ("start", "serve"):
        done = run_cli(env, command)
        assert done.returncode == 2
        assert "settings.json: line 3 column 14" in done.stderr, done.stderr
    assert settings.read_text() == text
    assert not (tmp_path / "state" / "daemon.json").exists()


def test_start_refuses_a_model_it_cannot_find_before_spawning_a_daemon(tmp_path):
    env = specd_env(tmp_path)
    cases = {str(tmp_path / "no-such-model.gguf"): "no-such-model.gguf does not exist",
             "./models/nothing": "models/nothing does not exist",
             "smollm2-135": "unknown model 'smollm2-135': use an embedded name (smollm2-135m, gemma3-270m)"}
    for verifier, message in cases.items():
        done = run_cli(env, "start", "--port", "0", "--verifier", verifier)
        assert done.returncode == 2 and f"specd: verifier: " in done.stderr and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "state" / "daemon.log").exists()  # no daemon was spawned


def test_start_reports_a_model_that_cannot_load_and_leaves_no_state(tmp_path):
    env = specd_env(tmp_path)
    done = run_cli(env, "start", "--port", "0", "--verifier", unloadable_model(tmp_path), "--device", "cpu")
    assert done.returncode == 1
    assert "exited during start" in done.stderr and "no-such-model" in done.stderr
    assert not (tmp_path / "state" / "daemon.json").exists()
    assert not lock_is_held(tmp_path / "state" / "daemon.lock")
    with socket.socket() as busy:  # a port another program holds is said before any daemon starts (as restart)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        again = run_cli(env, "start", "--port", str(busy.getsockname()[1]),
                        "--verifier", unloadable_model(tmp_path, "other"), "--device", "cpu")
    assert again.returncode == 2 and "address already in use: another program uses the port" in again.stderr.lower()
    assert "no-such-model" not in again.stderr  # the log's lines of the earlier start are not this one's
    assert "exited during start" not in again.stderr and not lock_is_held(tmp_path / "state" / "daemon.lock")


def test_light_commands_do_not_import_torch(tmp_path):
    code = ("import sys\nfrom specd.daemon.cli.main import main\n"
            "codes = [main(['status']), main(['stop'])]\n"
            "print(codes, 'torch' in sys.modules, 'aiohttp' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], env=specd_env(tmp_path), capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[3, 0] False False"


def test_lsp_command_hands_its_arguments_to_the_language_server(tmp_path):
    done = run_cli(specd_env(tmp_path), "lsp", "--help")
    assert done.returncode == 0
    assert "specd lsp" in done.stdout


def test_complete_without_a_daemon_says_how_to_start_one(tmp_path):
    done = subprocess.run([sys.executable, "-m", "specd.daemon.cli", "complete"], input="x = ",
                          env=specd_env(tmp_path), capture_output=True, text=True)
    assert done.returncode == 1
    assert "not running; start it with `specd start`" in done.stderr


def test_logs_without_a_log_says_where_it_looked(tmp_path):
    env = specd_env(tmp_path)
    done = run_cli(env, "logs")
    assert done.returncode == 1 and done.stdout == ""
    assert f"no log at {env['SPECD_HOME']}" in done.stderr and "specd start" in done.stderr


def test_complete_says_what_is_wrong_with_its_file_or_cursor(tmp_path):
    (tmp_path / "binary.py").write_bytes(b"\xff\xfe x")
    (tmp_path / "ok.py").write_text("a = 1\n")
    cases = {("missing.py",): "cannot read missing.py: No such file or directory",
             (str(tmp_path),): f"cannot read {tmp_path}: Is a directory",
             (str(tmp_path / "binary.py"),): "binary.py is not UTF-8 text (byte 0",
             (str(tmp_path / "ok.py"), "--column", "3"): "--column goes with --line",
             (str(tmp_path / "ok.py"), "--line", "1", "--column", "9"): "--column 9 is outside line 1 (1..6)"}
    for arguments, message in cases.items():
        done = run_cli(specd_env(tmp_path), "complete", *arguments)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_complete_gives_up_on_a_frozen_daemon_after_its_request_timeout(tmp_path):
    with socket.socket() as frozen:  # connections are accepted by the kernel and never answered (SIGSTOP)
        frozen.bind(("127.0.0.1", 0))
        frozen.listen()
        url = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        stand_in = start_stand_in(tmp_path, {"url": url, "settings": {"request_timeout": 0.5}})
        try:
            (tmp_path / "state" / "token").write_text("t\n")
            done = subprocess.run([sys.executable, "-m", "specd.daemon.cli", "complete"], input="x = ",
                                  env=specd_env(tmp_path), capture_output=True, text=True, timeout=60)
        finally:
            stand_in.kill()
            stand_in.wait()
    assert done.returncode == 1, done.stderr
    assert f"the daemon at {url} did not answer within 5.5s, past its request_timeout" in done.stderr


def test_status_of_a_daemon_that_does_not_answer_is_a_failure(tmp_path):
    with socket.socket() as frozen:  # the daemon's pid lives and holds the lock; its port never answers (SIGSTOP)
        frozen.bind(("127.0.0.1", 0))
        frozen.listen()
        url = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        stand_in = start_stand_in(tmp_path, {"url": url})
        try:
            (tmp_path / "state" / "token").write_text("t\n")
            human = run_cli(specd_env(tmp_path), "status")
            machine = run_cli(specd_env(tmp_path), "status", "--json")
        finally:
            stand_in.kill()
            stand_in.wait()
    assert human.returncode == 1 and machine.returncode == 1, (human.stdout, human.stderr)
    assert f"running at {url}" in human.stdout and "not answering: " in human.stdout
    report = json.loads(machine.stdout)
    assert report["running"] is True and report["responding"] is False


def test_complete_refuses_stdin_that_is_not_utf8(tmp_path):
    done = subprocess.run([sys.executable, "-m", "specd.daemon.cli", "complete"],
                          input=b"def f(x):\n    return \xc3\x28", env=specd_env(tmp_path), capture_output=True)
    assert done.returncode == 2
    assert "the text from stdin is not UTF-8 text (byte 21: invalid continuation byte)" in done.stderr.decode()


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["logs", "-n", "500"]])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path, command):
    # `specd status | head -3`: the reader is gone before specd writes. The pipe's read end is closed before
    # the child has even imported specd, so every write meets EPIPE.
    env = specd_env(tmp_path)
    log_file = paths_for(tmp_path).log_file
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("".join(f"line {i}\n" for i in range(5000)))
    child = subprocess.Popen([sys.executable, "-m", "specd.daemon.cli", *command], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    _, err = child.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert child.returncode == 141
