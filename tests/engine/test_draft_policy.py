"""The cost table and the draft length it picks: drafting only what pays, and learning from hindsight."""

import pytest

from specd.daemon.engine.draft_policy import best_length, measure_pass_costs
from specd.daemon.engine.drafters.base import Draft, DraftContext, Drafter
from specd.daemon.engine.drafters.cost_aware import CostAwareDrafter
from specd.daemon.engine.sampling import SamplingParams

LLAMACPP_LIKE = [1.0, 1.6, 2.3, 2.8, 3.0]  # a k-token pass costs close to k steps (issue 13's measurement)
TORCH_LIKE = [1.0, 1.11, 1.20, 1.33, 1.46]  # README: k=2 1.11x, k=3 1.20x, k=5 1.46x


def _geometric(p, n=4):
    return [p**i for i in range(1, n + 1)]


@pytest.mark.parametrize("costs, p, expected", [
    (LLAMACPP_LIKE, 0.3, 0),   # a weak draft costs more than it brings: a plain step
    (LLAMACPP_LIKE, 0.7, 0),   # 1.7 tokens for 1.6 steps: not the margin a draft must promise (MIN_GAIN)
    (LLAMACPP_LIKE, 0.9, 4),   # 4.1 tokens for 3 steps
    (LLAMACPP_LIKE, 0.97, 4),  # near-certain drafts: all of it
    (TORCH_LIKE, 0.3, 1),      # passes are cheap: even a weak draft pays a little
    (TORCH_LIKE, 0.9, 4),
])
def test_best_length_maximises_tokens_per_cost(costs, p, expected):
    assert best_length(costs, _geometric(p)) == expected


def test_best_length_never_exceeds_the_draft_or_the_table():
    assert best_length(TORCH_LIKE, _geometric(0.99, 2)) == 2
    assert best_length(TORCH_LIKE, _geometric(0.99, 50)) == len(TORCH_LIKE) - 1
    assert best_length(TORCH_LIKE, []) == 0


def test_best_length_reads_where_right_drafts_end():
    """A first token almost always right and little after it: one token, where a geometric p of the same
    first-token rate would verify all four."""
    assert best_length(TORCH_LIKE, [0.95, 0.1, 0.01, 0.0]) == 1
    assert best_length(TORCH_LIKE, _geometric(0.95)) == 4


class _Fixed(Drafter):
    name = "fixed"

    def __init__(self, tokens, evidence=None):
        self.tokens, self.evidence = tokens, evidence

    def propose(self, ctx, state):
        return Draft(list(self.tokens), evidence=self.evidence)


def _context(ids):
    return DraftContext(ids, 8, SamplingParams(0.0, 1.0), None, None)


class _Cycle(Drafter):
    """Proposes what follows the last id in the cycle 7 8 9 10."""

    name = "cycle"

    def propose(self, ctx, state):
        start = (ctx.ids[-1] - 7 + 1) % 4 if 7 <= ctx.ids[-1] <= 10 else 0
        return Draft([7 + (start + i) % 4 for i in range(4)])


def test_hindsight_raises_the_estimate_while_drafts_are_right_and_lowers_it_when_wrong():
    drafter = CostAwareDrafter(_Cycle(), lambda: LLAMACPP_LIKE)
    state = drafter.new_state()
    assert drafter.propose(_context([1, 2, 3]), state).tokens == []  # nothing learned yet: no draft pays
    ids = [1, 2, 3]
    for _ in range(12):  # one token per round (plain steps): the verifier writes what the proposals said
        ids = ids + [7 + (len(ids) - 3) % 4]
        drafter.propose(_context(ids), state)
    assert len(drafter.propose(_context(ids), state).tokens) == 4
    assert drafter.survival((None, True), state, 4)[-1] > 0.8
    for _ in range(24):  # now the proposals are always wrong
        ids = ids + [5]
        drafter.propose(_context(ids), state)
    assert drafter.survival((None, False), state, 1)[0] < 0.2
    assert drafter.propose(_context(ids + [5]), state).tokens == []


def _learned(state, evidence):
    counts = state.counts[evidence]
    return counts.tried, counts.right


def test_each_position_of_every_proposal_counts_once_its_token_is_known():
    drafter = CostAwareDrafter(_Fixed([7, 8, 9, 10]), lambda: LLAMACPP_LIKE)
    state = drafter.new_state()
    drafter.propose(_context([1, 2, 3]), state)  # held back: nothing learned yet
    for known, tried in (([1, 2, 3, 7], [1]), ([1, 2, 3, 7, 8], [1, 1]), ([1, 2, 3, 7, 8, 9], [1, 1, 1])):
        drafter.learn(known, state)  # the rounds after it: each new token counts once
        assert _learned(state, (None, None)) == (tried, tried)
    drafter.learn([1, 2, 3, 7, 8, 9, 10, 11], state)
    assert _learned(state, (None, None)) == ([1, 1, 1, 1], [1, 1, 1, 1])  # four right, none wrong
    assert state.pending == [] and state.previous_right is True

    state = drafter.new_state()
    drafter.propose(_context([1, 2]), state)
    drafter.propose(_context([1, 2, 7]), state)  # a second proposal while the first is pending: both are scored
    drafter.learn([1, 2, 7, 8, 5], state)
    assert _learned(state, (None, None)) == ([1, 1, 1], [1, 1, 0])  # the first: two right, then a wrong one
    assert _learned(state, (None, True)) == ([1], [0])  # the second (after a right first token): wrong at once
    assert state.pending == []


def test_a_new_request_is_not_scored_against_the_old_proposals():
    drafter = CostAwareDrafter(_Fixed([7, 7]), lambda: LLAMACPP_LIKE)
    # shorter; as long, another pending token; the same last token after other text
    for other in ([4, 5], [9, 9, 9, 9], [5, 5, 3, 7, 7]):
        state = drafter.new_state()
        drafter.propose(_context([1, 2, 3]), state)
        drafter.learn(other, state)
        assert (state.pending, state.latest, state.previous_right) == ([], None, None)
        assert all(not counts.tried for counts in state.counts.values())


class _Slot:
    def __init__(self, key, ids):
        self.key, self.ids = key, ids


def test_another_document_on_the_slot_starts_its_own_counts_and_unverified_tokens_teach_nothing():
    drafter = CostAwareDrafter(_Fixed([7, 8]), lambda: LLAMACPP_LIKE)
    state = drafter.new_state()
    drafter.propose(DraftContext([1, 2, 3], 8, SamplingParams(0.0, 1.0), None, _Slot("a.py", [1, 2])), state)
    # [1, 2, 3] verified, 7 and 8 forced by a grammar ahead of the cache: not known yet
    forced = DraftContext([1, 2, 3, 7, 8], 8, SamplingParams(0.0, 1.0), None, _Slot("a.py", [1, 2]))
    drafter.propose(forced, state)
    assert all(not counts.tried for counts in state.counts.values())
    drafter.propose(DraftContext([1, 2, 3, 7, 8], 8, SamplingParams(0.0, 1.0), None, _Slot("a.py", [1, 2, 3, 7])),
                    state)
    assert _learned(state, (None, None)) == ([1, 1], [1, 1])
    drafter.propose(DraftContext([1, 2, 3, 7, 8], 8, SamplingParams(0.0, 1.0), None, _Slot("b.py", [1, 2, 3, 7])),
                    state)
    assert state.document == "b.py" and all(not counts.tried for counts in state.counts.values())
    assert drafter.shared[(None, None)].tried == [1, 1]  # what a.py taught every document stays


def test_each_class_of_evidence_keeps_its_own_rate_and_a_new_document_starts_from_the_shared_one():
    strong, weak = _Fixed([7, 8, 9, 10], evidence="long match"), _Fixed([7, 8, 9, 10], evidence="short match")
    drafter = CostAwareDrafter(strong, lambda: LLAMACPP_LIKE)
    state = drafter.new_state()
    for _ in range(6):  # the long match's proposals are right, the short match's wrong
        for inner, outcome in ((strong, [1, 2, 3, 7, 8, 9, 10]), (weak, [1, 2, 3, 0])):
            drafter.inner = inner
            state.previous_right = None  # one class each
            drafter.propose(_context([1, 2, 3]), state)
            drafter.learn(outcome, state)
    fresh = drafter.new_state()
    drafter.inner = strong
    assert drafter.propose(_context([1, 2, 3]), fresh).tokens == [7, 8, 9, 10]
    drafter.inner = weak
    assert drafter.propose(_context([1, 2, 3]), fresh).tokens == []


def test_the_draft_length_follows_the_table_of_the_next_pass():
    """Passes on idle cores are cheaper: the same learned rates verify a draft there and none on one busy core."""
    tables = {1: [1.0, 1.76, 2.48, 3.27, 3.89], 2: [1.0, 1.48, 1.9, 2.2, 2.4]}  # measured here, SmolLM2 Q4_1
    threads = [2]
    drafter = CostAwareDrafter(_Fixed([7, 8, 9, 10]), lambda: tables[threads[0]])
    state = drafter.new_state()
    for _ in range(3):  # two proposals in three right throughout, one wrong at its first token
        for outcome in ([7, 8, 9, 10], [7, 8, 9, 10], [0]):
            drafter.propose(_context([1, 2, 3]), state)
            drafter.learn([1, 2, 3] + outcome, state)
            state.previous_right = None
    assert drafter.propose(_context([1, 2, 3]), state).tokens == [7, 8, 9, 10]
    threads[0] = 1
    state.previous_right = None
    assert drafter.propose(_context([4, 5, 6]), state).tokens == []


def test_measure_pass_costs_is_relative_to_a_one_token_pass(make_engine):
    costs = measure_pass_costs(make_engine("none").verifier, 4, context=32, rounds=2)
    assert len(costs) == 4 and costs[0] == 1.0 and costs == sorted(costs)  # never cheaper for more tokens


class _RowCountRunner:
    """A runner whose logits depend on how many tokens share a pass from `threshold` rows on (as llama.cpp's
    tiled K-quant matmul from 8 rows)."""

    def __init__(self, threshold):
        self.threshold = threshold

    def new_cache(self):
        return _Cache()

    def forward(self, ids, cache, last_only=False):
        import torch

        rows = torch.stack([torch.arange(4.0) * (cache.length + i) for i in range(len(ids))])
        if len(ids) >= self.threshold:
            rows = rows + 1e-6
        cache.length += len(ids)
        return rows[-1:] if last_only else rows


class _Cache:
    length = 0

    def truncate(self, length):
        self.length = min(self.length, length)


@pytest.mark.parametrize("threshold, expected", [(8, 7), (2, 1), (100, 9)])
def test_longest_consistent_pass_stops_before_the_first_differing_length(threshold, expected):
    from specd.daemon.engine.draft_policy import longest_consistent_pass

    assert longest_consistent_pass(_RowCountRunner(threshold), 9, context=5) == expected


class _ClockedRunner:
    """A runner on a fake clock: a pass over n tokens takes `step * costs[n - 1]` seconds of it, plus `burst`
    seconds while a burst lasts (other programs' work: `burst_passes` more passes, or only passes over
    `burst_sizes` tokens). `sequences` free caches at most; pass threads as a LlamaCppRunner's."""

    def __init__(self, costs, step=0.01, sequences=1):
        self.costs, self.step, self.clock = costs, step, 0.0
        self.burst, self.burst_passes, self.burst_sizes = 0.0, 0, None
        self.passes, self.free, self.pinned = 0, sequences, []
        self.pass_thread_choices, self.idle_threads, self.threads_costs = (1,), 1, {}
        self.fixed, self.steps_follow_passes, self.steps_may_follow_passes = None, False, False

    def new_cache(self):
        if not self.free:
            raise RuntimeError("all 1 llama.cpp sequences are in use (raise cache_slots)")
        self.free -= 1
        return _Cache()

    def forward(self, ids, cache, last_only=False):
        n = len(ids)
        costs = self.threads_costs.get(self.pinned[-1] if self.pinned else None, self.costs)
        self.clock += self.step * costs[min(n, len(costs)) - 1]
        if self.burst_passes and (self.burst_sizes is None or n in self.burst_sizes):
            self.clock += self.burst
            self.burst_passes -= 1
        self.passes += 1
        cache.length += n
        return None

    def pin_pass_threads(self, threads):
        self.pinned.append(threads)

    def pass_threads(self):
        """The most threads while other programs leave the cores idle (`idle_threads`), else one."""
        return max(self.pass_thread_choices) if self.idle_threads == max(self.pass_thread_choices) else 1

    def fix_pass_threads(self, threads):
        self.fixed, self.pass_thread_choices = threads, (threads,)


@pytest.fixture
def clocked(monkeypatch):
    from specd.daemon.engine import draft_policy

    runner = _ClockedRunner([1.0, 1.8, 2.4, 3.0])
    monkeypatch.setattr(draft_policy.time, "perf_counter", lambda: runner.clock)
    return runner


def test_a_burst_on_the_one_token_passes_does_not_make_longer_passes_look_cheap(clocked):
    """A trial's one-thread table put a 2-token pass at 1.30 steps (quiet: 1.85): a burst had slowed the 1-token
    passes of most rounds, and the median kept it. The fastest pass of each length is kept instead."""
    clocked.burst, clocked.burst_passes, clocked.burst_sizes = 0.02, 4, {1}  # 4 of the 5 rounds' 1-token passes
    assert measure_pass_costs(clocked, 4, context=8) == pytest.approx([1.0, 1.8, 2.4, 3.0])


def test_costs_measured_while_busy_are_corrected_by_a_measurement_while_idle(clocked):
    from specd.daemon.engine.draft_policy import PROBE_CONTEXT, REMEASURE_SPACING, PassCosts, filled_cache

    reports = []
    costs = PassCosts(clocked, 4, report=reports.append)
    clocked.free = 2
    clocked.burst, clocked.burst_passes, clocked.burst_sizes = 0.5, 10**6, {2, 3, 4}  # busy throughout the load
    costs.measure(1, filled_cache(clocked, PROBE_CONTEXT, 4))
    assert costs() == pytest.approx([1.0, 51.8, 52.4, 53.0])  # drafting would stay off
    clocked.burst_passes = 0  # the other programs are done
    assert costs.remeasure(lambda: False) == REMEASURE_SPACING
    assert costs() == pytest.approx([1.0, 1.8, 2.4, 3.0])
    assert reports == ["llama.cpp pass costs measured again while idle, relative to one token: "
                       "1 thread(s): 1.00 1.80 2.40 3.00"]
    assert clocked.pinned == [1, None, 1, None]  # pinned while measured, chosen per pass again after


def test_a_remeasure_stops_before_the_next_pass_once_a_request_waits(clocked):
    from specd.daemon.engine.draft_policy import PREFILL_CHUNK, PROBE_CONTEXT, REMEASURE_SPACING, PassCosts, filled_cache

    costs = PassCosts(clocked, 4)
    costs.measure(1, filled_cache(clocked, PROBE_CONTEXT, 4))
    clocked.free = 1
    before = clocked.passes
    waiting = iter([False] * (PROBE_CONTEXT // PREFILL_CHUNK + 3) + [True])
    assert costs.remeasure(lambda: next(waiting)) == REMEASURE_SPACING  # not counted: measured again later
    assert clocked.passes - before == PROBE_CONTEXT // PREFILL_CHUNK + 3  # the probe's prefill, then three passes
    assert costs.remeasured == 0 and clocked.pinned[-1] is None


def test_remeasures_wait_for_a_free_sequence_and_end_after_REMEASURES(clocked):
    from specd.daemon.engine.draft_policy import PROBE_CONTEXT, REMEASURE_SPACING, REMEASURES, PassCosts, filled_cache

    costs = PassCosts(clocked, 4)
    filled = filled_cache(clocked, PROBE_CONTEXT, 4)  # the one sequence holds a document
    costs.measure(1, filled)
    before = clocked.passes
    assert costs.remeasure(lambda: False) == REMEASURE_SPACING and clocked.passes == before
    clocked.free = REMEASURES
    waits = [costs.remeasure(lambda: False) for _ in range(REMEASURES + 1)]
    assert waits == [REMEASURE_SPACING * 2**i for i in range(REMEASURES - 1)] + [None, None]


@pytest.mark.parametrize("two_thread_costs, kept", [([1.0, 1.5, 1.9, 2.2], (1, 2)), ([1.0, 1.8, 2.4, 2.9], (1,))])
def test_passes_on_more_threads_are_measured_only_while_other_programs_leave_the_cores_idle(clocked, two_thread_costs,
                                                                                          kept):
    """On busy cores every pass on two threads stalls on thread barriers (a minute of loading in a trial), and the
    table would hold only until the cores are idle again: it waits for them, priced as on one thread meanwhile;
    measured then, the hyperthread rule applies as at load."""
    from specd.daemon.engine.draft_policy import PROBE_CONTEXT, REMEASURE_SPACING, PassCosts, filled_cache

    clocked.pass_thread_choices, clocked.idle_threads, clocked.free = (1, 2), 1, 3
    clocked.threads_costs = {2: two_thread_costs}
    costs = PassCosts(clocked, 4)
    assert costs.measure_now(filled_cache(clocked, PROBE_CONTEXT, 4)) is False
    assert clocked.pinned == [1, None] and costs.tables == {1: pytest.approx([1.0, 1.8, 2.4, 3.0])} | {
        2: pytest.approx([1.0, 1.8, 2.4, 3.0])}
    assert costs.measured_tables[2] is None and "2 thread(s): not measured" in costs.describe()
    before = clocked.passes
    assert costs.remeasure(lambda: False) == REMEASURE_SPACING and clocked.passes == before  # still busy: no pass
    clocked.idle_threads = 2
    assert costs.remeasure(lambda: False) == REMEASURE_SPACING and costs.remeasured == 1
    assert tuple(costs.tables) == kept and clocked.fixed == (1 if kept == (1,) else None)
    assert costs.table(kept[-1]) == pytest.approx(two_thread_costs if kept == (1, 2) else [1.0, 1.8, 2.4, 3.0])


def test_a_remeasure_stops_during_its_prefill_once_a_request_waits(clocked):
    from specd.daemon.engine.draft_policy import PROBE_CONTEXT, REMEASURE_SPACING, PassCosts, filled_cache

    costs = PassCosts(clocked, 4)
    costs.measure(1, filled_cache(clocked, PROBE_CONTEXT, 4))
    clocked.free, before = 1, clocked.passes
    waiting = iter([False, True])
    assert costs.remeasure(lambda: next(waiting)) == REMEASURE_SPACING
    assert clocked.passes - before == 1  # one chunk of the prefill
