"""Malformed notifications and every way out of `specd lsp`: no traceback, the server keeps working."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from .conftest import server_env
from .lsp_helpers import eventually, inline, inline_text, open_doc

URI = "file:///work/project/main.py"
FAST = {"debounceMs": 0}
NO_PARAMS = object()

MALFORMED_CURSOR_HINTS = [
    NO_PARAMS,
    None,
    {},
    [1, 2],
    "text",
    {"textDocument": {"uri": URI}},
    {"position": {"line": 0, "character": 0}},
    {"textDocument": "x", "position": [0, 0]},
    {"textDocument": {"uri": 7}, "position": {"line": 0, "character": 0}},
    {"textDocument": {"uri": URI}, "position": {"line": 10**30, "character": 0}},
    {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 2**31}},
    {"textDocument": {"uri": URI}, "position": {"line": -1, "character": -5}},
    {"textDocument": {"uri": URI}, "position": {"line": "1", "character": 0.5}},
    {"type_name": "1x", "textDocument": {"uri": URI}, "position": {"line": 0}},  # pygls made a named tuple "1x"
    {"textDocument": {"uri": "file:///never/opened.py"}, "position": {"line": 0, "character": 0}},
]


@pytest.mark.parametrize("params", MALFORMED_CURSOR_HINTS)
async def test_a_malformed_cursor_hint_is_ignored_without_a_traceback(fake_daemon, start_lsp, capfd, params):
    fake_daemon.reply = lambda body: "return 1"
    client = await start_lsp(init_options=FAST, args=["--verbose"])
    open_doc(client, URI, "def f():\n    \n")
    message = {"jsonrpc": "2.0", "method": "specd/didMoveCursor"}
    if params is not NO_PARAMS:
        message["params"] = params
    client.protocol._send_data(message)  # as sent, including what pygls's client would not send (no params)
    assert inline_text(await inline(client, URI, (1, 4))) == "return 1"
    assert fake_daemon.requests[0].get("prefill_only") is not True  # no warm-up from it
    await client.shutdown_session()
    await client.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "rror" not in err, err
    assert len([line for line in err.splitlines() if "didMoveCursor" in line]) <= 1, err


def _framed(*messages: dict) -> bytes:
    bodies = [json.dumps({"jsonrpc": "2.0", **m}).encode() for m in messages]
    return b"".join(b"Content-Length: %d\r\n\r\n" % len(body) + body for body in bodies)


@pytest.mark.parametrize("ending, code", [("shutdown and exit", 0), ("exit", 1), ("end of stdin", 0)])
async def test_every_way_out_closes_the_daemon_connection(fake_daemon, specd_home, ending, code):
    """A completion opened the HTTP session; `exit` without `shutdown` or the end of stdin left it to aiohttp's
    "Unclosed client session" warning."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "specd.daemon.cli", "lsp", env=server_env(specd_home),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    doc = {"uri": URI, "languageId": "python", "version": 1, "text": "x = 1\n"}
    server.stdin.write(_framed(
        {"id": 1, "method": "initialize", "params": {"capabilities": {}, "initializationOptions": FAST}},
        {"method": "initialized", "params": {}},
        {"method": "textDocument/didOpen", "params": {"textDocument": doc}},
        {"id": 2, "method": "textDocument/completion",
         "params": {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 0}}}))
    await eventually(lambda: len(fake_daemon.requests) == 1, "the completion reached the daemon")
    await asyncio.sleep(0.2)  # its answer read, the connection kept in the session's pool
    if ending != "end of stdin":
        shutdown = [{"id": 3, "method": "shutdown"}] if ending.startswith("shutdown") else []
        server.stdin.write(_framed(*shutdown, {"method": "exit"}))
    server.stdin.close()
    _, err = await asyncio.wait_for(server.communicate(), 30)
    assert server.returncode == code, err.decode()
    assert b"Unclosed" not in err and b"Traceback" not in err, err.decode()
