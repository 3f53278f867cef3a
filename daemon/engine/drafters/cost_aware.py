"""A drafter that verifies only as much of another drafter's proposal as pays on this machine.

Each round it takes the inner drafter's proposal and keeps the length `draft_policy.best_length` picks from the
measured pass costs and this document's estimated per-token acceptance p; 0 tokens (a plain step) when no
draft pays. p is learned from hindsight: later rounds' sequences show what really followed a proposal, so it is
scored against them whole, the tokens it verified and the ones it held back alike, once a wrong token or its
end is known (a held-back 8-token proposal that was right counts 8 right tokens, a few rounds later). One proposal
is scored at a time: the next ones mostly repeat its tail. Older proposals weigh less (DECAY); an even prior
starts p at 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..draft_policy import best_length
from .base import Draft, DraftContext, Drafter

DECAY = 0.8  # weight of earlier counts after each scored proposal
PROBE_EVERY = 4  # while even a perfect-looking draft of the full budget would not pay, propose only this often
PRIOR = 1.0  # pseudo-counts of right and wrong tokens: p starts at 0.5


@dataclass
class _State:
    inner: object
    right: float = PRIOR
    wrong: float = PRIOR
    length: int = 0  # len(ids) when the proposal being scored was made
    last: int = -1  # the last id then (the pending token)
    proposal: tuple = ()  # the proposal being scored; () when none is
    skipped: int = 0  # rounds since the last proposal

    @property
    def p(self) -> float:
        return self.right / (self.right + self.wrong)

    def score(self, ids: list[int]) -> None:
        """Count the proposal's tokens against what followed it in `ids` (the same document, a later round) once a
        wrong token or its end is known; forget it when `ids` is another sequence."""
        if not self.proposal:
            return
        if len(ids) < self.length or ids[self.length - 1] != self.last:
            self.proposal = ()
            return
        known = ids[self.length :][: len(self.proposal)]
        right = 0
        while right < len(known) and known[right] == self.proposal[right]:
            right += 1
        if right < len(known) or right == len(self.proposal):
            self.right = DECAY * self.right + right
            self.wrong = DECAY * self.wrong + (1 if right < len(self.proposal) else 0)
            self.proposal = ()

    def track(self, ids: list[int], proposal: list[int]) -> None:
        """Score `proposal`, made after `ids`, in later rounds, unless an earlier one is still being scored."""
        if not self.proposal and proposal:
            self.length, self.last, self.proposal = len(ids), ids[-1], tuple(proposal)


class CostAwareDrafter(Drafter):
    def __init__(self, inner: Drafter, costs: Callable[[], list[float]]) -> None:
        """`costs()`: the cost table of the next verification pass, `costs()[n - 1]` a pass over n tokens relative
        to a 1-token step (measure_pass_costs); a function, since the pass's thread count may change
        (llamacpp_runner.LlamaCppRunner.pass_threads)."""
        self.inner = inner
        self.costs = costs
        self.name = inner.name
        self.drafts_after_any_ids = getattr(inner, "drafts_after_any_ids", True)

    def new_state(self) -> _State:
        return _State(self.inner.new_state())

    def propose(self, ctx: DraftContext, state: _State) -> Draft:
        state.score(ctx.ids)
        costs = self.costs()
        if best_length(costs, state.p, ctx.max_tokens) == 0 and state.skipped < PROBE_EVERY - 1:
            # No draft would be verified: skip the inner drafter's work, but still look now and then, so that
            # hindsight can tell when drafts became likely again.
            state.skipped += 1
            return Draft()
        state.skipped = 0
        draft = self.inner.propose(ctx, state.inner)
        state.track(ctx.ids, draft.tokens)
        keep = best_length(costs, state.p, len(draft.tokens))
        probs = draft.probs[:keep] if draft.probs is not None else None
        return Draft(list(draft.tokens[:keep]), probs)

    def memory_bytes(self) -> int:
        return self.inner.memory_bytes()

    def describe(self) -> str:
        return self.inner.describe()
