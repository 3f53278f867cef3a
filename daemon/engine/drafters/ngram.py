"""Model-free drafting: find the latest earlier occurrence of the last few tokens and propose what followed.

Sources, in order: the sequence itself (prompt prefix and suffix, what was typed, what was generated), then the
suffix when the prompt lacks it, then the previous completions in the same document. Longer n-grams are tried
first, as they predict better. Drafting costs microseconds, so drafts may be long, except after a match of a
single token: its first token is right about a third of the time, and verifying more of such a weak draft costs
more than it brings on a CPU, where each extra token makes a verification pass ~5-10% dearer
(`scripts/replay_drafts.py` measures both).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Draft, DraftContext, Drafter


def _latest_continuation(tokens: np.ndarray, pattern: np.ndarray, limit: int) -> list[int]:
    """What followed the latest occurrence of `pattern` in `tokens` that has something after it."""
    n = len(pattern)
    if len(tokens) <= n:
        return []
    windows = sliding_window_view(tokens[:-1], n)  # a window starting at i is followed by tokens[i + n]
    starts = np.flatnonzero((windows == pattern).all(axis=1))
    if not len(starts):
        return []
    start = int(starts[-1])
    return tokens[start + n : start + n + limit].tolist()


class NgramDrafter(Drafter):
    name = "ngram"

    def __init__(self, max_ngram: int = 4, min_ngram: int = 1, unigram_tokens: int = 1) -> None:
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.unigram_tokens = unigram_tokens

    def propose(self, ctx: DraftContext, state) -> Draft:
        sequence = np.asarray(ctx.ids, dtype=np.int64)
        others = [np.asarray(source, dtype=np.int64) for source in ctx.sources]
        for n in range(self.max_ngram, self.min_ngram - 1, -1):
            if len(sequence) <= n:
                continue
            pattern = sequence[-n:]
            limit = ctx.max_tokens if n > 1 else min(ctx.max_tokens, self.unigram_tokens)
            found = _latest_continuation(sequence, pattern, limit)
            for other in others:
                if found:
                    break
                found = _latest_continuation(other, pattern, limit)
            if found:
                return Draft(found)
        return Draft()
