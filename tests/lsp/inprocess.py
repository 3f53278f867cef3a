"""The language server's request path in process, without stdio: real documents, completer, cleaning and the
inline/menu handlers, a daemon stand-in that answers from a function. For tests that send many requests
(property tests), where a server process per example would be too slow."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Callable

from lsprotocol import types

from specd.lsp import inline, menu
from specd.lsp.completer import Completer
from specd.lsp.config import Settings
from specd.lsp.documents import DocumentStore


class StubDaemon:
    """Answers `complete` with `reply(payload) -> (text, finish_reason)` and keeps the payloads."""

    def __init__(self, reply: Callable[[dict], tuple[str, str]]) -> None:
        self.reply = reply
        self.payloads: list[dict] = []
        self.report = None

    async def complete(self, payload: dict) -> dict:
        self.payloads.append(payload)
        text, finish_reason = self.reply(payload)
        return {"text": text, "finish_reason": finish_reason, "specd": {"total_s": 0.0}}


class Editor:
    """What the handlers need of the server (`find`, `encoding`, `completer`, `log`), one position encoding."""

    def __init__(self, reply: Callable[[dict], tuple[str, str]], encoding: str = types.PositionEncodingKind.Utf16,
                 **settings) -> None:
        self.encoding = encoding
        self.docs = DocumentStore()
        self.daemon = StubDaemon(reply)
        self.logged: list[str] = []
        self.completer = Completer(self.docs, self.daemon, self.logged.append)
        self.completer.settings = dataclasses.replace(Settings(), debounce_ms=0, **settings)
        self._version = 0

    def log(self, message: str, kind=None) -> None:
        self.logged.append(message)

    def find(self, uri: str, position: types.Position):
        doc = self.docs.get(uri)
        return None if doc is None else (doc, doc.locate(position, self.encoding))

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self._version += 1
        self.docs.open(types.TextDocumentItem(uri, language, self._version, text))

    def inline(self, uri: str, position: types.Position) -> types.InlineCompletionList:
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
            text_document=types.TextDocumentIdentifier(uri), position=position)
        return asyncio.run(inline.inline_completion(self, params))

    def menu(self, uri: str, position: types.Position) -> types.CompletionList:
        params = types.CompletionParams(types.TextDocumentIdentifier(uri), position)
        return asyncio.run(menu.completion(self, params))
