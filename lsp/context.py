"""Extra context for the model: the start of other open documents in the same language.

Nearest first: a document whose name the start of the current document mentions (its imports), then one in
the same folder, then by how much of the path they share. Each snippet is the head of the document (imports
and top-level definitions), cut by size so the total stays within the budget.

The snippets open the prompt, and the daemon reuses its cache only up to the first token that changed: their
order must not change while the user types below the imports, so names are looked up in the document's
start, not in the text around the cursor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from pygls import uris

from .documents import Document

_MIN_SNIPPET = 64
_MAX_SNIPPETS = 3
_IMPORTS_CHARS = 4000  # the start of a document searched for other documents' names


def display_path(uri: str) -> str:
    """The file-system path of `uri` (pygls' `uris.to_fs_path`, file: URIs only), else the URI itself (untitled: and
    other schemes)."""
    return uris.to_fs_path(uri) or uri


def _nearness(current: PurePosixPath, other: PurePosixPath, imports: str) -> tuple[int, int, int]:
    mentioned = re.search(rf"\b{re.escape(other.stem)}\b", imports) is not None if other.stem else False
    shared = 0
    for a, b in zip(current.parent.parts, other.parent.parts):
        if a != b:
            break
        shared += 1
    return int(mentioned), int(current.parent == other.parent), shared


def snippets(current: Document, open_docs: Iterable[Document], budget: int) -> list[dict]:
    """[{"path", "text"}] for the daemon's `extra_context`, at most `budget` characters of text."""
    others = [d for d in open_docs if d.uri != current.uri and d.language_id == current.language_id]
    if not others:
        return []
    here = PurePosixPath(display_path(current.uri))
    imports = current.head(_IMPORTS_CHARS)
    others.sort(key=lambda d: _nearness(here, PurePosixPath(display_path(d.uri)), imports), reverse=True)
    others = others[:_MAX_SNIPPETS]
    out = []
    remaining = budget
    for i, doc in enumerate(others):
        share = remaining // (len(others) - i)
        if share < _MIN_SNIPPET:
            break
        text = doc.head(share)
        if text.strip():
            out.append({"path": display_path(doc.uri), "text": text})
            remaining -= len(text)
    return out
