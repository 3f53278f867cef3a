"""A drafter that verifies only as much of another drafter's proposal as pays on this machine.

Each round it takes the inner drafter's proposal and keeps the length `draft_policy.best_length` picks from the
measured pass costs and the estimated chance s_i that the proposal's first i tokens are all right; 0 tokens (a
plain step) when no draft pays. The estimate is kept per class of proposal: the evidence the inner drafter gives
for it (`Draft.evidence`; for the n-gram drafter how long its match is and whether earlier occurrences agreed) and
whether the previous proposal's first token was right. Measured on the llama.cpp benchmark's prompts, those
classes separate drafts whose first token is right 39 % of the time from drafts right 80-99 % of the time, which
one rate per document cannot do.

It is learned from hindsight: later rounds' verified tokens show what really followed a proposal, so every
proposal is scored against them, the tokens it verified and the ones it held back alike, each position as soon as
its token is known, up to the first wrong one (a held-back 8-token proposal that was right counts, over the next
rounds). A proposal is one trial at each position it reached: token j + 1 right or not, given the first j were
(so s_i need not fall geometrically: a class's first token may be right far more often than its sixth). Each
class has rates shared by all documents (older counts weigh less, SHARED_DECAY) and its own per document (the
cache slot's key), which start from the shared ones as PRIOR_WEIGHT pseudo-proposals, less a little for CAUTION;
an unseen position starts from the one before it, the first from 0.5.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Hashable

from ..draft_policy import best_length
from .base import Draft, DraftContext, Drafter

SHARED_DECAY = 0.99  # weight of a class's earlier shared counts each time a proposal of that class starts scoring
PRIOR_WEIGHT = 4.0  # pseudo-proposals of the shared rates in a document's own
SHARED_WEIGHT = 2.0  # pseudo-proposals of the previous position's rate (0.5 for the first) in a shared rate
# Pseudo-trials that failed, in each position of a document's rates: a wrong draft costs more than a right one
# brings, the more so on one busy core. Replayed on 48 benchmark prompts (scripts/replay_drafts.py's functions), on
# one thread it cut the prompts estimated slower than plain decoding from 12 to 3 (0.5: 3 as well, but fewer
# drafts on two cores), and on two it raised the estimate from 1.19x to 1.21x.
CAUTION = 0.25
PENDING_LIMIT = 16  # proposals waiting for hindsight; older ones are dropped
TAIL = 8  # ids before a proposal that later ids must repeat to be its sequence


class _Survival:
    """How often a proposal's token j + 1 was right given its first j were (j = 0, 1, ...): counts of tries and
    rights per position. A trial is one proposal at one position, counted once the verifier's token there is known;
    consecutive proposals often repeat each other's tail, so the counts are correlated, and the shared ones decay."""

    def __init__(self) -> None:
        self.tried: list[float] = []
        self.right: list[float] = []

    def observe(self, position: int, right: bool) -> None:
        if position >= len(self.tried):
            grow = position + 1 - len(self.tried)
            self.tried += [0.0] * grow
            self.right += [0.0] * grow
        self.tried[position] += 1.0
        self.right[position] += 1.0 if right else 0.0

    def decay(self, factor: float) -> None:
        self.tried = [t * factor for t in self.tried]
        self.right = [r * factor for r in self.right]

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
    tail: tuple  # ids[length - TAIL : length], to tell a later round of the same sequence
    tokens: tuple
    evidence: Hashable
    scored: int = 0  # positions counted so far

    def follows(self, ids: list[int]) -> bool:
        """Whether `ids` (a later round) continues the sequence this proposal was made after."""
        return len(ids) >= self.length and tuple(ids[max(0, self.length - TAIL) : self.length]) == self.tail


@dataclass
class _State:
    inner: object
    document: object = None  # the cache slot's key the counts below belong to
    counts: dict = field(default_factory=lambda: defaultdict(_Survival))  # this document's, per class
    pending: list = field(default_factory=list)  # _Proposal, oldest first
    latest: _Proposal | None = None
    previous_right: bool | None = None  # whether the latest proposal's first token was right, once known

    def forget_document(self, document: object) -> None:
        self.document, self.counts = document, defaultdict(_Survival)
        self.pending, self.latest, self.previous_right = [], None, None


class CostAwareDrafter(Drafter):
    """Wraps `inner` and cuts each proposal to the length `draft_policy.best_length` finds pays, from the pass costs and
    the estimated chance that its first i tokens are right (0 tokens: an empty Draft, a plain step). The chances are
    learned per class of proposal (the inner Draft's evidence and whether the previous proposal's first token was
    right), shared over documents and per document (the cache slot's key); see the module docstring."""

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
        """Count each pending proposal's positions that `ids` (verified tokens of a later round) shows, up to its
        first wrong token; proposals `ids` does not continue are dropped."""
        still = []
        for proposal in state.pending:
            if not proposal.follows(ids):
                continue
            known = ids[proposal.length : proposal.length + len(proposal.tokens)]
            shared, own = self.shared[proposal.evidence], state.counts[proposal.evidence]
            wrong = False
            while proposal.scored < len(known) and not wrong:
                if proposal.scored == 0:
                    shared.decay(SHARED_DECAY)
                wrong = known[proposal.scored] != proposal.tokens[proposal.scored]
                shared.observe(proposal.scored, not wrong)
                own.observe(proposal.scored, not wrong)
                proposal.scored += 1
            if not wrong and proposal.scored < len(proposal.tokens):
                still.append(proposal)
        state.pending = still[-PENDING_LIMIT:]
        latest = state.latest
        if latest is not None and not latest.follows(ids):
            state.latest, state.previous_right = None, None
        elif latest is not None and len(ids) > latest.length:
            state.previous_right = ids[latest.length] == latest.tokens[0]

    def propose(self, ctx: DraftContext, state: _State) -> Draft:
        document = getattr(ctx.slot, "key", None)
        if document != state.document:
            state.forget_document(document)
        # Tokens a grammar forces are drafted ahead of the cache (loop.py) and not verified yet: not learned from.
        verified = ctx.ids[: len(ctx.slot.ids) + 1] if ctx.slot is not None else ctx.ids
        self.learn(verified, state)
        draft = self.inner.propose(ctx, state.inner)
        if not draft.tokens:
            return Draft()
        evidence = (draft.evidence, state.previous_right)
        state.latest = _Proposal(len(ctx.ids), tuple(ctx.ids[-TAIL:]), tuple(draft.tokens), evidence)
        state.pending.append(state.latest)
        costs = self.costs()
        keep = best_length(costs, self.survival(evidence, state, min(len(draft.tokens), len(costs) - 1)))
        probs = draft.probs[:keep] if draft.probs is not None else None
        return Draft(list(draft.tokens[:keep]), probs, draft.evidence)

    def memory_bytes(self) -> int:
        return self.inner.memory_bytes()

    def describe(self) -> str:
        return self.inner.describe()
