"""Behaviour that needs a daemon whose answer or speed the test chooses (see fake_daemon.py).

Everything that the real daemon can show is in test_real_daemon.py; these stay on the fake because the
real one cannot be made to hold a decode open long enough to cancel it, or to return a chosen text
(the prefix the server cut, bracket balancing, a suggestion to type into).
"""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from .lsp_helpers import cancel_request, complete, edit, eventually, inline, inline_params, inline_text, start_inline, insert, open_doc, settings_become, status

URI = "file:///work/project/main.py"
FAST = {"debounceMs": 0}


async def test_advertises_inline_completion_and_incremental_sync(fake_daemon, specd_home):
    from pytest_lsp import ClientServerConfig

    from .conftest import SERVER_COMMAND, server_env

    client = await ClientServerConfig(server_command=SERVER_COMMAND, server_env=server_env(specd_home)).start()
    try:
        result = await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
        caps = result.capabilities
        assert caps.inline_completion_provider is not None
        assert caps.completion_provider is not None
        assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
        assert set(caps.execute_command_provider.commands) == {"specd.toggle", "specd.status"}
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_inline_and_completion_answer_with_the_daemon_text(fake_daemon, start_lsp):
    fake_daemon.reply = lambda body: "    total = a + b\n    return total"
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "def add(a, b):\n")
    item = (await inline(client, URI, (1, 0))).items[0]
    assert item.insert_text == "    total = a + b\n    return total"
    assert item.range == types.Range(types.Position(1, 0), types.Position(1, 0))
    listed = await complete(client, URI, (1, 0))
    assert listed.is_incomplete is True
    assert [i.text_edit.new_text for i in listed.items] == ["    total = a + b\n    return total"]
    # Typing the start of a word: the item replaces the word so a client filtering by it keeps the item.
    insert(client, URI, 2, (1, 0), "    ret")
    fake_daemon.reply = lambda body: "urn a + b\nprint()"
    item = (await complete(client, URI, (1, 7))).items[0]
    assert item.text_edit.new_text == "return a + b"
    assert item.text_edit.range == types.Range(types.Position(1, 4), types.Position(1, 7))
    assert item.label == "return a + b"
    body = fake_daemon.requests[-1]
    assert (body["prefix"], body["suffix"], body["mode"]) == ("def add(a, b):\n    ret", "", "line")
    assert body["document_id"] == URI and body["language"] == "python"


async def test_mode_is_block_on_an_empty_line_and_line_inside_text(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "if x:\n    \nfoo(1)\n")
    await inline(client, URI, (1, 4))
    await inline(client, URI, (2, 4))
    assert [r["mode"] for r in fake_daemon.requests] == ["block", "line"]


async def test_cancel_request_reaches_the_daemon(fake_daemon, start_lsp):
    fake_daemon.delay_s = 60
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "x = ")
    pending = start_inline(client, "slow-1", URI, (0, 4))
    await eventually(lambda: fake_daemon.requests, "the daemon got the request")
    cancel_request(client, "slow-1")
    with pytest.raises(JsonRpcRequestCancelled):
        await pending
    await eventually(lambda: fake_daemon.cancelled == 1, "the daemon saw the cancel")
    # The server is still healthy afterwards.
    fake_daemon.delay_s = 0
    assert inline_text(await inline(client, URI, (0, 4))) == "x"


async def test_newer_request_for_the_document_cancels_the_older(fake_daemon, start_lsp):
    fake_daemon.delay_s = 60
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "x = ")
    first = asyncio.ensure_future(inline(client, URI, (0, 4)))
    await eventually(lambda: fake_daemon.requests, "the daemon got the first request")
    fake_daemon.delay_s = 0
    insert(client, URI, 2, (0, 4), "1")
    second = await inline(client, URI, (0, 5))
    assert inline_text(await first) == ""
    assert inline_text(second) == "x"
    assert fake_daemon.cancelled == 1


async def test_debounce_sends_only_the_last_of_a_burst(fake_daemon, start_lsp):
    # A client that does not cancel (like Neovim's completion): one request per keystroke.
    client = await start_lsp(init_options={"debounceMs": 1500})
    open_doc(client, URI, "")
    requests = []
    for i, ch in enumerate("print"):
        insert(client, URI, i + 2, (0, i), ch)
        requests.append(asyncio.ensure_future(inline(client, URI, (0, i + 1))))
    results = [inline_text(r) for r in await asyncio.gather(*requests)]
    assert results == ["", "", "", "", "x"]
    assert [r["prefix"] for r in fake_daemon.requests] == ["print"]


async def test_typed_ahead_is_served_without_a_new_decode(fake_daemon, start_lsp):
    fake_daemon.reply = lambda body: "hello(world)"
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "x = ")
    assert inline_text(await inline(client, URI, (0, 4))) == "hello(world)"
    insert(client, URI, 2, (0, 4), "he")
    insert(client, URI, 3, (0, 6), "l")
    assert inline_text(await inline(client, URI, (0, 7))) == "lo(world)"
    assert len(fake_daemon.requests) == 1
    # Typing something else drops it: the next request decodes.
    insert(client, URI, 4, (0, 7), "p")
    assert inline_text(await inline(client, URI, (0, 8))) == "hello(world)"
    assert len(fake_daemon.requests) == 2
    assert (await status(client))["typedAhead"] == 1


async def test_an_empty_answer_is_remembered_for_its_spot_until_something_changes(fake_daemon, start_lsp):
    fake_daemon.reply = lambda body: ""
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "x = 1\ny = ")
    assert inline_text(await inline(client, URI, (1, 4))) == ""
    assert inline_text(await inline(client, URI, (1, 4))) == ""
    assert not (await complete(client, URI, (1, 4))).items
    assert len(fake_daemon.requests) == 1 and (await status(client))["rememberedEmpty"] == 2
    # Another spot, an edit, or other settings ask again.
    assert inline_text(await inline(client, URI, (0, 5))) == ""
    assert len(fake_daemon.requests) == 2
    insert(client, URI, 2, (1, 4), "2")
    assert inline_text(await inline(client, URI, (1, 5))) == ""
    assert len(fake_daemon.requests) == 3
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"specd": {**FAST, "maxTokens": 16}}))
    await settings_become(client, maxTokens=16)
    fake_daemon.reply = lambda body: "+ 3"
    assert inline_text(await inline(client, URI, (1, 5))) == "+ 3"
    assert len(fake_daemon.requests) == 4


async def test_accept_prefetches_the_next_completion(fake_daemon, start_lsp):
    fake_daemon.reply = lambda body: "first()" if len(fake_daemon.requests) == 1 else " + second()"
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "x = ")
    assert inline_text(await inline(client, URI, (0, 4))) == "first()"
    insert(client, URI, 2, (0, 4), "first()")  # what an editor sends when the ghost text is accepted
    await eventually(lambda: len(fake_daemon.requests) == 2, "the prefetch reached the daemon")
    assert fake_daemon.requests[1]["prefix"] == "x = first()"
    assert inline_text(await inline(client, URI, (0, 11))) == " + second()"
    assert len(fake_daemon.requests) == 2


async def test_a_crlf_documents_suggestion_has_its_line_ends_and_accepting_it_prefetches(fake_daemon, start_lsp):
    """The model writes \n (or a mix, where it copied the prompt's \r\n): VS Code normalised the mix on accept, so
    the accept was not recognised; other editors inserted it as it came."""
    fake_daemon.reply = lambda body: "if n < 2:\r\n        return n\n        x\n" if len(fake_daemon.requests) == 1 \
        else "x"
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "def f(n):\r\n    \r\n")  # an empty line: a block
    suggestion = inline_text(await inline(client, URI, (1, 4)))
    assert suggestion == "if n < 2:\r\n        return n\r\n        x"
    insert(client, URI, 2, (1, 4), suggestion)
    await eventually(lambda: len(fake_daemon.requests) == 2, "the prefetch after the accept")
    assert fake_daemon.requests[1]["prefix"].endswith("    if n < 2:\r\n        return n\r\n        x")


async def test_with_a_completion_item_selected_the_suggestion_extends_that_item(fake_daemon, start_lsp):
    """VS Code shows ghost text while its completion list is open only where it extends the selected item
    (`selectedCompletionInfo`): the suggestion is made as if the item had been typed, and covers its range."""
    replies = {"fibonacci": "(n - 1)", "factorial": "(n)", "fac": "torial(n)"}
    fake_daemon.reply = lambda body: next(r for end, r in replies.items() if body["prefix"].endswith(end))
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "def f(n):\n    return fac")
    assert inline_text(await inline(client, URI, (1, 14))) == "torial(n)"  # no list open
    for item, expected in (("fibonacci", "fibonacci(n - 1)"), ("factorial", "factorial(n)")):
        params = inline_params(URI, (1, 14))
        params.context.selected_completion_info = types.SelectedCompletionInfo(
            range=types.Range(types.Position(1, 11), types.Position(1, 14)), text=item)
        answer = await client.text_document_inline_completion_async(params)
        (shown,) = answer.items
        assert shown.insert_text == expected
        assert shown.range == types.Range(types.Position(1, 11), types.Position(1, 14))
        assert fake_daemon.requests[-1]["prefix"].endswith("    return " + item)
    # the list closed, the suggestion for the text as typed (its own decode) is served again
    assert inline_text(await inline(client, URI, (1, 14))) == "torial(n)"


async def test_a_selected_items_brackets_count_once_when_the_suggestion_retypes_the_rest(fake_daemon, start_lsp):
    """`print(fo|")` with `foo(` selected and the suggestion `x)")`: the answer `foo(x)")` retypes the `")` after the
    cursor, so it replaces it. The bracket check read the item's `(` twice (in the text before the cursor and in the
    answer), found the line balanced with the rest kept, and left `print(foo(x)")")`."""
    fake_daemon.reply = lambda body: 'x)")'
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, 'print(fo")')
    params = inline_params(URI, (0, 8))
    params.context.selected_completion_info = types.SelectedCompletionInfo(
        range=types.Range(types.Position(0, 6), types.Position(0, 8)), text="foo(")
    (shown,) = (await client.text_document_inline_completion_async(params)).items
    assert shown.insert_text == 'foo(x)")'
    assert shown.range == types.Range(types.Position(0, 6), types.Position(0, 10))  # the '")' after the cursor too


async def test_hung_daemon_gives_empty_result_and_a_log_then_reconnects(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "x = ")
    await fake_daemon.stop(release_lock=False)
    # Alive by its lock but nothing answers at its address: empty, with the reason logged.
    assert inline_text(await inline(client, URI, (0, 4))) == ""
    assert any("no completion: the daemon is not reachable" in m.message for m in client.log_messages)
    await fake_daemon.start()  # a new port and token, as after a restart
    assert inline_text(await inline(client, URI, (0, 4))) == "x"


async def test_emoji_and_cjk_columns_in_each_encoding(fake_daemon, start_lsp):
    line = "s = '😀中文'"
    units = {"utf-8": len("s = '😀中文".encode()), "utf-16": len("s = '😀中文".encode("utf-16-le")) // 2, "utf-32": 8}
    for encoding, column in units.items():
        client = await start_lsp(init_options=FAST, encodings=[encoding])
        open_doc(client, URI, line + "\n")
        insert(client, URI, 2, (0, column), "字")
        item = (await inline(client, URI, (0, column + (3 if encoding == "utf-8" else 1)))).items[0]
        assert fake_daemon.requests[-1]["prefix"] == "s = '😀中文字", encoding
        assert fake_daemon.requests[-1]["suffix"] == "'\n", encoding
        assert item.range.start.character == column + (3 if encoding == "utf-8" else 1), encoding


async def test_a_5_mb_document_is_cut_around_the_cursor(fake_daemon, start_lsp):
    body = "".join(f"value_{i} = compute({i})  # a line of some length\n" for i in range(110_000))
    assert len(body) > 5_000_000
    client = await start_lsp(init_options={**FAST, "prefixChars": 3000, "suffixChars": 1000})
    open_doc(client, URI, body)
    for version in range(2, 50):
        insert(client, URI, version, (55_000, 0), "z")
    fake_daemon.reply = lambda body: "x = "  # before `value_55000`: a text ending in a word would be glued to it
    result = await inline(client, URI, (55_000, 48))
    assert inline_text(result) == "x = "
    sent = fake_daemon.requests[-1]
    assert len(sent["prefix"]) <= 3000 and len(sent["suffix"]) <= 1000
    assert sent["prefix"].endswith("\n" + "z" * 48)
    assert sent["suffix"].startswith("value_55000 = compute(55000)")


async def test_postprocess_drops_a_repeated_line_and_balances_brackets(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "print(\nresult = 1\n")
    fake_daemon.reply = lambda body: "'hi')"
    edit(client, URI, 2, (0, 6), (0, 6), ")")  # the editor auto-closed the bracket
    assert inline_text(await inline(client, URI, (0, 6))) == "'hi'"
    open_doc(client, "file:///work/project/b.py", "x = 1\n\nresult = 1\n")
    fake_daemon.reply = lambda body: "result = 1"
    assert inline_text(await inline(client, "file:///work/project/b.py", (1, 0))) == ""


async def test_a_suggestion_retyping_the_auto_closed_rest_replaces_it_or_stops_before_it(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST)
    line = 'print(f"hello {}")'
    open_doc(client, URI, line + "\n")
    fake_daemon.reply = lambda body: 'n}!")'
    item = (await inline(client, URI, (0, 15))).items[0]
    # Ghost text replaces `}")`: accepted, the line reads print(f"hello {n}!").
    assert item.insert_text == 'n}!")'
    assert item.range == types.Range(types.Position(0, 15), types.Position(0, 18))
    # The menu item cannot replace text after the cursor in every client: it stops before the rest.
    listed = await complete(client, URI, (0, 15))
    assert [i.text_edit.new_text for i in listed.items] == ["n"]
    assert listed.items[0].text_edit.range.end == types.Position(0, 15)


async def test_extra_context_comes_from_open_documents_of_the_same_language(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST)
    open_doc(client, "file:///work/project/helpers.py", "def helper():\n    return 42\n")
    open_doc(client, "file:///work/other/far.py", "FAR = 1\n")
    open_doc(client, "file:///work/project/notes.md", "# notes\n", language="markdown")
    open_doc(client, URI, "import helpers\nhelpers.")
    await inline(client, URI, (1, 8))
    context = fake_daemon.requests[-1]["extra_context"]
    assert [c["path"] for c in context] == ["/work/project/helpers.py", "/work/other/far.py"]
    assert context[0]["text"] == "def helper():\n    return 42\n"


async def test_settings_from_init_options_workspace_and_changes(fake_daemon, start_lsp):
    client = await start_lsp(
        init_options={"debounceMs": 0, "maxTokens": 7, "client": "vscode"},
        configuration={"draftTokens": 3, "mode": "block", "excludedLanguages": ["markdown"]},
    )
    await settings_become(client, draftTokens=3)
    open_doc(client, URI, "x = ")
    open_doc(client, "file:///work/project/a.md", "# a", language="markdown")
    await inline(client, URI, (0, 4))
    sent = fake_daemon.requests[-1]
    assert (sent["max_tokens"], sent["draft_tokens"], sent["mode"]) == (7, 3, "block")
    assert inline_text(await inline(client, "file:///work/project/a.md", (0, 3))) == ""
    assert len(fake_daemon.requests) == 1
    client.set_configuration({"enable": False, "maxTokens": -1}, section="specd")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    await eventually(lambda: any("maxTokens=-1" in m.message for m in client.messages), "a warning")
    assert inline_text(await inline(client, URI, (0, 4))) == ""
    assert len(fake_daemon.requests) == 1
    settings = (await status(client))["settings"]
    assert (settings["enable"], settings["maxTokens"]) == (False, 7)


async def test_toggle_and_status_commands(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "x = ")
    toggled = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="specd.toggle"))
    assert toggled == {"enabled": False}
    assert inline_text(await inline(client, URI, (0, 4))) == ""
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="specd.toggle"))
    assert inline_text(await inline(client, URI, (0, 4))) == "x"
    report = await status(client)
    assert report["enabled"] is True and report["decodes"] == 1 and report["requests"] == 2
    assert report["daemon"]["version"] == "fake"


async def test_document_text_and_completions_stay_out_of_the_logs(fake_daemon, start_lsp, capfd):
    fake_daemon.reply = lambda body: "completion_secret_42"
    client = await start_lsp(init_options=FAST, args=["--verbose"])
    open_doc(client, URI, "document_secret_17 = ")
    insert(client, URI, 2, (0, 21), "x")
    assert inline_text(await inline(client, URI, (0, 22))) == "completion_secret_42"
    await client.shutdown_session()
    await client.stop()
    err = capfd.readouterr().err
    assert "document_secret_17" not in err and "completion_secret_42" not in err


async def test_toggle_survives_unrelated_settings_changes_until_enable_itself_changes(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST)
    toggled = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="specd.toggle"))
    assert toggled == {"enabled": False}
    change(client, {**FAST, "maxTokens": 9})
    report = await status(client)  # notifications are handled in order, before this request
    assert report["settings"]["maxTokens"] == 9 and report["enabled"] is False
    change(client, {**FAST, "enable": False})
    change(client, {**FAST, "enable": True})
    assert (await status(client))["enabled"] is True


def change(client, section: dict) -> None:
    """Settings changed as an editor does it: pushed in the notification, and the same when pulled."""
    client.set_configuration(section, section="specd")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"specd": section}))


def move_cursor(client, uri: str, at: tuple[int, int]) -> None:
    """specd's own hint (lsp/cursor_hint.py), as its VS Code extension and Neovim config send it."""
    client.protocol.notify("specd/didMoveCursor", {"textDocument": {"uri": uri}, "position": {"line": at[0], "character": at[1]}})


async def test_a_resting_cursor_warms_the_daemon_once_and_never_displaces_a_completion(fake_daemon, start_lsp):
    client = await start_lsp(init_options=FAST)
    open_doc(client, URI, "import os\n\ndef main():\n    return os.getcwd()\n")
    move_cursor(client, URI, (3, 4))
    await eventually(lambda: len(fake_daemon.requests) == 1, "the warm-up reached the daemon")
    warm_up = fake_daemon.requests[0]
    assert warm_up["prefill_only"] is True and warm_up["document_id"] == URI
    assert (warm_up["prefix"], warm_up["suffix"]) == ("import os\n\ndef main():\n    ", "return os.getcwd()\n")
    move_cursor(client, URI, (3, 4))  # the same spot of the same version: already read
    move_cursor(client, "file:///not/open.py", (0, 0))  # unknown documents and bad params are ignored
    client.protocol.notify("specd/didMoveCursor", {"textDocument": {"uri": URI}, "position": {"line": -1}})
    # The completion at the warmed spot is a decode of its own (the warm-up wrote nothing) ...
    fake_daemon.reply = lambda body: "yield "
    assert inline_text(await inline(client, URI, (3, 4))) == "yield "
    assert [r.get("prefill_only", False) for r in fake_daemon.requests] == [True, False]
    # ... and after it the cursor resting there asks nothing more.
    move_cursor(client, URI, (3, 4))
    assert (await status(client))["warmUps"] == 1
    assert len(fake_daemon.requests) == 2
    # A warm-up still running is cancelled by the completion the user asks for; a running completion is
    # never cancelled by a warm-up.
    fake_daemon.delay_s = 5.0
    move_cursor(client, URI, (0, 9))
    await eventually(lambda: len(fake_daemon.requests) == 3, "the second warm-up reached the daemon")
    fake_daemon.delay_s = 0.3
    pending = asyncio.ensure_future(inline(client, URI, (2, 11)))
    await eventually(lambda: len(fake_daemon.requests) == 4, "the completion reached the daemon")
    move_cursor(client, URI, (1, 0))
    assert inline_text(await pending) == "yield"  # at the end of its line: no blank to keep
    await eventually(lambda: fake_daemon.cancelled == 1, "the warm-up was cancelled")
    await asyncio.sleep(0.3)
    assert [r.get("prefill_only", False) for r in fake_daemon.requests] == [True, False, True, False]


async def test_warm_up_false_sends_no_hinted_requests(fake_daemon, start_lsp):
    client = await start_lsp(init_options={**FAST, "warmUp": False})
    open_doc(client, URI, "x = 1\n")
    move_cursor(client, URI, (1, 0))
    await asyncio.sleep(0.5)
    assert fake_daemon.requests == [] and (await status(client))["warmUps"] == 0
