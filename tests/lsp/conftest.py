"""Fixtures that start `specd lsp` as a real subprocess and drive it over JSON-RPC with pytest-lsp."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from .fake_daemon import FakeDaemon
from .real_daemon import run_cli, start_daemon

SERVER_COMMAND = [sys.executable, "-c", "import sys; from specd.lsp.server import main; main(sys.argv[1:])"]


def server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SPECD_HOME"] = str(home)
    return env


@pytest.fixture
def specd_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "specd-home"
    home.mkdir()
    monkeypatch.setenv("SPECD_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def real_daemon_home(tmp_path_factory):
    """One real daemon for the session's end-to-end tests (the LSP restarts it if a test kills it)."""
    home = tmp_path_factory.mktemp("specd-real")
    start_daemon(home)
    yield home
    run_cli(home, "stop")


@pytest.fixture
async def fake_daemon(specd_home: Path):
    daemon = await FakeDaemon().start()
    yield daemon
    await daemon.stop()


@pytest.fixture
async def start_lsp(specd_home: Path):
    """`await start_lsp(...)` -> an initialized client; shut down at the end of the test."""
    clients: list[LanguageClient] = []

    async def start(init_options=None, encodings=None, configuration=None, args=(), inline_client=False) -> LanguageClient:
        command = [*SERVER_COMMAND, *args]
        client = await ClientServerConfig(server_command=command, server_env=server_env(specd_home)).start()
        clients.append(client)
        if configuration is not None:
            client.set_configuration(configuration, section="specd")
        caps = types.ClientCapabilities(
            general=types.GeneralClientCapabilities(position_encodings=encodings) if encodings else None,
            workspace=types.WorkspaceClientCapabilities(configuration=configuration is not None),
            text_document=types.TextDocumentClientCapabilities(
                inline_completion=types.InlineCompletionClientCapabilities()) if inline_client else None,
        )
        client.initialize_result = await client.initialize_session(
            types.InitializeParams(capabilities=caps, initialization_options=init_options))
        return client

    yield start
    for client in clients:
        if client._server is not None and client._server.returncode is None:  # not stopped by the test
            await client.shutdown_session()
            await client.stop()
