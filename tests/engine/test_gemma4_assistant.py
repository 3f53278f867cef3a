"""The Gemma 4 assistant drafter on tiny random-weight models: lossless output, transformers' drafting semantics,
and the slab KV cache under Gemma 4's sliding-window and KV-sharing layers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from transformers.generation.candidate_generator import SinglePositionMultiTokenCandidateGenerator

from specd.daemon.engine.drafters.base import Draft, DraftContext, Drafter
from specd.daemon.engine.drafters.gemma4_assistant import Gemma4AssistantDrafter
from specd.daemon.engine.loop import Engine, EngineConfig, GenerationRequest
from specd.daemon.models.loading import load_engine
from specd.daemon.engine.runners.torch_runner import ModelRunner
from fixtures.tiny_gemma4 import SLIDING_WINDOW, write_tiny_gemma4_pair

PROMPTS = [
    "def parse_args(argv):\n    parser = argparse.ArgumentParser(",
    "import json\n\nclass Decoder:\n    def __init__(self",
    "x = 1\n",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models: thread start-up costs more than the matrix products, and more so on a busy machine.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_tiny_gemma4_pair(tmp_path_factory.mktemp("tiny-gemma4"))


@pytest.fixture(scope="module")
def models(folders):
    target_folder, assistant_folder = folders
    tokenizer = AutoTokenizer.from_pretrained(target_folder)
    target = AutoModelForCausalLM.from_pretrained(target_folder, dtype=torch.float32).eval()
    assistant = AutoModelForCausalLM.from_pretrained(assistant_folder, dtype=torch.float32).eval()
    return tokenizer, target, assistant


def build_engine(models, drafter_factory=None, max_draft_tokens: int = 4) -> Engine:
    tokenizer, target, assistant = models
    runner = ModelRunner(target)
    drafter = drafter_factory(runner, assistant) if drafter_factory else None
    return Engine(runner, tokenizer, drafter, EngineConfig(verifier="tiny-gemma4", max_draft_tokens=max_draft_tokens))


def plain_greedy(engine: Engine, prompt: str, max_tokens: int = 40, token_healing: bool = True) -> list[int]:
    request = GenerationRequest(prompt=prompt, max_tokens=max_tokens, draft_tokens=0, token_healing=token_healing)
    return engine.generate(request).token_ids


def transformers_draft(target, assistant, sequence: list[int], count: int) -> list[int]:
    """What transformers' own MTP candidate generator drafts after `sequence`, from a fresh uncached target pass."""
    with torch.no_grad():
        out = target(torch.tensor([sequence[:-1]]), output_hidden_states=True, return_shared_kv_states=True,
                     use_cache=False)
    generator = SinglePositionMultiTokenCandidateGenerator(assistant, target.get_input_embeddings(),
                                                           GenerationConfig(max_length=10_000))
    generator.num_assistant_tokens = count
    mask = torch.ones(1, len(sequence), dtype=torch.long)
    candidates, _ = generator.get_candidates(torch.tensor([sequence]), {"attention_mask": mask}, out,
                                             is_first_iteration=False, n_last_matches=0)
    return candidates[0, len(sequence):].tolist()


def test_slab_cache_matches_transformers_generate(models):
    tokenizer, target, _ = models
    engine = build_engine(models)
    for prompt in PROMPTS:
        ids = engine.prompt_ids(GenerationRequest(prompt=prompt))
        ours = plain_greedy(engine, prompt, token_healing=False)  # transformers continues the prompt as is
        out = target.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=40,
                              eos_token_id=sorted(engine.eos_ids), pad_token_id=tokenizer.pad_token_id)
        assert ours == out[0, len(ids):].tolist(), prompt
    # The sliding window was crossed, so sliding layers attended to a strict suffix of the history.
    assert max(len(engine.prompt_ids(GenerationRequest(prompt=p))) for p in PROMPTS) > SLIDING_WINDOW


class OracleMix(Drafter):
    """Proposes the verifier's known greedy continuation cut at varying lengths (so rounds accept 0..3 drafts),
    and checks every round that the assistant drafter proposes what transformers would."""

    def __init__(self, assistant_drafter: Gemma4AssistantDrafter, prompt_ids: list[int], expected: list[int]):
        self.inner = assistant_drafter
        self.prompt_ids, self.expected = prompt_ids, expected
        self.rounds = 0

    def propose(self, ctx: DraftContext, state) -> Draft:
        drafted = self.inner.propose(ctx, state).tokens
        model = self.inner.assistant
        assert drafted == transformers_draft(self.inner.verifier.model, model, ctx.ids, len(drafted))
        assert len(drafted) == ctx.max_tokens  # min_confidence=0: never stops early
        done = len(ctx.ids) - len(self.prompt_ids)
        keep = self.rounds % 4
        self.rounds += 1
        right = self.expected[done : done + keep]
        wrong = [(t + 1) % model.vocab_size for t in self.expected[done + keep : done + keep + 1]]
        return Draft(right + wrong)


def test_every_round_drafts_what_transformers_drafts(models):
    engine = build_engine(models, lambda runner, assistant: Gemma4AssistantDrafter(runner, assistant, 0.0))
    assistant_drafter = engine.drafter
    total_accepted = 0
    for prompt in PROMPTS[:2]:
        prompt_ids = engine.prompt_ids(GenerationRequest(prompt=prompt))
        expected = plain_greedy(engine, prompt, 30, token_healing=False)  # OracleMix counts from prompt_ids
        engine.drafter = OracleMix(assistant_drafter, prompt_ids, expected)
        result = engine.generate(GenerationRequest(prompt=prompt, max_tokens=30, draft_tokens=4, token_healing=False))
        engine.drafter = assistant_drafter
        assert result.token_ids == expected
        total_accepted += result.stats.accepted_tokens
    assert total_accepted >= 10  # partial accepts happened, so hidden states came from inside verify passes
    assert assistant_drafter.misses == 0


def test_greedy_speculation_is_lossless(models):
    engine = build_engine(models, Gemma4AssistantDrafter)
    drafted = 0
    for prompt in PROMPTS:
        expected = plain_greedy(engine, prompt)
        result = engine.generate(GenerationRequest(prompt=prompt, max_tokens=40))
        assert result.token_ids == expected, prompt
        drafted += result.stats.drafted_tokens
    assert drafted > 0
    assert engine.drafter.misses == 0


def test_prefix_cache_reuse_across_requests(models):
    engine = build_engine(models, Gemma4AssistantDrafter)
    first_prompt = PROMPTS[0]
    first = engine.generate(GenerationRequest(prompt=first_prompt, max_tokens=12, cache_key="doc"))
    # The user typed on: the second request shares the first one's prompt and part of its completion.
    second_prompt = first_prompt + first.text[: len(first.text) // 2] + "x"
    second = engine.generate(GenerationRequest(prompt=second_prompt, max_tokens=30, cache_key="doc"))
    assert second.stats.cached_tokens > 0
    assert second.stats.drafted_tokens > 0
    plain = build_engine(models)
    assert first.token_ids == plain_greedy(plain, first_prompt, 12)
    assert second.token_ids == plain_greedy(plain, second_prompt, 30)
    assert engine.drafter.misses == 0


def test_sampling_runs_with_assistant_drafts(models):
    tokenizer, target, _ = models
    engine = build_engine(models, lambda runner, assistant: Gemma4AssistantDrafter(runner, assistant, 0.0))
    request = GenerationRequest(prompt=PROMPTS[1], max_tokens=30, temperature=0.8, top_p=0.95, seed=7)
    result = engine.generate(request)
    again = engine.generate(request)
    assert result.token_ids == again.token_ids  # seeded: reproducible
    assert result.stats.drafted_tokens > 0
    assert len(result.token_ids) == 30 or result.finish_reason == "stop"
    assert all(0 <= t < target.config.vocab_size for t in result.token_ids)
    assert result.text == tokenizer.decode(result.token_ids)
    assert engine.drafter.misses == 0


def test_engine_load_with_assistant_strategy(folders):
    target_folder, assistant_folder = folders
    config = EngineConfig(verifier=str(target_folder), drafter=str(assistant_folder), draft_strategy="assistant",
                          device="cpu", dtype="float32", max_draft_tokens=4)
    engine = load_engine(config, progress=lambda *_: None)
    assert engine.info()["drafter"] == "assistant:Gemma4AssistantForCausalLM"
    for prompt in PROMPTS[:2]:
        result = engine.generate(GenerationRequest(prompt=prompt, max_tokens=24))
        assert result.token_ids == plain_greedy(engine, prompt, 24)
        assert result.stats.drafted_tokens > 0


def test_rejects_models_that_are_not_a_gemma4_pair(models):
    _, target, assistant = models
    with pytest.raises(ValueError, match="Gemma 4 assistant"):
        Gemma4AssistantDrafter(ModelRunner(target), target)
    assistant.config.backbone_hidden_size += 1
    try:
        with pytest.raises(ValueError, match="hidden size"):
            Gemma4AssistantDrafter(ModelRunner(target), assistant)
    finally:
        assistant.config.backbone_hidden_size -= 1
