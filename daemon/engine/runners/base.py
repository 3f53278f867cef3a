"""What the engine asks of a model backend: forward passes over a per-document KV cache that can roll back.

Two backends implement it: `torch_runner.ModelRunner` (transformers models, any device) and
`llamacpp_runner.LlamaCppRunner` (GGUF files on llama.cpp's kernels). The loop, the drafters that need no
model of their own (n-gram), stops, prefix reuse and accounting are one code path over this interface.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Cache(Protocol):
    """The KV memory of one token sequence: positions 0..get_seq_length()-1 are cached."""

    def get_seq_length(self) -> int: ...

    def truncate(self, length: int) -> None:
        """Keep the first `length` positions, drop the rest (rejected draft tokens, an edited document)."""

    def nbytes(self) -> int: ...


@runtime_checkable
class Runner(Protocol):
    """A model backend as the engine uses it: `forward` over a per-document Cache, `new_cache`, the weights' size in
    bytes (`parameter_bytes`), `config`, and `vocab_limit` (the logit columns in use: the rest are padding or tokens a
    drafter's vocabulary lacks, models/loading.py; None: all). Implemented by torch_runner.ModelRunner and
    llamacpp_runner.LlamaCppRunner."""

    backend: str  # "torch" | "llamacpp"
    device: object  # str() names where it runs: "cpu", "cuda:0", ...
    config: object  # has num_hidden_layers; may have max_position_embeddings, eos_token_id, bos_token_id
    vocab_limit: int | None

    @property
    def config_sources(self) -> tuple:
        """Objects that may name `eos_token_id` / `bos_token_id` (int or list), most specific first."""

    @property
    def dtype_name(self) -> str:
        """The weights' type as shown in `specd status`: "float32", "bfloat16", "Q4_1", ..."""

    def new_cache(self) -> Cache: ...

    def forward(self, token_ids: list[int], cache: Cache, last_only: bool = False):
        """Logits, a float32 torch tensor (len(token_ids), V) or (1, V) with `last_only`, for `token_ids` fed at
        positions cache.get_seq_length() onwards; the cache then holds them too."""

    def parameter_bytes(self) -> int: ...
