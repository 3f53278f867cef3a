"""Turning logits into tokens, and checking a draft against the verifier without changing what it would say.

Greedy: accept the longest draft prefix that equals the verifier's argmax, then take the verifier's own token.

Sampling, plain steps and drafts without probabilities (n-gram, forced tokens): the token at sequence position n
is argmax(log p_n + g_n), with g_n Gumbel noise drawn from (seed, n) alone (PositionNoise; the Gumbel-max trick,
an exact sample of p_n: Gumbel 1954, Maddison et al. 2014 "A* Sampling"). A draft token is accepted exactly when
it is that token, so the output is plain sampling's, token for token, whatever was drafted: a seeded request
writes the same text with or without speculation, warm cache or cold. A one-hot draft x is still accepted with
probability p(x), as rejection sampling accepts it.

Drafts with probabilities (a drafter model's q) keep rejection sampling (Leviathan et al. 2023, Chen et al. 2023),
which accepts more of them: accept x with probability min(1, p(x)/q(x)); on the first rejection sample from
normalize(max(p - q, 0)); if all pass, sample a bonus token from p. Either way the output follows the verifier's
distribution exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """A request's sampling: `temperature` (<= 0: greedy, `greedy` is True) and `top_p` (nucleus mass in (0, 1]; 1 keeps
    every token). `probs(logits)` turns (..., V) logits into float32 distributions."""

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
    """One token id drawn from `probs`, a 1-D distribution over the vocabulary (torch.multinomial with `generator`;
    None: torch's global one)."""
    return int(torch.multinomial(probs, 1, generator=generator).item())


_MASK64 = (1 << 64) - 1


class PositionNoise:
    """Gumbel noise for each sequence position, a function of the request's seed and the position alone."""

    def __init__(self, seed: int) -> None:
        self.seed = seed & _MASK64

    def gumbel(self, position: int, size: int) -> torch.Tensor:
        """`size` independent standard Gumbel values for `position` (float32, CPU)."""
        generator = torch.Generator().manual_seed(_splitmix64(self.seed ^ _splitmix64(position)))
        uniform = torch.rand(size, generator=generator).clamp_(min=torch.finfo(torch.float32).tiny)
        return -torch.log(-torch.log(uniform))

    def pick(self, probs: torch.Tensor, position: int) -> int:
        """The token at `position`: argmax(log p + g), a sample of `probs` (a row over the vocabulary)."""
        scores = torch.log(probs.float().cpu()) + self.gumbel(position, probs.shape[-1])
        return int(scores.argmax().item())


def _splitmix64(x: int) -> int:
    """SplitMix64's finalizer (Steele et al. 2014): a 64-bit value whose bits all depend on all of `x`'s."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def pick_token(logits: torch.Tensor, params: SamplingParams, noise: PositionNoise | None, position: int) -> int:
    """The token at sequence `position` from its logits (V,): the argmax when greedy, else PositionNoise.pick."""
    if params.greedy:
        return int(argmax_rows(logits.reshape(-1)))
    return noise.pick(params.probs(logits), position)


def argmax_rows(logits: torch.Tensor):
    """Each row's argmax (the first index of the largest value, NaN counting as largest, as torch.argmax), as a
    numpy array for float32 tensors on the CPU (numpy's argmax takes ~2 us for 49k values where torch's takes ~25
    us, once or twice per decoding step), else as a tensor."""
    if logits.device.type == "cpu" and logits.dtype == torch.float32 and not logits.requires_grad:
        return logits.numpy().argmax(axis=-1)
    return logits.argmax(dim=-1)


def verify_greedy(target_logits: torch.Tensor, draft: list[int]) -> tuple[int, int]:
    """target_logits: (len(draft)+1, V). Returns (number of draft tokens accepted, the verifier's next token)."""
    predicted = argmax_rows(target_logits).tolist()
    accepted = 0
    while accepted < len(draft) and predicted[accepted] == draft[accepted]:
        accepted += 1
    return accepted, predicted[accepted]


def verify_coupled(target_probs: torch.Tensor, draft: list[int], noise: PositionNoise,
                   position: int) -> tuple[int, int]:
    """target_probs: (len(draft)+1, V), row i for sequence position `position` + i. Accepts draft tokens while each
    is the token PositionNoise picks at its position; returns (accepted, the picked token after them)."""
    for i, token in enumerate(draft):
        picked = noise.pick(target_probs[i], position + i)
        if picked != token:
            return i, picked
    return len(draft), noise.pick(target_probs[len(draft)], position + len(draft))


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
