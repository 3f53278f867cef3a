"""Token healing's parts: the bytes of every token, the roll-back rule, and the masks of the constraint."""

import pytest
import torch

from fixtures.tiny_models import build_sentencepiece_tokenizer, build_tokenizer
from specd.daemon.engine.token_healing import (Constraint, Vocabulary, cut_mid_token, heal_prompt, token_pieces,
                                               vocabulary)

@pytest.fixture(scope="module", params=["byte-level", "sentencepiece", "sentencepiece-legacy"])
def tokenizer(request):
    if request.param == "byte-level":
        return build_tokenizer()
    return build_sentencepiece_tokenizer(("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"),
                                         legacy=request.param.endswith("legacy"))


def _model_views(tokenizer, text: str) -> set[bytes]:
    """The text as the model may see it: SentencePiece tokenizers put a space in front (Metaspace's scheme
    `first` only when the text does not start with one)."""
    spaced = tokenizer.convert_ids_to_tokens(tokenizer("a", add_special_tokens=False)["input_ids"])[0][0] == "▁"
    return {text.encode(), b" " + text.encode()} if spaced else {text.encode()}


@pytest.mark.parametrize("text", ["    return n * f", "def area(width, height):\n    ", "x = 1\r\n\ty = 2",
                                  "s = 'caf\u00e9 \u263a'"])
def test_pieces_spell_the_encoded_text(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(tokenizer)
    if tokenizer.unk_token_id in ids:  # the tiny SentencePiece vocabulary lacks tabs, CR and accents
        assert pieces[tokenizer.unk_token_id] is None
        return
    assert b"".join(pieces[i] for i in ids) in _model_views(tokenizer, text)


def test_byte_level_pieces_may_hold_half_a_character():
    tokenizer = build_tokenizer()
    pieces = token_pieces(tokenizer)
    ids = tokenizer("caf\u00e9", add_special_tokens=False)["input_ids"]
    assert [pieces[i] for i in ids][-2:] == [b"\xc3", b"\xa9"]  # é, split over two tokens by the tiny vocabulary


def test_special_tokens_have_no_piece(tokenizer):
    pieces = token_pieces(tokenizer)
    assert all(pieces[i] is None for i in tokenizer.all_special_ids)


def _brute_force_allowed(pieces, remaining):
    def more_blank(p):  # typed spaces and tabs are final: no token may add another right after them
        return remaining[-1:] in (b" ", b"\t") and p[len(remaining) : len(remaining) + 1] in (b" ", b"\t")

    return {i for i, p in enumerate(pieces)
            if p and ((p.startswith(remaining) and not more_blank(p)) or remaining.startswith(p))}


@pytest.mark.parametrize("remaining", [b" ", b"    ", b"\n    ", b"\t", b"\n\t", b"\r\n", b"\xc3\xa9", b"return", b" f",
                                       b"return width * height(n)" * 3])
def test_mask_is_exactly_the_tokens_that_agree(tokenizer, remaining):
    vocab = vocabulary(tokenizer)
    mask = vocab.allowed(remaining, vocab.size + 3, "cpu")  # the model's head may have padding rows
    assert set(torch.nonzero(mask).flatten().tolist()) == _brute_force_allowed(vocab.pieces, remaining)
    assert not mask[vocab.size:].any()


def test_vocabulary_is_built_once_per_tokenizer(tokenizer):
    assert vocabulary(tokenizer) is vocabulary(tokenizer)


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_a_word_cut_at_the_cursor_is_backed_up_to_a_token_that_can_extend_it():
    tokenizer = build_tokenizer()
    vocab = vocabulary(tokenizer)
    ids = _ids(tokenizer, "    return n * f")
    healing = heal_prompt(vocab, ids)
    assert healing.removed == b" f" and healing.prompt_ids == ids[:-1] and healing.removed_ids == ids[-1:]
    assert len(vocab.starting_with(b" f")) > 1  # " f" is one of several tokens that begin so


def test_a_prompt_ending_in_punctuation_is_not_healed(tokenizer):
    vocab = vocabulary(tokenizer)
    for text in ("def fib(n):", "x = foo(1, 2)", "result = compute(", "os.path.", "items = [", "a = 'x'"):
        ids = _ids(tokenizer, text)
        assert heal_prompt(vocab, ids).prompt_ids == ids, text
    assert heal_prompt(vocab, _ids(tokenizer, "    return n * fac")).removed  # a word: healed
    for end in (b"fac", b"x1", b"_", b"    ", b"\t", b"\n", "\u00e9".encode()):
        assert cut_mid_token(end), end
    for end in (b"(", b"):", b".", b"'", b""):
        assert not cut_mid_token(end), end


def test_roll_back_never_crosses_a_special_token_nor_empties_the_prompt():
    tokenizer = build_tokenizer()
    vocab = vocabulary(tokenizer)
    middle = tokenizer.convert_tokens_to_ids("<fim_middle>")
    ids = [middle] + _ids(tokenizer, "    ")
    healing = heal_prompt(vocab, ids)
    assert healing.prompt_ids == [middle] and healing.removed == b"    "
    assert heal_prompt(vocab, ids[:1]).removed == b""  # the prompt ends in a marker: nothing to heal
    alone = _ids(tokenizer, "re")
    assert heal_prompt(vocab, alone).prompt_ids  # at least one token stays


def test_removed_text_starts_at_a_character_boundary_and_fits_a_token():
    tokenizer = build_tokenizer()
    vocab = vocabulary(tokenizer)
    text = "name = 'caf\u00e9 na\u00efve \u263a \U0001d518'  # \u00e9t\u00e9\n    total += "
    healed = 0
    for cut in range(2, len(text) + 1):
        healing = heal_prompt(vocab, _ids(tokenizer, text[:cut]))
        if healing.removed:
            healed += 1
            healing.removed.decode("utf-8")  # a whole number of characters
            assert vocab.any_starting_with(healing.removed) and len(healing.removed) <= vocab.longest
            assert b"".join(vocab.pieces[i] for i in healing.prompt_ids) + healing.removed == text[:cut].encode()
    assert healed > len(text) // 2


def test_roll_back_takes_as_many_tokens_as_one_token_could_replace():
    vocab = Vocabulary([None, b"x", b"a", b"b", b"ab", b"abc", b" ", b" ab"])
    assert heal_prompt(vocab, [1, 6, 2, 3]).removed == b" ab"  # " ", "a", "b": " ab" is a token
    assert heal_prompt(vocab, [1, 4, 4]).removed == b"ab"  # "abab" is longer than any token
    assert heal_prompt(vocab, [1, 5]).removed == b""  # only "abc" itself starts with "abc": nothing to heal
    assert heal_prompt(vocab, [0, 2]).prompt_ids == [0]  # a special token before stays


def test_a_constraint_longer_than_any_token_takes_several_steps():
    vocab = Vocabulary([None, b"a", b"b", b"c", b"ab", b"abc", b"ca", b"cab", b"x"])
    constraint = Constraint(vocab, b"abcabcab")  # longer than every token
    width = vocab.size
    assert set(torch.nonzero(vocab.allowed(b"abcabcab", width, "cpu")).flatten().tolist()) == {1, 4, 5}
    constraint.advance(5)  # "abc"
    assert constraint.remaining == b"abcab"
    constraint.advance(4)  # "ab"
    assert constraint.remaining == b"cab"
    assert set(torch.nonzero(vocab.allowed(b"cab", width, "cpu")).flatten().tolist()) == {3, 6, 7}
    with pytest.raises(ValueError):
        constraint.advance(8)
    constraint.advance(7)  # "cab" ends it
    assert (constraint.remaining, constraint.guard) == (b"", False) and constraint.after((b"", False), 8) == (b"", False)


def test_masks_follow_the_draft_and_stop_at_a_token_that_breaks_the_constraint():
    vocab = Vocabulary([None, b"a", b"b", b"c", b"ab", b"abc", b"ca", b"cab", b"x"])
    constraint = Constraint(vocab, b"abcab")
    logits = torch.zeros(4, vocab.size)
    masked = constraint.mask_logits(logits, [1, 2, 8])  # "a", "b" agree; "x" breaks it
    allowed = [set(torch.nonzero(row > float("-inf")).flatten().tolist()) for row in masked]
    assert allowed[0] == {1, 4, 5} and allowed[1] == {2} and allowed[2] == {3, 6, 7}
    assert allowed[3] == set(range(vocab.size))  # after "x": never used, left alone
    assert constraint.agreeing_prefix([1, 2, 8, 1]) == 2 and constraint.agreeing_prefix([5, 4, 8]) == 3
    assert torch.equal(logits, torch.zeros(4, vocab.size))  # the input is not modified
    done = Constraint(vocab, b"")
    assert done.mask_logits(logits) is logits


def test_typed_spaces_and_tabs_are_final():
    vocab = Vocabulary([None, b" ", b"  ", b"    ", b"     ", b"    x", b"\t", b"\t\t", b"\tx", b" x", b"x"])
    allowed = lambda remaining: set(torch.nonzero(vocab.allowed(remaining, vocab.size, "cpu")).flatten().tolist())  # noqa: E731
    assert allowed(b"    ") == {1, 2, 3, 5}  # not "     ": a fifth space
    assert allowed(b"\t") == {6, 8}  # not a second tab
    assert allowed(b"  ") == {1, 2}
    constraint = Constraint(vocab, b"    ")
    assert constraint.guard
    assert constraint.after((b"    ", True), 4) is None and constraint.after((b"    ", True), 5) == (b"", False)
    assert constraint.after((b"  ", True), 1) == (b" ", True)
    # Written to its end, the typed indentation is still final: the next token may not begin with a blank.
    assert constraint.after((b"  ", True), 2) == (b"", True)
    assert constraint.after((b"", True), 9) is None and constraint.after((b"", True), 0) == (b"", False)
    assert allowed(b"") == {0, 10}  # "x", and the special token (the answer may end there)
    assert constraint.agreeing_prefix([2, 2, 4]) == 2 and constraint.agreeing_prefix([2, 2, 9]) == 2
    assert constraint.agreeing_prefix([3, 5]) == 1 and constraint.agreeing_prefix([3, 10, 4]) == 3
    assert constraint.agreeing_prefix([3, 0, 4]) == 3
    masked = constraint.mask_logits(torch.zeros(3, vocab.size), [2, 2])
    rows = [set(torch.nonzero(row > float("-inf")).flatten().tolist()) for row in masked]
    assert rows == [{1, 2, 3, 5}, {1, 2}, {0, 10}]

