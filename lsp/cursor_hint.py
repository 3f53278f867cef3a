"""`specd/didMoveCursor`: where the user's cursor rests, told by specd's own editor configurations.

LSP has no notification for cursor moves, and a server learns the cursor only from a completion request, i.e.
after the first keystroke, when the whole prompt must still be read (seconds on a CPU). specd's VS Code
extension, Neovim configs and Emacs config (eglot) send this notification when the cursor settles (after a move, a
click or a switch of file); the server then has the daemon read that spot's prompt into the document's cache
(`Completer.warm`). Params are LSP's `TextDocumentPositionParams`:
`{"textDocument": {"uri": ...}, "position": {"line": ..., "character": ...}}`, the column in the negotiated
position encoding. Unknown documents and malformed params are ignored: it is a hint.
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

log = logging.getLogger(__name__)

METHOD = "specd/didMoveCursor"
_UINTEGER_MAX = 2**31 - 1  # LSP's `uinteger`, which lsprotocol's Position enforces


def position_params(params: Any) -> tuple[str, types.Position] | None:
    """(uri, position) from the notification's params (plain JSON, see sync.py), or None when they do not have
    that shape: a field missing or of another type, a line or column outside LSP's `uinteger` range."""
    try:
        uri = params["textDocument"]["uri"]
        line, character = params["position"]["line"], params["position"]["character"]
    except (TypeError, KeyError, IndexError):
        return None
    numbers = all(type(n) is int and 0 <= n <= _UINTEGER_MAX for n in (line, character))
    return (uri, types.Position(line, character)) if isinstance(uri, str) and numbers else None


async def did_move_cursor(ls: Any, params: Any) -> None:
    """The `specd/didMoveCursor` handler: has the completer warm the document's cache at that position
    (`Completer.warm`); malformed params or a document that is not open are ignored (a debug log line, no text)."""
    parsed = position_params(params)
    found = ls.find(*parsed) if parsed else None
    if found is None:  # a hint: nothing to answer, and nothing of the document's text to log
        log.debug("ignored %s: %s", METHOD, "not an open document" if parsed else "malformed params")
        return
    ls.completer.warm(*found)
