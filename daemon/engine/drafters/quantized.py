"""Quantized self-drafting: the verifier's own GGUF on llama.cpp drafts for the fp32 torch verifier of the same weights.

A GGUF verifier on the torch backend runs dequantized to fp32; the same file on llama.cpp's 4-bit kernels steps
several times faster and agrees with its fp32 self on almost every greedy token (quantized kernels flip only
near-ties). The drafter is a `ModelDrafter` over a `LlamaCppRunner`: one llama.cpp sequence per cache slot,
synchronised to the sequence by longest common prefix, greedy. It does not stop at low confidence by default
(`min_confidence` 0): where the quantized model is unsure, its fp32 self still mostly picks the same token (on 12
standard-library completions at another seed than the benchmark's, 88 % of its predictions below 0.3 confidence
were the verifier's token), and stopping there at 0.3 made warm decoding 1.61x plain instead of 1.79x. The torch
verifier decides every token, so the output stays the verifier's own.

Its cost is a second prefill: the first round of a document feeds the whole prompt to llama.cpp (later rounds
and keystrokes feed only what changed). `context` bounds that: the drafter then sees the first token (BOS) and
the last `context` tokens or fewer, from a start that moves in steps of half of it, so its KV stays reusable
between rounds.
"""

from __future__ import annotations

from dataclasses import replace

from .base import Draft, DraftContext, Drafter
from .model import CachedSequence, ModelDrafter


def view_start(length: int, context: int | None) -> int:
    """Where the drafter's view of a `length`-token sequence starts (after the first token): 0 for the whole
    sequence, else a multiple of context // 2 that leaves at most `context` tokens."""
    if context is None or length <= context:
        return 0
    stride = max(1, context // 2)
    return -(-(length - context) // stride) * stride


class QuantizedDrafter(Drafter):
    """The verifier's own GGUF on llama.cpp (`runner`, a LlamaCppRunner) drafting for its fp32 torch self: a
    ModelDrafter over it that sees BOS plus at most the last `context` tokens (`view_start`; None: all), with
    `min_confidence` 0 by default (see the module docstring). A round llama.cpp refuses (RuntimeError, a full sequence)
    drafts nothing, resets the slot's sequence and is counted in `failures`."""

    name = "quantized"

    def __init__(self, runner, label: str, vocab_limit: int | None = None, min_confidence: float = 0.0,
                 context: int | None = None) -> None:
        """`runner`: a LlamaCppRunner over the verifier's GGUF; `vocab_limit`: logit columns the verifier has."""
        self.runner = runner
        self.label = label
        self.context = context
        self.model = ModelDrafter(runner, label, min_confidence, vocab_limit)
        self.failures = 0  # rounds llama.cpp refused (a full sequence): they draft nothing

    @property
    def min_confidence(self) -> float:
        return self.model.min_confidence

    def new_state(self) -> CachedSequence:
        return self.model.new_state()

    def propose(self, ctx: DraftContext, state: CachedSequence) -> Draft:
        start = view_start(len(ctx.ids), self.context)
        if start:
            ctx = replace(ctx, ids=ctx.ids[:1] + ctx.ids[1 + start :])
        try:
            return self.model.propose(ctx, state)
        except RuntimeError:  # llama.cpp refused a batch: start this slot's sequence over next round
            self.failures += 1
            state.cache.truncate(0)
            state.ids.clear()
            return Draft()

    def memory_bytes(self) -> int:
        """The weights and the KV memory of every sequence, which llama.cpp allocates whole at load."""
        return self.runner.parameter_bytes() + self.runner.kv_bytes_per_sequence * self.runner.sequences

    def describe(self) -> str:
        return f"quantized:{self.label} ({self.runner.dtype_name} on llama.cpp)"
