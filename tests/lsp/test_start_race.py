"""Two editor windows opened together, no daemon running: both language servers start one at the same moment.
One daemon starts, the other server waits for it and connects to it, with no error (real processes, tiny models)."""

from __future__ import annotations

import asyncio
import json

from lsprotocol import types
from pytest_lsp import ClientServerConfig

from .conftest import SERVER_COMMAND, server_env
from .lsp_helpers import inline, open_doc
from .real_daemon import run_cli, served

URI = "file:///work/project/main.py"


async def test_two_language_servers_starting_the_daemon_at_once_both_get_answers(tmp_path, monkeypatch):
    from tests.fixtures.tiny_models import write_tiny_pair

    home = tmp_path / "home"
    verifier, _ = write_tiny_pair(home / "models")
    (home / "config").mkdir()
    (home / "config" / "settings.json").write_text(json.dumps({"verifier": str(verifier), "port": 0,
                                                              "device": "cpu", "request_timeout": 120}))
    monkeypatch.setenv("SPECD_HOME", str(home))
    clients = []
    try:
        for _ in range(2):
            client = await ClientServerConfig(server_command=SERVER_COMMAND, server_env=server_env(home)).start()
            clients.append(client)
            await client.initialize_session(types.InitializeParams(
                capabilities=types.ClientCapabilities(), initialization_options={"debounceMs": 0, "maxTokens": 4}))
            open_doc(client, URI, "def add(a, b):\n    return ")
        await asyncio.gather(*(inline(client, URI, (1, 11)) for client in clients))
        for client in clients:
            assert not [m.message for m in client.messages], "an error was shown"
            assert not [m.message for m in client.log_messages if "no completion" in m.message]
        assert served() == 2  # both asked the one daemon
        log = (home / "state" / "daemon.log").read_text()
        assert log.count("importing the engine") == 1 and "already running" not in log
    finally:
        for client in clients:
            await client.shutdown_session()
            await client.stop()
        run_cli(home, "stop")
