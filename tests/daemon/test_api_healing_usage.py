"""Token accounting under token healing, through the doors that heal (OpenAI completions with the openai SDK, the
native route, Bedrock InvokeModel with specd's body): each token is counted once. `prompt_tokens` is the prompt
the verifier read, the tokenizer's count less the `healed_tokens` backed up; `completion_tokens` is every token the
verifier generated, the `rewritten_tokens` that write only the backed-up text again included and free of
max_tokens. Expected numbers come from the tokenizer and an engine of the same model outside the daemon."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from specd.daemon.engine.loop import EngineConfig, GenerationRequest
from specd.daemon.engine.token_healing import heal_prompt
from specd.daemon.models.loading import load_engine

from .served_engine import TOKEN, serve

MAX_TOKENS = 4
# The tiny verifier heals both: "def hel" backs up three tokens (" ", "he", "l") and writes " help" (the backed-up
# text and more: no token is free); "import o" backs up " o" and writes " o" again (one free token).
PROMPTS = ["def hel", "import o"]


@pytest.fixture(scope="module")
def reference(tiny_pair):
    return load_engine(EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="none"), progress=lambda m: None)


@pytest.fixture(scope="module")
def daemon(tiny_pair):
    config = EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


def expected(reference, prompt: str, healing: bool = True, **fields) -> dict:
    """The counts for `prompt` (a GenerationRequest with `fields`), from its tokens (the tokenizer's, with the FIM
    markers of a `suffix`), the tokens healing backs up, and a plain greedy generation: the generated tokens, and
    how many of them write nothing but the backed-up bytes."""
    request = GenerationRequest(prompt=prompt, max_tokens=MAX_TOKENS, draft_tokens=0, token_healing=healing,
                                **fields)
    ids = reference.prompt_ids(request)
    if not fields:
        assert ids == reference.tokenizer(prompt)["input_ids"]
    healed = heal_prompt(reference.vocabulary, ids) if healing else None
    removed = healed.removed if healed else b""
    result = reference.generate(request)
    written, rewritten = 0, 0
    for token in result.token_ids:
        written += len(reference.vocabulary.piece(token))
        rewritten += written <= len(removed)
    healed_tokens = len(healed.removed_ids) if healed else 0
    return {"prompt_tokens": len(ids) - healed_tokens, "healed_tokens": healed_tokens,
            "completion_tokens": len(result.token_ids), "rewritten_tokens": rewritten, "text": result.text}


def post(daemon, path: str, body: dict) -> tuple[dict, dict]:
    request = urllib.request.Request(daemon.url + path, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read()), dict(response.headers)


def test_a_healed_prompt_counts_each_token_once(daemon, reference):
    sdk = openai.OpenAI(base_url=daemon.url + "/v1", api_key=TOKEN, max_retries=0)
    seen_rewritten = set()
    for prompt in PROMPTS:
        want = expected(reference, prompt)
        assert want["healed_tokens"] >= 1, prompt  # the case under test happened
        seen_rewritten.add(want["rewritten_tokens"])
        # max_tokens counts the tokens that write the answer: the free ones come on top
        assert want["completion_tokens"] == MAX_TOKENS + want["rewritten_tokens"], prompt

        raw = sdk.completions.with_raw_response.create(model="specd", prompt=prompt, max_tokens=MAX_TOKENS,
                                                       temperature=0)
        answer, headers = raw.parse(), raw.headers
        stats = answer.model_extra["specd"]
        assert answer.choices[0].text == want["text"] and answer.choices[0].finish_reason == "length", prompt
        assert answer.usage.prompt_tokens == stats["prompt_tokens"] == want["prompt_tokens"], prompt
        assert answer.usage.completion_tokens == stats["completion_tokens"] == want["completion_tokens"], prompt
        assert answer.usage.total_tokens == want["prompt_tokens"] + want["completion_tokens"], prompt
        assert (stats["healed_tokens"], stats["rewritten_tokens"]) == (want["healed_tokens"],
                                                                       want["rewritten_tokens"]), prompt
        for name in ("prompt_tokens", "completion_tokens", "healed_tokens", "rewritten_tokens"):
            assert headers["x-specd-" + name.replace("_", "-")] == str(want[name]), (prompt, name)

        bedrock, _ = post(daemon, "/model/specd/invoke", {"prompt": prompt, "max_tokens": MAX_TOKENS})
        # the native route: the editor's prefix and suffix in the model's FIM layout
        native, _ = post(daemon, "/specd/v1/complete", {"prefix": prompt, "suffix": "", "max_tokens": MAX_TOKENS})
        fim = expected(reference, prompt, suffix="", fit_context=True)
        assert fim["healed_tokens"] >= 1, prompt
        for body, want in ((bedrock, want), (native, fim)):
            assert body["text"] == want["text"], prompt
            assert body["usage"] == {"prompt_tokens": want["prompt_tokens"],
                                     "completion_tokens": want["completion_tokens"],
                                     "total_tokens": want["prompt_tokens"] + want["completion_tokens"]}, prompt
            assert body["specd"]["rewritten_tokens"] == want["rewritten_tokens"], prompt
    assert seen_rewritten == {0, 1}  # a token that goes on past the backed-up text is not free; one within it is


def test_an_unhealed_prompt_counts_the_tokenizers_tokens(daemon, reference):
    sdk = openai.OpenAI(base_url=daemon.url + "/v1", api_key=TOKEN, max_retries=0)
    for prompt in PROMPTS:
        want = expected(reference, prompt, healing=False)
        answer = sdk.completions.create(model="specd", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0,
                                        extra_body={"specd": {"token_healing": False}})
        assert answer.usage.prompt_tokens == len(reference.tokenizer(prompt)["input_ids"]) == want["prompt_tokens"]
        assert answer.usage.completion_tokens == MAX_TOKENS == want["completion_tokens"]
        assert answer.model_extra["specd"]["healed_tokens"] == answer.model_extra["specd"]["rewritten_tokens"] == 0
