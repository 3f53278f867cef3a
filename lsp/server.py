"""`specd lsp`: a stdio language server that shows the daemon's completions in any LSP editor.

This module wires the parts: the server's state (`SpecdServer`), the lifecycle and document sync
(sync.py), settings (configuration.py), ghost text (inline.py), the completion menu for clients without
ghost text (menu.py), the commands (commands.py) and the cursor hint of specd's editor configs
(cursor_hint.py). Every request handler is `async` (thread handlers
share the pool that reads stdin, see the editors notes) and answers an empty result on any failure.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError
from pygls.lsp.server import LanguageServer

from . import arguments, commands, configuration, cursor_hint, inline, menu, parent_process
from .client import DaemonClient
from .completer import Completer
from .documents import Document, DocumentStore
from .sync import DESYNCING, SpecdProtocol
from .typed_ahead import Point

log = logging.getLogger(__name__)

VERSION = "0.1.0"


class SpecdServer(LanguageServer):
    """One editor connection: its documents, settings, completer and daemon client."""

    def __init__(self, client: DaemonClient | None = None) -> None:
        super().__init__("specd", VERSION, protocol_cls=SpecdProtocol)
        self.docs = DocumentStore()
        self.client = client or DaemonClient()
        self.client.report = self.log
        self.client.alert = self.alert
        self.completer = Completer(self.docs, self.client, self.log)
        self.configuration = configuration.Configuration()
        self.shut_down = False
        self.exit_code = 0  # LSP: `exit` after `shutdown` is 0, `exit` without it 1
        self.parent_watch = None  # parent_process.watch's task, once `initialize` named the editor's process

    @property
    def encoding(self) -> str:
        return self.workspace.position_encoding or types.PositionEncodingKind.Utf16

    def log(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def alert(self, message: str) -> None:
        self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=message))

    def report_server_error(self, error: Exception, source: Any) -> None:
        if isinstance(error, JsonRpcException) and not isinstance(error, JsonRpcInternalError):
            return  # answered already (-32601 for a client's probe, -32602 for an unknown command): not our fault
        # pygls would show a pop-up; the type name is enough to debug and cannot leak document text.
        log.error("internal error: %s", type(error).__name__)
        self.log(f"specd: internal error ({type(error).__name__})", types.MessageType.Error)

    def editor_gone(self) -> None:
        """The editor that started the server has ended without closing its stdin: exit at once (code 1, as an
        `exit` without `shutdown`), dropping running decodes; the daemon sees their connections close."""
        log.warning("the editor that started specd lsp has ended: exiting")
        os._exit(1)  # stdin's reader thread would keep an orderly exit waiting for input that never comes

    def malformed_notification(self, method: str, uri: str | None, problems: str) -> None:
        """A notification whose params do not fit `method` (`problems`: the fields, sync.invalid_fields). After a
        lost `didChange` or `didOpen` specd no longer knows the document's text: it is dropped, so that no
        completion is made from a stale copy, until the editor opens it again."""
        dropped = uri is not None and method in DESYNCING and self.docs.get(uri) is not None
        if dropped:
            self.docs.close(uri)
            self.completer.closed(uri)
        log.warning("ignored %s: %s%s", method, problems, "; its document is dropped until reopened" if dropped else "")
        self.log(f"specd: ignored {method}, its params do not fit: {problems}"
                 + ("; no completions in this document until it is opened again" if dropped else ""),
                 types.MessageType.Warning)

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
        self.completer.settings, problems = self.configuration.resolve(workspace_section)
        configuration.tell(self, problems)


server = SpecdServer()


@server.feature(types.INITIALIZE)
async def initialize(ls: SpecdServer, params: types.InitializeParams) -> None:
    """LSP `initialize` (sync.py answers with the capabilities): keeps the client's `initializationOptions` and applies
    the settings they give over the defaults."""
    ls.configuration.init_options = params.initialization_options
    ls.apply_settings(None)
    ls.parent_watch = parent_process.watch(params.process_id, ls.editor_gone)


@server.feature(types.INITIALIZED)
async def initialized(ls: SpecdServer, params: types.InitializedParams) -> None:
    """LSP `initialized`: pulls the `specd` section of `workspace/configuration` (where the client offers it) and
    applies it."""
    pulled = await configuration.pull(ls)
    if pulled is not None:
        ls.apply_settings(pulled)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def configuration_changed(ls: SpecdServer, params: types.DidChangeConfigurationParams) -> None:
    """LSP `workspace/didChangeConfiguration`: applies a pushed `specd` section at once, then pulls the section through
    `workspace/configuration` and applies that."""
    pushed = params.settings.get(configuration.SECTION) if isinstance(params.settings, dict) else None
    if pushed is not None:  # in effect for the very next request, not after the pull's round trip
        ls.apply_settings(pushed)
    pulled = await configuration.pull(ls)
    if pulled is not None:
        ls.apply_settings(pulled)


@server.feature(types.SHUTDOWN)
async def shutdown(ls: SpecdServer, params: None) -> None:
    """LSP `shutdown`: cancels every running decode and closes the daemon client's HTTP session."""
    ls.shut_down = True
    ls.completer.cancel_all()
    await ls.client.close()


@server.feature(types.EXIT)
def exit_(ls: SpecdServer, params: None) -> None:
    """LSP `exit`: records the exit code, 0 after `shutdown`, else 1 (as the specification says); pygls then ends the
    process."""
    ls.exit_code = 0 if ls.shut_down else 1


server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(inline.inline_completion)
server.feature(types.TEXT_DOCUMENT_COMPLETION)(menu.completion)
server.feature(cursor_hint.METHOD)(cursor_hint.did_move_cursor)
server.command("specd.toggle")(commands.toggle)
server.command("specd.status")(commands.status)


def main(argv: list[str] | None = None) -> int:
    """Run the server on stdin/stdout; returns its exit code (1 for an `exit` before `shutdown`, as the LSP
    specification says, else 0). Exits with code 2 for a transport other than stdio or an unknown argument."""
    try:
        args = arguments.parse(argv)
    except arguments.TransportError as e:
        print(f"specd lsp: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="specd lsp: %(levelname)s %(message)s")
    # pygls logs every message body at INFO: document text and completions must not reach any log.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    if args.verbose:
        logging.getLogger("specd").setLevel(logging.DEBUG)
    server.start_io()
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main())
