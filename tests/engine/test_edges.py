"""Issue 11's edges at the engine: a completion never holds part of a character, whatever ends it, and a cursor
at the very start of a file is completed from the model's start token."""

from __future__ import annotations

import pytest

from fixtures.tiny_models import _training_text, build_tokenizer, write_tiny_llama
from specd.daemon.engine.fim import decode_anchor
from specd.daemon.engine.loop import EngineConfig
from specd.daemon.engine.requests import CancelToken, GenerationRequest
from specd.daemon.engine.stopping import StopRules, StopState
from specd.daemon.models.loading import load_engine

TEXT = "x = '😀é'"
# What may be shown after each token of TEXT: a character appears once all of its bytes are in.
WHOLE = {
    # 'x', 'Ġ=', "Ġ'", then 😀 as 'ð' 'Ł' 'ĺ' 'Ģ', é as 'Ã' '©', "'"
    "byte-level BPE": ["x", "x =", "x = '", "x = '", "x = '", "x = '", "x = '😀", "x = '😀", "x = '😀é", "x = '😀é'"],
    # '▁', 'x', '▁=', "▁'", then <0xF0> <0x9F> <0x98> <0x80>, <0xC3> <0xA9>, "'" (the text's own leading space
    # is kept, as a completion keeps the space of its first token)
    "SentencePiece byte fallback": [" ", " x", " x =", " x = '", " x = '", " x = '", " x = '", " x = '😀",
                                    " x = '😀", " x = '😀é", " x = '😀é'"],
}
EMOJI_PROMPTS = ["s = '😀😀😀😀", "# 中文中文中文\n", "é", "😀", "name = 'Zoë ✓ 中"]


def byte_fallback_tokenizer():
    """A Llama-style SentencePiece tokenizer with byte fallback: a character outside the vocabulary is written as
    one `<0xNN>` token per byte (how CodeLlama, Llama 2 and Gemma write emoji)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")])
    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    tok.train_from_iterator(_training_text(), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<s>", "</s>", *byte_pieces], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


@pytest.fixture(scope="module", params=list(WHOLE))
def splitting_tokenizer(request):
    tokenizer = build_tokenizer() if request.param == "byte-level BPE" else byte_fallback_tokenizer()
    tokenizer.kind = request.param
    return tokenizer


def feed(tokenizer, ids, **rules):
    state = StopState(StopRules(eos_ids=frozenset(), **{"max_tokens": 99, **rules}), tokenizer,
                      tuple(decode_anchor(tokenizer)))
    shown, streamed = [], []
    for token in ids:
        done = state.add(token)
        shown.append(state.text)
        if done:
            break
        streamed.append(state.stable_delta())
    return state, shown, streamed


def test_a_character_split_over_tokens_appears_only_whole(splitting_tokenizer):
    ids = splitting_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    state, shown, streamed = feed(splitting_tokenizer, ids)
    assert shown == WHOLE[splitting_tokenizer.kind]
    assert "".join(streamed) == shown[-1]


@pytest.mark.parametrize("limit", range(1, 10))
def test_the_token_limit_never_cuts_a_character(splitting_tokenizer, limit):
    ids = splitting_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    state, shown, streamed = feed(splitting_tokenizer, ids, max_tokens=limit)
    assert state.finish_reason == "length"
    assert "\ufffd" not in state.text
    assert "".join(streamed) + state.stable_delta() == state.text  # what streamed, plus the flush at the end


def test_a_stop_string_or_a_cancel_mid_character_leaves_whole_characters():
    tokenizer = build_tokenizer()
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    state, _, _ = feed(tokenizer, ids, stop=("é",))
    assert (state.text, state.finish_reason) == ("x = '😀", "stop")
    state, _, streamed = feed(tokenizer, ids[:5])  # cancelled after 2 of the emoji's 4 bytes
    state.finish_reason = "cancelled"
    assert state.text == "".join(streamed) + state.stable_delta() == "x = '"


@pytest.fixture(scope="module")
def tiny_engine(tiny_pair):
    return load_engine(EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="ngram"), progress=lambda m: None)


def test_engine_answers_never_hold_part_of_a_character(tiny_engine):
    """The tiny random model writes bytes of split characters everywhere: every answer, streamed or not, and
    however it ends, is whole characters."""
    seen = 0
    for prompt in EMOJI_PROMPTS:
        for limit in range(1, 13):
            deltas: list[str] = []
            result = tiny_engine.generate(GenerationRequest(prompt=prompt, max_tokens=limit), on_text=deltas.append)
            assert "\ufffd" not in result.text, (prompt, limit, result.text)
            assert "".join(deltas) == result.text
            raw = tiny_engine.tokenizer.decode(result.token_ids)
            seen += "\ufffd" in raw
    assert seen, "no answer cut a character: the test would not see the fault"


def test_engine_cancelled_mid_character_answers_whole_characters(tiny_engine):
    for prompt in EMOJI_PROMPTS:
        cancel = CancelToken()
        result = tiny_engine.generate(GenerationRequest(prompt=prompt, max_tokens=40), cancel,
                                      on_text=lambda delta: cancel.cancel())
        assert result.finish_reason in ("cancelled", "stop", "length")
        assert "\ufffd" not in result.text


@pytest.fixture(scope="module")
def plain_engine(tmp_path_factory):
    folder = write_tiny_llama(tmp_path_factory.mktemp("plain"), fim=False, layers=2)
    return load_engine(EngineConfig(verifier=str(folder), draft_strategy="ngram"), progress=lambda m: None)


@pytest.mark.parametrize("suffix, fit_context", [("import os\n", True), (None, False), ("", False)])
def test_start_of_file_generates_from_the_start_token(plain_engine, suffix, fit_context):
    assert plain_engine.fim_template is None  # the prefix is all the model sees, and it is empty
    result = plain_engine.generate(GenerationRequest(prompt="", suffix=suffix, max_tokens=4, fit_context=fit_context))
    assert result.stats.prompt_tokens == 1
    assert result.finish_reason in ("stop", "length")


@pytest.mark.parametrize("knob", [{"temperature": True}, {"top_p": True}, {"draft_tokens": True},
                                  {"max_tokens": False}])
def test_a_boolean_is_no_number_for_the_engine(plain_engine, knob):
    """JSON's true is Python's 1: a client's `temperature: true` must not sample at temperature 1."""
    from specd.daemon.engine.requests import RequestError

    with pytest.raises(RequestError, match=next(iter(knob))):
        plain_engine.generate(GenerationRequest(prompt="x = ", **{"max_tokens": 2, **knob}))


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from fixtures.embedded import embedded_home

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path_factory.mktemp("home"))))
        yield load_engine(EngineConfig(verifier="smollm2-135m", backend="torch"), progress=lambda message: None)


@pytest.mark.slow
def test_smollm2_writes_an_emoji_as_three_tokens_and_shows_it_whole(smollm2):
    prompt = "happy = '😀'\nsad = '"  # SmolLM2 continues with 😀 as 'ðŁ' 'ĺ' 'Ģ', then "'"
    answers = []
    for limit in range(1, 5):
        deltas: list[str] = []
        request = GenerationRequest(prompt=prompt, max_tokens=limit, token_healing=False)  # the prompt as typed
        result = smollm2.generate(request, on_text=deltas.append)
        assert "".join(deltas) == result.text
        answers.append(result.text)
    assert answers == ["", "", "😀", "😀'"]
    first = smollm2.generate(GenerationRequest(prompt=prompt, max_tokens=1, token_healing=False))
    assert smollm2.tokenizer.decode(first.token_ids) == "\ufffd"


@pytest.mark.slow
def test_smollm2_completes_at_the_start_of_a_file(smollm2):
    assert smollm2.fim_template is None and smollm2.start_ids == [smollm2.tokenizer.bos_token_id]
    result = smollm2.generate(GenerationRequest(prompt="", suffix="import os\n", max_tokens=4, fit_context=True))
    assert result.stats.prompt_tokens == 1 and result.stats.completion_tokens > 0


@pytest.mark.parametrize("temperature, top_p", [(1e-300, 1.0), (2.0, 1e-300), (1e-3, 1e-300)])
def test_extreme_sampling_settings_pick_the_most_likely_token(temperature, top_p):
    """A temperature or top_p below float32's range used to give NaN probabilities (a 500)."""
    import torch

    from specd.daemon.engine.sampling import PositionNoise, SamplingParams, pick_token

    logits = torch.randn(512, generator=torch.Generator().manual_seed(0))
    logits[100:] = float("-inf")  # masked tokens (token healing) stay impossible
    assert pick_token(logits, SamplingParams(temperature, top_p), PositionNoise(1), 7) == logits.argmax()


class OpaqueByteTokenizer:
    """Decodes ids as bytes but tells nothing else (no vocabulary to read bytes from): the decoded text is all
    StopState has, as with a tokenizer whose decoding does more than join bytes."""

    def decode(self, ids, skip_special_tokens=False):
        return bytes(ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize("limit", range(1, 8))
def test_without_token_bytes_no_end_leaves_half_a_character(limit):
    data = "x😀é".encode()
    state = StopState(StopRules(eos_ids=frozenset(), max_tokens=limit), OpaqueByteTokenizer())
    assert state._read is None
    streamed = []
    for byte in data:
        if state.add(byte):
            break
        streamed.append(state.stable_delta())
    assert state.text == "x😀é"[: len(data[:limit].decode("utf-8", "ignore"))]
    assert "".join(streamed) + state.stable_delta() == state.text
