"""The Gemini / Vertex AI door through Google's own SDK (google-genai) against the real daemon (`specd serve`, tiny
random-weight verifier + drafter); raw HTTP only for what the SDK never sends (snake_case bodies, Vertex's
project paths, a client that hangs up, the JSON-array stream)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import openai
import pytest

from .conftest import specd_env
from .door_checks import daemon, full_queue, hang_up_mid_stream, run_example  # noqa: F401 - daemon: the fixture

genai = pytest.importorskip("google.genai")
from google.genai import errors, types  # noqa: E402

SYSTEM = "You complete Python code."
PROMPT = "def parse_args(argv):\n    parser = "
NO_RETRY = types.HttpRetryOptions(attempts=1)


@pytest.fixture
def gemini(daemon) -> "genai.Client":
    return client(daemon)


def client(daemon, key: str | None = None, **options) -> "genai.Client":
    return genai.Client(api_key=key or daemon.token,
                        http_options=types.HttpOptions(base_url=daemon.url, retry_options=NO_RETRY, **options))


def config(**extra) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(**{"system_instruction": SYSTEM, "max_output_tokens": 24, "temperature": 0,
                                          **extra})


def daemon_model(daemon) -> str:
    with openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.token) as sdk:
        return sdk.models.list().data[0].id


def test_generate_content_has_gemini_fields_and_specd_accounting(daemon, gemini):
    model = daemon_model(daemon)
    answer = gemini.models.generate_content(
        model=model, contents=PROMPT,
        config=config(temperature=0.1, top_p=0.95, top_k=40, candidate_count=1, seed=7))
    assert answer.text
    candidate = answer.candidates[0]
    assert candidate.content.role == "model" and candidate.finish_reason in (types.FinishReason.STOP,
                                                                            types.FinishReason.MAX_TOKENS)
    usage = answer.usage_metadata
    headers = answer.sdk_http_response.headers
    assert usage.prompt_token_count == int(headers["x-specd-prompt-tokens"]) > 0
    assert usage.candidates_token_count == int(headers["x-specd-completion-tokens"]) > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.cached_content_token_count == int(headers["x-specd-cached-tokens"])
    assert int(headers["x-specd-drafted-tokens"]) >= int(headers["x-specd-accepted-tokens"])
    assert headers["x-specd-speculative"] == "on"
    assert answer.model_version == model
    # The same prompt again comes mostly from the cache, and Gemini's field says so.
    again = gemini.models.generate_content(model=model, contents=PROMPT, config=config())
    assert again.usage_metadata.cached_content_token_count >= usage.prompt_token_count - 2


def test_a_token_limit_is_max_tokens_and_streaming_joins_to_the_same_text(daemon, gemini):
    model = daemon_model(daemon)
    whole = gemini.models.generate_content(model=model, contents=PROMPT, config=config())
    chunks = list(gemini.models.generate_content_stream(model=model, contents=PROMPT, config=config()))
    assert len(chunks) > 2
    assert "".join(c.text or "" for c in chunks) == whole.text
    assert chunks[-1].candidates[0].finish_reason == whole.candidates[0].finish_reason
    assert whole.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS  # 24 tokens, no EOS from this model
    assert whole.usage_metadata.candidates_token_count == 24
    last = chunks[-1].usage_metadata
    assert last.candidates_token_count == 24 and last.prompt_token_count == whole.usage_metadata.prompt_token_count


def test_a_stop_sequence_ends_with_stop(daemon, gemini):
    model = daemon_model(daemon)
    whole = gemini.models.generate_content(model=model, contents=PROMPT, config=config())
    stop = whole.text[5:8]
    cut = gemini.models.generate_content(model=model, contents=PROMPT, config=config(stop_sequences=[stop]))
    assert cut.candidates[0].finish_reason == types.FinishReason.STOP
    assert cut.text == whole.text[:whole.text.index(stop)]


def test_speculative_knobs_in_the_body_are_honoured_and_requests_counted_per_door(daemon, gemini):
    import urllib.request

    def door_count() -> float:
        request = urllib.request.Request(daemon.url + "/metrics", headers=daemon.auth)
        text = urllib.request.urlopen(request).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('specd_door_requests_total{door="gemini",status="200"}'))

    before = door_count()
    model = daemon_model(daemon)
    plain = gemini.models.generate_content(model=model, contents=PROMPT, config=config(
        http_options=types.HttpOptions(extra_body={"speculativeDecoding": {"enabled": False}})))
    drafted = gemini.models.generate_content(model=model, contents=PROMPT, config=config(
        http_options=types.HttpOptions(extra_body={"maxDraftTokens": 2})))
    assert plain.sdk_http_response.headers["x-specd-speculative"] == "off"
    assert plain.sdk_http_response.headers["x-specd-drafted-tokens"] == "0"
    assert drafted.sdk_http_response.headers["x-specd-max-draft-tokens"] == "2"
    assert plain.text == drafted.text  # lossless: greedy output is the verifier's either way
    assert door_count() == before + 2


def test_count_tokens_counts_what_generation_reads(daemon, gemini):
    model = daemon_model(daemon)
    contents = [types.Content(role="user", parts=[types.Part(text=PROMPT)]),
                types.Content(role="model", parts=[types.Part(text="argparse.ArgumentParser()")]),
                types.Content(role="user", parts=[types.Part(text="and then?")])]
    counted = gemini.models.count_tokens(model=model, contents=contents)
    generated = gemini.models.generate_content(
        model=model, contents=contents, config=types.GenerateContentConfig(max_output_tokens=1))
    assert counted.total_tokens == generated.usage_metadata.prompt_token_count > 10
    beyond = gemini.models.count_tokens(model=model, contents="value = compute(value)\n" * 2000)
    assert beyond.total_tokens > 8192  # beyond any test context window, counted all the same


def test_every_door_writes_the_same_text_at_temperature_0(daemon, gemini):
    model = daemon_model(daemon)
    gemini = gemini.models.generate_content(model=model, contents=PROMPT, config=config())
    with openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.token) as sdk:
        chat = sdk.chat.completions.create(model=model, max_tokens=24, temperature=0, messages=[
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}])
    assert gemini.text == chat.choices[0].message.content


def test_vertex_paths_and_versions_reach_the_same_answer(daemon, gemini):
    model = daemon_model(daemon)
    expected = gemini.models.generate_content(model=model, contents=PROMPT, config=config()).text
    beta_client = client(daemon, api_version="v1beta")
    beta = beta_client.models.generate_content(model=model, contents=PROMPT, config=config())
    express_client = genai.Client(vertexai=True, api_key=daemon.token,
                                  http_options=types.HttpOptions(base_url=daemon.url, retry_options=NO_RETRY))
    express = express_client.models.generate_content(model=model, contents=PROMPT, config=config())
    assert beta.text == expected == express.text

    async def project_path() -> dict:
        url = f"{daemon.url}/v1/projects/p/locations/us-central1/publishers/google/models/{model}:generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],  # snake_case, as protobuf JSON allows
                "system_instruction": {"parts": [{"text": SYSTEM}]},
                "generation_config": {"max_output_tokens": 24, "temperature": 0}}
        async with aiohttp.ClientSession(headers=daemon.auth) as s, s.post(url, json=body) as response:
            assert response.status == 200
            return await response.json()

    answer = asyncio.run(project_path())
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == expected
    assert answer["specd"]["completion_tokens"] == 24


def test_stream_without_alt_sse_is_a_json_array(daemon, gemini):
    model = daemon_model(daemon)
    expected = gemini.models.generate_content(model=model, contents=PROMPT, config=config()).text

    async def post() -> list:
        url = f"{daemon.url}/v1beta/models/{model}:streamGenerateContent?key={daemon.token}"
        body = {"contents": [{"parts": [{"text": PROMPT}]}], "systemInstruction": {"parts": [{"text": SYSTEM}]},
                "generationConfig": {"maxOutputTokens": 24}}
        async with aiohttp.ClientSession() as s, s.post(url, json=body) as response:
            assert response.status == 200 and response.content_type == "application/json"
            return await response.json()

    answer = asyncio.run(post())
    assert isinstance(answer, list) and answer[0]["candidates"][0]["content"]["parts"][0]["text"] == expected


@pytest.mark.parametrize("case, status, code, words", [
    ("bad key", 401, "UNAUTHENTICATED", "wrong token"),
    ("unknown model", 404, "NOT_FOUND", "this daemon serves"),
    ("two candidates", 400, "INVALID_ARGUMENT", "candidateCount"),
    ("temperature", 400, "INVALID_ARGUMENT", "generationConfig.temperature"),
    ("image", 400, "INVALID_ARGUMENT", "only text is supported by specd, not inlineData"),
    ("beyond the context", 400, "INVALID_ARGUMENT", "the context window is 256 tokens"),
])
def test_errors_come_in_googles_shape(daemon, case, status, code, words):
    model = daemon_model(daemon)
    sdk = client(daemon, key="wrong" if case == "bad key" else None)
    contents: object = PROMPT
    cfg = config()
    if case == "unknown model":
        model = "gemini-2.5-pro"
    elif case == "two candidates":
        cfg = config(candidate_count=2)
    elif case == "temperature":
        cfg = config(temperature=7)
    elif case == "image":
        contents = [types.Part.from_bytes(data=b"\x89PNG", mime_type="image/png"), "what is this?"]
    elif case == "beyond the context":
        contents = PROMPT * 100
    with pytest.raises(errors.ClientError) as raised:
        sdk.models.generate_content(model=model, contents=contents, config=cfg)
    assert raised.value.code == status and raised.value.status == code
    assert words in raised.value.message


def test_a_stream_refused_before_its_first_token_is_raised_by_the_sdk(daemon, gemini):
    with pytest.raises(errors.ClientError) as raised:
        list(gemini.models.generate_content_stream(model=daemon_model(daemon), contents=PROMPT * 100, config=config()))
    assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
    assert "the context window is 256 tokens" in raised.value.message


def test_bad_json_an_unknown_method_and_a_browser_origin_answer_in_googles_shape(daemon):
    async def post(path: str, data: bytes, headers: dict | None = None) -> tuple[int, dict]:
        async with aiohttp.ClientSession(headers={"x-goog-api-key": daemon.token}) as s, \
                s.post(daemon.url + path, data=data, headers=headers) as response:
            return response.status, await response.json()

    status, body = asyncio.run(post("/v1/models/specd:generateContent", b'{"contents": ['))
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT" and "not valid JSON" in body["error"]["message"]
    status, body = asyncio.run(post("/v1/models/specd:embedContent", b"{}"))
    assert status == 404 and body["error"]["status"] == "NOT_FOUND" and "generateContent" in body["error"]["message"]
    status, body = asyncio.run(post("/v1/models/specd:generateContent", b"{}", {"Origin": "https://example.com"}))
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED" and "origin" in body["error"]["message"]
    for path in ("/v1beta/tunedModels/x:generateContent", "/v1/projects/p/locations/l/endpoints/1:predict",
                 "/v2/models/specd:generateContent"):  # Google's paths specd does not serve: Google's 404
        status, body = asyncio.run(post(path, b"{}"))
        assert status == 404 and body["error"]["status"] == "NOT_FOUND" and path in body["error"]["message"], body


@pytest.mark.parametrize("body, words", [
    # turns with nothing to answer were answered as if the caller had asked something (Google: 400)
    ({"contents": [{"role": "user", "parts": []}]}, "'contents[0]' is a user turn without text or a functionResponse"),
    ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, "'contents[0]' is a user turn without text"),
    ({"contents": [{"role": "user", "parts": [{"txt": "hi"}]}]},
     "'contents[0].parts[0]' holds 'txt': a block holds one of codeExecutionResult, executableCode, fileData"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"stopSequences": "o!"}},
     "'generationConfig.stopSequences' must be an array of strings"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"topK": -1}},
     "'generationConfig.topK' must be between 0 and 2147483647, got -1"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"responseMimeType": "text/x.enum"}},
     "text/x.enum needs 'generationConfig.responseSchema' to be a STRING schema"),
])
def test_requests_google_refuses_are_invalid_argument(daemon, body, words):
    async def post() -> tuple[int, dict]:
        async with aiohttp.ClientSession(headers={"x-goog-api-key": daemon.token}) as s, \
                s.post(f"{daemon.url}/v1beta/models/specd:generateContent", json=body) as response:
            return response.status, await response.json()

    status, answer = asyncio.run(post())
    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"
    assert words in answer["error"]["message"], answer["error"]["message"]


def test_a_client_that_hangs_up_cancels_the_generation(daemon):
    url = f"{daemon.url}/v1beta/models/{daemon_model(daemon)}:streamGenerateContent?alt=sse"
    body = {"contents": [{"parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 200}}
    hang_up_mid_stream(daemon, url, body, {"x-goog-api-key": daemon.token})


async def test_a_full_queue_is_429_resource_exhausted():
    async with full_queue() as d:
        def refused() -> errors.APIError:
            sdk = genai.Client(api_key=d.token, http_options=types.HttpOptions(base_url=d.url, retry_options=NO_RETRY))
            with pytest.raises(errors.ClientError) as raised:
                sdk.models.generate_content(model="fake-model", contents="x")
            return raised.value

        error = await asyncio.get_running_loop().run_in_executor(None, refused)
        assert error.code == 429 and error.status == "RESOURCE_EXHAUSTED" and "queue is full" in error.message


def test_specd_config_gemini_prints_a_setup_that_works(daemon):
    import subprocess
    import sys

    from .conftest import run_cli

    printed = run_cli(specd_env(daemon.home), "config", "gemini")
    assert printed.returncode == 0, printed.stderr
    python, cli = printed.stdout.split("# Gemini CLI")
    assert f'GOOGLE_GEMINI_BASE_URL="{daemon.url}"' in cli and "GEMINI_API_KEY=" in cli
    assert '"selectedType": "gemini-api-key"' in cli and f"gemini -m {daemon_model(daemon)}" in cli
    assert daemon.token not in printed.stdout  # the key stays in its file
    ran = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr


def test_the_example_script_prints_the_answer_tokens_and_specds_accounting(daemon):
    out = run_example(daemon, "gemini_generate.py")
    tokens = re.search(r"^prompt \+ candidates tokens: (\d+)$", out, re.M)
    assert tokens and int(tokens.group(1)) > 0
    assert re.search(r"^specd: drafted \d+, accepted \d+, verifier passes [1-9]\d*, cached \d+ tokens$", out, re.M)
