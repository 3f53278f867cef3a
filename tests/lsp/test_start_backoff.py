"""After a failed daemon start the language server does not start one again on every keystroke: only once
settings.json changes or a back-off delay passes. A daemon started by hand meanwhile is found at once."""

from __future__ import annotations

import json
import os

from lsprotocol import types
from pytest_lsp import ClientServerConfig

from specd.lsp.client import DaemonClient, DaemonError, DaemonStartError

from .conftest import SERVER_COMMAND, server_env
from .fake_daemon import FakeDaemon
from .lsp_helpers import inline, inline_text, insert, open_doc
from .real_daemon import run_cli, served

URI = "file:///work/project/main.py"
FAST = {"debounceMs": 0, "maxTokens": 8}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write_settings(home, **settings) -> None:
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "settings.json").write_text(json.dumps(settings))


async def outcome(client: DaemonClient) -> str:
    """'answer', 'start failed' (a start was tried: the error the user is shown) or 'held back' (no start)."""
    try:
        await client.complete({"prefix": "x"})
    except DaemonStartError as exc:
        assert "nope-model" in str(exc)
        return "start failed"
    except DaemonError as exc:
        assert "nope-model" in str(exc) and "settings.json changes" in str(exc)  # the reason, logged again
        return "held back"
    return "answer"


async def test_a_failed_start_waits_for_a_settings_change_or_a_doubling_delay(specd_home):
    write_settings(specd_home, verifier="nope-model")
    starts: list[float] = []
    clock = Clock()

    def start():
        starts.append(clock.now - 1000)
        raise RuntimeError("model folder not found: nope-model")

    client = DaemonClient(start=start, clock=clock)  # the real find and settings stamp
    outcomes = []
    for second in range(0, 800):
        clock.now = 1000 + second
        outcomes.append(await outcome(client))
    assert starts == [0, 30, 90, 210, 450, 690]  # 30 s, doubling, at most 240 s
    assert outcomes.count("start failed") == len(starts) and outcomes.count("held back") == 800 - len(starts)

    settings = specd_home / "config" / "settings.json"
    stat = settings.stat()
    os.utime(settings, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the user saved it
    assert await outcome(client) == "start failed" and len(starts) == 7  # tried again at once
    clock.now += 29
    assert await outcome(client) == "held back"  # and the delay starts over at 30 s
    clock.now += 2
    assert await outcome(client) == "start failed" and len(starts) == 8

    daemon = await FakeDaemon().start()  # started by hand meanwhile: found, although starting is held back
    try:
        assert await outcome(client) == "answer" and len(starts) == 8
        assert len(daemon.requests) == 1
    finally:
        await daemon.stop()
        await client.close()


def engine_imports(home) -> int:
    """How many daemons were spawned: each writes this line to the log once."""
    log = home / "state" / "daemon.log"
    return log.read_text().count("importing the engine") if log.exists() else 0


async def test_the_language_server_does_not_restart_a_daemon_that_cannot_load(tmp_path, monkeypatch):
    from tests.fixtures.tiny_models import write_tiny_pair

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SPECD_HOME", str(home))
    write_settings(home, verifier=str(tmp_path / "no-such-model"), port=0)
    client = await ClientServerConfig(server_command=SERVER_COMMAND, server_env=server_env(home)).start()
    try:
        await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                               initialization_options=FAST))
        open_doc(client, URI, "x = ")
        assert inline_text(await inline(client, URI, (0, 4))) == ""
        assert engine_imports(home) == 1
        for version, column in ((2, 4), (3, 5)):  # the next keystrokes: answered at once, nothing started
            insert(client, URI, version, (0, column), "1")
            assert inline_text(await inline(client, URI, (0, column + 1))) == ""
        assert engine_imports(home) == 1
        held = [m.message for m in client.log_messages if "settings.json changes" in m.message]
        assert len(held) == 2 and all("no-such-model" in message for message in held)

        write_settings(home, verifier=str(tmp_path / "other-missing-model"), port=0)  # a change: tried again
        insert(client, URI, 4, (0, 6), "2")
        assert inline_text(await inline(client, URI, (0, 7))) == ""
        assert engine_imports(home) == 2
        assert any("other-missing-model" in m.message for m in client.log_messages)
        shown = [m for m in client.messages if "could not start" in m.message]
        assert len(shown) == 1  # the pop-up was not shown again

        verifier, _ = write_tiny_pair(tmp_path / "models")
        started = run_cli(home, "start", "--verifier", str(verifier), "--device", "cpu")  # by hand
        assert started.returncode == 0, started.stderr
        insert(client, URI, 5, (0, 7), "3")
        await inline(client, URI, (0, 8))
        assert served() == 1  # found at once and asked, not held back
        assert engine_imports(home) == 3  # the hand start's daemon only
    finally:
        await client.shutdown_session()
        await client.stop()
        run_cli(home, "stop")
