"""Small wrappers for the LSP messages the tests send."""

from __future__ import annotations

import asyncio

from lsprotocol import types
from pytest_lsp import LanguageClient


def open_doc(client: LanguageClient, uri: str, text: str, language: str = "python", version: int = 1) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, language, version, text)))


def edit(client: LanguageClient, uri: str, version: int, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
    change = types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(*start), types.Position(*end)), text=text
    )
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(types.VersionedTextDocumentIdentifier(uri=uri, version=version), [change])
    )


def insert(client: LanguageClient, uri: str, version: int, at: tuple[int, int], text: str) -> None:
    edit(client, uri, version, at, at, text)


def inline_params(uri: str, at: tuple[int, int]) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
        text_document=types.TextDocumentIdentifier(uri),
        position=types.Position(*at),
    )


async def inline(client: LanguageClient, uri: str, at: tuple[int, int]) -> types.InlineCompletionList:
    return await client.text_document_inline_completion_async(inline_params(uri, at))


async def complete(client: LanguageClient, uri: str, at: tuple[int, int]) -> types.CompletionList:
    return await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(uri), types.Position(*at))
    )


def start_inline(client: LanguageClient, msg_id: str, uri: str, at: tuple[int, int]) -> asyncio.Future:
    """Send an inline request now (with a known id, to cancel it) and return its pending answer."""
    sent = client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, at), msg_id=msg_id)
    return asyncio.wrap_future(sent)


def cancel_request(client: LanguageClient, msg_id: str) -> None:
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))


def inline_text(result: types.InlineCompletionList) -> str:
    assert len(result.items) <= 1
    return result.items[0].insert_text if result.items else ""


async def status(client: LanguageClient) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="specd.status"))


async def eventually(predicate, what: str, timeout_s: float = 20.0) -> None:
    """Wait until `predicate()` holds; a hang guard, not a speed check."""
    async def poll():
        while not predicate():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(poll(), timeout_s)
    except asyncio.TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def settings_become(client: LanguageClient, **expected) -> None:
    """Wait until the server applied settings (workspace/configuration is pulled after `initialized`)."""
    for _ in range(500):
        current = (await status(client))["settings"]
        if all(current[k] == v for k, v in expected.items()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"settings never became {expected}: {current}")
