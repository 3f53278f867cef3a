"""How many drafted tokens to verify, from what a verification pass costs on this machine and how likely each
drafted token is to be right; none (a plain step) when no draft pays for itself.

A pass over n tokens costs c(n), relative to a 1-token step (c(1) = 1), measured once at load
(`measure_pass_costs`): a table per backend and machine. If the draft's first i tokens are all right with
probability s_i (p^i when each is right with probability p once the ones before it were), a draft of k tokens
yields 1 + s_1 + ... + s_k tokens for c(k + 1) (the pending token plus the draft), and a plain step yields 1 for
c(1). The k with the most tokens per unit of cost is
verified (the expected-length argument of Leviathan et al. 2023, section 3.5, with measured costs in place of
a constant cost ratio).

On llama.cpp (SmolLM2 Q4_1, 2 cores) a 5-token pass costs 2.5 steps when passes over several tokens use both
cores (4.0 on one), so only a likely draft pays; on torch fp32 (a 9-token pass costs about 1.7 steps here)
nearly any draft does.
"""

from __future__ import annotations

import statistics
import time

import torch


PROBE_CONTEXT = 256  # cached tokens before the passes measured at load
MIN_GAIN = 1.1  # a draft must promise this many times a plain step's tokens per cost: s_i is an estimate, and
# proposing and scoring drafts costs time a plain step does not spend (bench: 0.95x plain without the margin)


def best_length(costs: list[float], survival: list[float]) -> int:
    """The draft length k in 0..len(survival) with the most expected tokens per cost,
    (1 + s_1 + ... + s_k) / c(k + 1), if that beats a plain step by MIN_GAIN; else 0. costs[n - 1] = c(n);
    survival[i - 1] = s_i, the chance that the draft's first i tokens are all right (p**i for a per-token
    acceptance p)."""
    best, best_rate, expected = 0, MIN_GAIN / costs[0], 1.0
    for k in range(1, min(len(survival), len(costs) - 1) + 1):
        expected += survival[k - 1]
        rate = expected / costs[k]
        if rate > best_rate:
            best, best_rate = k, rate
    return best


def measure_pass_costs(runner, max_tokens: int, context: int = PROBE_CONTEXT, rounds: int = 5,
                       filled=None) -> list[float]:
    """The cost table of `runner` (base.Runner) on this machine: the median seconds of a pass over
    n = 1..max_tokens tokens after `context` cached tokens, relative to the 1-token pass. The sizes take turns
    within each round, so a burst of load from other programs hits all of them alike; a pass over n tokens is
    taken to cost no more than one over more tokens (a smaller measurement further on wins). `filled`: a
    `filled_cache(runner, context, >= max_tokens)` to reuse (its prefill done once for both measurements)."""
    cache, filler = filled or filled_cache(runner, context, max_tokens)
    cache.truncate(context)
    times: list[list[float]] = [[] for _ in range(max_tokens)]
    for _ in range(rounds):
        for n in range(1, max_tokens + 1):
            started = time.perf_counter()
            runner.forward(filler[context : context + n], cache)
            times[n - 1].append(time.perf_counter() - started)
            cache.truncate(context)
    seconds = [statistics.median(t) for t in times]
    for n in range(max_tokens - 2, -1, -1):
        seconds[n] = min(seconds[n], seconds[n + 1])
    return [s / seconds[0] for s in seconds]


def longest_consistent_pass(runner, max_tokens: int, context: int = PROBE_CONTEXT, filled=None) -> int:
    """The largest n in 1..max_tokens such that a pass over m tokens, for every m in 2..n, gives each token
    bit for bit the logits of m single-token steps after `context` cached tokens. Greedy speculation is lossless
    only for verification passes that long: some backends compute products of more rows with other kernels
    (llama.cpp: llamafile's sgemm from 2 rows, the tiled K-quant matmul from 8, flash attention on several
    threads; llamacpp_runner.py). `filled`: as in measure_pass_costs."""
    cache, filler = filled or filled_cache(runner, context, max_tokens)
    cache.truncate(context)
    tokens = filler[context : context + max_tokens]
    singles = torch.cat([runner.forward([token], cache) for token in tokens])
    for n in range(2, max_tokens + 1):
        cache.truncate(context)
        if not torch.equal(runner.forward(tokens[:n], cache), singles[:n]):
            return n - 1
    return max_tokens


def filled_cache(runner, context: int, max_tokens: int):
    """A new cache holding `context` filler tokens, and the filler (ids every vocabulary has) to go on with."""
    cache = runner.new_cache()
    filler = [(i * 31) % 200 + 10 for i in range(context + max_tokens)]
    runner.forward(filler[:context], cache, last_only=True)
    return cache, filler
