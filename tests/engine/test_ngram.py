"""What the n-gram drafter proposes: the continuation of the longest match whose context matches the most (the latest
among equals), short after weak matches."""

import random

import numpy as np

from specd.daemon.engine.drafters.base import DraftContext
from specd.daemon.engine.drafters.ngram import (CANDIDATES, MATCH_CLASSES, SELECTION_MATCH, NgramDrafter,
                                                _best_continuation)
from specd.daemon.engine.sampling import SamplingParams


def propose(ids, max_tokens=8, sources=(), **options):
    context = DraftContext(list(ids), max_tokens, SamplingParams(0.0, 1.0), None, None, [list(s) for s in sources])
    return NgramDrafter(**options).propose(context, None).tokens


def test_longest_match_wins_and_the_latest_occurrence_of_it():
    # "1 2" last ended in 9 ..., but "0 1 2" (longer) continues with 3 4 5.
    ids = [0, 1, 2, 3, 4, 5, 7, 1, 2, 9, 9, 8, 0, 1, 2]
    assert propose(ids) == [3, 4, 5, 7, 1, 2, 9, 9]
    assert propose([5, 1, 2, 6, 6, 1, 2, 7, 7, 7, 1, 2], max_tokens=3) == [7, 7, 7]


def test_among_occurrences_the_one_whose_context_matches_more_wins():
    # "5 6 7 8" occurs twice: after "1 2 3 4" (like the end of ids) and, later, after "0 0 0 0".
    ids = [1, 2, 3, 4, 5, 6, 7, 8, 40, 41, 9, 0, 0, 0, 0, 5, 6, 7, 8, 50, 51, 9, 1, 2, 3, 4, 5, 6, 7, 8]
    assert propose(ids, max_tokens=2) == [40, 41]
    assert evidence(ids) == (8, 2)  # 8 tokens matched (the 4-gram and 4 before it); the occurrences disagree
    # Equal contexts: the latest occurrence.
    ids = [0, 5, 6, 7, 8, 40, 41, 0, 5, 6, 7, 8, 50, 51, 0, 5, 6, 7, 8]
    assert propose(ids, max_tokens=2) == [50, 51]
    # A match longer than SELECTION_MATCH counts as equal to another that long: the latest wins.
    run = list(range(100, 140))
    assert propose(run + [1] + run + [2] + run, max_tokens=1) == [2]


def test_a_single_token_match_proposes_one_token_unless_told_otherwise():
    ids = [4, 10, 11, 12, 13, 5, 4]
    assert propose(ids) == [10]
    assert propose(ids, unigram_tokens=3) == [10, 11, 12]
    assert propose(ids, min_ngram=2) == []


def test_other_sources_are_searched_when_the_sequence_has_no_match():
    assert propose([1, 2, 3], sources=[[7, 2, 3, 8, 9]]) == [8, 9]
    assert propose([1, 2, 3], sources=[[7, 2, 3, 8, 9]], max_tokens=1) == [8]


def evidence(ids, sources=()):
    context = DraftContext(list(ids), 8, SamplingParams(0.0, 1.0), None, None, [list(s) for s in sources])
    return NgramDrafter().propose(context, None).evidence


def test_a_draft_tells_how_long_its_match_is_and_whether_earlier_occurrences_agreed():
    run = list(range(20, 40))
    # The 4-gram 36..39 matches, and the match goes on back through all 16 tokens before it.
    assert evidence(run + [99] + run[:-1] + [39])[0] == 16
    assert evidence([5, 20, 21, 22, 23, 24, 6, 21, 22, 23, 24]) == (4, 0)  # 4 tokens, then 20 against 6
    assert evidence([1, 2, 3, 8, 7, 2, 3]) == (2, 0)  # a 2-gram, one occurrence
    assert evidence([2, 3, 8, 2, 3, 8, 9, 2, 3]) == (2, 1)  # both earlier 2 3 were followed by 8
    assert evidence([2, 3, 8, 2, 3, 5, 9, 2, 3]) == (2, 2)  # one by 8, one by 5
    assert evidence([1, 2, 3], sources=[[7, 2, 3, 8, 9]]) == (2, 0)  # counted against the sequence
    assert evidence([1, 2, 3]) is None  # no match, no draft


def _continuation_by_hand(tokens, pattern, limit, context):
    """_best_continuation's documented choice, written out one occurrence at a time."""
    n, tokens, context = len(pattern), list(tokens), list(context)
    starts = [i for i in range(len(tokens) - n) if tokens[i : i + n] == list(pattern)]
    if not starts:
        return [], None

    def matched_before(i):
        count = 0
        while (count < min(SELECTION_MATCH, len(context)) - n and i - 1 - count >= 0
               and tokens[i - 1 - count] == context[-n - 1 - count]):
            count += 1
        return count

    best = max(starts[-CANDIDATES:], key=lambda i: (matched_before(i), i))
    followers = {tokens[i + n] for i in starts}
    agreement = 0 if len(starts) == 1 else 1 if len(followers) == 1 else 2
    length_class = max(c for c in MATCH_CLASSES if c <= n + matched_before(best))
    return tokens[best + n : best + n + limit], (length_class, agreement)


def test_the_vectorized_lookup_makes_the_choice_written_out_by_hand():
    rng = random.Random(3)
    for _ in range(1500):
        vocabulary = rng.choice([2, 3, 6, 40])
        sequence = np.array([rng.randrange(vocabulary) for _ in range(rng.choice([1, 2, 4, 9, 60, 400]))])
        other = np.array([rng.randrange(vocabulary) for _ in range(rng.choice([0, 1, 7, 80]))])
        for n in range(1, min(4, len(sequence)) + 1):
            for source in (sequence, other):
                by_hand = _continuation_by_hand(source, sequence[-n:], 6, sequence)
                assert _best_continuation(source, sequence[-n:], 6, sequence) == by_hand


def test_a_proposal_is_the_longest_n_gram_of_the_first_source_that_has_it_as_written_out_by_hand():
    """The drafter scans each source once for every n-gram length; the choice stays the one tried length by length,
    longest first, the sequence before the other sources."""
    rng = random.Random(5)
    for _ in range(1500):
        vocabulary = rng.choice([2, 3, 6, 40])
        ids = [rng.randrange(vocabulary) for _ in range(rng.choice([1, 2, 3, 5, 9, 60, 300]))]
        sources = [[rng.randrange(vocabulary) for _ in range(rng.choice([0, 1, 4, 30]))]
                   for _ in range(rng.choice([0, 1, 3]))]
        options = rng.choice([{}, {"min_ngram": 2}, {"max_ngram": 6, "unigram_tokens": 4}])
        max_tokens = rng.choice([1, 5, 8])
        expected = [], None
        for n in range(options.get("max_ngram", 4), options.get("min_ngram", 1) - 1, -1):
            limit = max_tokens if n > 1 else min(max_tokens, options.get("unigram_tokens", 1))
            for source in [ids] + sources if len(ids) > n else []:
                expected = _continuation_by_hand(source, ids[-n:], limit, ids)
                if expected[0]:
                    break
            if expected[0]:
                break
        context = DraftContext(list(ids), max_tokens, SamplingParams(0.0, 1.0), None, None, sources)
        draft = NgramDrafter(**options).propose(context, None)
        assert (draft.tokens, draft.evidence if draft.tokens else None) == (expected[0], expected[1] if expected[0]
                                                                           else None)
