"""Prefix reuse, cancellation, refusals and stop rules of the engine."""

import threading

import pytest

from specd.daemon.engine.loop import (WARM_UP_CHUNK, CancelToken, Engine, EngineConfig, GenerationRequest,
                                      RequestError)

from specd.daemon.engine.repo_context import commented
from specd.daemon.engine.requests import ContextFile
from specd.daemon.models.loading import load_engine
from specd.daemon.models.tokenizer_compat import IncompatibleModels


def test_cache_reuse_gives_the_cold_start_tokens(make_engine, code_prompts):
    """Keystroke by keystroke the prompt grows; every cached answer equals a cold start's."""
    engine = make_engine("ngram")
    prefix, suffix = code_prompts[3]
    reused = 0
    for typed in range(0, 12, 3):
        request = GenerationRequest(prompt=prefix + "x = fo"[: typed // 2], suffix=suffix, max_tokens=16,
                                    cache_key="doc")
        warm = engine.generate(request)
        reused += warm.stats.cached_tokens
        cold_engine = make_engine("ngram")  # the same engine with every cache dropped
        cold = cold_engine.generate(request)
        assert cold.stats.cached_tokens == 0
        assert warm.token_ids == cold.token_ids
        # make_engine cleared the pool: put the document's cache back for the next keystroke
        engine.generate(request)
    assert reused > 0


def test_keystroke_prefills_only_the_new_tokens(make_engine, code_prompts):
    engine = make_engine("ngram")
    prefix, suffix = code_prompts[0]
    first = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=4, cache_key="doc"))
    second = engine.generate(GenerationRequest(prompt=prefix + "ab", suffix=suffix, max_tokens=4, cache_key="doc"))
    assert second.stats.cached_tokens >= first.stats.prompt_tokens - 3
    assert second.stats.prompt_tokens - second.stats.cached_tokens <= 4


def test_prefill_only_warms_the_document_for_the_next_keystroke(make_engine, code_prompts):
    """A warm-up reads the prompt and writes nothing; the completion after a keystroke feeds only the new tail
    and writes what a cold start writes."""
    engine = make_engine("ngram")
    prefix, suffix = code_prompts[1]
    warm_up = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=16, cache_key="doc",
                                                prefill_only=True))
    assert (warm_up.text, warm_up.token_ids, warm_up.finish_reason) == ("", [], "length")
    assert warm_up.stats.cached_tokens == 0 and warm_up.stats.prompt_tokens > 100
    assert warm_up.stats.completion_tokens == 0 and warm_up.stats.verifier_passes >= 1
    typed = GenerationRequest(prompt=prefix + "x", suffix=suffix, max_tokens=16, cache_key="doc")
    warm = engine.generate(typed)
    assert warm.stats.prompt_tokens - warm.stats.cached_tokens <= 4
    assert warm.token_ids == make_engine("ngram").generate(typed).token_ids
    again = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=16, cache_key="doc",
                                              prefill_only=True))
    assert again.stats.verifier_passes == 1  # the cache had it: only the last token is fed again


def test_a_cancelled_prefill_only_keeps_what_it_read(make_engine, code_prompts, monkeypatch):
    """Cancelled (the user typed) after its first chunk, a warm-up leaves that chunk cached for the completion."""
    engine = make_engine("ngram")
    prefix, suffix = code_prompts[2][0] * 2, code_prompts[2][1]
    token = CancelToken()
    forward = engine.verifier.forward

    def cancel_after_one_chunk(*args, **kwargs):
        token.cancel()
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.verifier, "forward", cancel_after_one_chunk)
    result = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, cache_key="doc", prefill_only=True),
                             cancel=token)
    monkeypatch.undo()
    assert result.finish_reason == "cancelled" and result.token_ids == []
    assert result.stats.prompt_tokens > WARM_UP_CHUNK and result.stats.verifier_passes == 1
    typed = GenerationRequest(prompt=prefix + "x", suffix=suffix, max_tokens=8, cache_key="doc")
    warm = engine.generate(typed)
    assert warm.stats.cached_tokens == WARM_UP_CHUNK
    assert warm.token_ids == make_engine("ngram").generate(typed).token_ids


def test_other_files_are_commented_where_the_model_has_no_file_separator(make_engine, code_prompts):
    """The tiny model has no `<file_sep>`: other files go before the prefix as commented lines headed by their path."""
    engine = make_engine("ngram")
    prefix, suffix = code_prompts[0]
    files = (ContextFile("/p/util.py", "import os\n\nX = 1"),)
    with_files = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=8, fit_context=True, context_files=files,
                                   path="/p/new.py", language="python")
    spelled = GenerationRequest(prompt="# Path: /p/util.py\n# import os\n#\n# X = 1\n" + prefix, suffix=suffix,
                                max_tokens=8, fit_context=True)
    assert engine.file_separator is None
    assert engine.prompt_ids(with_files) == engine.prompt_ids(spelled)
    assert commented(files, "lua").startswith("-- Path: /p/util.py\n-- import os\n--\n")


def test_documents_keep_separate_caches(make_engine, code_prompts):
    engine = make_engine("ngram", cache_slots=2)
    (a, sa), (b, sb) = code_prompts[0], code_prompts[1]
    engine.generate(GenerationRequest(prompt=a, suffix=sa, max_tokens=2, cache_key="a"))
    engine.generate(GenerationRequest(prompt=b, suffix=sb, max_tokens=2, cache_key="b"))
    again = engine.generate(GenerationRequest(prompt=a, suffix=sa, max_tokens=2, cache_key="a"))
    assert again.stats.cached_tokens == again.stats.prompt_tokens - 1


@pytest.mark.parametrize("strategy", ["ngram", "model"])
def test_cancellation_stops_within_a_round_and_leaves_a_usable_cache(make_engine, code_prompts, strategy):
    engine = make_engine(strategy)
    prefix, suffix = code_prompts[2]
    token = CancelToken()
    chunks = []

    def cancel_after_first_text(delta):
        chunks.append(delta)
        token.cancel()

    result = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=400, cache_key="doc"),
                             cancel=token, on_text=cancel_after_first_text)
    assert result.finish_reason == "cancelled"
    assert result.stats.verifier_passes <= 3  # prefill, the round that streamed, nothing after the cancel
    assert len(result.token_ids) < 400
    # The next request on the same document is served correctly from what the cancelled one left cached.
    warm = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=12, cache_key="doc"))
    cold = make_engine(strategy).generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=12))
    assert warm.stats.cached_tokens > 0
    assert warm.token_ids == cold.token_ids


def test_cancel_from_another_thread(make_engine, code_prompts):
    engine = make_engine("ngram")
    token = CancelToken()
    timer = threading.Timer(0.05, token.cancel)
    timer.start()
    prefix, suffix = code_prompts[1]
    result = engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=1500), cancel=token)
    timer.cancel()
    assert result.finish_reason == "cancelled"
    assert len(result.token_ids) < 1500


def test_cancelled_before_start_does_no_decoding(make_engine, code_prompts):
    engine = make_engine("ngram")
    token = CancelToken()
    token.cancel()
    result = engine.generate(GenerationRequest(prompt=code_prompts[0][0], max_tokens=50), cancel=token)
    assert result.finish_reason == "cancelled"
    assert result.token_ids == [] and result.stats.verifier_passes == 0


@pytest.mark.parametrize("field, value, message", [
    ("max_tokens", -1, "max_tokens"),
    ("max_tokens", 2.5, "max_tokens"),
    ("temperature", -0.1, "temperature"),
    ("top_p", 0.0, "top_p"),
    ("draft_tokens", -2, "draft_tokens"),
    ("mode", "paragraph", "mode"),
    ("stop", [3], "stop"),
])
def test_bad_arguments_raise_clear_errors(make_engine, field, value, message):
    engine = make_engine("ngram")
    with pytest.raises(RequestError, match=message):
        engine.generate(GenerationRequest(prompt="x = 1", **{field: value}))


def test_prompt_beyond_the_context_is_refused(make_engine):
    engine = make_engine("ngram", max_context=64)
    with pytest.raises(RequestError, match="context window is 64 tokens"):
        engine.generate(GenerationRequest(prompt="value = compute(value)\n" * 40))
    # and the engine keeps serving
    assert engine.generate(GenerationRequest(prompt="x = 1", max_tokens=3)).finish_reason in ("length", "stop")


def test_completion_is_clamped_to_the_context(make_engine):
    engine = make_engine("ngram", max_context=64)
    prompt = "a = b\n" * 8
    used = len(engine.prompt_ids(GenerationRequest(prompt=prompt)))
    result = engine.generate(GenerationRequest(prompt=prompt, max_tokens=500))
    assert len(result.token_ids) <= 64 - used


def test_zero_max_tokens_returns_nothing(make_engine):
    result = make_engine("ngram").generate(GenerationRequest(prompt="x", max_tokens=0))
    assert (result.text, result.finish_reason) == ("", "length")


def test_mismatched_tokenizer_pair_is_refused(tiny_pair, foreign_drafter):
    verifier, _ = tiny_pair
    config = EngineConfig(verifier=str(verifier), drafter=str(foreign_drafter), draft_strategy="model")
    with pytest.raises(IncompatibleModels, match="tokenizers differ at id"):
        load_engine(config, progress=lambda message: None)


def test_unknown_model_and_strategy_are_refused(tiny_pair):
    with pytest.raises(ValueError, match="unknown model"):
        load_engine(EngineConfig(verifier="no-such-model"), progress=lambda m: None)
    with pytest.raises(FileNotFoundError):
        load_engine(EngineConfig(verifier="/no/such/folder"), progress=lambda m: None)
    with pytest.raises(ValueError, match="draft_strategy"):
        load_engine(EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="telepathy"), progress=lambda m: None)
    with pytest.raises(ValueError, match="is the verifier itself"):
        load_engine(EngineConfig(verifier=str(tiny_pair[0]), drafter=str(tiny_pair[0]), draft_strategy="model"),
                    progress=lambda m: None)
    with pytest.raises(ValueError, match="needs a `drafter`"):
        load_engine(EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="model"), progress=lambda m: None)


def test_fit_context_trims_far_ends_and_keeps_the_cursor_line(make_engine):
    engine = make_engine("ngram", max_context=256)
    prefix = "".join(f"value_{i} = compute({i})\n" for i in range(200)) + "result = val"
    suffix = "\n".join(f"print(value_{i})" for i in range(200))
    with pytest.raises(RequestError):
        engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=8))
    request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=8, fit_context=True, cache_key="d",
                                token_healing=False)
    ids = engine.prompt_ids(request)
    assert len(ids) <= 256 - 8
    text = engine.tokenizer.decode(ids)
    assert text.endswith("<fim_middle>result = val") and "value_199 = compute(199)" in text
    assert "value_0 = compute(0)" not in text
    result = engine.generate(request)
    assert result.stats.prompt_tokens == len(ids)
    # The next keystroke cuts at the same place, so its prompt is served from the cache.
    again = engine.generate(GenerationRequest(**{**request.__dict__, "prompt": prefix + "u"}))
    assert again.stats.cached_tokens > len(ids) // 2


def test_sentencepiece_model_keeps_the_leading_space_of_its_completion(tmp_path, code_prompts):
    """Llama/Mistral-style tokenizers drop the space of a text's first token when decoding it alone."""
    from fixtures.tiny_models import build_sentencepiece_tokenizer, write_tiny_llama

    tokenizer = build_sentencepiece_tokenizer(("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"))
    folder = write_tiny_llama(tmp_path / "sp", tokenizer=tokenizer, layers=2)
    engine = load_engine(EngineConfig(verifier=str(folder), draft_strategy="ngram"), progress=lambda message: None)
    assert engine.fim_template.family == "codellama"
    starts_with_space = 0
    for prefix, suffix in code_prompts:
        request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=6, draft_tokens=0, token_healing=False)
        result = engine.generate(request)
        prompt_ids = engine.prompt_ids(request)
        # What the completion adds to the decoded prompt, decoded in place.
        in_place = engine.tokenizer.decode(prompt_ids + result.token_ids, skip_special_tokens=False)
        expected = in_place[len(engine.tokenizer.decode(prompt_ids, skip_special_tokens=False)):]
        assert result.text == expected
        starts_with_space += result.text.startswith(" ")
    assert starts_with_space  # the case the test is about happened
