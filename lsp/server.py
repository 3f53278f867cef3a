"""`specd lsp`: a stdio language server that shows the daemon's completions in any LSP editor.

`textDocument/inlineCompletion` gives ghost text; `textDocument/completion` offers the same text as one
item for clients without inline support. Every request handler is `async` (thread handlers share the
pool that reads stdin, see the editors notes) and answers an empty result on any failure: an error
response would pop up in VS Code; the reason goes to `window/logMessage` instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import time
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from . import config
from .client import DaemonClient, DaemonError
from .completer import Completer
from .documents import Document, DocumentStore
from .typed_ahead import Point

log = logging.getLogger(__name__)

VERSION = "0.1.0"
SECTION = "specd"
_WORD_BEFORE = re.compile(r"\w*$")
_LABEL_CHARS = 80


class SpecdProtocol(LanguageServerProtocol):
    """Document sync into specd's line store instead of pygls's workspace (which rebuilds the whole
    text on every keystroke). Like pygls's own built-ins these run in message order, so a request
    always sees the edits sent before it."""

    _server: "SpecdServer"

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        self._server.docs.open(params.text_document)
        yield from ()

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        self._server.changed(params)
        yield from ()

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        self._server.docs.close(params.text_document.uri)
        self._server.completer.closed(params.text_document.uri)
        yield from ()


class SpecdServer(LanguageServer):
    def __init__(self, client: DaemonClient | None = None) -> None:
        super().__init__("specd", VERSION, protocol_cls=SpecdProtocol)
        self.docs = DocumentStore()
        self.client = client or DaemonClient()
        self.client.report = self.log
        self.completer = Completer(self.docs, self.client, self.log)
        self.init_options: Any = None
        # specd.toggle's choice; it holds until the configured `enable` itself changes, so an unrelated
        # settings change does not silently turn completions back on.
        self.toggled: bool | None = None
        self._configured_enable: bool | None = None

    @property
    def encoding(self) -> str:
        return self.workspace.position_encoding or types.PositionEncodingKind.Utf16

    def log(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def report_server_error(self, error: Exception, source: Any) -> None:
        # pygls would show a pop-up; the type name is enough to debug and cannot leak document text.
        log.error("internal error: %s", type(error).__name__)
        self.log(f"specd: internal error ({type(error).__name__})", types.MessageType.Error)

    def changed(self, params: types.DidChangeTextDocumentParams) -> None:
        doc = self.docs.get(params.text_document.uri)
        if doc is None:
            return
        accepted: Point | None = None
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start = doc.locate(change.range.start, self.encoding)
                end = doc.locate(change.range.end, self.encoding)
                accepted = self.completer.typed.edited(doc.uri, start, end, change.text)
            else:
                self.completer.typed.forget(doc.uri)
                accepted = None
            doc.apply(change, self.encoding)
        doc.version = params.text_document.version
        self.completer.pace.keystroke(doc.uri, time.monotonic())
        if accepted is not None:
            self.completer.accepted(doc, accepted)

    def find(self, uri: str, position: types.Position) -> tuple[Document, Point] | None:
        doc = self.docs.get(uri)
        if doc is None:
            return None
        return doc, doc.locate(position, self.encoding)

    def apply_settings(self, workspace_section: Any) -> None:
        init = self.init_options
        if isinstance(init, dict) and isinstance(init.get(SECTION), dict):
            init = init[SECTION]
        elif isinstance(init, dict):
            # Top-level initializationOptions may carry other keys for the editor's own use.
            init = {k: v for k, v in init.items() if config.is_setting(k)}
        settings, problems = config.merge(config.Settings(), init)
        settings, more = config.merge(settings, workspace_section)
        if self.toggled is not None and settings.enable == self._configured_enable:
            settings = dataclasses.replace(settings, enable=self.toggled)
        else:
            self.toggled = None
            self._configured_enable = settings.enable
        self.completer.settings = settings
        for problem in problems + more:
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=problem))
            self.log(problem, types.MessageType.Warning)

    async def pull_settings(self) -> Any:
        caps = self.protocol.client_capabilities
        if not (caps and caps.workspace and caps.workspace.configuration):
            return None
        try:
            items = await self.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
            )
        except Exception as exc:  # a client that fails the request keeps the settings it has
            self.log(f"specd: could not read the {SECTION} settings: {type(exc).__name__}", types.MessageType.Warning)
            return None
        return items[0] if items else None

    async def status(self) -> dict:
        counters = self.completer.counters
        try:
            daemon: dict = await self.client.status()
        except DaemonError as exc:
            daemon = {"error": str(exc)}
        return {
            "enabled": self.completer.settings.enable,
            "settings": config.describe(self.completer.settings),
            "positionEncoding": str(self.encoding),
            "openDocuments": len(self.docs),
            "requests": counters.requests,
            "decodes": counters.decodes,
            "typedAhead": counters.typed_ahead,
            "rememberedEmpty": counters.remembered_empty,
            "prefetches": counters.prefetches,
            "superseded": counters.superseded,
            "failures": counters.failures,
            "last": counters.last,
            "daemon": daemon,
        }


server = SpecdServer()


@server.feature(types.INITIALIZE)
async def initialize(ls: SpecdServer, params: types.InitializeParams) -> None:
    ls.init_options = params.initialization_options
    ls.apply_settings(None)


@server.feature(types.INITIALIZED)
async def initialized(ls: SpecdServer, params: types.InitializedParams) -> None:
    pulled = await ls.pull_settings()
    if pulled is not None:
        ls.apply_settings(pulled)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def configuration_changed(ls: SpecdServer, params: types.DidChangeConfigurationParams) -> None:
    pushed = params.settings.get(SECTION) if isinstance(params.settings, dict) else None
    if pushed is not None:  # in effect for the very next request, not after the pull's round trip
        ls.apply_settings(pushed)
    pulled = await ls.pull_settings()
    if pulled is not None:
        ls.apply_settings(pulled)


@server.feature(types.SHUTDOWN)
async def shutdown(ls: SpecdServer, params: None) -> None:
    ls.completer.cancel_all()
    await ls.client.close()


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(ls: SpecdServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    found = ls.find(params.text_document.uri, params.position)
    text = await _suggest(ls, found)
    if not text:
        return types.InlineCompletionList(items=[])
    doc, (line, column) = found
    here = doc.client_position(line, column, ls.encoding)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=types.Range(here, here))])


@server.feature(types.TEXT_DOCUMENT_COMPLETION)
async def completion(ls: SpecdServer, params: types.CompletionParams) -> types.CompletionList:
    found = ls.find(params.text_document.uri, params.position)
    text = await _suggest(ls, found)
    if not text:
        return types.CompletionList(is_incomplete=True, items=[])
    doc, (line, column) = found
    # The item replaces the word being typed, so clients that filter by that word keep showing it.
    word = _WORD_BEFORE.search(doc.line_text(line)[:column]).group()
    start = doc.client_position(line, column - len(word), ls.encoding)
    end = doc.client_position(line, column, ls.encoding)
    first_line = (word + text).splitlines()[0]
    item = types.CompletionItem(
        label=first_line[:_LABEL_CHARS] + ("…" if len(first_line) > _LABEL_CHARS or "\n" in text else ""),
        kind=types.CompletionItemKind.Text,
        detail="specd",
        filter_text=word + text,
        sort_text="0",
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start, end), new_text=word + text),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


async def _suggest(ls: SpecdServer, found: tuple[Document, Point] | None) -> str:
    if found is None:
        return ""
    try:
        return await ls.completer.suggest(*found)
    except Exception as exc:
        log.exception("completion failed")
        ls.log(f"specd: no completion: internal error ({type(exc).__name__})", types.MessageType.Error)
        return ""


@server.command("specd.toggle")
async def toggle(ls: SpecdServer) -> dict:
    enable = ls.toggled = not ls.completer.settings.enable
    ls.completer.settings = dataclasses.replace(ls.completer.settings, enable=enable)
    ls.log(f"specd: completions {'enabled' if enable else 'disabled'}", types.MessageType.Info)
    return {"enabled": enable}


@server.command("specd.status")
async def status(ls: SpecdServer) -> dict:
    return await ls.status()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="specd lsp", description="Language server over stdio.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log specd's own debug messages to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="specd lsp: %(levelname)s %(message)s")
    # pygls logs every message body at INFO: document text and completions must not reach any log.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    if args.verbose:
        logging.getLogger("specd").setLevel(logging.DEBUG)
    server.start_io()


if __name__ == "__main__":
    main()
