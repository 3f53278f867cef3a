"""The grouped SDPA path gives transformers' own attention output without expanding the KV heads."""

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from specd.daemon.engine.runners.attention import NAME, grouped_sdpa_forward, use_grouped_sdpa


class _Attention(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True


def _inputs(queries: int, cached: int):
    torch.manual_seed(0)
    query = torch.randn(1, 6, queries, 16)
    key, value = torch.randn(1, 2, cached + queries, 16), torch.randn(1, 2, cached + queries, 16)
    # A verification pass: each new query sees the cache and the new tokens up to itself.
    mask = torch.ones(queries, cached + queries, dtype=torch.bool).tril(cached)[None, None]
    return query, key, value, mask


def test_grouped_matches_transformers_sdpa_on_a_masked_multi_token_pass(monkeypatch):
    query, key, value, mask = _inputs(queries=5, cached=40)
    expanded = []
    monkeypatch.setattr("specd.daemon.engine.runners.attention.sdpa_attention_forward",
                        lambda *a, **k: expanded.append(1) or sdpa_attention_forward(*a, **k))
    ours, _ = grouped_sdpa_forward(_Attention(), query, key, value, mask, scaling=0.25)
    assert not expanded  # the grouped path itself ran
    reference, _ = sdpa_attention_forward(_Attention(), query, key, value, mask, scaling=0.25)
    assert ours.shape == reference.shape == (1, 5, 6, 16)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_single_token_steps_and_softcapping_keep_transformers_path(monkeypatch):
    calls = []
    monkeypatch.setattr("specd.daemon.engine.runners.attention.sdpa_attention_forward", lambda *a, **k: calls.append(k) or (None, None))
    query, key, value, mask = _inputs(queries=1, cached=10)
    grouped_sdpa_forward(_Attention(), query, key, value, None)
    query, key, value, mask = _inputs(queries=3, cached=10)
    grouped_sdpa_forward(_Attention(), query, key, value, mask, softcap=30.0)
    assert len(calls) == 2 and calls[1]["softcap"] == 30.0


def test_loaded_sdpa_models_switch_and_others_stay(tmp_path):
    from fixtures.tiny_models import write_tiny_pair
    from transformers import AutoModelForCausalLM

    verifier, _ = write_tiny_pair(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(verifier, attn_implementation="sdpa")
    assert use_grouped_sdpa(model) and model.config._attn_implementation == NAME
    eager = AutoModelForCausalLM.from_pretrained(verifier, attn_implementation="eager")
    assert not use_grouped_sdpa(eager) and eager.config._attn_implementation == "eager"
