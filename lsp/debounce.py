"""Not asking the daemon on every keystroke: a wait sized to the typist's rhythm."""

from __future__ import annotations

import statistics
from collections import deque

# Gaps longer than this are pauses, not typing speed.
_PAUSE_S = 1.5


class TypingPace:
    """Per-document keystroke rhythm, to size the wait before a request."""

    def __init__(self, samples: int = 8) -> None:
        self._samples = samples
        self._last: dict[str, float] = {}
        self._gaps: dict[str, deque[float]] = {}

    def keystroke(self, uri: str, now: float) -> None:
        last = self._last.get(uri)
        self._last[uri] = now
        if last is not None and 0 <= now - last < _PAUSE_S:
            self._gaps.setdefault(uri, deque(maxlen=self._samples)).append(now - last)

    def forget(self, uri: str) -> None:
        self._last.pop(uri, None)
        self._gaps.pop(uri, None)

    def delay(self, uri: str, base_s: float, now: float) -> float:
        """Seconds still to wait before asking, counted from the last keystroke.

        A fast typist's next key usually comes within their typical gap, so the wait stretches to
        1.5 gaps (at most 3x the configured base); a slow typist gets the base.
        """
        if base_s <= 0:
            return 0.0
        wait = base_s
        gaps = self._gaps.get(uri)
        if gaps:
            wait = min(max(base_s, 1.5 * statistics.median(gaps)), 3 * base_s)
        since_key = now - self._last.get(uri, now)
        return max(0.0, wait - since_key)
