"""A drafter that verifies only as much of another drafter's proposal as pays on this machine.

Each round it takes the inner drafter's proposal and keeps the length `draft_policy.best_length` picks from the
measured pass costs and this document's estimated per-token acceptance p; 0 tokens (a plain step) when no
draft pays. p is learned from hindsight: the next round's sequence shows what really followed, so every
proposal is scored against it, the tokens it verified and the ones it held back alike (a held-back proposal
is scored on the one token the verifier wrote next). Older rounds weigh less (DECAY); an even prior starts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..draft_policy import best_length
from .base import Draft, DraftContext, Drafter

DECAY = 0.8  # weight of earlier rounds' counts after each scored round
PROBE_EVERY = 4  # while even a perfect-looking draft of the full budget would not pay, propose only this often
PRIOR = 1.0  # pseudo-counts of right and wrong tokens: p starts at 0.5


@dataclass
class _State:
    inner: object
    right: float = PRIOR
    wrong: float = PRIOR
    length: int = 0  # len(ids) when the last proposal was made
    last: int = -1  # the last id then (the pending token)
    proposal: tuple = ()
    skipped: int = 0  # rounds since the last proposal

    @property
    def p(self) -> float:
        return self.right / (self.right + self.wrong)

    def score(self, ids: list[int]) -> None:
        """Count the last proposal's tokens against what followed it in `ids` (same document, later round)."""
        if not self.proposal or len(ids) <= self.length or ids[self.length - 1] != self.last:
            return
        known = ids[self.length :][: len(self.proposal)]
        right = 0
        while right < len(known) and known[right] == self.proposal[right]:
            right += 1
        self.right = DECAY * self.right + right
        self.wrong = DECAY * self.wrong + (1 if right < len(known) else 0)


class CostAwareDrafter(Drafter):
    def __init__(self, inner: Drafter, costs: list[float]) -> None:
        """`costs[n - 1]`: a verification pass over n tokens relative to a 1-token step (measure_pass_costs)."""
        self.inner = inner
        self.costs = costs
        self.name = inner.name
        self.drafts_after_any_ids = getattr(inner, "drafts_after_any_ids", True)

    def new_state(self) -> _State:
        return _State(self.inner.new_state())

    def propose(self, ctx: DraftContext, state: _State) -> Draft:
        state.score(ctx.ids)
        if best_length(self.costs, state.p, ctx.max_tokens) == 0 and state.skipped < PROBE_EVERY - 1:
            # No draft would be verified: skip the inner drafter's work, but still look now and then, so that
            # hindsight can tell when drafts became likely again.
            state.skipped += 1
            state.proposal = ()
            return Draft()
        state.skipped = 0
        draft = self.inner.propose(ctx, state.inner)
        state.length, state.last, state.proposal = len(ctx.ids), ctx.ids[-1], tuple(draft.tokens)
        keep = best_length(self.costs, state.p, len(draft.tokens))
        probs = draft.probs[:keep] if draft.probs is not None else None
        return Draft(list(draft.tokens[:keep]), probs)

    def memory_bytes(self) -> int:
        return self.inner.memory_bytes()

    def describe(self) -> str:
        return self.inner.describe()
