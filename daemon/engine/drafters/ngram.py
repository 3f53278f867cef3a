"""Model-free drafting: find an earlier occurrence of the last few tokens, the one whose preceding tokens match the
most, and propose what followed.

Sources, in order: the sequence itself (prompt prefix and suffix, what was typed, what was generated), then the
suffix when the prompt lacks it, then the previous completions in the same document. Longer n-grams are tried
first, as they predict better. Drafting costs microseconds, so drafts may be long, except after a match of a
single token: its first token is right about a third of the time, and verifying more of such a weak draft costs
more than it brings on a CPU, where each extra token makes a verification pass ~5-10% dearer
(`scripts/replay_drafts.py` measures both). Each draft tells its evidence: how long the match is (counted back
past the n-gram, up to 16 tokens) and whether earlier occurrences agreed; measured on the llama.cpp benchmark's
prompts, a draft's first token was right 39 % of the time after a 1-token match, 67-79 % after 4-7 tokens,
80 % after 8-11 and 94-99 % after 12 or more.
"""

from __future__ import annotations

import numpy as np

from .base import Draft, DraftContext, Drafter


MATCH_CLASSES = (1, 2, 4, 8, 16)  # match lengths, in tokens, that start a class of the evidence
SELECTION_MATCH = 32  # context tokens compared to choose among a pattern's occurrences
CANDIDATES = 256  # the latest occurrences compared (a common 1-gram occurs thousands of times)


def _occurrence_ends(tokens: np.ndarray, pattern: np.ndarray) -> list[np.ndarray]:
    """For n = 1..len(pattern), where in `tokens` an occurrence of `pattern`'s last n tokens ends that something
    follows (`[n - 1]`, ascending): the last token's matches, narrowed token by token backwards, so that one scan
    of `tokens` serves every n."""
    ends = np.flatnonzero(tokens[:-1] == pattern[-1])
    found = [ends]
    for back in range(1, len(pattern)):
        ends = ends[ends >= back]
        ends = ends[tokens[ends - back] == pattern[-1 - back]]
        found.append(ends)
    return found


def _best_continuation(tokens: np.ndarray, pattern: np.ndarray, limit: int, context: np.ndarray,
                       ends: np.ndarray | None = None):
    """What followed the occurrence of `pattern` in `tokens` (one with something after it) whose preceding tokens
    match the most of `context`'s (whose tail is `pattern`), the latest among equals, and the evidence for it:
    (the length class of that match, counted up to 16 tokens; 0 for a single occurrence, 1 when every occurrence
    was followed by the same token, 2 when not). ([], None) when `pattern` does not occur. `ends`: where its
    occurrences end, if known (`_occurrence_ends`).

    The longest context match, as suffix-tree drafters choose (SuffixDecoding, Oliaro et al. 2024), rather than the
    latest occurrence: replayed on the llama.cpp benchmark's prompts (scripts/replay_drafts.py, two cores), the
    cost-aware policy's estimate rose from 1.198x to 1.231x plain on its 24 prompts and from 1.212x to 1.219x on
    24 others; decoded on the 24, interleaved with the latest-occurrence choice, 1.013x (README, Performance)."""
    n = len(pattern)
    if ends is None:
        ends = _occurrence_ends(tokens, pattern)[-1]
    if not len(ends):
        return [], None
    starts = ends - (n - 1)
    candidates = starts[-CANDIDATES:]
    # tokens matched before the n-gram: the run of `context`'s tokens before its tail that each candidate repeats
    backs = np.arange(1, min(SELECTION_MATCH, len(context)) - n + 1)
    before = candidates[:, None] - backs[None, :]
    same = (tokens[np.maximum(before, 0)] == context[-n - backs][None, :]) & (before >= 0)
    extra = np.cumprod(same, axis=1).sum(axis=1)
    best = int(np.flatnonzero(extra == extra.max())[-1])
    start, matched = int(candidates[best]), n + int(extra[best])
    followers = tokens[starts + n]
    agreement = 0 if len(starts) == 1 else 1 if (followers == followers[-1]).all() else 2
    length_class = max(c for c in MATCH_CLASSES if c <= matched)
    return tokens[start + n : start + n + limit].tolist(), (length_class, agreement)


class NgramDrafter(Drafter):
    """Model-free drafter: the continuation of the longest n-gram (n from `max_ngram` down to `min_ngram` tokens) that
    ends the sequence and occurs earlier in it or in ctx.sources; after a 1-gram match at most `unigram_tokens` tokens.
    Its Draft has no probs (deterministic) and evidence (match length class, agreement) as `_best_continuation` gives.
    Stateless."""

    name = "ngram"

    def __init__(self, max_ngram: int = 4, min_ngram: int = 1, unigram_tokens: int = 1) -> None:
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.unigram_tokens = unigram_tokens

    def propose(self, ctx: DraftContext, state) -> Draft:
        """The continuation of the longest n-gram (max_ngram down to min_ngram) that ends the sequence and occurs
        earlier in it, else in the other sources in order. Each source is scanned once for all n: 18 us a proposal
        on three benchmark prompts against 25 when scanned per n, with warm caches; ~70 us either way right after a
        llama.cpp step, which leaves them cold (2 cores here)."""
        sequence = np.asarray(ctx.ids, dtype=np.int64)
        longest = min(self.max_ngram, len(sequence) - 1)
        if longest < self.min_ngram:
            return Draft()
        pattern = sequence[-longest:]
        sources = [sequence] + [np.asarray(source, dtype=np.int64) for source in ctx.sources]
        ends: list[list[np.ndarray] | None] = [None] * len(sources)  # _occurrence_ends, scanned when first needed
        for n in range(longest, self.min_ngram - 1, -1):
            limit = ctx.max_tokens if n > 1 else min(ctx.max_tokens, self.unigram_tokens)
            for i, source in enumerate(sources):
                if ends[i] is None:
                    ends[i] = _occurrence_ends(source, pattern)
                found, evidence = _best_continuation(source, pattern[-n:], limit, sequence, ends[i][n - 1])
                if found:
                    return Draft(found, evidence=evidence)
        return Draft()
