"""The LSP lifecycle and document sync, kept in specd's line store instead of pygls's workspace (which
rebuilds the whole text on every keystroke), and the capabilities offered to each client.

Like pygls's own built-ins these run in message order, so a request always sees the edits sent before it.
"""

from __future__ import annotations

import re
from typing import Any

from lsprotocol import types
from cattrs.errors import ClassValidationError
from cattrs.v import transform_error
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.protocol import JsonRPCNotification, LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

_HANDLED = object()  # a message that could not be read: a request answered with an error, a notification logged
_SNAKE = re.compile(r"_([a-z])")  # lsprotocol's attribute names, camelCase on the wire
# Notifications whose loss leaves specd's copy of a document unknown: the document is dropped, not guessed at.
DESYNCING = {types.TEXT_DOCUMENT_DID_CHANGE, types.TEXT_DOCUMENT_DID_OPEN}


def offers_inline_completion(capabilities: types.ClientCapabilities | None) -> bool:
    """Whether the client shows `textDocument/inlineCompletion` results (LSP 3.18: VS Code through
    vscode-languageclient >= 10.0.1, Neovim >= 0.12)."""
    document = capabilities.text_document if capabilities else None
    return bool(document and document.inline_completion is not None)


def invalid_fields(error: ClassValidationError) -> str:
    """The fields of a message that did not fit its lsprotocol type, by their LSP names and without their values
    ("required field missing @ params.textDocument.version; ..."), from cattrs's `transform_error`."""
    problems = (problem.partition(" @ ") for problem in transform_error(error, path="$"))
    return "; ".join(what + at + _SNAKE.sub(lambda m: m[1].upper(), where.removeprefix("$."))
                     for what, at, where in problems)


def document_uri(params: Any) -> str | None:
    """`params.textDocument.uri` of a raw message, if it has one."""
    document = params.get("textDocument") if isinstance(params, dict) else None
    uri = document.get("uri") if isinstance(document, dict) else None
    return uri if isinstance(uri, str) else None


class SpecdProtocol(LanguageServerProtocol):
    """pygls's protocol with specd's document sync (didOpen, didChange and didClose update the server's DocumentStore,
    in message order), no completion menu for clients that show inline completions, and messages whose params do not fit
    answered or logged rather than dropped (`structure_message`)."""

    _server: Any  # SpecdServer

    def structure_message(self, data: Any) -> Any:
        """pygls's reading of one message (called for every JSON object in it, innermost first), except that a
        request whose params do not fit its method (a negative `character`, no `context`) is answered with the
        error, as JSON-RPC 2.0 requires of every request, instead of dropped, which left the editor waiting; a
        notification whose params do not fit is logged in one line instead of a traceback (a `didChange` or
        `didOpen` drops the document: its text is unknown until the editor opens it again); and specd's own
        notifications (no lsprotocol type) keep their params as plain JSON, for their handler to check: pygls
        would make named tuples of them and log a traceback on a missing `params` or a field named `type_name`,
        before the handler could ignore the hint. Errors name the fields that did not fit, never their values."""
        if not (isinstance(data, dict) and "jsonrpc" in data and isinstance(data.get("method"), str)):
            return super().structure_message(data)  # an inner object, or a response to a request of ours
        method, message_type = data["method"], self.get_message_type(data["method"])
        if message_type is None and "id" not in data:
            return JsonRPCNotification(method=method, jsonrpc=data["jsonrpc"], params=data.get("params"))
        if message_type is None:
            return super().structure_message(data)
        try:
            return self._converter.structure(data, message_type)  # as pygls, which would log a traceback
        except ClassValidationError as error:
            problems = invalid_fields(error)
        except Exception as error:  # noqa: BLE001 - cattrs failing otherwise: answered all the same
            problems = f"unreadable ({type(error).__name__})"
        if "id" in data:
            self._send_response(data["id"], error=JsonRpcInvalidParams(
                f"Invalid params for {method}: {problems}").to_response_error())
        else:
            self._server.malformed_notification(method, document_uri(data.get("params")), problems)
        return _HANDLED

    def handle_message(self, message: Any) -> None:
        """pygls's, except that a request after `shutdown` (other than `exit`) is answered with InvalidRequest,
        as the LSP specification says, where pygls drops it and leaves the editor waiting."""
        if message is _HANDLED:
            return
        method, request_id = getattr(message, "method", None), getattr(message, "id", None)
        if self._shutdown and method is not None and request_id is not None and method != types.EXIT:
            self._send_response(request_id, error=JsonRpcInvalidRequest(
                f"the server has shut down: {method} is not answered, only exit").to_response_error())
            return
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
