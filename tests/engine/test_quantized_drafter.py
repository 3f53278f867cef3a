"""Quantized self-drafting: the embedded GGUF on llama.cpp drafts for its own fp32 dequantization on torch.

Greedy output must be token for token the torch verifier's plain greedy output, also when drafts are rejected
(the drafter's llama.cpp sequence then holds tokens the sequence does not, and must drop them), across two
documents and an edited prompt. Settings that cannot run it fail before any model loads, saying what to change.
"""

import pytest

from fixtures.embedded import embedded_home
from fixtures.lossless import drafted_and_accepted, json_decoder_prompts
from specd.daemon.config.settings import DRAFT_STRATEGIES, load_settings
from specd.daemon.engine.drafters.base import Draft
from specd.daemon.engine.drafters.quantized import QuantizedDrafter, view_start
from specd.daemon.engine.loop import EngineConfig, GenerationRequest
from specd.daemon.engine.runners import llamacpp_runner
from specd.daemon.models.backend import BackendError, choose_backend
from specd.daemon.models.loading import auto_strategy, load_engine


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path / "home")))


# -- settings and errors (no model loads) ------------------------------------------------------------------------


def test_quantized_is_a_setting(tmp_path):
    assert "quantized" in DRAFT_STRATEGIES
    settings = load_settings(tmp_path / "settings.json", env={"SPECD_DRAFT_STRATEGY": "quantized"})
    assert settings.draft_strategy == "quantized"


def test_auto_stays_ngram_on_torch():
    # Measured: quantized drafting loses to n-gram drafting from a cold cache on a CPU (README, Drafters).
    assert auto_strategy(EngineConfig(backend="torch")) == "ngram"
    assert auto_strategy(EngineConfig(backend="torch", drafter="x/y")) == "ngram+model"


def test_auto_backend_keeps_torch_for_quantized_and_llamacpp_refuses_it():
    config = EngineConfig(draft_strategy="quantized")
    assert choose_backend(config, True, "cpu", True) == "torch"
    with pytest.raises(BackendError, match="need backend 'torch'"):
        choose_backend(EngineConfig(draft_strategy="quantized", backend="llamacpp"), True, "cpu", True)


def test_a_verifier_that_is_not_a_gguf_is_refused(tmp_path, home):
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(ValueError, match="not one .*draft_strategy 'ngram'"):
        load_engine(EngineConfig(verifier=str(folder), draft_strategy="quantized", backend="torch"),
                    progress=lambda message: None)


def test_a_gpu_device_is_refused(home):
    with pytest.raises(ValueError, match="device 'cuda'.*draft_strategy 'ngram'"):
        load_engine(EngineConfig(draft_strategy="quantized", backend="torch", device="cuda"),
                    progress=lambda message: None)


def test_without_the_binding_it_says_how_to_install_it(home, monkeypatch):
    monkeypatch.setattr(llamacpp_runner, "binding_available", lambda: False)
    with pytest.raises(RuntimeError) as error:
        load_engine(EngineConfig(draft_strategy="quantized", backend="torch"), progress=lambda message: None)
    assert "draft_strategy 'quantized' needs llama-cpp-python" in str(error.value)
    assert llamacpp_runner.INSTALL_HINT in str(error.value)


def test_a_bounded_view_moves_in_half_steps():
    assert view_start(100, None) == 0 and view_start(128, 128) == 0
    starts = [view_start(n, 128) for n in range(129, 400)]
    assert all(s % 64 == 0 and n - s <= 128 for n, s in zip(range(129, 400), starts))
    assert len(set(starts)) < len(starts) // 40  # the start (and the drafter's KV) stays put for 64 tokens


# -- the engine --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'specd[llamacpp]')")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path_factory.mktemp("home"))))
        # three llama.cpp sequences: two documents' slots and a fresh one to compare with
        engine = load_engine(EngineConfig(verifier="smollm2-135m", draft_strategy="quantized", backend="torch",
                                          cache_slots=3, max_context=2048, threads=1),
                             progress=lambda message: None)
        yield engine, engine.drafter


@pytest.fixture
def engine(quantized):
    engine, drafter = quantized
    engine.drafter = drafter
    engine.pool.clear()
    return engine


class Spoiling(QuantizedDrafter):
    """The quantized drafter with every draft's last token spoiled: verification rejects it, and the drafter's
    own sequence, which was fed the drafted tokens, must drop what the verifier did not keep."""

    def __init__(self, original: QuantizedDrafter) -> None:
        super().__init__(original.runner, original.label, original.model.vocab_limit, original.min_confidence)

    def propose(self, ctx, state) -> Draft:
        draft = super().propose(ctx, state)
        if len(draft.tokens) >= 2:
            draft.tokens[-1] = (draft.tokens[-1] + 1) % 1000
        return draft


def held_positions(runner, state) -> int:
    """How many positions llama.cpp's KV memory holds for a drafter state's sequence."""
    return runner.lc.llama_memory_seq_pos_max(runner.memory, state.cache.seq_id) + 1


def assert_in_sync(runner, state, token: int) -> None:
    """The drafter's sequence holds exactly `state.ids`: llama.cpp holds as many positions as the state lists, and a
    step after them gives what a fresh sequence fed the same tokens in one pass gives (up to the many-row kernels'
    other summation order: logits within 1.5, the top token among the other's top 5; a stale or missing position
    moves them more)."""
    assert held_positions(runner, state) == state.cache.get_seq_length() == len(state.ids)
    fresh = runner.new_cache()
    expected = runner.forward(state.ids + [token], fresh, last_only=True)[-1]
    got = runner.forward([token], state.cache, last_only=True)[-1]
    state.cache.truncate(len(state.ids))
    del fresh
    assert int(expected.argmax()) in got.topk(5).indices.tolist()
    assert (got - expected).abs().max() < 1.5


def test_the_drafter_is_the_gguf_on_llamacpp(engine):
    info = engine.info()
    assert (info["backend"], info["dtype"], info["draft_strategy"]) == ("torch", "float32", "quantized")
    assert info["drafter"] == "quantized:smollm2-135m (Q4_1 on llama.cpp)"
    runner = engine.drafter.runner
    assert runner.backend == "llamacpp" and runner.threads == runner.batch_threads == 1
    assert runner.n_vocab == engine.verifier.model.get_output_embeddings().weight.shape[0]
    assert engine.verifier.vocab_limit is None and engine.drafter.model.vocab_limit is None
    assert engine.drafter.memory_bytes() == runner.parameter_bytes() + 3 * runner.kv_bytes_per_sequence


def test_sampling_drafts_with_the_quantized_distribution(engine):
    prefix, suffix = json_decoder_prompts()[0]
    request = dict(prompt=prefix, suffix=suffix, max_tokens=24, temperature=0.8, seed=7)
    first = engine.generate(GenerationRequest(**request))
    engine.pool.clear()
    again = engine.generate(GenerationRequest(**request))
    assert first.token_ids == again.token_ids and len(first.token_ids) > 0  # seeded: reproducible
    assert first.stats.drafted_tokens > 0


def test_greedy_output_is_the_torch_verifiers_own(engine):
    drafted, accepted = drafted_and_accepted(engine, json_decoder_prompts(), max_tokens=32)
    assert drafted > 0 and accepted / drafted > 0.8  # the same weights: nearly every draft token is kept


def test_rejected_drafts_two_documents_and_an_edit_keep_the_drafters_kv_in_sync(engine):
    spoiling = Spoiling(engine.drafter)
    runner = spoiling.runner
    (a, a_suffix), (b, b_suffix), _ = json_decoder_prompts()
    cut = a.index("\n", 300) + 1
    edited = a[:cut] + "# an edit well before the cursor\n" + a[cut:]
    requests = [("a", a, a_suffix), ("b", b, b_suffix), ("a", a + "    ", a_suffix), ("a", edited, a_suffix),
                ("b", b + "\n", b_suffix)]
    plain = {}
    engine.drafter = None
    for key, prefix, suffix in requests:  # the verifier's plain greedy output, every request from a cold cache
        engine.pool.clear()
        plain[prefix] = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=24)).token_ids
    engine.drafter = spoiling
    engine.pool.clear()
    rejected = 0
    for key, prefix, suffix in requests:
        result = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=24, cache_key=key))
        assert result.token_ids == plain[prefix]
        rejected += result.stats.drafted_tokens - result.stats.accepted_tokens
        for slot in engine.pool.slots:
            assert_in_sync(runner, slot.drafter_state, result.token_ids[-1])
    assert rejected > 0
    assert len(engine.pool.slots) == 2 and spoiling.failures == 0
