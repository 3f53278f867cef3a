"""The one interface every drafter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch

from ..sampling import SamplingParams


@dataclass
class Draft:
    """A drafter's proposal: `tokens` to verify after the sequence, `probs` the (len(tokens), V) float distributions q
    they were sampled from (None: deterministic, verified as one-hot), and `evidence` a hashable class of how reliable
    the proposal is (None: none told), which cost_aware.py keeps acceptance rates by."""

    tokens: list[int] = field(default_factory=list)
    # Per-token distributions q the tokens were sampled from, (len(tokens), V); None for a deterministic
    # drafter (n-gram lookup, greedy drafting), which verification treats as one-hot.
    probs: torch.Tensor | None = None
    # What the proposal rests on, as a hashable class whose proposals are right about as often (the n-gram
    # drafter: how long the match is and whether earlier occurrences agreed); None when the drafter tells none.
    # Policies that learn acceptance rates (cost_aware.py) keep one rate per class.
    evidence: Any = None


@dataclass
class DraftContext:
    """What a drafter gets each round: `ids` the prompt and output so far (token ids; the last one is not yet in the
    verifier's cache), `max_tokens` the most tokens to propose, the request's `sampling` and `generator` (None when
    greedy), the engine's CacheSlot, and `sources`: other token sequences to copy from, most relevant first."""

    ids: list[int]  # prompt + output so far; the last id is not yet in the verifier's cache
    max_tokens: int
    sampling: SamplingParams
    generator: torch.Generator | None
    slot: Any  # the engine's CacheSlot: verifier cache, per-drafter state, document history
    # Other token sequences worth copying from, most relevant first: the suffix when the prompt does not
    # hold it (models without FIM tokens), then the document's previous completions.
    sources: list[list[int]] = field(default_factory=list)


class Drafter(ABC):
    """The interface every drafter implements: `propose` returns a Draft of at most `ctx.max_tokens` tokens after
    `ctx.ids` (empty: nothing worth verifying, the round is a plain step); `new_state` makes the per-cache-slot state
    `propose` is given; `memory_bytes` the weights and caches it holds, in bytes (0 for model-free ones); `describe` its
    name in `specd status`."""

    name: str = "drafter"
    # Whether `propose` may be given ids whose last several tokens are not in the verifier's cache (tokens a JSON
    # schema forces, drafted ahead of the drafter). False for drafters that read the verifier's cache at the
    # position before ctx.ids[-1] (layer skip, the Gemma 4 assistant): they draft nothing in such a round.
    drafts_after_any_ids: bool = True

    def new_state(self) -> Any:
        """Per-cache-slot state (a drafter model's own KV cache, for example)."""
        return None

    @abstractmethod
    def propose(self, ctx: DraftContext, state: Any) -> Draft:
        """Up to ctx.max_tokens tokens likely to follow ctx.ids."""

    def memory_bytes(self) -> int:
        return 0

    def describe(self) -> str:
        return self.name
