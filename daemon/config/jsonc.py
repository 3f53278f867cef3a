"""Edit JSON-with-comments files (VS Code, Cursor and Zed settings) without disturbing what is there.

`parse` keeps where every value sits in the text, so `merge` can replace or insert only the members it
changes: the user's comments, trailing commas, key order, indentation and other keys stay as they were.
Both accept `//` and `/* */` comments and trailing commas, as those editors do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


class JSONCError(ValueError):
    """A JSONC text that does not parse (or, for `merge`, whose top level is not an object): the message starts "line L
    column C: ", 1-based, of character offset `pos`; `line` and `column` hold them."""

    def __init__(self, message: str, text: str, pos: int):
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"line {line} column {column}: {message}")
        self.line, self.column = line, column


@dataclass
class Node:
    """A parsed JSONC value and where it sits: character offsets `start` and `end` (one past) in the text, its plain
    Python `value`, and for an object its `members` in file order and the offset of its "{" (`open_pos`)."""

    start: int
    end: int  # one past the last character
    value: Any = None  # plain Python value of the whole node
    members: list["Member"] = field(default_factory=list)  # objects only, in file order
    open_pos: int = -1  # objects: position of "{"


@dataclass
class Member:
    """One member of a parsed object: its `key`, the offset of the key's opening quote, and its value's Node."""

    key: str
    key_start: int
    value: Node


_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_LITERALS = {"true": True, "false": False, "null": None}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> JSONCError:
        return JSONCError(message, self.text, self.pos if pos is None else pos)

    def skip(self) -> None:
        """Skip whitespace and comments."""
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def value(self) -> Node:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of file, expected a value")
        c = self.text[self.pos]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.array()
        start = self.pos
        if c == '"':
            value = self.string()
            return Node(start, self.pos, value)
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return Node(start, self.pos, json.loads(match.group()))
        for word, value in _LITERALS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return Node(start, self.pos, value)
        raise self.fail(f"unexpected character {c!r}")

    def _string_end(self, start: int) -> int:
        i, text = start + 1, self.text
        while i < len(text):
            c = text[i]
            if c == "\\":
                i += 2
            elif c == '"':
                return i + 1
            elif c == "\n":
                break
            else:
                i += 1
        raise self.fail("unterminated string", start)

    def string(self) -> str:
        start = self.pos
        end = self._string_end(start)
        try:
            value = json.loads(self.text[start:end])
        except json.JSONDecodeError as e:
            raise self.fail(f"bad string: {e.msg}", start) from None
        self.pos = end
        return value

    def obj(self) -> Node:
        node = Node(self.pos, -1, {}, open_pos=self.pos)
        self.pos += 1
        while True:
            self.skip()
            if self.text.startswith("}", self.pos):
                break
            if not self.text.startswith('"', self.pos):
                raise self.fail('expected a "key" or "}"')
            key_start = self.pos
            key = self.string()
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':' after a key")
            self.pos += 1
            member = Member(key, key_start, self.value())
            node.members.append(member)
            node.value[key] = member.value.value
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("}", self.pos):
                raise self.fail("expected ',' or '}' after a value")
        self.pos += 1
        node.end = self.pos
        return node

    def array(self) -> Node:
        node = Node(self.pos, -1, [])
        self.pos += 1
        while True:
            self.skip()
            if self.text.startswith("]", self.pos):
                break
            node.value.append(self.value().value)
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("]", self.pos):
                raise self.fail("expected ',' or ']' after a value")
        self.pos += 1
        node.end = self.pos
        return node


def parse(text: str) -> Node | None:
    """The root node, or None when the text holds only whitespace and comments."""
    parser = _Parser(text)
    parser.skip()
    if parser.pos >= len(text):
        return None
    root = parser.value()
    parser.skip()
    if parser.pos < len(text):
        raise parser.fail("unexpected text after the end of the document")
    return root


def loads(text: str) -> Any:
    """The plain Python value of a JSONC text (`//` and `/* */` comments, trailing commas); None when it holds only
    whitespace and comments. Raises JSONCError (line and column) when it does not parse."""
    root = parse(text)
    return None if root is None else root.value


# ---- editing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One leaf `merge` set: its key `path` from the top level, the `old` value (a private sentinel when the key was
    added; see `is_added`) and the `new` one."""

    path: tuple[str, ...]
    old: Any  # _MISSING when the key was added
    new: Any


_MISSING = object()


def is_added(change: Change) -> bool:
    """Whether `change` added its key rather than replacing a value."""
    return change.old is _MISSING


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _indent_at(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    return re.match(r"[ \t]*", text[start:pos]).group()


def _indent_unit(text: str) -> str:
    """The file's indentation step, judged from its first indented line."""
    match = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    return match.group(1) if match else "  "


def _dump(value: Any, indent: str, unit: str, newline: str) -> str:
    """JSON text for `value`, its continuation lines indented to sit at `indent`."""
    text = json.dumps(value, indent=unit, ensure_ascii=False)
    return text.replace("\n", newline + indent)


def _after_trailing_comment(text: str, pos: int) -> int:
    """`pos`, moved to the end of its line when only blanks and comments follow it there."""
    rest = re.match(r"[ \t]*(?://[^\r\n]*|/\*[^\r\n]*?\*/[ \t]*)?(?=\r?\n)", text[pos:])
    return pos + rest.end() if rest else pos


class _Editor:
    """Collects text edits against the original text and applies them back to front."""

    def __init__(self, text: str):
        self.text = text
        self.unit = _indent_unit(text)
        self.nl = "\r\n" if "\r\n" in text else "\n"
        self.edits: list[tuple[int, int, str]] = []

    def replace(self, node: Node, member_indent: str, value: Any) -> None:
        self.edits.append((node.start, node.end, _dump(value, member_indent, self.unit, self.nl)))

    def insert_members(self, obj: Node, items: dict[str, Any]) -> None:
        text, nl = self.text, self.nl
        if obj.members:
            last = obj.members[-1].value
            key_start = obj.members[-1].key_start
            if text[_line_start(text, key_start):key_start].strip():  # members share the line of "{"
                indent = _indent_at(text, obj.open_pos) + self.unit
            else:
                indent = _indent_at(text, key_start)
            probe = _Parser(text)
            probe.pos = last.end
            probe.skip()
            has_comma = text.startswith(",", probe.pos)
            if has_comma:
                anchor = probe.pos + 1
            else:
                self.edits.append((last.end, last.end, ","))
                anchor = last.end
            anchor = _after_trailing_comment(text, anchor)
            body = self._members(items, indent, trailing=has_comma)
            close = obj.end - 1
            if "\n" in text[anchor:close]:
                self.edits.append((anchor, anchor, nl + body))
            elif not text[anchor:close].strip():  # "}" on the same line: it moves to its own line
                self.edits.append((anchor, close, nl + body + nl + _indent_at(text, obj.open_pos)))
            else:
                self.edits.append((anchor, anchor, nl + body + nl + _indent_at(text, obj.open_pos)))
        else:
            outer = _indent_at(text, obj.open_pos)
            anchor = _after_trailing_comment(text, obj.open_pos + 1)
            body = self._members(items, outer + self.unit, trailing=False)
            close = obj.end - 1
            if "\n" in text[anchor:close]:
                self.edits.append((anchor, anchor, nl + body))
            else:
                self.edits.append((anchor, close, nl + body + nl + outer))

    def _members(self, items: dict[str, Any], indent: str, trailing: bool) -> str:
        lines = [f"{indent}{json.dumps(k, ensure_ascii=False)}: {_dump(v, indent, self.unit, self.nl)}"
                 for k, v in items.items()]
        return ("," + self.nl).join(lines) + ("," if trailing else "")

    def result(self) -> str:
        out = self.text
        # Back to front; of two inserts at one spot the later-made goes in first, so it ends up second.
        ordered = sorted(enumerate(self.edits), key=lambda e: (e[1][0], e[1][1], e[0]), reverse=True)
        for _, (start, end, new) in ordered:
            out = out[:start] + new + out[end:]
        return out


def _merge_into(editor: _Editor, obj: Node, patch: dict[str, Any], path: tuple[str, ...], changes: list[Change]) -> None:
    existing = {m.key: m for m in obj.members}  # a repeated key: the last one counts, as in the editors
    missing: dict[str, Any] = {}
    for key, new in patch.items():
        member = existing.get(key)
        if member is None:
            missing[key] = new
            changes.append(Change(path + (key,), _MISSING, new))
        elif isinstance(new, dict) and isinstance(member.value.value, dict):
            _merge_into(editor, member.value, new, path + (key,), changes)
        elif member.value.value != new or type(member.value.value) is not type(new):
            editor.replace(member.value, _indent_at(editor.text, member.key_start), new)
            changes.append(Change(path + (key,), member.value.value, new))
    if missing:
        editor.insert_members(obj, missing)


def merge(text: str, patch: dict[str, Any]) -> tuple[str, list[Change]]:
    """`text` with every leaf of `patch` set (objects are merged key by key, anything else replaced).

    Returns the new text and what changed; no changes means the text comes back identical.
    Raises JSONCError if `text` cannot be parsed or its top level is not an object.
    """
    root = parse(text)
    if root is None:
        body = json.dumps(patch, indent=2, ensure_ascii=False) + "\n"
        changes = [Change((k,), _MISSING, v) for k, v in patch.items()]
        separator = "" if not text or text.endswith("\n") else "\n"
        return text + separator + body, changes
    if not isinstance(root.value, dict):
        raise JSONCError("the top level is not an object", text, root.start)
    editor = _Editor(text)
    changes: list[Change] = []
    _merge_into(editor, root, patch, (), changes)
    return editor.result(), changes
