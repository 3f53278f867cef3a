"""llama.cpp's own decoding as peers for scripts/bench.py, in the same process as specd.

Both peers run on llama-server's default thread count (`llama_server_threads`: every physical core, for steps and
batches alike), whatever specd's own settings.

`LlamaCppPlain` (`llama.cpp:plain`) decodes the way llama-server does for a completion: the prompt in batches of
`n_batch` tokens with logits for the last one only (the server's prompt processing), then one token per
`llama_decode`, each picked in C by a sampler chain holding llama.cpp's greedy sampler (`common_sampler` with
temperature 0 reduces to it), stopping at an end-of-generation token or the token limit. It has a context of its
own (one sequence, cleared before every prompt, as a cold cache) and shares the GGUF's weights with specd's
llama.cpp runner.

`LlamaCppPromptLookup` (`llama.cpp:prompt-lookup`) is llama-cpp-python's own speculative decoding, configured as
its README shows: `Llama(model_path=<the same GGUF>, draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10))`
(`max_ngram_size` 2, the class's default), everything else the binding's defaults (flash attention off) but the
thread counts above and specd's runner's batch size, and `logits_all=True`. With a draft model the binding computes
logits for every row of every batch (the prompt's too) and copies them into a numpy array, but sizes that array by
the `logits_all` argument: left False it has `n_batch` rows and a sequence longer than `n_batch` fails ("could not
broadcast"), so the peer asks for `n_ctx` rows. `Llama.generate` then, after each sampled token, asks the draft
model for up to 10 tokens that followed the first earlier occurrence of the last 2 (else 1) tokens, decodes the
sampled token and the draft in one batch, samples at every row and stops at the first row whose sample differs from
the draft (removing the rest from the KV memory). Sampling is the binding's greedy chain (`temperature 0`: a no-op
penalties sampler and `llama_sampler_init_greedy`). The peer iterates `Llama.generate` itself, the token generator
that `create_completion(stream=True)` wraps (which adds per-token detokenizing and stop-string checks), so tokens
come back as ids and the first one's arrival is a clean time to the first token (prefill and one sample). It stops
at an end-of-generation token (`llama_vocab_is_eog`, as `create_completion` does) or a stop id, or at the token
limit. Its prompt is specd's token ids as they are (`Llama.generate` adds no BOS). The binding reports no draft
statistics; the peer's draft model records every draft it returns, so drafted tokens are counted exactly and
accepted ones are the drafted tokens that agree with the output (the binding keeps exactly that prefix of a greedy
draft); rounds are the decode passes after the prompt's (one per draft call).

Not a module of specd: only the benchmark uses it.
"""

from __future__ import annotations

import ctypes
import glob
import os
import time


def llama_server_threads() -> int:
    """The threads llama-server runs on when not told (`-t`/`-tb` -1): llama.cpp's `cpu_get_num_math`, on Linux
    without hybrid cores `cpu_get_num_physical_cores` (common/common.cpp): the number of distinct
    `/sys/devices/system/cpu/cpu*/topology/thread_siblings` masks, else all logical CPUs up to 4, half above."""
    masks = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings"):
        with open(path, encoding="ascii") as f:
            masks.add(f.read().strip())
    if masks:
        return len(masks)
    cpus = os.cpu_count() or 4
    return cpus if cpus <= 4 else cpus // 2


class LlamaCppPlain:
    name = "llama.cpp:plain"

    def __init__(self, runner, max_context: int = 4096) -> None:
        """`runner`: specd's LlamaCppRunner, whose loaded model this peer uses (on llama_server_threads)."""
        lc = self.lc = runner.lc
        params = lc.llama_context_default_params()
        params.n_ctx = max_context
        params.n_batch = params.n_ubatch = self.batch = runner.batch_size
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = llama_server_threads()
        self.ctx = lc.llama_init_from_model(runner.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not make the peer's context")
        self.memory = lc.llama_get_memory(self.ctx)
        self.sampler = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        lc.llama_sampler_chain_add(self.sampler, lc.llama_sampler_init_greedy())
        self.held: list[int] = []  # the tokens in the context's KV memory, in order

    def generate(self, prompt_ids: list[int], max_tokens: int, stop_ids,
                 reuse: bool = False) -> tuple[list[int], float, float]:
        """Greedy tokens after `prompt_ids` (without the stop token), seconds to the first token, total seconds.
        `reuse`: keep the positions the previous call left that `prompt_ids` starts with and feed only the rest,
        as llama-server's slots do with `cache_prompt` (its default); otherwise from an empty cache."""
        lc = self.lc
        kept = 0
        if reuse:
            while kept < min(len(self.held), len(prompt_ids) - 1) and self.held[kept] == prompt_ids[kept]:
                kept += 1
        lc.llama_memory_seq_rm(self.memory, 0, kept, -1)
        self.held = list(prompt_ids[:kept])
        started = time.perf_counter()
        for start in range(kept, len(prompt_ids), self.batch):
            self._decode(prompt_ids[start : start + self.batch])
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
        self.held.extend(tokens)

    def close(self) -> None:
        self.lc.llama_sampler_free(self.sampler)
        self.lc.llama_free(self.ctx)


class LlamaCppPromptLookup:
    name = "llama.cpp:prompt-lookup"

    def __init__(self, runner, max_context: int = 4096, num_pred_tokens: int = 10, max_ngram_size: int = 2) -> None:
        """`runner`: specd's LlamaCppRunner, whose GGUF (`.path`) and batch size this peer uses (on
        llama_server_threads).
        `max_context` bounds prompt + output + one draft (the binding allocates its logits for all of it)."""
        from llama_cpp import Llama, llama_cpp as lc
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        class RecordingLookup(LlamaPromptLookupDecoding):
            """The binding's prompt lookup, unchanged, noting (sequence length, draft) for every call."""

            def __call__(self, input_ids, /, **kwargs):
                draft = super().__call__(input_ids, **kwargs)
                self.calls.append((len(input_ids), draft.tolist()))
                return draft

        self.lc = lc
        self.draft_model = RecordingLookup(max_ngram_size=max_ngram_size, num_pred_tokens=num_pred_tokens)
        self.draft_model.calls = []
        threads = llama_server_threads()
        self.llm = Llama(model_path=str(runner.path), n_ctx=max_context, n_batch=runner.batch_size,
                         n_ubatch=runner.batch_size, n_threads=threads, n_threads_batch=threads,
                         draft_model=self.draft_model, logits_all=True, verbose=False)
        self.vocab = self.llm._model.vocab

    def generate(self, prompt_ids: list[int], max_tokens: int, stop_ids, reuse: bool = False):
        """Greedy tokens after `prompt_ids` (without the stop token), seconds to the first token, total seconds,
        and (drafted, accepted, rounds) counted from the draft model's calls. `reuse`: the binding's own prefix
        match against the previous call's tokens (`Llama.generate`), else a cold cache."""
        llm, calls = self.llm, self.draft_model.calls
        calls.clear()
        if not reuse:
            llm.reset()
        tokens, stop, first = [], None, None
        started = time.perf_counter()
        generator = llm.generate(prompt_ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)
        try:
            for token in generator:
                if first is None:
                    first = time.perf_counter() - started
                if token in stop_ids or self.lc.llama_vocab_is_eog(self.vocab, token):
                    stop = token
                    break
                tokens.append(token)
                if len(tokens) == max_tokens:
                    break
        finally:
            generator.close()
        total = time.perf_counter() - started
        written = list(prompt_ids) + tokens + ([stop] if stop is not None else [])
        drafted = sum(len(draft) for _, draft in calls)
        accepted = sum(_agreeing(draft, written[at : at + len(draft)]) for at, draft in calls)
        return tokens, first if first is not None else total, total, (drafted, accepted, len(calls))

    def close(self) -> None:
        self.llm.close()


def _agreeing(draft: list[int], written: list[int]) -> int:
    count = 0
    for a, b in zip(draft, written):
        if a != b:
            break
        count += 1
    return count
