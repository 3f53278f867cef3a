"""The LSP lifecycle and document sync, kept in specd's line store instead of pygls's workspace (which
rebuilds the whole text on every keystroke), and the capabilities offered to each client.

Like pygls's own built-ins these run in message order, so a request always sees the edits sent before it.
"""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import JsonRPCNotification, LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

_ANSWERED = object()  # a request that could not be read and was answered with an error already


def offers_inline_completion(capabilities: types.ClientCapabilities | None) -> bool:
    """Whether the client shows `textDocument/inlineCompletion` results (LSP 3.18: VS Code through
    vscode-languageclient >= 10.0.1, Neovim >= 0.12)."""
    document = capabilities.text_document if capabilities else None
    return bool(document and document.inline_completion is not None)


class SpecdProtocol(LanguageServerProtocol):
    _server: Any  # SpecdServer

    def structure_message(self, data: Any) -> Any:
        """pygls's reading of one message (called for every JSON object in it, innermost first), except that a
        request whose params do not fit its method (a negative `character`, no `context`) is answered with the
        error, as JSON-RPC 2.0 requires of every request, instead of dropped, which left the editor waiting; and
        that specd's own notifications (no lsprotocol type) keep their params as plain JSON, for their handler to
        check: pygls would make named tuples of them and log a traceback on a missing `params` or a field named
        `type_name`, before the handler could ignore the hint."""
        method = data.get("method") if isinstance(data, dict) and "jsonrpc" in data and "id" not in data else None
        if isinstance(method, str) and self.get_message_type(method) is None:
            return JsonRPCNotification(method=method, jsonrpc=data["jsonrpc"], params=data.get("params"))
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if isinstance(data, dict) and "id" in data and "method" in data:
                self._send_response(data["id"], error=error.to_response_error())
                return _ANSWERED
            raise

    def handle_message(self, message: Any) -> None:
        if message is not _ANSWERED:
            super().handle_message(message)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        result = yield from super().lsp_initialize(params)
        if offers_inline_completion(params.capabilities):
            # Ghost text only: a completion item of ours would push the editor's own word suggestions out of
            # the list (VS Code shows word-based suggestions only when no provider answers) and take Tab
            # while the list is open.
            result.capabilities.completion_provider = None
        return result

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
