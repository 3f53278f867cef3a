"""Greedy speculative output is the verifier's own greedy output, token for token, whatever the drafter does."""

import pytest
import torch

from specd.daemon.engine.drafters.base import Draft, Drafter
from specd.daemon.engine.loop import GenerationRequest

from specd.daemon.engine.drafters.ngram import NgramDrafter

STRATEGIES = ["ngram", "model", "layer_skip", "auto"]


@pytest.fixture
def engine_for(make_engine):
    """An engine per strategy; the n-gram drafter drafts long after single-token matches too, since a random
    model's output rarely repeats longer n-grams and the test needs long drafts to verify."""

    def make(strategy):
        engine = make_engine(strategy)
        if strategy == "ngram":
            engine.drafter = NgramDrafter(min_ngram=1, unigram_tokens=16)
        return engine

    return make


def plain_and_speculative(engine, prefix, suffix, **kwargs):
    request = dict(prompt=prefix, suffix=suffix, max_tokens=32, **kwargs)
    engine.pool.clear()
    plain = engine.generate(GenerationRequest(**request, draft_tokens=0))
    engine.pool.clear()
    speculative = engine.generate(GenerationRequest(**request))
    return plain, speculative


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_greedy_speculative_equals_plain(engine_for, code_prompts, strategy):
    engine = engine_for(strategy)
    drafted = 0
    for prefix, suffix in code_prompts:
        plain, speculative = plain_and_speculative(engine, prefix, suffix)
        assert speculative.token_ids == plain.token_ids
        assert speculative.text == plain.text
        assert plain.stats.drafted_tokens == 0
        drafted += speculative.stats.drafted_tokens
    assert drafted > 0, "the drafter never proposed anything: the test would not exercise verification"


@pytest.mark.parametrize("strategy", ["ngram", "model"])
def test_raw_prompt_without_suffix(engine_for, code_prompts, strategy):
    engine = engine_for(strategy)
    prefix, _ = code_prompts[1]
    plain, speculative = plain_and_speculative(engine, prefix, None)
    assert speculative.token_ids == plain.token_ids


def test_plain_matches_transformers_generate(make_engine, code_prompts):
    """The engine's own plain loop (slab cache, no drafts) is the model's greedy decoding."""
    engine = make_engine("ngram")
    prefix, _ = code_prompts[2]
    ids = engine.prompt_ids(GenerationRequest(prompt=prefix))
    result = engine.generate(GenerationRequest(prompt=prefix, max_tokens=30, draft_tokens=0, token_healing=False))
    with torch.inference_mode():
        reference = engine.verifier.model.generate(
            torch.tensor([ids]), max_new_tokens=30, do_sample=False, eos_token_id=sorted(engine.eos_ids),
            pad_token_id=engine.tokenizer.eos_token_id)
    expected = [t for t in reference[0, len(ids):].tolist() if t not in engine.eos_ids]
    assert result.token_ids == expected[: len(result.token_ids)]
    assert len(result.token_ids) == len(expected)


class OracleDrafter(Drafter):
    """Proposes exactly what the verifier will say (read from a plain run): every token is accepted."""

    name = "oracle"

    def __init__(self, answer, prompt_length):
        self.answer, self.prompt_length = answer, prompt_length

    def propose(self, ctx, state):
        done = len(ctx.ids) - self.prompt_length  # generated tokens, the pending one included
        return Draft(self.answer[done : done + ctx.max_tokens])


class WrongDrafter(Drafter):
    """Proposes tokens the verifier never picks next: nothing is accepted."""

    name = "wrong"

    def __init__(self, answer, prompt_length, vocab):
        self.answer, self.prompt_length, self.vocab = answer, prompt_length, vocab

    def propose(self, ctx, state):
        done = len(ctx.ids) - self.prompt_length
        right = self.answer[done : done + ctx.max_tokens]
        return Draft([(t + 1) % self.vocab for t in right] or [0] * ctx.max_tokens)


@pytest.mark.parametrize("kind", ["oracle", "wrong"])
def test_all_accepted_and_none_accepted_drafters_stay_identical(make_engine, code_prompts, kind):
    engine = make_engine("ngram")
    saved = engine.drafter
    try:
        for prefix, suffix in code_prompts[:3]:
            request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=32)
            engine.pool.clear()
            plain = engine.generate(GenerationRequest(**{**request.__dict__, "draft_tokens": 0}))
            prompt_length = plain.stats.prompt_tokens  # the prompt as fed: token healing may have backed it up
            answer = plain.token_ids  # beyond it the verifier's choice is unknown
            engine.drafter = (OracleDrafter(answer, prompt_length) if kind == "oracle"
                              else WrongDrafter(answer, prompt_length, len(engine.tokenizer)))
            engine.pool.clear()
            result = engine.generate(request)
            assert result.token_ids == plain.token_ids
            assert result.stats.drafted_tokens > 0
            if kind == "oracle":
                assert result.stats.accepted_tokens == result.stats.drafted_tokens
                assert result.stats.verifier_passes < plain.stats.verifier_passes
            else:
                assert result.stats.accepted_tokens == 0
            engine.drafter = saved
    finally:
        engine.drafter = saved


def test_stop_inside_an_accepted_block_cuts_where_plain_does(engine_for, code_prompts):
    engine = engine_for("ngram")
    prefix, suffix = code_prompts[0]
    engine.pool.clear()
    reference = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=40, draft_tokens=0))
    stop = reference.text[len(reference.text) // 2 : len(reference.text) // 2 + 2]
    assert stop, "reference completion is empty"
    plain, speculative = plain_and_speculative(engine, prefix, suffix, stop=[stop])
    assert speculative.text == plain.text == reference.text[: reference.text.find(stop)]
    assert speculative.finish_reason == plain.finish_reason == "stop"
