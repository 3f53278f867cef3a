"""`textDocument/completion`: the suggestion as one item of the completion menu, for clients without
inline completion (Neovim before 0.12, Emacs, Helix). Clients with it are not offered this (see sync.py)."""

from __future__ import annotations

import re
from typing import Any

from lsprotocol import types

from . import postprocess
from .inline import suggest

_WORD_BEFORE = re.compile(r"\w*$")
_LABEL_CHARS = 80


async def completion(ls: Any, params: types.CompletionParams) -> types.CompletionList:
    """LSP `textDocument/completion`, for clients without inline completion: the suggestion as one Text item whose edit
    replaces the word before the cursor with that word plus the suggestion (so clients filtering by the word keep it),
    cut before the rest of the line it would retype; its label is the first line (at most 80 characters, "…" when cut or
    when more lines follow); `isIncomplete` is always true; no item when there is no suggestion."""
    found = ls.find(params.text_document.uri, params.position)
    text = await suggest(ls, found)
    if not text:
        return types.CompletionList(is_incomplete=True, items=[])
    doc, (line, column) = found
    rest = doc.line_text(line)[column:]
    replaced = rest.strip() and postprocess.rest_to_replace(doc.prefix(line, column, postprocess.CONTEXT_CHARS), text, rest)
    if replaced:
        # Menu clients insert the item's text and keep the rest of the line (Neovim's omnifunc ignores an edit
        # range past the cursor): the item stops where it would retype the auto-closed rest.
        text = postprocess.cut_before_rest(text, rest[:replaced])
        if not text:
            return types.CompletionList(is_incomplete=True, items=[])
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
