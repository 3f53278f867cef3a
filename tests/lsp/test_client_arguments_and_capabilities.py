"""What real LSP clients send at start: the transport arguments vscode-languageclient appends, the editor-side
keys of the `specd` settings section, and whether the client shows ghost text (issue 10, faults 1-3)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from lsprotocol import types

from .conftest import SERVER_COMMAND, server_env
from .lsp_helpers import eventually, inline, inline_text, open_doc, settings_become

URI = "file:///work/project/main.py"
FAST = {"debounceMs": 0}


def change(client, section: dict) -> None:
    """Settings changed as VS Code does it: a notification, then the server pulls the section."""
    client.set_configuration(section, section="specd")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))


async def test_server_accepts_the_arguments_vscode_languageclient_appends(fake_daemon, start_lsp):
    # vscode-languageclient 11 (node/main.js) runs an Executable with `--stdio` for TransportKind.stdio, and a
    # Node module also with `--clientProcessId=<pid>`.
    client = await start_lsp(init_options=FAST, args=["--stdio", "--clientProcessId=4242"])
    open_doc(client, URI, "x = ")
    assert inline_text(await inline(client, URI, (0, 4))) == "x"


@pytest.mark.parametrize("argument", ["--socket=6009", "--pipe=/tmp/specd-test.sock", "--node-ipc", "--port=6009"])
def test_other_transports_are_refused_with_what_to_do(specd_home, argument):
    via_module = subprocess.run([*SERVER_COMMAND, argument], env=server_env(specd_home), capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
    via_cli = subprocess.run([sys.executable, "-m", "specd.daemon.cli", "lsp", argument], env=server_env(specd_home),
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    for done in (via_module, via_cli):
        assert done.returncode == 2
        assert f"{argument.split('=')[0]} is not supported: specd lsp talks LSP over stdio only" in done.stderr
        assert "Traceback" not in done.stderr


def test_an_unknown_argument_is_still_a_usage_error(specd_home):
    done = subprocess.run([*SERVER_COMMAND, "--colour"], env=server_env(specd_home), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "unrecognized arguments: --colour" in done.stderr


async def test_editor_side_keys_raise_no_pop_up_and_an_unknown_key_is_logged_once(fake_daemon, start_lsp):
    # The `specd` section as VS Code answers it: the extension's own keys sit beside the server's.
    section = {**FAST, "enable": True, "serverPath": "/home/u/.local/bin/specd", "trace": {"server": "messages"},
               "maxTokens": 9, "fromANewerConfig": 1}
    client = await start_lsp(init_options={"client": "vscode"}, configuration=section)
    await settings_become(client, maxTokens=9)
    change(client, {**section, "maxTokens": 10})
    change(client, {**section, "maxTokens": 11})
    await settings_become(client, maxTokens=11)
    assert client.messages == []  # window/showMessage: none
    logged = [m.message for m in client.log_messages if "fromANewerConfig" in m.message]
    assert logged == ["unknown specd setting 'fromANewerConfig'; ignored"]
    assert not any("serverPath" in m.message or "'trace'" in m.message for m in client.log_messages)


async def test_a_bad_value_is_shown_once(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST, configuration={"maxTokens": -1})
    await eventually(lambda: client.messages, "a warning")
    change(client, {"maxTokens": -1, "debounceMs": 5})
    await settings_become(client, debounceMs=5)
    assert [m.message for m in client.messages] == ["specd setting maxTokens=-1 must be at least 1; kept 64"]
    assert client.messages[0].type == types.MessageType.Warning


async def test_clients_with_ghost_text_get_no_completion_menu_item(fake_daemon, start_lsp):
    with_inline = await start_lsp(init_options=FAST, inline_client=True)
    capabilities = with_inline.initialize_result.capabilities
    assert capabilities.inline_completion_provider is not None and capabilities.completion_provider is None
    without_inline = await start_lsp(init_options=FAST)
    capabilities = without_inline.initialize_result.capabilities
    assert capabilities.inline_completion_provider is not None and capabilities.completion_provider is not None


def _framed(*messages: dict) -> bytes:
    bodies = [json.dumps({"jsonrpc": "2.0", **m}).encode() for m in messages]
    return b"".join(b"Content-Length: %d\r\n\r\n" % len(body) + body for body in bodies)


@pytest.mark.parametrize("shutdown_first, code", [(True, 0), (False, 1)])
def test_exit_code_follows_the_lsp_specification(specd_home, shutdown_first, code):
    # `specd lsp`, as editors run it: 0 for `exit` after `shutdown`, 1 without; no traceback either way (it
    # flushed a stdout the server had closed).
    messages = [{"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}},
                {"method": "initialized", "params": {}}]
    messages += [{"id": 2, "method": "shutdown"}] if shutdown_first else []
    done = subprocess.run([sys.executable, "-m", "specd.daemon.cli", "lsp"], env=server_env(specd_home),
                          input=_framed(*messages, {"method": "exit"}), capture_output=True, timeout=60)
    assert done.returncode == code, done.stderr.decode()
    assert b"Traceback" not in done.stderr


def test_the_server_exits_when_the_editor_that_started_it_is_gone(specd_home):
    """LSP: "If the parent process is not alive then the server should exit", here while its stdin stays open (an
    editor killed with its pipe handed on); a processId that does not exist (another PID namespace) is no editor."""
    editor = subprocess.Popen(["sleep", "60"])
    servers = []
    for process_id in (editor.pid, 2**22 + 12345):
        server = subprocess.Popen([sys.executable, "-m", "specd.daemon.cli", "lsp"], env=server_env(specd_home),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        server.stdin.write(_framed({"id": 1, "method": "initialize",
                                    "params": {"processId": process_id, "rootUri": None, "capabilities": {}}},
                                   {"method": "initialized", "params": {}}))
        server.stdin.flush()
        servers.append(server)
    watched, unknown = servers
    try:
        time.sleep(2)
        assert watched.poll() is None and unknown.poll() is None
        editor.kill()
        editor.wait()
        assert watched.wait(timeout=15) == 1
        assert unknown.poll() is None  # still serving: it never watched a process it could not see
    finally:
        for server in servers:
            server.kill()
            server.wait()


def _answers(stdout: bytes) -> dict:
    """The responses in a server's framed output, by id."""
    answers, rest = {}, stdout
    while rest:
        header, _, rest = rest.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: *(\d+)", header).group(1))
        message, rest = json.loads(rest[:length]), rest[length:]
        if "id" in message and "method" not in message:
            answers[message["id"]] = message
    return answers


def test_requests_the_server_cannot_read_are_answered_with_an_error(specd_home):
    """JSON-RPC answers every request: a position with a negative column, or inline completion without its
    `context`, got no answer at all and the editor waited; an unknown method gets -32601 and an unknown command
    -32602 without an error log; requests after `shutdown` get -32600."""
    doc = {"uri": URI, "languageId": "python", "version": 1, "text": "x = 1\n"}
    position = {"textDocument": {"uri": URI}, "position": {"line": 0, "character": -1}}
    messages = [{"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}},
                {"method": "initialized", "params": {}},
                {"method": "textDocument/didOpen", "params": {"textDocument": doc}},
                {"id": 2, "method": "textDocument/completion", "params": position},
                {"id": 3, "method": "textDocument/inlineCompletion",
                 "params": {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 1}}},
                {"id": 4, "method": "specd/noSuchMethod", "params": {}},
                {"id": 6, "method": "workspace/executeCommand", "params": {"command": "specd.noSuchCommand"}},
                {"id": 5, "method": "shutdown"},
                # after shutdown a request is an InvalidRequest (LSP: "should error"), not left unanswered
                {"id": 7, "method": "textDocument/completion",
                 "params": {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 1}}},
                {"id": 8, "method": "shutdown"}, {"method": "exit"}]
    done = subprocess.run([sys.executable, "-m", "specd.daemon.cli", "lsp"], env=server_env(specd_home),
                          input=_framed(*messages), capture_output=True, timeout=60)
    answers = _answers(done.stdout)
    assert answers[2]["error"]["code"] == answers[3]["error"]["code"] == -32602
    assert answers[4]["error"]["code"] == -32601
    assert answers[6]["error"]["code"] == -32602  # an unknown command: the client's error, no internal one
    assert "result" in answers[5] and done.returncode == 0
    assert answers[7]["error"]["code"] == answers[8]["error"]["code"] == -32600
    assert b"internal error" not in done.stdout + done.stderr


def notify_raw(client, method: str, params: dict) -> None:
    """A notification as written, past the client's lsprotocol types (which would refuse malformed params)."""
    client.protocol._send_data({"jsonrpc": "2.0", "method": method, "params": params})


async def test_a_notification_the_server_cannot_read_is_logged_and_a_lost_edit_drops_the_document(fake_daemon,
                                                                                                   start_lsp):
    """A malformed `didOpen` is a one-line warning naming the fields (not a traceback, never the text); after a
    malformed `didChange` specd no longer knows the text, so it completes nothing there until the editor opens the
    document again, instead of completing from a stale copy."""
    client = await start_lsp(init_options=FAST, inline_client=True)
    notify_raw(client, types.TEXT_DOCUMENT_DID_OPEN, {"textDocument": {"uri": URI, "text": "secret = 1"}})
    open_doc(client, URI, "x = 1\n")
    assert inline_text(await inline(client, URI, (1, 0))) == "x"
    asked = len(fake_daemon.requests)
    notify_raw(client, types.TEXT_DOCUMENT_DID_CHANGE, {"textDocument": {"uri": URI, "version": "two"},
                                                         "contentChanges": [{"text": "secret = 2"}]})
    assert inline_text(await inline(client, URI, (1, 0))) == ""
    assert len(fake_daemon.requests) == asked
    open_doc(client, URI, "x = 2\n", version=3)
    assert inline_text(await inline(client, URI, (1, 0))) == "x"
    warnings = [m.message for m in client.log_messages if m.type == types.MessageType.Warning]
    assert warnings == [
        "specd: ignored textDocument/didOpen, its params do not fit: required field missing @ "
        "params.textDocument.languageId; required field missing @ params.textDocument.version",
        "specd: ignored textDocument/didChange, its params do not fit: invalid value for type, expected int @ "
        "params.textDocument.version; no completions in this document until it is opened again"]
    assert not any("secret" in m.message or "internal error" in m.message for m in client.log_messages)
