"""A small language model with the verifier's tokenizer drafts greedily (or samples, keeping q for verification).

It keeps its own KV cache per cache slot, synchronised to the sequence by longest common prefix, so rejected
draft tokens cost nothing to undo and a new keystroke only feeds what changed. Drafting stops early when the
drafter's confidence in its top token falls below `min_confidence` (llama.cpp's p-min).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..kv_cache import SlabCache, reuse_prefix
from ..runners.base import Runner
from ..sampling import sample
from .base import Draft, DraftContext, Drafter


@dataclass
class CachedSequence:
    """A drafter model's KV cache for one cache slot and the token ids it holds (`ids`, exactly what `cache` holds)."""

    cache: SlabCache
    ids: list[int] = field(default_factory=list)  # exactly the tokens held in `cache`

    def sync(self, sequence: list[int]) -> list[int]:
        """Drop cached tokens that diverge from `sequence` and return the ones still to feed (at least one)."""
        return sequence[reuse_prefix(self.cache, self.ids, sequence) :]


class ModelDrafter(Drafter):
    """A small model with the verifier's tokenizer drafting over its own KV cache per slot (CachedSequence), synced to
    ctx.ids by longest common prefix. Greedy requests get greedy tokens (probs None); sampled ones sample and keep q,
    (len(tokens), V) float32. Stops at ctx.max_tokens or when its top token's probability falls below `min_confidence`
    (llama.cpp's p-min; the first token always goes). Raises what `runner.forward` raises (RuntimeError from llama.cpp
    when a sequence is full)."""

    name = "model"

    def __init__(self, runner: Runner, label: str, min_confidence: float = 0.3, vocab_limit: int | None = None) -> None:
        """`runner`: any backend (a torch ModelRunner, or a LlamaCppRunner for quantized self-drafting);
        `vocab_limit`: logit columns the verifier shares (proposals stay below it), None = all."""
        self.runner = runner
        self.label = label
        self.min_confidence = min_confidence
        self.vocab_limit = vocab_limit

    def new_state(self) -> CachedSequence:
        return CachedSequence(self.runner.new_cache())

    def propose(self, ctx: DraftContext, state: CachedSequence) -> Draft:
        pending = state.sync(ctx.ids)
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        while len(tokens) < ctx.max_tokens:
            logits = self.runner.forward(pending, state.cache, last_only=True)[-1]
            state.ids.extend(pending)
            if self.vocab_limit is not None:
                logits = logits[: self.vocab_limit]
            if ctx.sampling.greedy:
                probs = torch.softmax(logits, dim=-1)
                confidence, token = probs.max(dim=-1)
                token = int(token)
            else:
                probs = ctx.sampling.probs(logits)
                token = sample(probs, ctx.generator)
                confidence = probs.max()
                rows.append(probs)
            if tokens and float(confidence) < self.min_confidence:
                if rows:
                    rows.pop()
                break
            tokens.append(token)
            pending = [token]
        return Draft(tokens, torch.stack(rows) if rows else None)

    def memory_bytes(self) -> int:
        return self.runner.parameter_bytes()

    def describe(self) -> str:
        return f"model:{self.label}"
