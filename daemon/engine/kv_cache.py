"""A KV cache that grows in place and rolls back for free.

transformers' DynamicCache concatenates on every step (a copy of the whole cache per token) and cannot undo
sliding-window trimming. A slab keeps each layer's keys and values in one preallocated buffer with a length:
appending writes in place, and rolling back rejected draft tokens only moves the length (gpt-fast's static
cache idea, without a fixed maximum). Sliding-window layers keep their full history too; the model's
sliding-window mask still limits what they attend to, so the result is what a full cache would give.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

_MIN_CAPACITY = 256


class SlabLayer(DynamicLayer):
    """One decoder layer's keys and values in preallocated buffers (batch, heads, capacity, head_dim) with a `length` in
    positions: `update` appends in place (capacity doubles, at least 256), `truncate(n)` keeps the first n positions by
    moving the length, `crop(-k)` drops the last k (raises ValueError for a positive k), `nbytes` the buffers' allocated
    size in bytes. A transformers DynamicLayer, so models use it as their cache layer."""

    is_sliding = False
    is_croppable = True

    def __init__(self) -> None:
        super().__init__()
        self.length = 0
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.dtype = key_states.dtype
        self.is_initialized = True

    def _reserve(self, needed: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        capacity = 0 if self._key_buffer is None else self._key_buffer.shape[-2]
        if needed <= capacity:
            return
        new_capacity = max(_MIN_CAPACITY, needed, capacity * 2)
        batch, heads, _, key_dim = key_states.shape
        value_dim = value_states.shape[-1]
        keys = key_states.new_empty(batch, heads, new_capacity, key_dim)
        values = value_states.new_empty(batch, heads, new_capacity, value_dim)
        if self.length:
            keys[:, :, : self.length] = self._key_buffer[:, :, : self.length]
            values[:, :, : self.length] = self._value_buffer[:, :, : self.length]
        self._key_buffer, self._value_buffer = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new_length = self.length + key_states.shape[-2]
        self._reserve(new_length, key_states, value_states)
        self._key_buffer[:, :, self.length : new_length] = key_states
        self._value_buffer[:, :, self.length : new_length] = value_states
        self.length = new_length
        self._expose()
        return self.keys, self.values

    def _expose(self) -> None:
        if self._key_buffer is not None:
            self.keys = self._key_buffer[:, :, : self.length]
            self.values = self._value_buffer[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def truncate(self, length: int) -> None:
        self.length = min(self.length, max(0, length))
        self._expose()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self.truncate(self.length + tokens_to_remove)

    def reset(self) -> None:
        self.truncate(0)

    def nbytes(self) -> int:
        if self._key_buffer is None:
            return 0
        return self._key_buffer.nbytes + self._value_buffer.nbytes


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i


def reuse_prefix(cache: "SlabCache", ids: list[int], sequence: list[int]) -> int:
    """Keep the cached tokens `sequence` starts with (`ids` lists what `cache` holds), drop the rest, and return
    how many were kept: at least the last token of `sequence` is left to feed, so its logits get computed."""
    keep = min(common_prefix_length(ids, sequence), len(sequence) - 1)
    cache.truncate(keep)
    del ids[keep:]
    return keep


class SlabCache(DynamicCache):
    """One SlabLayer per decoder layer; `truncate(n)` keeps the first n positions of every layer."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.layers = [SlabLayer() for _ in range(num_layers)]

    def truncate(self, length: int) -> None:
        for layer in self.layers:
            layer.truncate(length)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[layer_idx].length if layer_idx < len(self.layers) else 0

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)
