"""Exactly the request Zed's edit predictions send (crates/edit_prediction: fim.rs, open_ai_compatible.rs),
against a real daemon serving a tiny model, configured by what `specd config zed` says."""

import json
import urllib.error
import urllib.request

import pytest

from specd.daemon.cli import editor_config

pytestmark = pytest.mark.slow

# Zed's StarCoder-family prompt and stop list; the stop list is Zed's, at most 4 (vLLM's limit).
PREFIX = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        "
SUFFIX = "\n\n\ndef save(path, data):\n    pass\n"
STAR_CODER_STOPS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"]


def post(url: str, body: dict, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def zed(running_daemon):
    state, token, env = running_daemon
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECD_HOME", env["SPECD_HOME"])
        facts = editor_config.gather_facts()
    return editor_config.zed_settings(facts)["edit_predictions"]["open_ai_compatible_api"], token, state


def zed_body(api: dict, **overrides) -> dict:
    assert api["prompt_format"] == "star_coder", "the tiny model has StarCoder's FIM tokens"
    body = {"model": api["model"], "prompt": f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>",
            "max_tokens": api["max_output_tokens"], "temperature": 0.2, "stop": STAR_CODER_STOPS}
    body.update(overrides)
    return body


def test_specd_config_zed_points_at_the_running_daemon(zed):
    api, _, state = zed
    assert api["api_url"] == f"{state['url'].rstrip('/')}/v1/completions"
    assert f":{state['port']}/" in api["api_url"]


def test_zed_request_gets_what_zed_reads(zed):
    api, token, _ = zed
    status, answer = post(api["api_url"], zed_body(api), token)
    assert status == 200, answer
    # Zed deserializes all of these (RawCompletionResponse); a missing one fails the whole prediction.
    assert isinstance(answer["id"], str) and answer["id"]
    assert isinstance(answer["object"], str) and isinstance(answer["created"], int)
    assert isinstance(answer["model"], str)
    usage = answer["usage"]
    assert all(isinstance(usage[k], int) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    choice = answer["choices"][0]
    assert isinstance(choice["text"], str) and "finish_reason" in choice
    assert usage["completion_tokens"] <= api["max_output_tokens"]
    assert not any(stop in choice["text"] for stop in STAR_CODER_STOPS)


def test_zed_stop_strings_cut_the_answer(zed):
    api, token, _ = zed
    status, free = post(api["api_url"], zed_body(api, temperature=0.0, stop=[]), token)
    assert status == 200, free
    text = free["choices"][0]["text"]
    if len(text) < 4:
        pytest.fail(f"the tiny model produced too little text to place a stop string in: {text!r}")
    stop = text[2:4]  # something the greedy answer is known to contain
    status, cut = post(api["api_url"], zed_body(api, temperature=0.0, stop=STAR_CODER_STOPS[:3] + [stop]), token)
    assert status == 200, cut
    assert cut["choices"][0]["text"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_wrong_token_is_refused_like_zed_would_see_it(zed):
    api, _, _ = zed
    status, answer = post(api["api_url"], zed_body(api), "not-the-token")
    assert status == 401 and answer["error"]["message"]
