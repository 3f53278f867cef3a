"""`specd start` and `specd restart` while a daemon runs, against what settings.json, SPECD_* and the flags say now.

The daemon here is a stand-in: a process that holds the daemon's lock and wrote its state file (as `specd serve`
does), so these checks need neither torch nor a model. It does not answer HTTP, like a daemon still loading."""

from __future__ import annotations

import json
import subprocess

import pytest

from specd.daemon.config.settings import Settings, settings_record

from .conftest import process_gone, run_cli, specd_env
from .stand_in import start_stand_in

BROKEN = '{\n  "max_draft_tokens": 6\n  "threads": 1\n}\n'  # a comma missing


@pytest.fixture
def running(tmp_path):
    """Starts a stand-in daemon: running(settings, flags) -> its process."""
    started: list[subprocess.Popen] = []

    def start(settings: Settings = Settings(), flags: list[str] = ()) -> subprocess.Popen:
        child = start_stand_in(tmp_path, {"flags": list(flags), "settings": settings_record(settings)})
        started.append(child)
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()


def write_settings(home, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "settings.json").write_text(text)


def test_an_upstream_loads_no_verifier_so_its_path_is_not_checked(tmp_path, running):
    running()
    tokenizer = tmp_path / "no-tokenizer.json"  # the daemon started then fails on it, fast and offline
    write_settings(tmp_path, json.dumps({"upstream": {"url": "http://127.0.0.1:9", "tokenizer": str(tokenizer)},
                                         "verifier": str(tmp_path / "gone.gguf")}))
    done = run_cli(specd_env(tmp_path), "restart", "--port", "0", timeout=120)
    assert "gone.gguf" not in done.stderr and "stopping specd" in done.stderr, done.stderr
    assert done.returncode == 1 and "no-tokenizer.json" in done.stderr, done.stderr


@pytest.mark.parametrize("where", ["settings.json", "environment", "flag", "model file", "model folder"])
def test_restart_with_bad_settings_keeps_the_running_daemon(tmp_path, running, where):
    daemon = running()
    env, argv = specd_env(tmp_path), ["restart"]
    if where == "settings.json":
        write_settings(tmp_path, BROKEN)
    elif where == "environment":
        env["SPECD_THREADS"] = "many"
    elif where == "flag":
        argv += ["--threads", "many"]
    elif where == "model file":  # loading would fail only after the running daemon was stopped (a user's trial)
        argv += ["--verifier", str(tmp_path / "gone.gguf")]
    else:
        write_settings(tmp_path, json.dumps({"drafter": str(tmp_path / "no-such-folder")}))
    done = run_cli(env, *argv, timeout=120)
    assert done.returncode == 2, done.stderr
    expected = {"settings.json": "settings.json: line 3 column 3: expected ',' or '}' after a value",
                "environment": "SPECD_THREADS: expected an integer, got 'many'",
                "flag": "--threads: expected an integer, got 'many'",
                "model file": f"verifier: {tmp_path / 'gone.gguf'} does not exist",
                "model folder": f"drafter: {tmp_path / 'no-such-folder'} does not exist"}[where]
    assert expected in done.stderr, done.stderr
    assert (f"not restarted: specd keeps running at http://127.0.0.1:9 (pid {daemon.pid}) with its old settings"
            in done.stderr), done.stderr
    assert "stopping" not in done.stderr and done.stdout == ""
    assert daemon.poll() is None  # never stopped


def test_restart_checks_the_flags_it_keeps_from_the_last_start(tmp_path, running):
    daemon = running(flags=["--port", "0", "--cache-slots", "1"])
    write_settings(tmp_path, '{"cache_slots": 1, "max_context": 8}')  # too small, and kept by no flag
    done = run_cli(specd_env(tmp_path), "restart", "--port", "0", timeout=120)
    assert done.returncode == 2 and "'max_context': expected a value between 16 and" in done.stderr, done.stderr
    assert daemon.poll() is None


def test_start_on_bad_settings_says_the_running_daemon_still_runs(tmp_path, running):
    daemon = running()
    write_settings(tmp_path, BROKEN)
    done = run_cli(specd_env(tmp_path), "start", timeout=120)
    assert done.returncode == 2
    assert "settings.json: line 3 column 3" in done.stderr
    assert f"specd keeps running at http://127.0.0.1:9 (pid {daemon.pid}) with its old settings" in done.stderr
    assert daemon.poll() is None
    alone = run_cli(specd_env(tmp_path, SPECD_PORT="x"), "stop")  # stop reads no settings
    assert alone.returncode == 0 and process_gone(daemon.pid)
    done = run_cli(specd_env(tmp_path), "start", timeout=120)
    assert done.returncode == 2 and "keeps running" not in done.stderr  # nothing runs


def test_start_names_what_settings_json_and_the_environment_changed(tmp_path, running):
    running()  # started with the defaults and no flags
    write_settings(tmp_path, '// edited\n{"max_draft_tokens": 6, "port": 7411}\n')
    done = run_cli(specd_env(tmp_path, SPECD_CACHE_SLOTS="2"), "start", "--threads", "1", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "specd is already running at http://127.0.0.1:9" in done.stdout
    assert ("it runs with other settings: max_draft_tokens 8 -> 6 (settings.json), cache_slots 4 -> 2 "
            "(SPECD_CACHE_SLOTS), threads 0 -> 1 (--threads); `specd restart --threads 1` applies them"
            in done.stdout), done.stdout
    same = run_cli(specd_env(tmp_path), "start", "--max-draft-tokens", "8", timeout=120)  # the flag beats the file
    assert same.returncode == 0 and "max_draft_tokens" not in same.stdout and "restart" not in same.stdout


def test_start_leaves_out_what_the_daemons_own_start_flags_keep(tmp_path, running):
    # Started with `--port 0 --verifier other`: `specd restart` gives those flags again, so settings.json's port
    # and the default verifier would not apply; a value that settings.json removed goes back to its default.
    running(Settings(port=0, verifier="other", cache_slots=2), flags=["--port", "0", "--verifier", "other"])
    done = run_cli(specd_env(tmp_path), "start", timeout=120)
    assert "it runs with other settings: cache_slots 2 -> 4 (default); `specd restart` applies them" \
        in done.stdout, done.stdout


def test_status_tells_where_settings_json_is(tmp_path, running):
    path = str(tmp_path / "config" / "settings.json")
    stopped = run_cli(specd_env(tmp_path), "status", "--json")
    assert stopped.returncode == 3 and json.loads(stopped.stdout)["settings_file"] == path
    assert f"settings: {path} (not created: defaults)" in run_cli(specd_env(tmp_path), "status").stdout
    running()
    write_settings(tmp_path, "{}")
    report = json.loads(run_cli(specd_env(tmp_path), "status", "--json").stdout)
    assert report["settings_file"] == path
    assert f"settings: {path}\n" in run_cli(specd_env(tmp_path), "status").stdout + "\n"


def test_status_shows_the_start_flags_that_win_over_settings_json(tmp_path, running):
    """A trial set request_timeout in settings.json after `specd restart --request-timeout 0.5`, and nothing said
    why the daemon kept 0.5: `specd restart` keeps the flags of the last start."""
    running(flags=["--port", "0", "--request-timeout", "0.5"])
    write_settings(tmp_path, '{"request_timeout": 10}')
    shown = run_cli(specd_env(tmp_path), "status").stdout
    assert ("start flags: --port 0 --request-timeout 0.5 (over settings.json; `specd restart` keeps them, "
            "`specd stop` and `specd start` drop them)") in shown, shown


def test_status_warns_about_settings_a_start_would_refuse(tmp_path, running):
    running()
    write_settings(tmp_path, BROKEN)
    done = run_cli(specd_env(tmp_path), "status")
    path = tmp_path / "config" / "settings.json"
    assert (f"settings are not valid now: {path}: line 3 column 3: expected ',' or '}}' after a value (a start or "
            "restart would fail") in done.stdout, done.stdout
    report = json.loads(run_cli(specd_env(tmp_path), "status", "--json").stdout)
    assert report["settings_error"].startswith(f"{path}: line 3 column 3")
