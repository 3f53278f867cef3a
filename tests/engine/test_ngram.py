"""What the n-gram drafter proposes: the latest continuation of the longest match, short after weak matches."""

from specd.daemon.engine.drafters.base import DraftContext
from specd.daemon.engine.drafters.ngram import NgramDrafter
from specd.daemon.engine.sampling import SamplingParams


def propose(ids, max_tokens=8, sources=(), **options):
    context = DraftContext(list(ids), max_tokens, SamplingParams(0.0, 1.0), None, None, [list(s) for s in sources])
    return NgramDrafter(**options).propose(context, None).tokens


def test_longest_match_wins_and_the_latest_occurrence_of_it():
    # "1 2" last ended in 9 ..., but "0 1 2" (longer) continues with 3 4 5.
    ids = [0, 1, 2, 3, 4, 5, 7, 1, 2, 9, 9, 8, 0, 1, 2]
    assert propose(ids) == [3, 4, 5, 7, 1, 2, 9, 9]
    assert propose([5, 1, 2, 6, 6, 1, 2, 7, 7, 7, 1, 2], max_tokens=3) == [7, 7, 7]


def test_a_single_token_match_proposes_one_token_unless_told_otherwise():
    ids = [4, 10, 11, 12, 13, 5, 4]
    assert propose(ids) == [10]
    assert propose(ids, unigram_tokens=3) == [10, 11, 12]
    assert propose(ids, min_ngram=2) == []


def test_other_sources_are_searched_when_the_sequence_has_no_match():
    assert propose([1, 2, 3], sources=[[7, 2, 3, 8, 9]]) == [8, 9]
    assert propose([1, 2, 3], sources=[[7, 2, 3, 8, 9]], max_tokens=1) == [8]
