"""A request that runs past `request_timeout` after it has generated text answers that text as an answer cut short:
status 200, each door's max-tokens reason (OpenAI "length", Anthropic "max_tokens", Gemini "MAX_TOKENS", Bedrock
"max_tokens"), `specd.truncated: "deadline"` and, sent whole, `x-specd-truncated: deadline`; a stream ends the same
way. One that generated nothing is still a 504 that names request_timeout and how to raise it. The daemon serves
on. A tiny real engine whose every verifier pass is slowed down (`PACE`), so the deadline falls where a test wants."""

from __future__ import annotations

import json
import time
import urllib.request

import anthropic
import openai
import pytest

from specd.daemon.engine.loop import EngineConfig
from specd.daemon.models.loading import load_engine

from .served_engine import TOKEN, serve

TIMEOUT_S = 1.0
PACE = {"seconds": 0.01}  # sleep per verifier pass: 1000 tokens take 10 s, far past the deadline
LONG = 1000  # max_tokens no answer reaches within TIMEOUT_S
PROMPT = "def parse_args(argv):\n    parser = "


@pytest.fixture(scope="module")
def daemon(tiny_pair):
    def slowed():
        engine = load_engine(EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="none"),
                             progress=lambda m: None)
        forward = engine.verifier.forward

        def paced(*args, **kwargs):
            time.sleep(PACE["seconds"])
            return forward(*args, **kwargs)

        engine.verifier.forward = paced
        return engine

    with serve(slowed, request_timeout=TIMEOUT_S) as served:
        yield served


@pytest.fixture
def pace():
    yield PACE
    PACE["seconds"] = 0.01


def post(daemon, path: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(daemon.url + path, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.loads(response.read()), dict(response.headers)


def still_serving(daemon) -> None:
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key=TOKEN, max_retries=0)
    raw = client.completions.with_raw_response.create(model="specd", prompt=PROMPT, max_tokens=2, temperature=0)
    answer = raw.parse()
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 2
    assert answer.model_extra["specd"]["truncated"] is None and "x-specd-truncated" not in raw.headers


def test_openai_answers_the_text_so_far_with_finish_reason_length(daemon):
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key=TOKEN, max_retries=0)
    raw = client.completions.with_raw_response.create(model="specd", prompt=PROMPT, max_tokens=LONG, temperature=0)
    answer = raw.parse()
    assert raw.status_code == 200 and raw.headers["x-specd-truncated"] == "deadline"
    assert answer.choices[0].text and answer.choices[0].finish_reason == "length"
    assert 0 < answer.usage.completion_tokens < LONG
    assert answer.model_extra["specd"]["truncated"] == "deadline"
    still_serving(daemon)

    chat = client.chat.completions.create(model="specd", messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=LONG, temperature=0)
    assert chat.choices[0].message.content and chat.choices[0].finish_reason == "length"

    chunks = list(client.completions.create(model="specd", prompt=PROMPT, max_tokens=LONG, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    ends = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in ends] == ["length"]
    assert ends[0].model_extra["specd"]["truncated"] == "deadline" and 0 < chunks[-1].usage.completion_tokens < LONG
    still_serving(daemon)


def test_anthropic_gemini_and_bedrock_answer_their_max_tokens_reason(daemon):
    client = anthropic.Anthropic(base_url=daemon.url, api_key=TOKEN, max_retries=0)
    raw = client.messages.with_raw_response.create(model="specd", max_tokens=LONG, extra_body={"temperature": 0},
                                                   messages=[{"role": "user", "content": PROMPT}])
    message = raw.parse()
    assert raw.headers["x-specd-truncated"] == "deadline"
    assert message.stop_reason == "max_tokens" and message.content[0].text
    assert 0 < message.usage.output_tokens < LONG and message.model_extra["specd"]["truncated"] == "deadline"

    user = {"role": "user", "parts": [{"text": PROMPT}]}
    status, gemini, headers = post(daemon, "/v1beta/models/specd:generateContent",
                                   {"contents": [user], "generationConfig": {"maxOutputTokens": LONG}})
    candidate = gemini["candidates"][0]
    assert status == 200 and headers["x-specd-truncated"] == "deadline"
    assert candidate["finishReason"] == "MAX_TOKENS" and candidate["content"]["parts"][0]["text"]
    assert 0 < gemini["usageMetadata"]["candidatesTokenCount"] < LONG

    status, bedrock, headers = post(daemon, "/model/specd/converse", {
        "messages": [{"role": "user", "content": [{"text": PROMPT}]}], "inferenceConfig": {"maxTokens": LONG}})
    assert status == 200 and headers["x-specd-truncated"] == "deadline"
    assert bedrock["stopReason"] == "max_tokens" and bedrock["output"]["message"]["content"][0]["text"]
    assert bedrock["additionalModelResponseFields"]["specd"]["truncated"] == "deadline"
    still_serving(daemon)


def test_a_deadline_during_the_prompts_last_chunk_is_a_504_not_a_token_written_after_it(daemon, pace):
    """A prompt of one chunk whose pass outlasts the deadline: the answer was one token sampled after the deadline,
    a 200 "max_tokens" that Claude Code answers with an "Output token limit hit" turn (a fresh-eye trial)."""
    pace["seconds"] = 1.5 * TIMEOUT_S
    client = anthropic.Anthropic(base_url=daemon.url, api_key=TOKEN, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="specd", max_tokens=LONG, messages=[{"role": "user", "content": PROMPT}])
    assert raised.value.status_code == 504 and "generated no text" in str(raised.value)
    pace["seconds"] = 0.01
    still_serving(daemon)


def test_a_deadline_before_any_text_is_a_504_naming_request_timeout(daemon, pace, caplog):
    """The first prefill pass (a prompt of two 512-token chunks) outlasts the deadline: nothing was generated. The
    daemon's log says where the time went, without the prompt's text."""
    pace["seconds"] = 1.5 * TIMEOUT_S
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key=TOKEN, max_retries=0)
    with pytest.raises(openai.APIStatusError) as raised:
        client.completions.create(model="specd", prompt=PROMPT * 80, max_tokens=LONG, temperature=0)
    assert raised.value.status_code == 504
    message = raised.value.body["message"]
    assert "request_timeout (1s)" in message and "generated no text" in message
    assert "--request-timeout" in message and "SPECD_REQUEST_TIMEOUT" in message
    logged = [r.getMessage() for r in caplog.records if "ran out before any text" in r.getMessage()]
    assert len(logged) == 1 and "request_timeout (1s)" in logged[0], logged
    assert "prefill" in logged[0] and "prompt tokens" in logged[0] and "parse_args" not in logged[0], logged
    pace["seconds"] = 0.01
    still_serving(daemon)
