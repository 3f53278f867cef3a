"""`specd lsp` against the real daemon (`specd start` in a temporary SPECD_HOME, tiny random models).

The tiny model's text is gibberish, so these tests check what the server does with it (where it goes,
whether a decode happened, what the daemon counted), not what it says.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from specd.daemon.discovery import find_daemon

from .lsp_helpers import (cancel_request, complete, eventually, inline, inline_text, insert, open_doc, start_inline,
                          status)
from .real_daemon import cancelled_by_disconnect, daemon_status, long_document, run_cli, served

URI = "file:///work/project/main.py"
FAST = {"debounceMs": 0, "maxTokens": 12}


@pytest.fixture
def specd_home(real_daemon_home, monkeypatch):
    monkeypatch.setenv("SPECD_HOME", str(real_daemon_home))
    return real_daemon_home


async def test_inline_and_completion_results(start_lsp):
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "def add(a, b):\n    return a")
    before = served()
    text = inline_text(await inline(client, URI, (1, 12)))
    assert text and "\n" not in text  # inside a line: one line
    listed = await complete(client, URI, (1, 12))
    assert listed.is_incomplete is True
    assert listed.items[0].text_edit.new_text == "a" + text
    assert served() == before + 1  # the completion request reused the inline answer
    report = await status(client)
    assert report["last"]["mode"] == "line" and report["last"]["engine_total_s"] > 0


async def test_typed_ahead_is_served_without_a_new_decode(start_lsp):
    client = await start_lsp(init_options={**FAST, "mode": "line"})
    open_doc(client, URI, "class Parser:\n    def parse(self, text")
    text = inline_text(await inline(client, URI, (1, 25)))
    assert len(text) >= 2, text
    before = served()
    insert(client, URI, 2, (1, 25), text[0])
    assert inline_text(await inline(client, URI, (1, 26))) == text[1:]
    assert served() == before
    assert (await status(client))["typedAhead"] == 1


async def test_debounce_sends_one_decode_for_a_burst_of_keystrokes(start_lsp):
    client = await start_lsp(init_options={"debounceMs": 1500, "maxTokens": 8})
    open_doc(client, URI, "")
    before = served()
    pending = []
    for i, ch in enumerate("value = "):
        insert(client, URI, i + 2, (0, i), ch)
        pending.append(asyncio.ensure_future(inline(client, URI, (0, i + 1))))
    results = [inline_text(r) for r in await asyncio.gather(*pending)]
    assert results[:-1] == [""] * 7
    assert served() == before + 1
    assert (await status(client))["superseded"] == 7


async def test_cancel_request_cancels_the_daemon_job(start_lsp):
    client = await start_lsp(init_options={"debounceMs": 0, "maxTokens": 2000, "draftTokens": 0})
    text = long_document()
    open_doc(client, URI, text)
    before = cancelled_by_disconnect()
    pending = start_inline(client, "long-1", URI, (text.count("\n"), 0))
    await eventually(lambda: daemon_status()["idle"] is False, "the daemon is decoding")
    cancel_request(client, "long-1")
    with pytest.raises(JsonRpcRequestCancelled):
        await pending
    await eventually(lambda: cancelled_by_disconnect() == before + 1, "the daemon cancelled the job")


async def test_emoji_and_cjk_before_the_cursor_in_each_encoding(start_lsp):
    line = "s = '😀中文"
    units = {"utf-8": len(line.encode()), "utf-16": len(line.encode("utf-16-le")) // 2, "utf-32": len(line)}
    assert len(set(units.values())) == 3
    for encoding, column in units.items():
        client = await start_lsp(init_options={**FAST, "mode": "line"}, encodings=[encoding])
        open_doc(client, URI, line + "'\nprint(s)\n")
        result = await inline(client, URI, (0, column))
        report = await status(client)
        assert report["positionEncoding"] == encoding
        assert report["last"]["prefix_chars"] == len(line), encoding  # cut exactly at the cursor
        assert report["last"]["suffix_chars"] == len("'\nprint(s)\n"), encoding
        if result.items:
            assert result.items[0].range.start == types.Position(0, column), encoding


async def test_a_5_mb_document_is_served(start_lsp):
    body = "".join(f"value_{i} = compute({i})  # a line of some length\n" for i in range(110_000))
    # Windows small enough for the tiny model's 2048-token context.
    client = await start_lsp(init_options={**FAST, "prefixChars": 1500, "suffixChars": 500})
    open_doc(client, URI, body)
    for version in range(2, 30):
        insert(client, URI, version, (55_000, version - 2), "z")
    before = served()
    await inline(client, URI, (55_000, 28))
    assert served() == before + 1, [m.message for m in client.log_messages]
    last = (await status(client))["last"]
    assert 1000 < last["prefix_chars"] <= 1500 and 0 < last["suffix_chars"] <= 500


async def test_daemon_killed_mid_request_gives_empty_then_recovers(start_lsp):
    client = await start_lsp(init_options={"debounceMs": 0, "maxTokens": 2000, "draftTokens": 0})
    text = long_document()
    open_doc(client, URI, text)
    pid = find_daemon().pid
    pending = asyncio.ensure_future(inline(client, URI, (text.count("\n"), 0)))
    await eventually(lambda: daemon_status()["idle"] is False, "the daemon is decoding")
    os.kill(pid, signal.SIGKILL)
    assert inline_text(await pending) == ""
    assert any("lost the connection to the daemon" in m.message for m in client.log_messages)
    # The next request finds no daemon, starts one (as `specd start` does) and is answered by it.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"specd": FAST}))
    insert(client, URI, 2, (text.count("\n"), 0), "x = ")
    await inline(client, URI, (text.count("\n"), 4))
    assert find_daemon().pid != pid
    assert served() == 1  # the new daemon answered that request
    assert any("starting one" in m.message for m in client.log_messages)
    assert (await status(client))["failures"] == 1


async def test_a_daemon_that_cannot_start_gives_empty_and_the_reason(start_lsp, tmp_path, monkeypatch):
    home = tmp_path / "broken"
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.json").write_text(json.dumps({"verifier": str(tmp_path / "no-such-model"), "port": 0}))
    monkeypatch.setenv("SPECD_HOME", str(home))
    from .conftest import SERVER_COMMAND, server_env
    from pytest_lsp import ClientServerConfig

    client = await ClientServerConfig(server_command=SERVER_COMMAND, server_env=server_env(home)).start()
    try:
        await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                               initialization_options=FAST))
        # VS Code's extension asks for the status first: that start's failure is shown as a completion's is
        assert "could not start the daemon" in (await status(client))["daemon"]["error"]
        await eventually(lambda: any("could not start" in m.message for m in client.messages), "the pop-up")
        open_doc(client, URI, "x = ")
        assert inline_text(await inline(client, URI, (0, 4))) == ""
        assert any("could not start" in m.message for m in client.log_messages)
        insert(client, URI, 2, (0, 4), "1")
        assert inline_text(await inline(client, URI, (0, 5))) == ""
        # Shown to the user once, with the reason, however many requests fail on it.
        shown = [m for m in client.messages if "could not start" in m.message]
        assert len(shown) == 1 and shown[0].type == types.MessageType.Error
        assert shown[0].message.startswith("specd could not start its daemon: ") and shown[0].message.count("\n") == 0
        assert "model folder not found" in shown[0].message and "no-such-model" in shown[0].message
    finally:
        await client.shutdown_session()
        await client.stop()
        run_cli(home, "stop")
