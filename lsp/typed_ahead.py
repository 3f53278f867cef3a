"""Typing into a suggestion: while the user types exactly what is on screen, the rest of it is still the
answer, so it is served at once without asking the daemon again.

Each document remembers its last suggestion and where it was anchored. Every edit is checked as it
arrives: an insertion at the cursor that matches the next characters of the suggestion advances it;
anything else forgets it. Typing (or accepting) all of it is reported as an accept.
"""

from __future__ import annotations

from dataclasses import dataclass

Point = tuple[int, int]  # (line, code-point column)


@dataclass
class _Shown:
    text: str
    cursor: Point  # where the next typed character must go
    consumed: int = 0


def _advance(point: Point, inserted: str) -> Point:
    line, column = point
    normalised = inserted.replace("\r\n", "\n").replace("\r", "\n")
    breaks = normalised.count("\n")
    if not breaks:
        return line, column + len(inserted)
    return line + breaks, len(normalised) - normalised.rfind("\n") - 1


class TypedAhead:
    """Per document, the last suggestion shown and how much of it the user has typed since: `remember` sets it at a
    cursor (a Point; "" forgets), `edited` follows each edit (an insertion at the cursor that matches the suggestion's
    next characters advances it, anything else forgets it; returns the new cursor once all of it is typed: an accept),
    `remainder` gives the untyped rest while the cursor is where typing left off."""

    def __init__(self) -> None:
        self._shown: dict[str, _Shown] = {}

    def remember(self, uri: str, cursor: Point, text: str) -> None:
        if text:
            self._shown[uri] = _Shown(text, cursor)
        else:
            self._shown.pop(uri, None)

    def forget(self, uri: str) -> None:
        self._shown.pop(uri, None)

    def edited(self, uri: str, start: Point, end: Point, inserted: str) -> Point | None:
        """Track one edit; returns the new cursor when the edit completed the suggestion (an accept)."""
        shown = self._shown.get(uri)
        if shown is None:
            return None
        remaining = shown.text[shown.consumed :]
        if start != end or start != shown.cursor or not inserted or not remaining.startswith(inserted):
            del self._shown[uri]
            return None
        shown.consumed += len(inserted)
        shown.cursor = _advance(shown.cursor, inserted)
        if shown.consumed < len(shown.text):
            return None
        del self._shown[uri]
        return shown.cursor

    def remainder(self, uri: str, cursor: Point) -> str | None:
        """The untyped rest of the suggestion when the cursor is where typing it left off."""
        shown = self._shown.get(uri)
        if shown is None or shown.cursor != cursor:
            return None
        return shown.text[shown.consumed :]
