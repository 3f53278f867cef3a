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
from specd.daemon.engine.loop import EngineConfig, GenerationRequest  # noqa: E402
from specd.daemon.engine.requests import CancelToken  # noqa: E402
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
    assert short.stats.completion_tokens == 5 + short.stats.healed_tokens  # healed tokens are written again


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


def test_a_batch_gives_every_token_the_logits_of_a_single_step(engine):
    """What makes greedy speculation lossless here: flash attention off, and a build without llamafile's sgemm."""
    import torch

    runner = engine.verifier
    if runner.many_row_kernels:
        pytest.skip(f"this llama.cpp build has {runner.many_row_kernels} (README: Backends)")
    assert not runner.flash_attention
    ids = engine.tokenizer(json_decoder_prompts()[0][0])["input_ids"][:300]
    cache = runner.new_cache()
    runner.forward(ids[:260], cache, last_only=True)
    batch = runner.forward(ids[260:], cache)
    cache.truncate(260)
    steps = torch.cat([runner.forward([token], cache) for token in ids[260:]])
    assert torch.equal(batch, steps)


def test_verification_passes_run_on_the_batch_threads(llama):
    runner = llama.verifier
    assert runner.threads >= 1 and runner.batch_threads >= runner.threads
    assert llama.drafter is not None  # the fixture's engine drafts: its passes were found consistent at load


def test_drafts_are_capped_at_the_longest_consistent_pass(tmp_path, monkeypatch):
    """A build or model whose longer passes use other kernels (Gemma 3's Q4_K from 8 rows) still drafts, shorter."""
    from specd.daemon.engine import draft_policy

    monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path)))
    monkeypatch.setattr(draft_policy, "longest_consistent_pass", lambda runner, n, **probe: 4)
    messages = []
    engine = load_engine(EngineConfig(verifier="smollm2-135m", backend="llamacpp", cache_slots=1, max_context=512,
                                      max_draft_tokens=8), progress=messages.append)
    assert len(engine.drafter.costs) == 4  # passes of 1..4 tokens: drafts of at most 3
    assert any("drafts are capped at 3 token(s)" in m for m in messages)
    monkeypatch.setattr(draft_policy, "longest_consistent_pass", lambda runner, n, **probe: 1)
    engine = load_engine(EngineConfig(verifier="smollm2-135m", backend="llamacpp", cache_slots=1, max_context=512),
                         progress=messages.append)
    assert engine.drafter is None
