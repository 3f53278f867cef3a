"""Self-drafting from the verifier's own first layers: a drafter for any verifier, with no new weights.

The draft runs the first `layers` decoder layers, then the verifier's final norm and head. Those layers' KV for
the sequence is exactly what the verifier already cached, so the draft writes its extra positions into the
verifier's own cache; the engine truncates them before the verification pass recomputes every layer.
"""

from __future__ import annotations

from ..runners.torch_runner import ModelRunner
from .base import Draft, DraftContext, Drafter


class LayerSkipDrafter(Drafter):
    """Self-drafting from the verifier's first `layers` decoder layers (default: half of them) plus its final norm and
    head. Drafts greedily (one-hot q, lossless under sampling too) until max_tokens or until its confidence in the top
    token falls below `min_confidence` (the first token always goes), then truncates what it wrote into the verifier's
    cache. Raises ValueError when `layers` is not in 1..num_layers - 1."""

    name = "layer_skip"
    drafts_after_any_ids = False  # drafts from the verifier's cache, which must hold all but ctx.ids[-1]

    def __init__(self, verifier: ModelRunner, layers: int | None = None, min_confidence: float = 0.3) -> None:
        self.verifier = verifier
        self.layers = layers or max(1, verifier.num_layers // 2)
        if not 0 < self.layers < verifier.num_layers:
            raise ValueError(f"layer_skip needs 1..{verifier.num_layers - 1} layers, got {self.layers}")
        self.min_confidence = min_confidence

    def propose(self, ctx: DraftContext, state) -> Draft:
        cache = ctx.slot.cache
        base = cache.get_seq_length()
        token = ctx.ids[-1]
        tokens: list[int] = []
        try:
            with self.verifier.first_layers(self.layers):
                while len(tokens) < ctx.max_tokens:
                    probs = self.verifier.forward([token], cache, last_only=True)[-1].softmax(-1)
                    confidence, best = probs.max(-1)
                    if tokens and float(confidence) < self.min_confidence:
                        break
                    token = int(best)
                    tokens.append(token)
        finally:
            cache.truncate(base)
        # Greedy proposals: verification treats them as one-hot q, which stays lossless when sampling too.
        return Draft(tokens)

    def describe(self) -> str:
        return f"layer_skip:{self.layers}/{self.verifier.num_layers}"
