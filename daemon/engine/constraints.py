"""The one interface through which the loop restricts what the verifier may write: a logits constraint.

Token healing (token_healing.Constraint: the first tokens write the removed prompt text again) and structured
output (grammar.GrammarConstraint: the answer follows a JSON schema) both implement it, and `AllOf` applies
several at once (their masks intersect). The loop calls, per round:

- `forced_tokens(after)`: tokens every allowed continuation (after the pending token, or after it and a draft)
  starts with, drafted for free (verified like any draft);
- `trim_draft(draft, sampled)`: the draft up to its first forbidden token (a deterministic draft only);
- `mask_logits(logits, draft, argmax_only)`: forbidden tokens -inf in every row of a verification pass (and in
  the plain step's single row); row i scores the token after the pending one and `draft[:i]`;
- `advance(token)`: once per token kept, in order; `finished`: nothing but the end may follow (the loop stops).

Masking every verified row the way the plain step is masked keeps speculative decoding lossless: greedy output is
token for token the masked verifier's, and sampling draws from the verifier's distribution renormalised over the
allowed tokens (the row is masked before temperature and top-p, as in the plain step).
"""

from __future__ import annotations

import torch


class LogitsConstraint:
    """No restriction; subclasses override what they restrict."""

    def mask_logits(self, logits: torch.Tensor, draft: list[int] = (), argmax_only: bool = False) -> torch.Tensor:
        """logits: (len(draft) + 1, V) float. Returns logits whose forbidden entries are -inf (a copy, or the input
        itself when nothing is forbidden). `argmax_only`: the caller reads only each row's argmax (greedy), so a
        row whose unmasked argmax is allowed may be returned unmasked. Rows after a draft token that breaks the
        constraint may be left unmasked: verification stops at that token (its masked probability is 0)."""
        return logits

    def trim_draft(self, draft: list[int], sampled: bool) -> list[int]:
        """`draft` up to its first forbidden token. A `sampled` draft (drawn from a drafter's q and verified by
        rejection sampling) must stay whole: a rejected token's replacement is drawn from max(p - q, 0), and
        cutting the draft before it would draw it from p instead (tests/engine/test_sampling.py shows the bias)."""
        return draft

    def forced_tokens(self, after: list[int] = ()) -> list[int]:
        """Tokens that every allowed continuation of the text so far, followed by the tokens `after` (a draft),
        starts with ([] when there is a choice, or when `after` breaks the constraint)."""
        return []

    def advance(self, token: int) -> None:
        """Record a token the loop kept; ValueError if it is forbidden (the loop never lets that happen)."""

    @property
    def finished(self) -> bool:
        """True when the constraint admits no further token but the end of the answer."""
        return False


class AllOf(LogitsConstraint):
    """Several constraints at once: a token is allowed when every part allows it. Masks are applied in order to
    the same rows, so with `argmax_only` each part checks the argmax left by the parts before it."""

    def __init__(self, parts: list[LogitsConstraint]) -> None:
        self.parts = parts

    def mask_logits(self, logits, draft=(), argmax_only=False):
        for part in self.parts:
            logits = part.mask_logits(logits, draft, argmax_only)
        return logits

    def trim_draft(self, draft, sampled):
        for part in self.parts:
            draft = part.trim_draft(draft, sampled)
        return draft

    def forced_tokens(self, after=()):
        for part in self.parts:
            forced = part.forced_tokens(after)
            if forced:  # forced by one part; kept as far as the others allow it
                return self.trim_draft([*after, *forced], sampled=False)[len(after):]
        return []

    def advance(self, token):
        for part in self.parts:
            part.advance(token)

    @property
    def finished(self):
        return any(part.finished for part in self.parts)
