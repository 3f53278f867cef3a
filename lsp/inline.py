"""`textDocument/inlineCompletion` (LSP 3.18): the suggestion as ghost text at the cursor."""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

from . import postprocess
from .completer import Selected
from .documents import Document
from .typed_ahead import Point

log = logging.getLogger(__name__)


async def suggest(ls: Any, found: tuple[Document, Point] | None, selected: Selected | None = None) -> str:
    """The completer's text for a cursor (after the `selected` item's, when given), or "" (never an error:
    vscode-languageclient shows a pop-up for a failed request; the reason goes to the log instead)."""
    if found is None:
        return ""
    try:
        return await ls.completer.suggest(*found, selected)
    except Exception as exc:
        log.exception("completion failed")
        ls.log(f"specd: no completion: internal error ({type(exc).__name__})", types.MessageType.Error)
        return ""


async def inline_completion(ls: Any, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    """LSP 3.18 `textDocument/inlineCompletion`: the completer's suggestion as one InlineCompletionItem at the cursor,
    its range stretched over the rest of the line it retypes (auto-closed brackets and quotes,
    `postprocess.rest_to_replace`); an empty list when there is none or on any failure (logged). While the editor's
    completion list has an item selected (`context.selectedCompletionInfo`), the suggestion continues after that
    item and the answer is the item's text and the suggestion, over the item's range: VS Code shows ghost text
    only where it extends the selected item."""
    found = ls.find(params.text_document.uri, params.position)
    selected = _selected(found, params.context, ls.encoding)
    text = await suggest(ls, found, selected)
    if not text:
        return types.InlineCompletionList(items=[])
    doc, (line, column) = found
    here = start = doc.client_position(line, column, ls.encoding)
    first_column = column
    if selected is not None:  # the answer replaces the item's range with the item's text and the suggestion
        text, first_column = selected.text + text, selected.start[1]
        start = doc.client_position(line, first_column, ls.encoding)
    before = doc.prefix(line, first_column, postprocess.CONTEXT_CHARS)  # the document before what `text` replaces
    # Where the suggestion retypes the auto-closed brackets and quotes after the cursor, it replaces them.
    rest = doc.line_text(line)[column:]
    replaced = rest.strip() and postprocess.rest_to_replace(before, text, rest)
    end = doc.client_position(line, column + replaced, ls.encoding) if replaced else here
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=types.Range(start, end))])


def _selected(found: tuple[Document, Point] | None, context: types.InlineCompletionContext | None,
              encoding: str) -> Selected | None:
    """The selected completion item, when it would change the text before the cursor: its range ends at the
    cursor, starts on the cursor's line, and its text is not what is there already."""
    info = context.selected_completion_info if context is not None else None
    if found is None or info is None:
        return None
    doc, cursor = found
    start, end = doc.locate(info.range.start, encoding), doc.locate(info.range.end, encoding)
    if end != cursor or start[0] != cursor[0] or start > end:
        return None
    if doc.line_text(cursor[0])[start[1]: cursor[1]] == info.text:
        return None
    return Selected(start, info.text)
