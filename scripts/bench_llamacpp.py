"""llama.cpp's own plain greedy decoding as a peer for scripts/bench.py, in the same process as specd.

It decodes the way llama-server does for a completion: the prompt in batches of `n_batch` tokens with logits
for the last one only (the server's prompt processing), then one token per `llama_decode`, each picked in C by
a sampler chain holding llama.cpp's greedy sampler (`common_sampler` with temperature 0 reduces to it),
stopping at an end-of-generation token or the token limit. It has a context of its own (one sequence, cleared
before every prompt, as a cold cache) and shares the GGUF's weights with specd's llama.cpp runner.

Not a module of specd: only the benchmark uses it.
"""

from __future__ import annotations

import ctypes
import time


class LlamaCppPlain:
    name = "llama.cpp:plain"

    def __init__(self, runner, max_context: int = 4096) -> None:
        """`runner`: specd's LlamaCppRunner, whose loaded model (and thread count) this peer uses."""
        lc = self.lc = runner.lc
        params = lc.llama_context_default_params()
        params.n_ctx = max_context
        params.n_batch = params.n_ubatch = self.batch = runner.batch_size
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = runner.threads
        self.ctx = lc.llama_init_from_model(runner.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not make the peer's context")
        self.memory = lc.llama_get_memory(self.ctx)
        self.sampler = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        lc.llama_sampler_chain_add(self.sampler, lc.llama_sampler_init_greedy())

    def generate(self, prompt_ids: list[int], max_tokens: int, stop_ids) -> tuple[list[int], float, float]:
        """Greedy tokens after `prompt_ids` (without the stop token), seconds to the first token, total seconds."""
        lc = self.lc
        lc.llama_memory_clear(self.memory, True)
        started = time.perf_counter()
        for start in range(0, len(prompt_ids), self.batch):
            chunk = prompt_ids[start : start + self.batch]
            self._decode(chunk)
        token = lc.llama_sampler_sample(self.sampler, self.ctx, -1)
        first = time.perf_counter() - started
        tokens = []
        while token not in stop_ids and len(tokens) < max_tokens:
            tokens.append(token)
            if len(tokens) == max_tokens:
                break
            self._decode([token])
            token = lc.llama_sampler_sample(self.sampler, self.ctx, -1)
        return tokens, first, time.perf_counter() - started

    def _decode(self, tokens: list[int]) -> None:
        array = (ctypes.c_int32 * len(tokens))(*tokens)  # positions follow the sequence's last one
        code = self.lc.llama_decode(self.ctx, self.lc.llama_batch_get_one(array, len(tokens)))
        if code != 0:
            raise RuntimeError(f"llama_decode failed with code {code}")

    def close(self) -> None:
        self.lc.llama_sampler_free(self.sampler)
        self.lc.llama_free(self.ctx)
