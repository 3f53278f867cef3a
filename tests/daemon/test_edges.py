"""Issue 11's edges through every HTTP route, against a real tiny engine: the start of a file is completed,
an answer never ends inside a character, and text that is not Unicode is a 400 naming its field."""

from __future__ import annotations

import pytest

from fixtures.tiny_models import write_tiny_llama
from specd.daemon.engine.loop import EngineConfig
from specd.daemon.models.loading import load_engine

from .served_engine import answer_text, serve

EMOJI_PROMPTS = ["s = '😀😀😀😀", "# 中文中文中文\n", "😀", "name = 'Zoë ✓ 中"]


def bodies(text: str, suffix: str | None, max_tokens: int, stream: bool) -> dict[str, dict]:
    """One request per route for completing after `text` (and before `suffix`)."""
    native = {"prefix": text, "suffix": suffix or "", "max_tokens": max_tokens, "stream": stream}
    completion = {"prompt": text, "max_tokens": max_tokens, "stream": stream}
    if suffix is not None:
        completion["suffix"] = suffix
    chat = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "stream": stream}
    return {"/specd/v1/complete": native, "/v1/completions": completion, "/v1/chat/completions": chat}


@pytest.fixture(scope="module")
def fim_daemon(tiny_pair):
    config = EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


@pytest.fixture(scope="module")
def plain_daemon(tmp_path_factory):
    """A model without FIM tokens, like the embedded SmolLM2: an empty prefix is an empty prompt."""
    folder = write_tiny_llama(tmp_path_factory.mktemp("plain"), fim=False, layers=2)
    config = EngineConfig(verifier=str(folder), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route, body", [
    ("/specd/v1/complete", {"prefix": "", "suffix": "import os\n"}),
    ("/v1/completions", {"prompt": "", "suffix": "import os\n"}),
    ("/v1/completions", {"prompt": ""}),
])
def test_a_cursor_at_the_start_of_a_file_is_completed(plain_daemon, fim_daemon, route, body, stream):
    for daemon, prompt_tokens in ((plain_daemon, 1), (fim_daemon, None)):
        answer = daemon.post(route, {**body, "max_tokens": 4, "stream": stream})
        assert answer.status == 200, answer.body
        usage = answer.body.get("usage") or answer.body["specd"]  # a stream's last event has `specd`
        assert prompt_tokens is None or usage["prompt_tokens"] == prompt_tokens


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route", ["/specd/v1/complete", "/v1/completions", "/v1/chat/completions"])
def test_no_route_answers_part_of_a_character(fim_daemon, route, stream):
    for prompt in EMOJI_PROMPTS:
        for max_tokens in range(1, 9):
            answer = fim_daemon.post(route, bodies(prompt, None, max_tokens, stream)[route])
            assert answer.status == 200, answer.body
            text = answer_text(answer)
            assert "\ufffd" not in text, (prompt, max_tokens, text)
            if stream:
                assert text == answer_text(fim_daemon.post(route, bodies(prompt, None, max_tokens, False)[route]))


SURROGATE = "a\ud83db"  # the first half of 😀's UTF-16 pair, alone: json.dumps writes it as "\ud83d"
TEXT_FIELDS = [
    ("/v1/completions", {"prompt": SURROGATE}, "prompt"),
    ("/v1/completions", {"prompt": [SURROGATE]}, "prompt[0]"),
    ("/v1/completions", {"prompt": "x", "suffix": SURROGATE}, "suffix"),
    ("/v1/completions", {"prompt": "x", "stop": SURROGATE}, "stop"),
    ("/v1/completions", {"prompt": "x", "stop": ["\n", SURROGATE]}, "stop[1]"),
    ("/v1/completions", {"prompt": "x", "model": SURROGATE}, "model"),
    ("/v1/completions", {"prompt": "x", "specd": {"document_id": SURROGATE}}, "specd.document_id"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": SURROGATE}]}, "messages[0].content"),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "hi"}, {
        "role": "user", "content": [{"type": "text", "text": SURROGATE}]}]}, "messages[1].content[0].text"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": [SURROGATE]}, "stop[0]"),
    ("/specd/v1/complete", {"prefix": SURROGATE}, "prefix"),
    ("/specd/v1/complete", {"prefix": "x", "suffix": SURROGATE}, "suffix"),
    ("/specd/v1/complete", {"prefix": "x", "language": SURROGATE}, "language"),
    ("/specd/v1/complete", {"prefix": "x", "path": SURROGATE}, "path"),
    ("/specd/v1/complete", {"prefix": "x", "document_id": SURROGATE}, "document_id"),
    ("/specd/v1/complete", {"prefix": "x", "extra_context": [{"path": "a.py", "text": SURROGATE}]},
     "extra_context[0].text"),
    ("/specd/v1/complete", {"prefix": "x", "extra_context": [{"path": SURROGATE, "text": "y"}]},
     "extra_context[0].path"),
    ("/specd/v1/complete", {"prefix": "x", "stop": [SURROGATE]}, "stop[0]"),
]


@pytest.mark.parametrize("route, body, field", TEXT_FIELDS, ids=[f"{r} {f}" for r, _, f in TEXT_FIELDS])
def test_an_unpaired_surrogate_is_a_400_naming_its_field(fim_daemon, route, body, field):
    answer = fim_daemon.post(route, {"max_tokens": 2, **body})
    assert answer.status == 400, answer.body
    message = answer.body["error"]["message"]
    assert message.startswith(f"'{field}' is not valid Unicode: an unpaired UTF-16 surrogate (\\ud83d) at character 1")


def test_a_paired_surrogate_escape_is_the_character(fim_daemon):
    answer = fim_daemon.post("/specd/v1/complete", b'{"prefix": "s = \'\\ud83d\\ude00", "max_tokens": 2}')
    assert answer.status == 200, answer.body


def test_a_key_that_is_not_unicode_and_deep_nesting_are_400(fim_daemon):
    answer = fim_daemon.post("/v1/completions", b'{"prompt": "x", "specd": {"\\udc00": 1}}')
    assert answer.status == 400 and "'specd' has a key that is not valid Unicode" in answer.body["error"]["message"]
    answer = fim_daemon.post("/v1/completions", b'{"prompt": "x", "deep": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    assert answer.status == 400 and answer.body["error"]["message"] == "request body is nested too deeply"


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
def test_a_seed_beyond_64_bits_is_a_400(fim_daemon, seed):
    answer = fim_daemon.post("/v1/completions", {"prompt": "x", "max_tokens": 2, "temperature": 0.5, "seed": seed})
    assert answer.status == 400 and "'seed' must be" in answer.body["error"]["message"]


@pytest.mark.parametrize("prefix, suffix", [
    ("😀" * 6000, ""),  # the language server's whole prefix window on one line: 24,000 tokens here
    ("x = 1\n" + "a" * 200_000, "b" * 100_000 + "\n"),  # minified code around the cursor
])
def test_a_cursor_line_longer_than_the_context_is_cut_to_fit(fim_daemon, prefix, suffix):
    answer = fim_daemon.post("/specd/v1/complete", {"prefix": prefix, "suffix": suffix, "max_tokens": 4})
    assert answer.status == 200, answer.body
    assert answer.body["usage"]["total_tokens"] <= 2048  # the tiny model's context


@pytest.mark.parametrize("temperature, top_p", [(1e-300, 1.0), (2.0, 1e-300)])
def test_extreme_sampling_settings_are_served(fim_daemon, temperature, top_p):
    body = {"prompt": "x = ", "max_tokens": 3, "temperature": temperature, "top_p": top_p, "seed": 1}
    assert fim_daemon.post("/v1/completions", body).status == 200


@pytest.fixture(scope="module")
def smollm2_daemon(tmp_path_factory):
    from fixtures.embedded import embedded_home

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path_factory.mktemp("home"))))
        with serve(lambda: load_engine(EngineConfig(verifier="smollm2-135m"), progress=lambda m: None)) as served:
            yield served


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_smollm2_emoji_answers_are_whole_characters_on_every_route(smollm2_daemon, stream):
    prompt = "happy = '😀'\nsad = '"  # SmolLM2 continues with 😀 as three tokens, then "'"
    for route in ("/specd/v1/complete", "/v1/completions"):
        answers = [answer_text(smollm2_daemon.post(route, bodies(prompt, None, n, stream)[route])) for n in (1, 2, 3, 4)]
        assert answers == ["", "", "😀", "😀'"], route
    for n in range(1, 9):
        answer = smollm2_daemon.post("/v1/chat/completions", bodies("Reply with three emoji: 😀", None, n, stream)[
            "/v1/chat/completions"])
        assert answer.status == 200 and "\ufffd" not in answer_text(answer)
    # The language server's start of a file: an empty prefix before `import os`.
    answer = smollm2_daemon.post("/specd/v1/complete", {"prefix": "", "suffix": "import os\n", "max_tokens": 4,
                                                        "stream": stream})
    assert answer.status == 200, answer.body


def test_max_completion_tokens_is_checked_under_its_own_name():
    from specd.daemon.api.schema import BadRequest, parse_chat

    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(BadRequest, match="'max_completion_tokens' must be >= 0"):
        parse_chat({"messages": messages, "max_completion_tokens": -1})
    assert parse_chat({"messages": messages, "max_completion_tokens": 7})[1].max_tokens == 7
