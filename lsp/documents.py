"""Open documents as lists of lines, edited in place by incremental didChange.

pygls keeps each document as one string and rebuilds it on every change (about 50 ms per keystroke at
5 MB). Here an edit touches only the lines in its range, and the prompt windows are cut around the
cursor by size, so the cost of a keystroke or a request does not grow with the file.

Columns arrive in the negotiated position encoding (UTF-8 bytes, UTF-16 code units or code points);
they are converted per line, never by `len(str)` on the client's behalf.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lsprotocol import types

from .postprocess import LINE_BREAK  # LSP's line ends (\n, \r\n, \r), not str.splitlines' (\x0b, \u2028, ...)

_LINE_END = "\r\n"


def split_lines(text: str) -> list[str]:
    """Lines with their terminators; the last item is the unterminated rest (maybe ""). Linear in len(text): a
    pattern matching whole lines rescanned a long unterminated last line from each of its characters."""
    lines, start = [], 0
    for end in LINE_BREAK.finditer(text):
        lines.append(text[start : end.end()])
        start = end.end()
    lines.append(text[start:])
    return lines


def _trailing_zeros(number: int) -> int:
    """Trailing zero bits of a positive `number`: of the integers in any interval, one has the most."""
    return (number & -number).bit_length() - 1


def content(line: str) -> str:
    """`line` without its line terminator (LSP's CR, LF or CRLF)."""
    return line.rstrip(_LINE_END)


def units_to_index(text: str, units: int, encoding: str) -> int:
    """Code-point index in `text` of a column given in client units (clamped to the text; a column inside a
    character lands before it)."""
    units = max(units, 0)
    if encoding == types.PositionEncodingKind.Utf32 or text.isascii():
        return min(units, len(text))
    try:
        if encoding == types.PositionEncodingKind.Utf8:
            return len(text.encode("utf-8")[:units].decode("utf-8", errors="ignore"))
        return len(text.encode("utf-16-le")[: 2 * units].decode("utf-16-le", errors="ignore"))
    except UnicodeEncodeError:  # an unpaired surrogate, which an editor's UTF-16 buffer can hold
        used = 0
        for index, char in enumerate(text):
            used += _width(char, encoding)
            if used > units:
                return index
        return len(text)


def index_to_units(text: str, index: int, encoding: str) -> int:
    """Column in client units of the code-point `index` in `text`."""
    head = text[:index]
    if encoding == types.PositionEncodingKind.Utf32 or head.isascii():
        return len(head)
    try:
        if encoding == types.PositionEncodingKind.Utf8:
            return len(head.encode("utf-8"))
        return len(head.encode("utf-16-le")) // 2
    except UnicodeEncodeError:  # an unpaired surrogate counts as one UTF-16 unit (three UTF-8 bytes)
        return sum(_width(char, encoding) for char in head)


def _width(char: str, encoding: str) -> int:
    """Client units of one code point in UTF-8 or UTF-16."""
    code = ord(char)
    if encoding == types.PositionEncodingKind.Utf8:
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    return 2 if code > 0xFFFF else 1


@dataclass
class Document:
    """An open document as a list of lines, each with its terminator (the last one unterminated, maybe ""): its `uri`,
    LSP `language_id` and `version` (didOpen's, then didChange's). Client positions, in the negotiated encoding, go in
    through `locate` and `apply` and out through `client_position`; inside, positions are (line, code-point column).
    `prefix`, `suffix` and `head` cut windows of at most a budget of characters (code points)."""

    uri: str
    language_id: str
    version: int
    lines: list[str] = field(default_factory=lambda: [""])

    @classmethod
    def opened(cls, item: types.TextDocumentItem) -> "Document":
        return cls(item.uri, item.language_id, item.version, split_lines(item.text))

    def line_text(self, line: int) -> str:
        """The line without its terminator ("" past the end)."""
        return content(self.lines[line]) if 0 <= line < len(self.lines) else ""

    def line_end(self, line: int) -> str:
        """The line terminator a text inserted on `line` should use: that line's, else (the last line) the one
        before it, else "\n" (a one-line document)."""
        for index in (line, line - 1):
            if 0 <= index < len(self.lines):
                ending = self.lines[index][len(content(self.lines[index])):]
                if ending:
                    return ending
        return "\n"

    def locate(self, position: types.Position, encoding: str) -> tuple[int, int]:
        """(line, code-point column) of a client position, clamped into the document."""
        if position.line >= len(self.lines):
            last = len(self.lines) - 1
            return last, len(self.line_text(last))
        line = max(position.line, 0)
        return line, units_to_index(self.line_text(line), position.character, encoding)

    def client_position(self, line: int, column: int, encoding: str) -> types.Position:
        return types.Position(line, index_to_units(self.line_text(line), column, encoding))

    def apply(self, change: types.TextDocumentContentChangeEvent, encoding: str) -> None:
        if not isinstance(change, types.TextDocumentContentChangePartial):
            self.lines = split_lines(change.text)
            return
        start_line, start_col = self.locate(change.range.start, encoding)
        end_line, end_col = self.locate(change.range.end, encoding)
        if (end_line, end_col) < (start_line, start_col):
            start_line, start_col, end_line, end_col = end_line, end_col, start_line, start_col
        before = self.lines[start_line][:start_col]
        after = self.lines[end_line][end_col:]
        self.lines[start_line : end_line + 1] = self._resplit(before + change.text + after, end_line)

    def _resplit(self, text: str, end_line: int) -> list[str]:
        new = split_lines(text)
        if new[-1] == "" and end_line + 1 < len(self.lines):
            # The replaced span ended with a terminator: the next line is already in the list.
            new.pop()
        return new

    def prefix(self, line: int, column: int, budget: int) -> str:
        """Up to `budget` characters before the cursor, whole lines where the budget allows.

        Where the budget does not reach the document's start, the window gives up to a quarter of what it holds
        to start at a line whose number has the most trailing zero bits among those it may start at (never the
        cursor's line): typing then moves the start about once in a few dozen lines instead of at every line the
        growing text pushes out. The daemon reuses its cache only up to the first token that differs from the
        previous prompt, so each move of the start costs the whole prompt's prefill again.
        """
        parts = [self.lines[line][:column]]
        used = len(parts[0])
        row = line - 1
        while row >= 0 and used + len(self.lines[row]) <= budget:
            parts.append(self.lines[row])
            used += len(self.lines[row])
            row -= 1
        parts.reverse()  # parts[i] is line row + 1 + i; the last is the cursor's line
        if row >= 0:  # cut: move the start to a stable line within a quarter of what the window holds
            start, given_up = 0, 0
            for i in range(1, len(parts) - 1):
                given_up += len(parts[i - 1])
                if given_up > used // 4:
                    break
                if _trailing_zeros(row + 1 + i) > _trailing_zeros(row + 1 + start):
                    start = i
            parts = parts[start:]
        text = "".join(parts)
        return text[-budget:] if budget else ""

    def suffix(self, line: int, column: int, budget: int) -> str:
        """Up to `budget` characters after the cursor, whole lines where the budget allows."""
        parts = [self.lines[line][column:]]
        used = len(parts[0])
        row = line + 1
        while row < len(self.lines) and used + len(self.lines[row]) <= budget:
            parts.append(self.lines[row])
            used += len(self.lines[row])
            row += 1
        return "".join(parts)[:budget]

    def head(self, budget: int) -> str:
        """The start of the document, whole lines up to `budget` characters."""
        return self.suffix(0, 0, budget)

    def text(self) -> str:
        """The whole text: O(size), for tests and diagnostics only."""
        return "".join(self.lines)


class DocumentStore:
    """The documents the editor has open; a URI that is not open is simply absent (never read from disk)."""

    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def open(self, item: types.TextDocumentItem) -> Document:
        doc = Document.opened(item)
        self._docs[item.uri] = doc
        return doc

    def change(self, params: types.DidChangeTextDocumentParams, encoding: str) -> Document | None:
        doc = self._docs.get(params.text_document.uri)
        if doc is None:
            return None
        for change in params.content_changes:
            doc.apply(change, encoding)
        doc.version = params.text_document.version
        return doc

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def __iter__(self):
        return iter(list(self._docs.values()))

    def __len__(self) -> int:
        return len(self._docs)
