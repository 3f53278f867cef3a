"""Several drafters in order of cost: the first one with a proposal wins (the free n-gram lookup before a model)."""

from __future__ import annotations

from .base import Draft, DraftContext, Drafter


class CascadeDrafter(Drafter):
    """Several drafters tried in order (cheapest first): the first non-empty proposal is the draft, else an empty one.
    Its state is the list of each drafter's state; it drafts after unverified ids only if all of them do
    (`drafts_after_any_ids`)."""

    def __init__(self, drafters: list[Drafter]) -> None:
        self.drafters = drafters
        self.name = "+".join(d.name for d in drafters)
        self.drafts_after_any_ids = all(d.drafts_after_any_ids for d in drafters)

    def new_state(self):
        return [d.new_state() for d in self.drafters]

    def propose(self, ctx: DraftContext, state) -> Draft:
        for drafter, drafter_state in zip(self.drafters, state):
            draft = drafter.propose(ctx, drafter_state)
            if draft.tokens:
                return draft
        return Draft()

    def memory_bytes(self) -> int:
        return sum(d.memory_bytes() for d in self.drafters)

    def describe(self) -> str:
        return "+".join(d.describe() for d in self.drafters)
