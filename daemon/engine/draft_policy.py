"""How many drafted tokens to verify, from what a verification pass costs on this machine and how likely each
drafted token is to be right; none (a plain step) when no draft pays for itself.

A pass over n tokens costs c(n), relative to a 1-token step (c(1) = 1), measured at load and again while the
daemon is idle (`PassCosts`): a table per backend, machine and thread count. If the draft's first i tokens are all
right with probability s_i (p^i when each is right with probability p once the ones before it were), a draft of k
tokens yields 1 + s_1 + ... + s_k tokens for c(k + 1) (the pending token plus the draft), and a plain step yields 1
for c(1). The k with the most tokens per unit of cost is verified (the expected-length argument of Leviathan et
al. 2023, section 3.5, with measured costs in place of a constant cost ratio).

On llama.cpp (SmolLM2 Q4_1, 2 cores) a 5-token pass costs 2.5 steps when passes over several tokens use both
cores (4.0 on one), so only a likely draft pays; on torch fp32 (a 9-token pass costs about 1.7 steps here)
nearly any draft does.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch


PROBE_CONTEXT = 256  # cached tokens before the passes measured at load
ROUNDS = 5  # timed passes of each length per measurement
REMEASURES = 4  # measurements while the daemon is idle, after the one at load
REMEASURE_SPACING = 60.0  # seconds between the first two of them; the wait doubles after each
REPORTED_CHANGE = 0.05
PREFILL_CHUNK = 64  # a measurement's prefill stops between chunks for a request
MIN_THREAD_GAIN = 1.2  # llama.cpp passes on idle cores must be this much cheaper to be worth the risk of a stall
MIN_STEP_GAIN = 1.05  # ... and steps this much faster to follow them there (2 cores here: 1.10)
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


def measure_pass_costs(runner, max_tokens: int, context: int = PROBE_CONTEXT, rounds: int = ROUNDS,
                       filled=None) -> list[float]:
    """The cost table of `runner` (base.Runner) on this machine: the fastest of `rounds` passes over
    n = 1..max_tokens tokens after `context` cached tokens, relative to the fastest 1-token pass (`time_passes`).
    `filled`: a `filled_cache(runner, context, >= max_tokens)` to reuse (its prefill done once for both
    measurements)."""
    fastest = [math.inf] * max_tokens
    time_passes(runner, filled or filled_cache(runner, context, max_tokens), context, fastest, rounds)
    return relative_costs(fastest)


def time_passes(runner, filled, context: int, fastest: list[float], rounds: int = ROUNDS,
                interrupted: Callable[[], bool] = lambda: False) -> bool:
    """Time `rounds` passes over n = 1..len(fastest) tokens after `context` cached tokens of `filled` (a
    filled_cache), lowering `fastest[n - 1]` (seconds) to the fastest pass over n seen. The fastest time is the
    least disturbed one: other programs only ever add time (the advice of Python's timeit), so a burst of their
    work on the 1-token passes cannot make longer passes look cheap, nor one on the long passes turn drafting off,
    unless it lasts through every round. The sizes take turns within each round. Stops before the next pass once
    `interrupted()` (a request waits); returns False then, the passes timed so far counted."""
    cache, filler = filled
    cache.truncate(context)
    for _ in range(rounds):
        for n in range(1, len(fastest) + 1):
            if interrupted():
                return False
            started = time.perf_counter()
            runner.forward(filler[context : context + n], cache)
            fastest[n - 1] = min(fastest[n - 1], time.perf_counter() - started)
            cache.truncate(context)
    return True


def relative_costs(seconds: list[float]) -> list[float]:
    """c(n) = seconds[n - 1] / seconds[0], a pass over n tokens taken to cost no more than one over more tokens
    (a smaller measurement further on wins)."""
    seconds = list(seconds)
    for n in range(len(seconds) - 2, -1, -1):
        seconds[n] = min(seconds[n], seconds[n + 1])
    return [s / seconds[0] for s in seconds]


class PassCosts:
    """The cost tables of a llama.cpp runner's passes (llamacpp_runner.LlamaCppRunner), one per thread count its
    passes over several tokens may run on (`pass_thread_choices`), from the fastest pass over each length seen so
    far (`time_passes`). Measured at load, and again while the daemon has nothing else to do (`remeasure`, called
    by the scheduler), so a table measured while other programs kept the cores busy (in one trial 1.00 2.76 17.85
    ... 146.67: drafting off) is corrected once they leave them idle, without a restart. Passes on more threads
    than the fewest are measured only while other programs leave the cores idle (`runner.pass_threads()` gives
    that count): on busy cores each of them stalls on thread barriers (1.4 s instead of 30 ms in a trial, a minute
    of loading), and that is the count's table only when the cores are idle. Until then they are priced as on the
    fewest threads, which overprices them (drafts less). Called, it gives the table of the next pass:
    `costs()[n - 1]` = c(n) on the threads that pass will run on."""

    def __init__(self, runner, max_tokens: int, report: Callable[[str], None] = lambda message: None) -> None:
        """`report`: told what changed a table or the thread counts after load."""
        self.runner = runner
        self.report = report
        self.fastest = {threads: [math.inf] * max_tokens for threads in runner.pass_thread_choices}
        self.remeasured = 0  # complete measurements while idle

    def measure(self, threads: int, filled, rounds: int = ROUNDS,
                interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Time passes pinned to `threads` (time_passes); False when interrupted."""
        self.runner.pin_pass_threads(threads)
        try:
            return time_passes(self.runner, filled, PROBE_CONTEXT, self.fastest[threads], rounds, interrupted)
        finally:
            self.runner.pin_pass_threads(None)

    def measure_now(self, filled, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Measure the fewest threads' table, and the others' while the cores are idle (above); then keep passes
        (and steps) on the fewest threads if, measured on idle cores, the most made the longest pass less than
        MIN_THREAD_GAIN times faster (hyperthreads sharing a core's units), and steps alone while they make a step
        less than MIN_STEP_GAIN times faster (decided again at every measurement, on the fastest times so far).
        Returns whether every table was measured."""
        fewest, most = min(self.fastest), max(self.fastest)
        complete = True
        for threads in sorted(self.fastest):
            if threads != fewest and self.runner.pass_threads() != threads:
                complete = False
                continue
            if not self.measure(threads, filled, interrupted=interrupted):
                return False
        if most == fewest or not self.measured(most):
            return complete
        seconds = self.fastest  # per thread count, the fastest pass over 1..n tokens
        if seconds[most][-1] * MIN_THREAD_GAIN > seconds[fewest][-1]:
            self.report(f"note: passes on {most} threads ({' '.join(f'{c:.2f}' for c in self.table(most))}) were not "
                        f"{MIN_THREAD_GAIN}x faster than on {fewest}: they stay on {fewest}")
            self.runner.fix_pass_threads(fewest)
            self.fastest = {fewest: self.fastest[fewest]}
        elif self.runner.steps_may_follow_passes:
            # decided again at every measurement: one made while the cores were busy must not keep steps on the
            # fewest threads for the daemon's life (a step on 2 threads timed 15.4 ms against 10.0 on 1 at one load)
            follow = seconds[most][0] * MIN_STEP_GAIN <= seconds[fewest][0]
            step_ms = f"({seconds[most][0] * 1000:.1f} ms against {seconds[fewest][0] * 1000:.1f} on {fewest})"
            if follow and not self.runner.steps_follow_passes:
                self.report(f"note: a step on {most} threads was {MIN_STEP_GAIN}x faster measured again {step_ms}: "
                            f"steps follow passes onto {most} threads again")
                self.runner.let_steps_follow_passes()
            elif not follow and self.runner.steps_follow_passes:
                self.report(f"note: a step on {most} threads {step_ms} was not {MIN_STEP_GAIN}x faster than on "
                            f"{fewest}: steps stay on {fewest}")
                self.runner.fix_step_threads()
            if not follow:
                self.fastest[most][0] = self.fastest[fewest][0]  # the step a draft on `most` threads is weighed against
        return complete

    def measured(self, threads: int) -> bool:
        return math.isfinite(self.fastest[threads][0])

    def table(self, threads: int) -> list[float]:
        """c(1..n) on `threads`; the fewest threads' table while this count has not been measured."""
        return relative_costs(self.fastest[threads if self.measured(threads) else min(self.fastest)])

    @property
    def tables(self) -> dict[int, list[float]]:
        return {threads: self.table(threads) for threads in self.fastest}

    @property
    def measured_tables(self) -> dict[int, list[float] | None]:
        """As `tables`, None for a thread count not measured yet (priced as on the fewest meanwhile)."""
        return {threads: self.table(threads) if self.measured(threads) else None for threads in self.fastest}

    def __call__(self) -> list[float]:
        return self.table(self.runner.pass_threads())

    def remeasure(self, interrupted: Callable[[], bool]) -> float | None:
        """Idle work: measure every table once more in a free sequence while the cores are idle, stopping as soon
        as `interrupted()`. Returns the seconds to wait before the next measurement (REMEASURE_SPACING after one
        that was interrupted, found the cores busy or no free sequence, doubling after each complete one), or None
        after REMEASURES complete ones."""
        if self.remeasured >= REMEASURES:
            return None
        if self.runner.pass_threads() != max(self.fastest):  # other programs are busy: measuring now is wasted
            return REMEASURE_SPACING
        try:
            filled = filled_cache(self.runner, PROBE_CONTEXT, len(next(iter(self.fastest.values()))), interrupted)
        except RuntimeError:  # every sequence holds a document
            return REMEASURE_SPACING
        before = self.tables
        if filled is None or not self.measure_now(filled, interrupted):
            return REMEASURE_SPACING
        self.remeasured += 1
        if any(abs(new / before[threads][n] - 1) > REPORTED_CHANGE
               for threads, table in self.tables.items() for n, new in enumerate(table)):
            self.report(f"llama.cpp pass costs measured again while idle, relative to one token: {self.describe()}")
        return REMEASURE_SPACING * 2 ** (self.remeasured - 1) if self.remeasured < REMEASURES else None

    def describe(self) -> str:
        return "; ".join(f"{threads} thread(s): " + (" ".join(f"{c:.2f}" for c in table) if table else "not measured")
                         for threads, table in self.measured_tables.items())


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


def filled_cache(runner, context: int, max_tokens: int, interrupted: Callable[[], bool] | None = None):
    """A new cache holding `context` filler tokens, and the filler (ids every vocabulary has) to go on with; None
    when `interrupted()` before the prefill's next chunk of PREFILL_CHUNK tokens."""
    cache = runner.new_cache()
    filler = [(i * 31) % 200 + 10 for i in range(context + max_tokens)]
    for start in range(0, context, PREFILL_CHUNK):
        if interrupted is not None and interrupted():
            return None
        runner.forward(filler[start : min(start + PREFILL_CHUNK, context)], cache, last_only=True)
    return cache, filler
