"""Sampling verification keeps the verifier's distribution exactly; a biased verification is caught."""

import math
from collections import Counter

import pytest
import torch

from specd.daemon.engine import loop as engine_module
from specd.daemon.engine import sampling
from specd.daemon.engine.loop import GenerationRequest
from specd.daemon.engine.sampling import PositionNoise, SamplingParams, verify_coupled, verify_sampling


def chi_square_p_value(observed: Counter, expected_probs: dict, total: int) -> float:
    """Pearson chi-square goodness of fit, rare categories pooled so every expected count is >= 5."""
    cells, pooled_obs, pooled_exp = [], 0, 0.0
    for key, prob in expected_probs.items():
        expected = prob * total
        if expected >= 5:
            cells.append((observed.get(key, 0), expected))
        else:
            pooled_obs, pooled_exp = pooled_obs + observed.get(key, 0), pooled_exp + expected
    pooled_obs += sum(v for k, v in observed.items() if k not in expected_probs)
    pooled_exp += (1.0 - sum(expected_probs.values())) * total  # mass of the categories not listed
    if pooled_exp >= 5:
        cells.append((pooled_obs, pooled_exp))
    statistic = sum((o - e) ** 2 / e for o, e in cells)
    dof = len(cells) - 1
    # Wilson-Hilferty approximation of the chi-square upper tail (no scipy needed).
    z = ((statistic / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def force_accept(target_probs, draft, draft_probs, generator):
    """A broken verifier: accepts every draft token (the negative control)."""
    return len(draft), sampling.sample(target_probs[len(draft)], generator)


def force_accept_coupled(target_probs, draft, noise, position):
    """A broken verifier for drafts without probabilities: accepts every draft token (the negative control)."""
    return len(draft), noise.pick(target_probs[len(draft)], position + len(draft))


def test_coupled_verification_writes_what_plain_sampling_writes_whatever_the_draft():
    """Each position's token is the one PositionNoise picks there; a draft only decides how many come per pass."""
    generator = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(4, 50, generator=generator) * 2, dim=-1)
    noise = PositionNoise(11)
    plain = [noise.pick(p[i], 40 + i) for i in range(4)]
    assert verify_coupled(p, plain[:3], noise, 40) == (3, plain[3])
    wrong = (plain[1] + 1) % 50
    assert verify_coupled(p, [plain[0], wrong, plain[2]], noise, 40) == (1, plain[1])
    assert verify_coupled(p, [], noise, 40) == (0, plain[0])
    assert PositionNoise(11).pick(p[0], 40) == plain[0] and PositionNoise(12).gumbel(40, 50).ne(noise.gumbel(40, 50)).all()


def test_position_noise_picks_follow_the_distribution():
    p = torch.softmax(torch.randn(6, generator=torch.Generator().manual_seed(0)) * 1.5, dim=-1)
    observed = Counter(PositionNoise(5).pick(p, position) for position in range(4000))
    assert chi_square_p_value(observed, {i: float(p[i]) for i in range(6)}, 4000) > 0.001


def run_unit_trials(verify, trials=4000, vocab=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(2, vocab, generator=generator) * 1.5, dim=-1)
    q = torch.softmax(torch.randn(1, vocab, generator=generator) * 1.5, dim=-1)
    first = Counter()
    for _ in range(trials):
        token = int(torch.multinomial(q[0], 1, generator=generator))
        accepted, next_token = verify(p, [token], q, generator)
        first[token if accepted else next_token] += 1
    return first, {i: float(p[0, i]) for i in range(vocab)}


@pytest.mark.parametrize("one_hot", [False, True])
def test_rejection_sampling_keeps_the_target_distribution(one_hot):
    def verify(p, draft, q, generator):
        return verify_sampling(p, draft, None if one_hot else q, generator)

    observed, expected = run_unit_trials(verify)
    assert chi_square_p_value(observed, expected, 4000) > 0.001


def test_negative_control_force_accept_is_caught():
    observed, expected = run_unit_trials(force_accept)
    assert chi_square_p_value(observed, expected, 4000) < 1e-6


def test_top_p_keeps_the_smallest_nucleus():
    probs = SamplingParams(temperature=1.0, top_p=0.7).probs(torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])))
    assert torch.allclose(probs, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))


def exact_first_two_tokens(engine, prompt, temperature):
    """The verifier's exact joint distribution of the first two tokens, for the most likely first tokens."""
    ids = engine.prompt_ids(GenerationRequest(prompt=prompt))
    params = SamplingParams(temperature)
    cache = engine.verifier.new_cache()
    first = params.probs(engine.verifier.forward(ids, cache, last_only=True)[-1])
    joint = {}
    for token in first.topk(6).indices.tolist():
        cache.truncate(len(ids))
        second = params.probs(engine.verifier.forward([token], cache)[-1])
        for other in second.topk(8).indices.tolist():
            joint[(token, other)] = float(first[token] * second[other])
    return joint


def sample_first_two_tokens(engine, prompt, temperature, seeds, draft_tokens=None, token_healing=False):
    counts = Counter()
    for seed in range(seeds):
        result = engine.generate(GenerationRequest(prompt=prompt, max_tokens=2, temperature=temperature,
                                                   seed=seed, draft_tokens=draft_tokens, cache_key="stat",
                                                   token_healing=token_healing))
        counts[tuple(result.token_ids[:2])] += 1
    return counts


PROMPT = "def wrap(text, width):\n    lines = []\n    for"


@pytest.mark.parametrize("strategy", ["model", "ngram"])
def test_speculative_sampling_matches_the_verifier_distribution(make_engine, strategy):
    engine = make_engine(strategy)
    if strategy == "ngram":  # a one-hot drafter that always proposes: single-token matches
        from specd.daemon.engine.drafters.ngram import NgramDrafter

        engine.drafter = NgramDrafter(min_ngram=1, unigram_tokens=16)
    temperature, seeds = 0.7, 1200
    expected = exact_first_two_tokens(engine, PROMPT, temperature)
    observed = sample_first_two_tokens(engine, PROMPT, temperature, seeds)
    assert chi_square_p_value(observed, expected, seeds) > 0.001


def test_biased_speculative_sampling_is_caught(make_engine, monkeypatch):
    engine = make_engine("model")
    monkeypatch.setattr(engine_module, "verify_sampling", force_accept)
    temperature, seeds = 0.7, 1200
    expected = exact_first_two_tokens(engine, PROMPT, temperature)
    observed = sample_first_two_tokens(engine, PROMPT, temperature, seeds)
    assert chi_square_p_value(observed, expected, seeds) < 1e-6


def test_same_seed_same_sample(make_engine):
    engine = make_engine("model")
    a = engine.generate(GenerationRequest(prompt=PROMPT, max_tokens=12, temperature=1.0, seed=7))
    b = engine.generate(GenerationRequest(prompt=PROMPT, max_tokens=12, temperature=1.0, seed=7))
    assert a.token_ids == b.token_ids


def test_a_seed_writes_the_same_text_with_or_without_n_gram_drafts_and_cache(make_engine, code_prompts):
    """The user trial's case: the same seeded request sent again (warm cache, the previous answer now an n-gram
    source) wrote another text each time. Drafts without probabilities now never change what is sampled."""
    from specd.daemon.engine.drafters.ngram import NgramDrafter

    engine = make_engine("ngram")
    engine.drafter = NgramDrafter(min_ngram=1, unigram_tokens=16)
    drafted = 0
    for seed in range(6):
        prefix, suffix = code_prompts[seed % len(code_prompts)]
        request = dict(prompt=prefix, suffix=suffix, max_tokens=24, temperature=0.9, seed=seed, cache_key="doc")
        plain = engine.generate(GenerationRequest(**request, draft_tokens=0))
        for _ in range(3):
            again = engine.generate(GenerationRequest(**request))
            drafted += again.stats.accepted_tokens
            assert again.token_ids == plain.token_ids, seed
    assert drafted > 0  # drafts were accepted, so the equality is not plain decoding's alone


# -- token healing: sampling under the constraint keeps the verifier's distribution restricted to what fits -----

HEALED_PROMPT = "def wrap(text, width):\n    lines = []\n    return lines\n\n\n"  # backs up "ines\n\n\n"


def roll_back_four(vocab, prompt_ids):
    """Back up four tokens, so that the first two generated tokens are both constrained (the second one inside a
    speculative verification pass)."""
    from specd.daemon.engine.token_healing import Healing

    removed = b"".join(vocab.pieces[t] for t in prompt_ids[-4:])
    return Healing(list(prompt_ids[:-4]), list(prompt_ids[-4:]), removed)


def exact_first_two_healed_tokens(engine, prompt, temperature):
    """The verifier's exact joint distribution of the first two tokens, each restricted to the tokens that agree
    with the healed text (computed here from the token pieces, not from the engine's masks)."""
    pieces = engine.vocabulary.pieces
    healing = roll_back_four(engine.vocabulary, engine.prompt_ids(GenerationRequest(prompt=prompt)))

    def restricted(logits, remaining):
        if not remaining:
            return SamplingParams(temperature).probs(logits)
        keep = torch.tensor([bool(p) and (p.startswith(remaining) or remaining.startswith(p)) for p in pieces])
        return SamplingParams(temperature).probs(logits.masked_fill(~keep, float("-inf")))

    cache = engine.verifier.new_cache()
    first = restricted(engine.verifier.forward(healing.prompt_ids, cache, last_only=True)[-1], healing.removed)
    joint = {}
    for token in [t for t in first.topk(6).indices.tolist() if first[t] > 0]:
        remaining = healing.removed[len(pieces[token]):] if healing.removed.startswith(pieces[token]) else b""
        cache.truncate(len(healing.prompt_ids))
        second = restricted(engine.verifier.forward([token], cache)[-1], remaining)
        for other in [t for t in second.topk(8).indices.tolist() if second[t] > 0]:
            joint[(token, other)] = float(first[token] * second[other])
    return joint, healing


@pytest.mark.parametrize("strategy", ["plain", "model", "ngram"])
def test_sampling_under_token_healing_keeps_the_restricted_distribution(make_engine, monkeypatch, strategy):
    engine = make_engine("ngram" if strategy == "plain" else strategy)
    if strategy == "ngram":
        from specd.daemon.engine.drafters.ngram import NgramDrafter

        engine.drafter = NgramDrafter(min_ngram=1, unigram_tokens=16)
    monkeypatch.setattr(engine_module, "heal_prompt", roll_back_four)
    temperature, seeds = 1.0, 1200
    expected, healing = exact_first_two_healed_tokens(engine, HEALED_PROMPT, temperature)
    second_constrained = sum(p for (first, _), p in expected.items()
                             if len(engine.vocabulary.pieces[first]) < len(healing.removed))
    assert second_constrained > 0.5  # most samples test the constraint inside a verification pass
    observed = sample_first_two_tokens(engine, HEALED_PROMPT, temperature, seeds,
                                       draft_tokens=0 if strategy == "plain" else None, token_healing=True)
    assert chi_square_p_value(observed, expected, seeds) > 0.001


def trials_under_a_constraint(sampled_draft_kept: bool, trials=4000, seed=1):
    """First tokens from verifying a one-token draft x ~ q while the healed text "ab" is still to be written.
    p is the verifier's distribution restricted to the tokens that fit ("a", "ab"); q, the drafter's, also puts
    mass on tokens that break the constraint, which the engine may drop from the draft before verification."""
    from specd.daemon.engine.token_healing import Constraint, Vocabulary

    vocab = Vocabulary([b"a", b"ab", b"b", b"c", b"ca", b"x"])
    constraint = Constraint(vocab, b"ab")
    generator = torch.Generator().manual_seed(seed)
    logits = torch.tensor([[0.2, 1.0, 0.5, 0.1, 0.3, 0.0]] * 2)
    p = torch.softmax(constraint.mask_logits(logits, [0]), dim=-1)
    q = torch.tensor([[0.45, 0.05, 0.2, 0.1, 0.1, 0.1]])
    first = Counter()
    for _ in range(trials):
        x = int(torch.multinomial(q[0], 1, generator=generator))
        draft = constraint.trim_draft([x], sampled=sampled_draft_kept)
        accepted, next_token = verify_sampling(p[: len(draft) + 1], draft, q[: len(draft)], generator)
        first[draft[0] if accepted else next_token] += 1
    return first, {i: float(p[0, i]) for i in range(6) if p[0, i] > 0}


def test_a_sampled_draft_is_verified_whole_under_the_constraint():
    observed, expected = trials_under_a_constraint(sampled_draft_kept=True)
    assert set(observed) <= {0, 1}  # only tokens that fit
    assert chi_square_p_value(observed, expected, 4000) > 0.001


def test_cutting_a_sampled_draft_at_the_constraint_is_caught():
    """Negative control: cut before a token that breaks the constraint, a sampled draft's replacement token is
    drawn from p instead of max(p - q, 0): no longer the verifier's distribution."""
    observed, expected = trials_under_a_constraint(sampled_draft_kept=False)
    assert chi_square_p_value(observed, expected, 4000) < 1e-6


# -- structured output: sampling under a JSON schema keeps the verifier's distribution restricted to the grammar --

STRING_OR_INTEGER = {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "integer"}]}


def exact_first_two_tokens_under_the_schema(engine, prompt, temperature, schema):
    """The verifier's exact joint distribution of the first two answer tokens, each masked with llguidance's full
    mask for the grammar's state (computed here with a matcher of its own, not the engine's constraint). A key
    is the tokens written before the answer ended: (t1,) when t1 finished the document or EOS followed it."""
    from specd.daemon.engine import grammar

    matcher = grammar.compile_schema(schema, engine.tokenizer).matcher

    def masked_probs(logits):
        allowed = torch.zeros(logits.shape[-1], dtype=torch.bool)
        bias = torch.frombuffer(bytearray(matcher.compute_logit_bias()), dtype=torch.uint8)
        allowed[: bias.numel()] = bias[: logits.shape[-1]] != 0
        return SamplingParams(temperature).probs(logits.masked_fill(~allowed, float("-inf")))

    cache = engine.verifier.new_cache()
    prompt_ids = engine.prompt_ids(GenerationRequest(prompt=prompt))
    first = masked_probs(engine.verifier.forward(prompt_ids, cache, last_only=True)[-1])
    joint = Counter()
    for token in [t for t in first.topk(6).indices.tolist() if first[t] > 0]:
        assert matcher.consume_token(token)
        if matcher.is_stopped():
            joint[(token,)] += float(first[token])
        else:
            cache.truncate(len(prompt_ids))
            second = masked_probs(engine.verifier.forward([token], cache)[-1])
            for other in [t for t in second.topk(8).indices.tolist() if second[t] > 0]:
                key = (token,) if other in engine.eos_ids else (token, other)
                joint[key] += float(first[token] * second[other])
        matcher.rollback(1)
    return dict(joint)


def sample_first_two_schema_tokens(engine, prompt, temperature, seeds, schema, draft_tokens=None):
    counts = Counter()
    for seed in range(seeds):
        result = engine.generate(GenerationRequest(prompt=prompt, max_tokens=2, temperature=temperature, seed=seed,
                                                   draft_tokens=draft_tokens, cache_key="stat", json_schema=schema))
        counts[tuple(result.token_ids[:2])] += 1
    return counts


@pytest.mark.parametrize("strategy", ["plain", "model", "ngram"])
def test_sampling_under_a_json_schema_keeps_the_masked_distribution(make_engine, strategy):
    engine = make_engine("ngram" if strategy == "plain" else strategy)
    if strategy == "ngram":
        from specd.daemon.engine.drafters.ngram import NgramDrafter

        engine.drafter = NgramDrafter(min_ngram=1, unigram_tokens=16)
    temperature, seeds = 1.0, 1200
    expected = exact_first_two_tokens_under_the_schema(engine, PROMPT, temperature, STRING_OR_INTEGER)
    assert sum(p for key, p in expected.items() if len(key) == 2) > 0.5  # the second token is mostly verified
    observed = sample_first_two_schema_tokens(engine, PROMPT, temperature, seeds, STRING_OR_INTEGER,
                                              draft_tokens=0 if strategy == "plain" else None)
    assert chi_square_p_value(observed, expected, seeds) > 0.001


def test_biased_speculative_sampling_under_a_json_schema_is_caught(make_engine, monkeypatch):
    from specd.daemon.engine.drafters.ngram import NgramDrafter

    engine = make_engine("ngram")
    engine.drafter = NgramDrafter(min_ngram=1, unigram_tokens=16)
    monkeypatch.setattr(engine_module, "verify_coupled", force_accept_coupled)
    temperature, seeds = 1.0, 1200
    expected = exact_first_two_tokens_under_the_schema(engine, PROMPT, temperature, STRING_OR_INTEGER)
    observed = sample_first_two_schema_tokens(engine, PROMPT, temperature, seeds, STRING_OR_INTEGER)
    assert chi_square_p_value(observed, expected, seeds) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_greedy_picks_take_the_first_largest_value_nan_first_as_torch_argmax_does(dtype):
    """CPU float32 logits take numpy's argmax (faster); every case must pick what torch.argmax picks."""
    nan, inf = float("nan"), float("inf")
    rows = torch.tensor([[1.0, 3.0, 3.0, 2.0], [1.0, nan, 5.0, nan], [-inf, -inf, -inf, -inf], [0.5, inf, inf, 1.0]],
                        dtype=dtype)
    assert sampling.argmax_rows(rows).tolist() == rows.argmax(dim=-1).tolist() == [1, 1, 0, 1]
    greedy = SamplingParams(0.0, 1.0)
    assert [sampling.pick_token(row, greedy, None, 0) for row in rows] == [1, 1, 0, 1]
    assert sampling.verify_greedy(rows[:2], [1]) == (1, 1) and sampling.verify_greedy(rows[:2], [2]) == (0, 1)
