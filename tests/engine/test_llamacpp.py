"""The llama.cpp backend through the whole engine, on the embedded default's GGUF (SmolLM2 135M, Q4_1).

Greedy speculative output must be token for token the same backend's plain greedy output (drafts verified in
one k-token batch, plain decoding one token per batch), with stops, a suffix, cancellation, two documents'
sequences in one context and rejected drafts removed from llama.cpp's KV memory.
"""

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'specd[llamacpp]')")

from fixtures.embedded import embedded_home  # noqa: E402
from fixtures.lossless import drafted_and_accepted, json_decoder_prompts, plain_and_speculative  # noqa: E402
from specd.daemon.engine.drafters.base import Draft, Drafter  # noqa: E402
from specd.daemon.engine.drafters.ngram import NgramDrafter  # noqa: E402
from specd.daemon.engine.fim import bos_ids  # noqa: E402
from specd.daemon.engine.loop import EngineConfig, GenerationRequest  # noqa: E402
from specd.daemon.engine.requests import CancelToken, ContextFile  # noqa: E402
from specd.daemon.engine.runners.llamacpp_runner import LlamaCppRunner  # noqa: E402
from specd.daemon.models.loading import load_engine  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path_factory.mktemp("home"))))
        engine = load_engine(EngineConfig(verifier="smollm2-135m", backend="llamacpp", cache_slots=2,
                                          max_context=2048), progress=lambda message: None)
        yield engine


@pytest.fixture
def engine(llama):
    llama.drafter = NgramDrafter()
    llama.pool.clear()
    return llama


def held_positions(engine, slot) -> int:
    """How many positions llama.cpp's KV memory holds for the slot's sequence."""
    runner = engine.verifier
    return runner.lc.llama_memory_seq_pos_max(runner.memory, slot.cache.seq_id) + 1


def test_the_embedded_default_runs_on_llamacpp(engine):
    info = engine.info()
    assert isinstance(engine.verifier, LlamaCppRunner)
    assert (info["backend"], info["device"], info["dtype"], info["drafter"]) == ("llamacpp", "cpu", "Q4_1", "ngram")
    assert engine.start_ids == [engine.tokenizer.bos_token_id]
    assert engine.tokenizer.eos_token_id in engine.eos_ids


def test_greedy_speculative_equals_plain_with_a_suffix(engine):
    drafted, accepted = drafted_and_accepted(engine, json_decoder_prompts(), max_tokens=32)
    assert drafted > 0 and accepted > 0  # drafts were verified in k-token batches, and some were kept


def test_stops_cut_where_plain_decoding_stops(engine):
    prefix, suffix = json_decoder_prompts()[1]
    line, _ = plain_and_speculative(engine, prompt=prefix, suffix=suffix, max_tokens=48, mode="line")
    assert line.finish_reason == "stop" and "\n" not in line.text
    whole, _ = plain_and_speculative(engine, prompt=prefix, suffix=suffix, max_tokens=48)
    stop = whole.text[len(whole.text) // 2 :][:3]
    cut, _ = plain_and_speculative(engine, prompt=prefix, suffix=suffix, max_tokens=48, stop=[stop])
    assert cut.finish_reason == "stop" and cut.text == whole.text[: whole.text.find(stop)]
    short, _ = plain_and_speculative(engine, prompt=prefix, suffix=suffix, max_tokens=5)
    assert short.finish_reason == "length"
    assert short.stats.completion_tokens == 5 + short.stats.rewritten_tokens  # rewriting healed text is free


class _WrongDrafter(Drafter):
    """Drafts the verifier's own next tokens with the second one spoiled: one accepted, the rest rejected."""

    name = "wrong"

    def __init__(self, expected: list[int], prompt_length: int) -> None:
        self.expected, self.prompt_length = expected, prompt_length

    def propose(self, ctx, state):
        done = len(ctx.ids) - self.prompt_length  # output tokens so far, the pending one included
        tokens = list(self.expected[done : done + ctx.max_tokens])
        if len(tokens) > 1:
            tokens[1] = (tokens[1] + 1) % 1000
        return Draft(tokens)


def test_rejected_draft_tokens_are_removed_from_llamacpp_memory(engine):
    prefix, suffix = json_decoder_prompts()[0]
    request = dict(prompt=prefix, suffix=suffix, max_tokens=24, cache_key="doc", token_healing=False)
    plain = engine.generate(GenerationRequest(**request, draft_tokens=0))
    engine.pool.clear()
    engine.drafter = _WrongDrafter(plain.token_ids, plain.stats.prompt_tokens)
    spoiled = engine.generate(GenerationRequest(**request, draft_tokens=4))
    assert spoiled.token_ids == plain.token_ids
    assert spoiled.stats.drafted_tokens > spoiled.stats.accepted_tokens > 0
    slot = engine.pool.slots[0]
    assert held_positions(engine, slot) == len(slot.ids) == slot.cache.get_seq_length()


def test_two_documents_keep_their_sequences_and_reuse_their_prefixes(engine):
    (a_prefix, a_suffix), (b_prefix, b_suffix) = json_decoder_prompts()[:2]
    cold_a = engine.generate(GenerationRequest(prompt=a_prefix + "x", suffix=a_suffix, max_tokens=12, cache_key="a"))
    engine.generate(GenerationRequest(prompt=b_prefix, suffix=b_suffix, max_tokens=12, cache_key="b"))
    warm_a = engine.generate(GenerationRequest(prompt=a_prefix + "x", suffix=a_suffix, max_tokens=12, cache_key="a"))
    assert warm_a.token_ids == cold_a.token_ids
    assert warm_a.stats.cached_tokens >= warm_a.stats.prompt_tokens - 8  # only the changed tail was fed
    typed = engine.generate(GenerationRequest(prompt=a_prefix + "xy", suffix=a_suffix, max_tokens=12, cache_key="a"))
    engine.pool.clear()
    fresh = engine.generate(GenerationRequest(prompt=a_prefix + "xy", suffix=a_suffix, max_tokens=12, cache_key="a"))
    assert typed.token_ids == fresh.token_ids and typed.stats.cached_tokens > 0
    assert {s.cache.seq_id for s in engine.pool.slots} <= {0, 1}


def test_prefill_only_fills_the_sequence_the_next_keystroke_reuses(engine):
    prefix, suffix = json_decoder_prompts()[0]
    warm_up = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=12, cache_key="a",
                                                prefill_only=True))
    assert warm_up.token_ids == [] and warm_up.stats.cached_tokens == 0
    slot = engine.pool.slots[0]
    assert held_positions(engine, slot) == len(slot.ids) == warm_up.stats.prompt_tokens
    typed = dict(prompt=prefix + "x", suffix=suffix, max_tokens=12, cache_key="a")
    warm = engine.generate(GenerationRequest(**typed))
    assert warm.stats.prompt_tokens - warm.stats.cached_tokens <= 4
    engine.pool.clear()
    assert warm.token_ids == engine.generate(GenerationRequest(**typed)).token_ids


def test_pass_costs_are_measured_again_while_idle_in_a_free_sequence_only(llama):
    """The idle work (draft_policy.PassCosts.remeasure) borrows a free llama.cpp sequence: documents keep theirs,
    whole, and it waits while every sequence holds one."""
    from specd.daemon.engine.draft_policy import REMEASURE_SPACING

    engine, runner = llama, llama.verifier
    engine.pool.clear()
    (a_prefix, a_suffix), (b_prefix, b_suffix) = json_decoder_prompts()[:2]
    a = dict(prompt=a_prefix, suffix=a_suffix, max_tokens=12, cache_key="a")
    cold = engine.generate(GenerationRequest(**a))
    slot, costs = engine.pool.slots[0], engine.idle_work[0].__self__  # the engine's PassCosts
    held, free, measured = held_positions(engine, slot), list(runner._free), costs.remeasured
    saved = runner.load
    runner.load = _Load(0.0) if saved is not None else None  # other programs (other tests) leave the cores idle
    try:
        assert engine.run_idle_work(lambda: False) == REMEASURE_SPACING * 2 ** measured
        assert costs.remeasured == measured + 1 and runner._free == free
        assert held_positions(engine, slot) == held == len(slot.ids)
        warm = engine.generate(GenerationRequest(**a))
        assert warm.token_ids == cold.token_ids and warm.stats.cached_tokens == warm.stats.prompt_tokens - 1
        engine.generate(GenerationRequest(prompt=b_prefix, suffix=b_suffix, max_tokens=4, cache_key="b"))
        assert engine.run_idle_work(lambda: False) == REMEASURE_SPACING and costs.remeasured == measured + 1
        assert held_positions(engine, slot) == len(slot.ids)
    finally:
        runner.load = saved


def test_specd_status_shows_the_pass_costs_drafts_are_priced_by(llama):
    from specd.daemon.cli.main import _describe
    from specd.daemon.engine.drafters.cost_aware import CostAwareDrafter

    costs, saved = llama.idle_work[0].__self__, llama.drafter
    llama.drafter = CostAwareDrafter(NgramDrafter(), costs)
    try:
        info = llama.info()
    finally:
        llama.drafter = saved
    assert set(info["pass_costs"]) == set(llama.verifier.pass_thread_choices)
    assert all(table is None or table[0] == 1.0 and table == sorted(table) for table in info["pass_costs"].values())
    report = {"running": True, "url": "u", "pid": 1, "responding": True, "state": "ready", "token_file": "t",
              "log_file": "l", "models": info}
    threads, table = min(info["pass_costs"].items())  # the fewest threads' table is always measured
    said = _describe(report)
    assert (f"pass costs, relative to a one-token step on as many threads: {threads} thread(s) 1.00 {table[1]:.2f}"
            in said)
    assert f"threads: {llama.verifier.describe_threads()}" in said
    assert info["threads"].startswith("steps")
    models = {**info, "pass_costs": {"1": table, "2": None}}
    assert "2 thread(s) not measured yet (other programs kept the cores busy" in _describe({**report, "models": models})


def test_other_files_go_in_smollm2s_repository_layout_and_are_cut_first(engine):
    """SmolLM2 (no FIM tokens) has StarCoder2's `<file_sep>`: other files come as `<file_sep>path\ncode`, the
    current file last; text that spells the token is not the token."""
    files = (ContextFile("/p/util.py", "import os\n"), ContextFile("/p/b.py", "x = '<file_sep>'"))
    request = dict(prompt="def main():\n    ", suffix="", max_tokens=8, fit_context=True, context_files=files,
                   path="/p/new.py", language="python")
    ids = engine.prompt_ids(GenerationRequest(**request))
    separator = engine.tokenizer.convert_tokens_to_ids("<file_sep>")
    assert engine.file_separator == "<file_sep>" and separator in engine.eos_ids
    start = len(bos_ids(engine.tokenizer))
    assert ids[start] == separator and ids.count(separator) == 3
    assert engine.tokenizer.decode(ids[start:]) == ("<file_sep>/p/util.py\nimport os\n<file_sep>/p/b.py\nx = '<file_sep>'\n"
                                                "<file_sep>/p/new.py\ndef main():\n    ")
    # Over the context, the other files lose their start first; the current file's prefix stays whole.
    long = (ContextFile("/p/long.py", "value = compute(1)\n" * 600),)
    fitted = engine.prompt_ids(GenerationRequest(**{**request, "context_files": long}))
    assert len(fitted) <= engine.max_context - 8 and fitted.count(separator) == 1
    assert engine.tokenizer.decode(fitted).endswith("value = compute(1)\n<file_sep>/p/new.py\ndef main():\n    ")
    result = engine.generate(GenerationRequest(**request))
    assert result.stats.prompt_tokens + result.stats.healed_tokens == len(ids) and "<file_sep>" not in result.text


def test_a_cancelled_request_leaves_its_sequence_consistent(engine):
    prefix, suffix = json_decoder_prompts()[2]
    cancel = CancelToken()
    chunks = []

    def on_text(text):
        chunks.append(text)
        cancel.cancel()

    request = dict(prompt=prefix, suffix=suffix, max_tokens=40, cache_key="c")
    cancelled = engine.generate(GenerationRequest(**request), cancel=cancel, on_text=on_text)
    assert cancelled.finish_reason == "cancelled" and cancelled.stats.completion_tokens < 40
    slot = engine.pool.slots[0]
    assert held_positions(engine, slot) == len(slot.ids)
    again = engine.generate(GenerationRequest(**request))
    engine.pool.clear()
    fresh = engine.generate(GenerationRequest(**request))
    assert again.token_ids == fresh.token_ids and again.stats.cached_tokens > 0


def test_a_full_pool_reuses_the_oldest_sequence(engine):
    for key in ("one", "two", "three"):
        engine.generate(GenerationRequest(prompt=f"# {key}\ndef f():\n    return", max_tokens=3, cache_key=key))
    assert len(engine.pool.slots) == 2 and sorted(s.cache.seq_id for s in engine.pool.slots) == [0, 1]


@pytest.mark.parametrize("pass_threads", [1, 2])
def test_a_batch_gives_every_token_the_logits_of_a_single_step(engine, pass_threads):
    """What makes greedy speculation lossless here: flash attention off, and a build without llamafile's sgemm; on
    one thread or on two (each output of a matrix product is still one thread's dot product)."""
    import torch

    runner = engine.verifier
    if runner.many_row_kernels:
        pytest.skip(f"this llama.cpp build has {runner.many_row_kernels} (README: Backends)")
    assert not runner.flash_attention
    ids = engine.tokenizer(json_decoder_prompts()[0][0])["input_ids"][:300]
    cache = runner.new_cache()
    runner.forward(ids[:260], cache, last_only=True)
    runner.pin_pass_threads(pass_threads)
    try:
        batch = runner.forward(ids[260:], cache)
        assert runner.lc.llama_n_threads_batch(runner.ctx) == pass_threads
    finally:
        runner.pin_pass_threads(None)
    cache.truncate(260)
    steps = torch.cat([runner.forward([token], cache) for token in ids[260:]])
    assert torch.equal(batch, steps)


class _Load:
    def __init__(self, busy: float) -> None:
        self.busy = busy

    def cores_busy(self) -> float:
        return self.busy


def test_passes_take_the_idle_cores_and_leave_them_when_other_programs_need_them(engine):
    runner = engine.verifier
    saved = runner.load, runner.batch_threads, runner.busy_batch_threads
    runner.batch_threads, runner.busy_batch_threads, runner.load = 2, 1, _Load(0.0)
    try:
        ids = engine.tokenizer(json_decoder_prompts()[0][0])["input_ids"][:20]
        cache = runner.new_cache()
        runner.forward(ids[:8], cache)
        assert runner.lc.llama_n_threads_batch(runner.ctx) == 2
        runner.load.busy = 0.6  # a build started on the other core
        runner.forward(ids[8:12], cache)
        assert runner.lc.llama_n_threads_batch(runner.ctx) == 1
        runner.forward(ids[12:13], cache)  # a single step runs on `threads`, whatever the load
        assert runner.lc.llama_n_threads(runner.ctx) == runner.threads
        runner.load.busy = 0.1  # a short burst of the editor's
        runner.forward(ids[13:16], cache)
        assert runner.lc.llama_n_threads_batch(runner.ctx) == 2
    finally:
        runner.load, runner.batch_threads, runner.busy_batch_threads = saved


def test_with_both_counts_auto_steps_take_the_idle_cores_too(engine):
    runner = engine.verifier
    saved = runner.load, runner.batch_threads, runner.busy_batch_threads, runner.steps_follow_passes
    runner.batch_threads, runner.busy_batch_threads, runner.load = 2, 1, _Load(0.0)
    runner.steps_follow_passes = True
    steps_before = dict(runner.steps_on)
    try:
        ids = engine.tokenizer(json_decoder_prompts()[0][0])["input_ids"][:20]
        cache = runner.new_cache()
        runner.forward(ids[:8], cache)
        runner.forward(ids[8:9], cache)
        assert (runner.lc.llama_n_threads(runner.ctx), runner.lc.llama_n_threads_batch(runner.ctx)) == (2, 2)
        runner.load.busy = 0.6
        runner.forward(ids[9:10], cache)
        assert runner.lc.llama_n_threads(runner.ctx) == 1
        runner.fix_step_threads()
        runner.load.busy = 0.0
        runner.forward(ids[10:11], cache)
        assert runner.lc.llama_n_threads(runner.ctx) == runner.threads == 1
        assert {n: runner.steps_on[n] - steps_before.get(n, 0) for n in (1, 2)} == {1: 2, 2: 1}
    finally:
        runner.load, runner.batch_threads, runner.busy_batch_threads, runner.steps_follow_passes = saved


def test_auto_threads_use_every_usable_core_and_a_fixed_count_stays(tmp_path):
    from specd.daemon.engine.runners.cpu_load import OtherProgramsLoad, usable_cpu_count

    gguf = embedded_home(tmp_path) / "cache" / "embedded" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    auto = LlamaCppRunner(gguf, max_context=64, sequences=1, threads=1)
    both_auto = LlamaCppRunner(gguf, max_context=64, sequences=1)
    cores = usable_cpu_count()
    assert not auto.steps_follow_passes
    if cores > 1 and OtherProgramsLoad.available():
        assert (auto.busy_batch_threads, auto.batch_threads, auto.pass_thread_choices) == (1, cores, (1, cores))
        assert both_auto.steps_follow_passes and both_auto.step_threads() in (both_auto.threads, cores)
    fixed = LlamaCppRunner(gguf, max_context=64, sequences=1, batch_threads=3)
    assert (fixed.load, fixed.pass_threads(), fixed.pass_thread_choices) == (None, 3, (3,))
    assert not fixed.steps_follow_passes
    both_auto.fix_pass_threads(1)
    assert (both_auto.load, both_auto.pass_threads(), both_auto.pass_thread_choices) == (None, 1, (1,))
    assert (both_auto.steps_follow_passes, both_auto.step_threads()) == (False, both_auto.threads)


class _BrokenLoad:
    stopped = False

    def cores_busy(self) -> float:
        raise OSError("/proc/stat: no such file")

    def stop(self) -> None:
        self.stopped = True


def test_a_load_probe_that_fails_leaves_passes_on_the_step_threads(engine):
    runner = engine.verifier
    saved = runner.load, runner.batch_threads, runner.busy_batch_threads
    broken = _BrokenLoad()
    runner.batch_threads, runner.busy_batch_threads, runner.load = 2, 1, broken
    try:
        ids = engine.tokenizer(json_decoder_prompts()[0][0])["input_ids"][:8]
        runner.forward(ids, runner.new_cache())  # the request goes on
        assert runner.lc.llama_n_threads_batch(runner.ctx) == 1
        assert (runner.load, runner.pass_thread_choices, broken.stopped) == (None, (1,), True)
    finally:
        runner.load, runner.batch_threads, runner.busy_batch_threads = saved


def test_the_drafter_prices_each_pass_by_the_threads_it_will_run_on(tmp_path, monkeypatch):
    from specd.daemon.models import loading

    from specd.daemon.engine.draft_policy import PassCosts

    monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path)))
    tables = {1: [1.0, 1.8, 2.5], 2: [1.0, 1.5, 1.9]}

    def measured(runner, passes, filled, progress):
        costs = PassCosts(runner, passes)
        costs.fastest = {threads: [0.01 * c for c in table] for threads, table in tables.items()}
        return costs

    monkeypatch.setattr(loading, "pass_cost_tables", measured)
    engine = load_engine(EngineConfig(verifier="smollm2-135m", backend="llamacpp", cache_slots=1, max_context=512,
                                      max_draft_tokens=2), progress=lambda message: None)
    runner = engine.verifier
    runner.batch_threads, runner.busy_batch_threads = 2, 1
    runner.load = _Load(0.0)
    assert engine.drafter.costs() == pytest.approx(tables[2])
    runner.load = _Load(1.0)
    assert engine.drafter.costs() == pytest.approx(tables[1])


class _TimedRunner:
    """What pass_cost_tables needs of a LlamaCppRunner, with a measurement per thread count; `now`: the count
    pass_threads gives (2 while the cores are idle)."""

    def __init__(self, choices, now, steps_follow_passes=False):
        self.pass_thread_choices, self.now, self.pinned, self.fixed = choices, now, [], None
        self.steps_may_follow_passes = self.steps_follow_passes = steps_follow_passes

    def pin_pass_threads(self, threads):
        self.pinned.append(threads)

    def pass_threads(self):
        return self.now

    def fix_pass_threads(self, threads):
        self.fixed = threads

    def fix_step_threads(self):
        self.steps_follow_passes = False

    def let_steps_follow_passes(self):
        self.steps_follow_passes = self.steps_may_follow_passes


@pytest.mark.parametrize("two_thread_step_ms, steps_follow, two_thread_table", [
    (6.6, True, [1.0, 1.5, 2.0]),  # a step 1.1x faster on both cores: steps go there too, priced against it
    (7.2, False, [1.0, 9.9 / 7.3, 13.2 / 7.3]),  # not 1.05x faster: steps stay on one, drafts priced against it
])
def test_steps_follow_passes_onto_idle_cores_only_where_they_are_faster_there(monkeypatch, two_thread_step_ms,
                                                                            steps_follow, two_thread_table):
    """A step on 2 quiet cores took 6.6 ms against 7.3 on one (llama-server steps on every physical core); with
    hyperthreads a step may gain nothing."""
    from specd.daemon.engine import draft_policy
    from specd.daemon.models.loading import pass_cost_tables

    runner = _TimedRunner((1, 2), 2, steps_follow_passes=True)
    seconds = {1: [0.0073, 0.0146, 0.0220], 2: [two_thread_step_ms / 1000, 0.0099, 0.0132]}

    def measure(costs, threads, filled, rounds=5, interrupted=None):
        costs.fastest[threads] = list(seconds[threads])
        return True

    monkeypatch.setattr(draft_policy.PassCosts, "measure", measure)
    messages = []
    tables = pass_cost_tables(runner, 3, None, messages.append).tables
    assert runner.steps_follow_passes is steps_follow and runner.fixed is None
    assert tables[2] == pytest.approx(two_thread_table)
    assert any("steps stay on 1" in m for m in messages) is not steps_follow


def test_steps_kept_on_one_thread_by_a_busy_load_follow_passes_again_when_measured_idle(monkeypatch):
    """A load whose two-thread step was timed while the cores were busy (15.4 ms against 10.0) kept steps on one
    thread for the daemon's life, 18 % slower than llama.cpp on both cores; the idle remeasure decides again."""
    from specd.daemon.engine import draft_policy
    from specd.daemon.models.loading import pass_cost_tables

    runner = _TimedRunner((1, 2), 2, steps_follow_passes=True)
    timings = iter([{1: [0.0100, 0.0186, 0.0258], 2: [0.0154, 0.0140, 0.0160]},  # at load, busy
                    {1: [0.0101, 0.0187, 0.0259], 2: [0.0068, 0.0122, 0.0150]}])  # idle, measured again

    def measure(costs, threads, filled, rounds=5, interrupted=None):
        if threads == 1:
            measure.now = next(timings)
        costs.fastest[threads] = [min(old, new) for old, new in zip(costs.fastest[threads], measure.now[threads])]
        return True

    monkeypatch.setattr(draft_policy.PassCosts, "measure", measure)
    monkeypatch.setattr(draft_policy, "filled_cache", lambda *args, **kwargs: object())
    messages = []
    costs = pass_cost_tables(runner, 3, None, messages.append)
    assert runner.steps_follow_passes is False and any("steps stay on 1" in m for m in messages)
    costs.report = messages.append
    costs.remeasure(lambda: False)
    assert runner.steps_follow_passes is True
    assert any("steps follow passes onto 2 threads again" in m for m in messages)
    assert costs.tables[2] == pytest.approx([1.0, 12.2 / 6.8, 15.0 / 6.8])


@pytest.mark.parametrize("two_thread_cost, idle_now, kept, two_threads_priced", [
    (2.4, 2, (1, 2), 2.4),  # cheaper on idle cores: kept
    (3.7, 2, (1,), None),  # not cheaper, measured on idle cores (hyperthreads): dropped
    (3.7, 1, (1, 2), 3.9),  # other programs are busy: not measured (a minute of stalls), priced as on one thread
])
def test_idle_cores_are_dropped_only_if_passes_on_them_measured_no_cheaper_while_idle(monkeypatch, two_thread_cost,
                                                                                       idle_now, kept,
                                                                                       two_threads_priced):
    from specd.daemon.engine import draft_policy
    from specd.daemon.models.loading import pass_cost_tables

    runner = _TimedRunner((1, 2), idle_now)
    measured = {1: [1.0, 1.8, 3.9], 2: [1.0, 1.5, two_thread_cost]}

    def measure(costs, threads, filled, rounds=5, interrupted=None):
        runner.pin_pass_threads(threads)
        costs.fastest[threads] = [0.01 * c for c in measured[threads]]
        runner.pin_pass_threads(None)
        return True

    monkeypatch.setattr(draft_policy.PassCosts, "measure", measure)
    messages = []
    tables = pass_cost_tables(runner, 3, None, messages.append).tables
    assert tuple(tables) == kept and runner.pinned == ([1, None, 2, None] if idle_now == 2 else [1, None])
    assert runner.fixed == (1 if kept == (1,) else None)
    if two_threads_priced is not None:
        assert tables[2][-1] == pytest.approx(two_threads_priced)
    said = "on 2 thread" if idle_now == 2 else "passes on 2 threads are priced as on 1 until measured"
    assert any(said in m for m in messages)


def test_drafts_are_capped_at_the_longest_consistent_pass(tmp_path, monkeypatch):
    """A build or model whose longer passes use other kernels (Gemma 3's Q4_K from 8 rows) still drafts, shorter."""
    from specd.daemon.engine import draft_policy

    monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path)))
    monkeypatch.setattr(draft_policy, "longest_consistent_pass", lambda runner, n, **probe: 4)
    messages = []
    engine = load_engine(EngineConfig(verifier="smollm2-135m", backend="llamacpp", cache_slots=1, max_context=512,
                                      max_draft_tokens=8), progress=messages.append)
    assert len(engine.drafter.costs()) == 4  # passes of 1..4 tokens: drafts of at most 3
    assert engine.draft_limit == 3  # a grammar's forced tokens too (test_grammar.py)
    assert any("drafts are capped at 3 token(s)" in m for m in messages)
    monkeypatch.setattr(draft_policy, "longest_consistent_pass", lambda runner, n, **probe: 1)
    engine = load_engine(EngineConfig(verifier="smollm2-135m", backend="llamacpp", cache_slots=1, max_context=512),
                         progress=messages.append)
    assert engine.drafter is None and engine.draft_limit == 0
    engine = load_engine(EngineConfig(verifier="smollm2-135m", backend="llamacpp", cache_slots=1, max_context=512,
                                      draft_strategy="none"), progress=messages.append)
    assert engine.drafter is None and engine.draft_limit == 0  # nothing measured: no pass of several tokens
