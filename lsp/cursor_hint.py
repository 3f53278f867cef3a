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

from typing import Any

from lsprotocol import types

METHOD = "specd/didMoveCursor"


def position_params(params: Any) -> tuple[str, types.Position] | None:
    """(uri, position) from the notification's params (pygls hands unknown methods' params over as objects
    with the JSON's field names), or None when they do not have that shape."""
    try:
        uri = params.textDocument.uri
        line, character = params.position.line, params.position.character
    except AttributeError:
        return None
    numbers = all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (line, character))
    return (uri, types.Position(line, character)) if isinstance(uri, str) and numbers else None


async def did_move_cursor(ls: Any, params: Any) -> None:
    parsed = position_params(params)
    found = ls.find(*parsed) if parsed else None
    if found is not None:
        ls.completer.warm(*found)
