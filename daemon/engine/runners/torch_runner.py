"""One forward pass of a causal LM over new tokens, appending to a slab KV cache."""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch

from ..kv_cache import SlabCache


class ModelRunner:
    """A transformers causal LM on any torch device (the `base.Runner` interface)."""

    backend = "torch"

    def __init__(self, model, vocab_limit: int | None = None) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.config = model.config.get_text_config(decoder=True)
        self.num_layers = self.config.num_hidden_layers
        self.vocab_limit = vocab_limit  # logits beyond it are padding shared by no tokenizer entry
        params = inspect.signature(model.forward).parameters
        # transformers 5.x renamed `past_key_values` to `cache` in some releases.
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    @property
    def config_sources(self) -> tuple:
        """Where the model names its special tokens: generation config first, then the model config."""
        generation = getattr(self.model, "generation_config", None)
        return tuple(s for s in (generation, self.model.config) if s is not None)

    @property
    def dtype_name(self) -> str:
        return str(next(self.model.parameters()).dtype).replace("torch.", "")

    def new_cache(self) -> SlabCache:
        return SlabCache(self.num_layers)

    @torch.inference_mode()
    def forward(self, token_ids: list[int], cache: SlabCache, last_only: bool = False,
                output_hidden: bool = False):
        """Logits (float32, one row per token, or only the last row) for `token_ids` fed after the cache."""
        start = cache.get_seq_length()
        input_ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)
        positions = torch.arange(start, start + len(token_ids), device=self.device).unsqueeze(0)
        kwargs = {self._cache_kwarg: cache, "use_cache": True, "position_ids": positions,
                  "logits_to_keep": 1 if last_only else 0}
        if output_hidden:
            kwargs["output_hidden_states"] = True
        out = self.model(input_ids=input_ids, **kwargs)
        logits = out.logits[0].float()
        if self.vocab_limit is not None:
            logits = logits[:, : self.vocab_limit]
        return (logits, out.hidden_states[-1][0]) if output_hidden else logits

    @contextmanager
    def first_layers(self, count: int):
        """Run only the first `count` decoder layers (then the final norm and head): layer-skip drafting."""
        saved = self.config.num_hidden_layers
        self.config.num_hidden_layers = count
        try:
            yield
        finally:
            self.config.num_hidden_layers = saved

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())
