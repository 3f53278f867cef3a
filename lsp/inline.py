"""`textDocument/inlineCompletion` (LSP 3.18): the suggestion as ghost text at the cursor."""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

from . import postprocess
from .documents import Document
from .typed_ahead import Point

log = logging.getLogger(__name__)


async def suggest(ls: Any, found: tuple[Document, Point] | None) -> str:
    """The completer's text for a cursor, or "" (never an error: vscode-languageclient shows a pop-up for
    a failed request; the reason goes to the log instead)."""
    if found is None:
        return ""
    try:
        return await ls.completer.suggest(*found)
    except Exception as exc:
        log.exception("completion failed")
        ls.log(f"specd: no completion: internal error ({type(exc).__name__})", types.MessageType.Error)
        return ""


async def inline_completion(ls: Any, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    """LSP 3.18 `textDocument/inlineCompletion`: the completer's suggestion as one InlineCompletionItem at the cursor,
    its range stretched over the rest of the line it retypes (auto-closed brackets and quotes,
    `postprocess.rest_to_replace`); an empty list when there is none or on any failure (logged)."""
    found = ls.find(params.text_document.uri, params.position)
    text = await suggest(ls, found)
    if not text:
        return types.InlineCompletionList(items=[])
    doc, (line, column) = found
    here = doc.client_position(line, column, ls.encoding)
    # Where the suggestion retypes the auto-closed brackets and quotes after the cursor, it replaces them.
    rest = doc.line_text(line)[column:]
    replaced = rest.strip() and postprocess.rest_to_replace(doc.prefix(line, column, postprocess.CONTEXT_CHARS), text, rest)
    end = doc.client_position(line, column + replaced, ls.encoding) if replaced else here
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=types.Range(here, end))])
