"""Cleaning a raw completion before it is shown: what would be noise on screen is removed."""

from __future__ import annotations

_PAIRS = {")": "(", "]": "[", "}": "{"}
_OPENERS = set(_PAIRS.values())


def clean(text: str, suffix: str, mode: str) -> str:
    """The completion as it should be inserted at the cursor, or "" when it adds nothing."""
    if mode == "line":
        text = text.splitlines()[0] if text.strip() else ""
    text = text.rstrip()
    if not text.strip() or repeats_following_lines(text, suffix):
        return ""
    return drop_closers_in_suffix(text, suffix)


def repeats_following_lines(text: str, suffix: str) -> bool:
    """True when the completion only restates the text that already follows the cursor."""
    wanted = [line.strip() for line in text.splitlines() if line.strip()]
    following = [line.strip() for line in suffix.splitlines() if line.strip()]
    if not wanted:
        return True
    # The rest of the cursor's line counts on its own too: `foo(` + `x)` before an existing `x)`.
    rest_of_line = suffix.splitlines()[0].strip() if suffix else ""
    if len(wanted) == 1 and rest_of_line and wanted[0] == rest_of_line:
        return True
    return following[: len(wanted)] == wanted


def unmatched_closers(text: str) -> list[int]:
    """Positions of closing brackets in `text` that close something opened before it."""
    stack: list[str] = []
    excess: list[int] = []
    for i, ch in enumerate(text):
        if ch in _OPENERS:
            stack.append(ch)
        elif ch in _PAIRS:
            if stack and stack[-1] == _PAIRS[ch]:
                stack.pop()
            else:
                excess.append(i)
    return excess


def drop_closers_in_suffix(text: str, suffix: str) -> str:
    """Trailing closers of the completion that the line after the cursor already has (auto-closed
    brackets) are removed, so accepting `x)` before an existing `)` does not leave `foo(x))`."""
    rest = (suffix.splitlines()[0] if suffix else "").lstrip()
    present = ""
    for ch in rest:
        if ch not in _PAIRS:
            break
        present += ch
    excess = unmatched_closers(text)
    for k in range(min(len(present), len(excess)), 0, -1):
        tail = excess[-k:]
        if tail == list(range(len(text) - k, len(text))) and text.endswith(present[:k]):
            return text[:-k]
    return text
