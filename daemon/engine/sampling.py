"""Turning logits into tokens, and checking a draft against the verifier without changing what it would say.

Greedy: accept the longest draft prefix that equals the verifier's argmax, then take the verifier's own token.
Sampling (Leviathan et al. 2023, Chen et al. 2023): accept draft token x with probability min(1, p(x)/q(x));
on the first rejection sample from normalize(max(p - q, 0)); if all pass, sample a bonus token from p. A
drafter without probabilities (n-gram, greedy) is a one-hot q, for which the rule becomes: accept with p(x),
else sample from p with x removed. Either way the output follows the verifier's distribution exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Distribution over the vocabulary for each row of `logits` (float32), after temperature and top-p."""
        logits = logits.float()
        # Shifted so the largest is 0, and divided by at least float32's smallest normal number: a temperature
        # near 0 then sends the others to -inf, never to inf - inf or 0 / 0.
        temperature = max(self.temperature, torch.finfo(torch.float32).tiny)
        probs = torch.softmax((logits - logits.max(dim=-1, keepdim=True).values) / temperature, dim=-1)
        if self.top_p < 1.0:
            probs = _top_p_filter(probs, self.top_p)
        return probs


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Keep the smallest set whose mass reaches top_p: a token stays if the mass before it is below top_p.
    # The most likely token always stays, also for a top_p below float32's smallest number.
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep = (mass_before < top_p) | (torch.arange(probs.shape[-1], device=probs.device) == 0)
    sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
    filtered = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return filtered / filtered.sum(dim=-1, keepdim=True)


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs, 1, generator=generator).item())


def pick_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    if params.greedy:
        return int(logits.argmax().item())
    return sample(params.probs(logits), generator)


def verify_greedy(target_logits: torch.Tensor, draft: list[int]) -> tuple[int, int]:
    """target_logits: (len(draft)+1, V). Returns (number of draft tokens accepted, the verifier's next token)."""
    predicted = target_logits.argmax(dim=-1).tolist()
    accepted = 0
    while accepted < len(draft) and predicted[accepted] == draft[accepted]:
        accepted += 1
    return accepted, predicted[accepted]


def verify_sampling(
    target_probs: torch.Tensor,
    draft: list[int],
    draft_probs: torch.Tensor | None,
    generator: torch.Generator | None,
) -> tuple[int, int]:
    """target_probs: (len(draft)+1, V); draft_probs: (len(draft), V') or None for a deterministic drafter."""
    vocab = target_probs.shape[-1]
    if draft_probs is not None and draft_probs.shape[-1] != vocab:
        draft_probs = _fit_vocab(draft_probs, vocab)
    uniforms = torch.rand(len(draft), generator=generator).tolist() if draft else []
    for i, token in enumerate(draft):
        p = target_probs[i]
        p_token = float(p[token]) if token < vocab else 0.0
        q_token = 1.0 if draft_probs is None else float(draft_probs[i, token])
        if q_token > 0 and uniforms[i] < min(1.0, p_token / q_token):
            continue
        if draft_probs is None:
            residual = p.clone()
            if token < vocab:
                residual[token] = 0.0
        else:
            residual = torch.clamp(p - draft_probs[i], min=0.0)
        total = float(residual.sum())
        # total == 0 only when p == q exactly, where a rejection cannot happen; guard against rounding.
        return i, sample(residual / total if total > 0 else p, generator)
    return len(draft), sample(target_probs[len(draft)], generator)


def _fit_vocab(probs: torch.Tensor, vocab: int) -> torch.Tensor:
    if probs.shape[-1] > vocab:
        return probs[..., :vocab]
    padded = probs.new_zeros(*probs.shape[:-1], vocab)
    padded[..., : probs.shape[-1]] = probs
    return padded
