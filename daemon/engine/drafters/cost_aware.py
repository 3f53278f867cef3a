"""A drafter that verifies only as much of another drafter's proposal as pays on this machine.

Each round it takes the inner drafter's proposal and keeps the length `draft_policy.best_length` picks from the
measured pass costs and the estimated chance s_i that the proposal's first i tokens are all right; 0 tokens (a
plain step) when no draft pays. The estimate is kept per class of proposal: the evidence the inner drafter gives
for it (`Draft.evidence`; for the n-gram drafter how long its match is and whether earlier occurrences agreed) and
whether the previous proposal's first token was right. Measured on the llama.cpp benchmark's prompts, those
classes separate drafts whose first token is right 39 % of the time from drafts right 80-99 % of the time, which
one rate per document cannot do.

It is learned from hindsight: later rounds' sequences show what really followed a proposal, so every proposal is
scored against them, the tokens it verified and the ones it held back alike, once a wrong token or its end is
known (a held-back 8-token proposal that was right counts, a few rounds later). A proposal is one trial at each
position it reached: token j + 1 right or not, given the first j were (so s_i need not fall geometrically: a
class's first token may be right far more often than its sixth). Each class has rates shared by all documents
(older counts weigh less, SHARED_DECAY) and its own per document, which start from the shared ones as
PRIOR_WEIGHT pseudo-proposals, less a little for CAUTION; an unseen position starts from the one before it, the
first from 0.5.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Hashable

from ..draft_policy import best_length
from .base import Draft, DraftContext, Drafter

SHARED_DECAY = 0.99  # weight of a class's earlier shared counts after each proposal of that class is scored
PRIOR_WEIGHT = 4.0  # pseudo-proposals of the shared rates in a document's own
SHARED_WEIGHT = 2.0  # pseudo-proposals of the previous position's rate (0.5 for the first) in a shared rate
# Pseudo-trials that failed, in each position of a document's rates: a wrong draft costs more than a right one
# brings, the more so on one busy core. Replayed on 48 benchmark prompts with one pair of measured tables (one and
# two threads), it raised the least per-prompt estimate from 0.92x to 0.97x its plain loop and moved the means by
# under 1.5 % (scripts/replay_drafts.py).
CAUTION = 0.25
PENDING_LIMIT = 16  # proposals waiting for hindsight; older ones are dropped unscored


class _Survival:
    """How often a proposal's token j + 1 was right given its first j were (j = 0, 1, ...): counts of tries and
    rights per position, from proposals scored in hindsight. Proposals, not tokens, are the trials, so that one
    long right proposal does not look like many independent successes."""

    def __init__(self) -> None:
        self.tried: list[float] = []
        self.right: list[float] = []

    def add(self, right: int, wrong: int, decay: float = 1.0) -> None:
        """A proposal whose first `right` tokens were right, then a wrong one if `wrong`."""
        positions = right + wrong
        grow = positions - len(self.tried)
        if grow > 0:
            self.tried += [0.0] * grow
            self.right += [0.0] * grow
        for j in range(len(self.tried)):
            self.tried[j] *= decay
            self.right[j] *= decay
        for j in range(positions):
            self.tried[j] += 1.0
            self.right[j] += 1.0 if j < right else 0.0

    def rates(self, n: int, prior: list[float] | None, weight: float, caution: float = 0.0) -> list[float]:
        """The estimated chance of token j + 1 being right given the first j were, j < n: each position's counts
        plus `weight` pseudo-trials at `prior[j]` (0.5, then the previous position's rate, where none is given)
        and `caution` pseudo-trials that failed."""
        rates, before = [], 0.5
        for j in range(n):
            guess = prior[j] if prior is not None else before
            tried, right = (self.tried[j], self.right[j]) if j < len(self.tried) else (0.0, 0.0)
            before = (right + weight * guess) / (tried + weight + caution)
            rates.append(before)
        return rates


@dataclass
class _Proposal:
    length: int  # len(ids) when it was made
    last: int  # ids[-1] then (the pending token), to tell a later round of the same sequence
    tokens: tuple
    evidence: Hashable


@dataclass
class _State:
    inner: object
    counts: dict = field(default_factory=lambda: defaultdict(_Survival))  # this document's, per class
    pending: list = field(default_factory=list)  # _Proposal, oldest first
    latest: _Proposal | None = None
    previous_right: bool | None = None  # whether the latest proposal's first token was right, once known


def _outcome(proposal: _Proposal, ids: list[int]) -> tuple[int, int] | None:
    """(right tokens, 1 if a wrong one followed else 0) of `proposal` against the later `ids`; None while neither
    a wrong token nor its end is known yet. Raises LookupError when `ids` is another sequence."""
    if len(ids) < proposal.length or ids[proposal.length - 1] != proposal.last:
        raise LookupError("another sequence")
    known = ids[proposal.length :][: len(proposal.tokens)]
    right = 0
    while right < len(known) and known[right] == proposal.tokens[right]:
        right += 1
    if right < len(known):
        return right, 1
    return (right, 0) if right == len(proposal.tokens) else None


class CostAwareDrafter(Drafter):
    def __init__(self, inner: Drafter, costs: Callable[[], list[float]]) -> None:
        """`costs()`: the cost table of the next verification pass, `costs()[n - 1]` a pass over n tokens relative
        to a 1-token step (measure_pass_costs); a function, since the pass's thread count may change
        (llamacpp_runner.LlamaCppRunner.pass_threads)."""
        self.inner = inner
        self.costs = costs
        self.name = inner.name
        self.drafts_after_any_ids = getattr(inner, "drafts_after_any_ids", True)
        self.shared: dict = defaultdict(_Survival)  # per class, over every document this drafter has served

    def new_state(self) -> _State:
        return _State(self.inner.new_state())

    def survival(self, evidence: Hashable, state: _State, n: int) -> list[float]:
        """The estimated chance that the first i tokens of a proposal of this class are all right, i = 1..n."""
        shared = self.shared[evidence].rates(n, None, SHARED_WEIGHT)
        chances, chance = [], 1.0
        for rate in state.counts[evidence].rates(n, shared, PRIOR_WEIGHT, CAUTION):
            chance *= rate
            chances.append(chance)
        return chances

    def learn(self, ids: list[int], state: _State) -> None:
        """Score the pending proposals whose outcome `ids` shows; forget them all if `ids` is another sequence."""
        still = []
        for proposal in state.pending:
            try:
                outcome = _outcome(proposal, ids)
            except LookupError:
                state.pending, state.latest, state.previous_right = [], None, None
                return
            if outcome is None:
                still.append(proposal)
                continue
            right, wrong = outcome
            self.shared[proposal.evidence].add(right, wrong, SHARED_DECAY)
            state.counts[proposal.evidence].add(right, wrong)
        if state.latest is not None and len(ids) > state.latest.length:
            state.previous_right = ids[state.latest.length] == state.latest.tokens[0]
        state.pending = still[-PENDING_LIMIT:]

    def propose(self, ctx: DraftContext, state: _State) -> Draft:
        self.learn(ctx.ids, state)
        draft = self.inner.propose(ctx, state.inner)
        if not draft.tokens:
            return Draft()
        evidence = (draft.evidence, state.previous_right)
        state.latest = _Proposal(len(ctx.ids), ctx.ids[-1], tuple(draft.tokens), evidence)
        state.pending.append(state.latest)
        keep = best_length(self.costs(), self.survival(evidence, state, len(draft.tokens)))
        probs = draft.probs[:keep] if draft.probs is not None else None
        return Draft(list(draft.tokens[:keep]), probs, draft.evidence)

    def memory_bytes(self) -> int:
        return self.inner.memory_bytes()

    def describe(self) -> str:
        return self.inner.describe()
