"""The real daemon (`specd serve` subprocess, tiny random-weight verifier + drafter) over real HTTP:
aiohttp for the raw protocol, the official openai SDK for compatibility. One daemon for the module."""

from __future__ import annotations

import asyncio
import json
import os
import re

import aiohttp
import openai
import pytest

from .conftest import rss_bytes, specd_env, start_real_daemon, stop_real_daemon

PROMPTS = [
    "def parse_args(argv):\n    parser = ",
    "import json\n\nclass Decoder:\n    def __init__(self",
    "for index, item in enumerate(",
    "    return self.",
    "if __name__ == '__main__':\n    ",
    "def wrap(text, width=70):\n    lines = []\n",
    "x = [i * i for i in ",
    "class Namespace(object):\n    def __repr__(self):\n        ",
]
SECRET_PROMPT = "def leaked_secret_marker_7f3a():"
RSS_BOUND_BYTES = 48 * 2**20  # growth allowed over 200 cancelled requests: allocator noise, not a leak


@pytest.fixture(scope="module")
def daemon(tiny_pair, tmp_path_factory):
    home = tmp_path_factory.mktemp("specd-home")
    verifier, drafter = tiny_pair
    (home / "config").mkdir()
    # Each layer sets something the next one overrides: flags > SPECD_* env > settings.json > defaults.
    (home / "config" / "settings.json").write_text(
        '{\n  // a comment is fine\n  "port": 1,\n  "max_context": 999,\n  "queue_size": 64,\n}\n')
    env = specd_env(home, SPECD_PORT="2", SPECD_MAX_CONTEXT="256")
    args = ["--port", "0", "--verifier", str(verifier), "--drafter", str(drafter), "--draft-strategy", "model",
            "--max-draft-tokens", "4", "--device", "cpu"]
    started = start_real_daemon(home, env, args)
    yield started
    stop_real_daemon(started)
    assert started.process.returncode == 0, started.log_text()


@pytest.fixture
def sdk(daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.token, max_retries=0)


def specd_stats(response) -> dict:
    return response.model_extra["specd"]


def test_settings_layers_reach_the_daemon(daemon):
    import urllib.request

    request = urllib.request.Request(daemon.url + "/specd/v1/status", headers=daemon.auth)
    with urllib.request.urlopen(request) as response:
        status = json.load(response)
    assert status["settings"]["max_context"] == 256  # env over file
    assert status["settings"]["queue_size"] == 64  # file over default
    assert not daemon.url.endswith((":1", ":2"))  # the --port flag over env and file
    assert status["pid"] == daemon.pid
    assert status["models"]["max_context"] == 256


def test_completion_with_the_openai_sdk_has_openai_fields_and_usage(daemon, sdk):
    response = sdk.completions.create(model="specd", prompt=PROMPTS[0], max_tokens=12, temperature=0)
    assert response.id.startswith("cmpl-")
    assert response.object == "text_completion"
    assert isinstance(response.created, int)
    choice = response.choices[0]
    assert choice.index == 0 and choice.logprobs is None
    assert choice.finish_reason in ("stop", "length")
    stats = specd_stats(response)
    assert response.usage.completion_tokens == stats["completion_tokens"] > 0
    assert response.usage.prompt_tokens == stats["prompt_tokens"] > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    for key in ("drafted_tokens", "accepted_tokens", "verifier_passes", "cached_tokens", "queue_s",
                "prefill_s", "draft_s", "verify_s", "total_s"):
        assert key in stats
    assert stats["drafted_tokens"] > 0  # the drafter model proposed tokens


def test_plain_decoding_and_speculative_give_identical_text(sdk):
    for prompt in PROMPTS[:4]:
        plain = sdk.completions.create(model="specd", prompt=prompt, max_tokens=24, temperature=0,
                                       extra_body={"specd": {"draft_tokens": 0}})
        spec = sdk.completions.create(model="specd", prompt=prompt, max_tokens=24, temperature=0)
        assert specd_stats(plain)["drafted_tokens"] == 0
        assert specd_stats(spec)["drafted_tokens"] > 0
        assert spec.choices[0].text == plain.choices[0].text
        assert specd_stats(spec)["verifier_passes"] <= specd_stats(plain)["verifier_passes"]


def test_streaming_joins_to_the_same_text_and_ends_with_done(daemon, sdk):
    whole = sdk.completions.create(model="specd", prompt=PROMPTS[1], max_tokens=16, temperature=0)
    chunks = list(sdk.completions.create(model="specd", prompt=PROMPTS[1], max_tokens=16, temperature=0,
                                         stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.object == "text_completion" for c in chunks)

    async def raw() -> tuple[str, str]:
        async with aiohttp.ClientSession(headers=daemon.auth) as session:
            body = {"prompt": PROMPTS[1], "max_tokens": 4, "stream": True}
            async with session.post(daemon.url + "/v1/completions", json=body) as response:
                return response.headers["Content-Type"], await response.text()

    content_type, text = asyncio.run(raw())
    assert content_type.startswith("text/event-stream")
    events = [block for block in text.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events)
    assert events[-1] == "data: [DONE]"


def test_chat_completion_plain_and_streaming(sdk):
    messages = [{"role": "system", "content": "You complete code."}, {"role": "user", "content": "def add(a, b):"}]
    whole = sdk.chat.completions.create(model="specd", messages=messages, max_tokens=10, temperature=0)
    assert whole.object == "chat.completion"
    assert whole.choices[0].message.role == "assistant"
    assert whole.usage.completion_tokens == specd_stats(whole)["completion_tokens"] > 0
    chunks = list(sdk.chat.completions.create(model="specd", messages=messages, max_tokens=10, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_suffix_applies_the_fim_template_like_the_native_route(daemon, sdk):
    prefix, suffix = "def area(r):\n    return ", "\n\nprint(area(2))\n"
    openai_style = sdk.completions.create(model="specd", prompt=prefix, suffix=suffix, max_tokens=12,
                                          temperature=0)
    with_fim = specd_stats(openai_style)["prompt_tokens"]
    without = specd_stats(sdk.completions.create(model="specd", prompt=prefix, max_tokens=1))["prompt_tokens"]
    assert with_fim > without  # suffix and FIM tokens are in the prompt

    async def native() -> dict:
        async with aiohttp.ClientSession(headers=daemon.auth) as session:
            body = {"prefix": prefix, "suffix": suffix, "max_tokens": 12, "language": "python",
                    "path": "area.py", "document_id": "file:///area.py"}
            async with session.post(daemon.url + "/specd/v1/complete", json=body) as response:
                assert response.status == 200
                return await response.json()

    answer = asyncio.run(native())
    assert answer["text"] == openai_style.choices[0].text
    assert set(answer) >= {"id", "text", "finish_reason", "usage", "specd"}
    assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]


def test_models_route_and_unknown_model_names(daemon, sdk):
    served = [m.id for m in sdk.models.list().data]
    assert served == ["verifier"]  # the verifier folder's name
    assert sdk.completions.create(model="verifier", prompt="x", max_tokens=1).choices
    with pytest.raises(openai.NotFoundError) as refused:
        sdk.completions.create(model="gpt-4", prompt="x", max_tokens=1)
    assert "'verifier'" in str(refused.value)


LONG_PROMPT = "value = compute(value)\n" * 200  # far beyond max_context=256 tokens

REFUSALS = [
    # (name, headers, raw body, status, message pattern)
    ("no token", {"Authorization": None}, b'{"prompt": "x"}', 401, "missing Authorization"),
    ("wrong token", {"Authorization": "Bearer nope"}, b'{"prompt": "x"}', 401, "wrong token"),
    ("foreign Host", {"Host": "attacker.example:80"}, b'{"prompt": "x"}', 403, "not allowed"),
    ("browser Origin", {"Origin": "https://attacker.example"}, b'{"prompt": "x"}', 403, "origin"),
    ("malformed JSON", {}, b'{"prompt": "x",', 400, "not valid JSON: line 1 column 16"),
    ("not an object", {}, b'["x"]', 400, "must be a JSON object"),
    ("prompt not a string", {}, b'{"prompt": 5}', 400, "'prompt' must be a string"),
    ("max_tokens a string", {}, b'{"prompt": "x", "max_tokens": "10"}', 400, "'max_tokens' must be an integer"),
    ("temperature a list", {}, b'{"prompt": "x", "temperature": [1]}', 400, "'temperature' must be a number"),
    ("stop a number", {}, b'{"prompt": "x", "stop": 3}', 400, "'stop' must be a string or an array"),
    ("stop with a number", {}, b'{"prompt": "x", "stop": ["a", 3]}', 400, r"'stop\[1\]' must be a string, got integer"),
    ("stream a string", {}, b'{"prompt": "x", "stream": "yes"}', 400, "'stream' must be a boolean"),
    ("negative max_tokens", {}, b'{"prompt": "x", "max_tokens": -1}', 400, "'max_tokens' must be >= 0"),
    ("prompt beyond context", {}, json.dumps({"prompt": LONG_PROMPT}).encode(), 400, "context window"),
    ("invalid UTF-8", {}, b'{"prompt": "\xff\xfe"}', 400, "not valid UTF-8"),
    ("NaN", {}, b'{"prompt": "x", "temperature": NaN}', 400, "NaN"),
    ("5000-digit integer", {}, b'{"prompt": "x", "max_tokens": 1' + b"0" * 5000 + b"}", 400, "number too long"),
    ("empty body", {}, b"", 400, "empty"),
]


@pytest.mark.parametrize("name, headers, body, status, pattern", REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_refusals_have_a_message_and_the_daemon_keeps_serving(daemon, name, headers, body, status, pattern):
    sent = {"Authorization": f"Bearer {daemon.token}", "Content-Type": "application/json", **headers}
    sent = {k: v for k, v in sent.items() if v is not None}
    async with aiohttp.ClientSession() as session:
        async with session.post(daemon.url + "/v1/completions", data=body, headers=sent) as response:
            assert response.status == status
            error = (await response.json())["error"]
        # OpenAI's own code where it has one for the error, else the status (as llama-server and vLLM answer)
        assert error["code"] == ("context_length_exceeded" if name == "prompt beyond context" else status)
        assert re.search(pattern, error["message"]), error["message"]
        async with session.post(daemon.url + "/v1/completions", json={"prompt": "x = ", "max_tokens": 2},
                                headers=daemon.auth) as response:
            assert response.status == 200
            assert (await response.json())["usage"]["completion_tokens"] > 0


async def test_health_needs_no_token_and_tells_no_secrets(daemon):
    async with aiohttp.ClientSession() as session:
        async with session.get(daemon.url + "/health") as response:
            body = await response.text()
    assert json.loads(body) == {"status": "ok", "version": "0.1.0"}
    assert daemon.token not in body


async def test_eight_concurrent_clients_all_get_the_right_answer(daemon):
    async def complete(session: aiohttp.ClientSession, prompt: str) -> str:
        body = {"prompt": prompt, "max_tokens": 16, "temperature": 0}
        async with session.post(daemon.url + "/v1/completions", json=body) as response:
            assert response.status == 200
            return (await response.json())["choices"][0]["text"]

    async with aiohttp.ClientSession(headers=daemon.auth) as session:
        expected = [await complete(session, p) for p in PROMPTS]  # one at a time
    sessions = [aiohttp.ClientSession(headers=daemon.auth) for _ in PROMPTS]
    try:
        got = await asyncio.gather(*(complete(s, p) for s, p in zip(sessions, PROMPTS)))
    finally:
        for session in sessions:
            await session.close()
    assert got == expected


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def test_cancelled_requests_leave_the_worker_idle_and_memory_flat(daemon):
    max_tokens = 200

    async def cancel_mid_flight(session: aiohttp.ClientSession, i: int) -> None:
        body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "stream": True}
        response = await session.post(daemon.url + "/v1/completions", json=body)
        assert response.status == 200
        assert (await response.content.readline()).startswith(b"data: ")  # generation has begun
        response.close()  # drop the connection mid-flight

    async def status(session) -> dict:
        async with session.get(daemon.url + "/specd/v1/status") as response:
            return await response.json()

    async def metrics(session) -> str:
        async with session.get(daemon.url + "/metrics") as response:
            return await response.text()

    async def settle(session) -> None:
        while not ((await status(session))["idle"]):
            await asyncio.sleep(0.02)

    async with aiohttp.ClientSession(headers=daemon.auth) as session:
        for i in range(20):  # warm up allocator pools and every cache slot first
            await cancel_mid_flight(session, i)
        await settle(session)
        before_rss = rss_bytes(daemon.pid)
        before = await metrics(session)
        for i in range(200):
            await cancel_mid_flight(session, i)
        await settle(session)
        after_rss = rss_bytes(daemon.pid)
        after = await metrics(session)
        state = await status(session)
        assert state["queue_depth"] == 0 and state["idle"]
        cancelled = metric(after, 'specd_cancelled_total{reason="disconnect"}') - \
            metric(before, 'specd_cancelled_total{reason="disconnect"}')
        generated = metric(after, "specd_completion_tokens_total") - metric(before, "specd_completion_tokens_total")
        # A request whose generation ended before the dropped connection reached the daemon finishes normally:
        # rare, but seen once in 200 on a loaded 2-core CI machine. Broken cancellation would cancel none.
        assert 190 <= cancelled <= 200
        assert generated < 200 * max_tokens  # stopped mid-flight, not run to max_tokens
        growth = after_rss - before_rss
        print(f"RSS before {before_rss / 2**20:.1f} MiB, after {after_rss / 2**20:.1f} MiB, "
              f"growth {growth / 2**20:.1f} MiB (bound {RSS_BOUND_BYTES / 2**20:.0f} MiB)")
        assert growth < RSS_BOUND_BYTES
        async with session.post(daemon.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as response:
            assert response.status == 200


async def test_metrics_are_prometheus_text_with_stages_and_counters(daemon):
    async with aiohttp.ClientSession(headers=daemon.auth) as session:
        async with session.post(daemon.url + "/v1/completions", json={"prompt": PROMPTS[2], "max_tokens": 8}):
            pass
        async with session.get(daemon.url + "/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    for stage in ("queue", "prefill", "draft", "verify", "total"):
        assert re.search(rf'specd_stage_seconds_bucket{{stage="{stage}",le="\+Inf"}} [1-9]', text)
        assert f'specd_stage_seconds_sum{{stage="{stage}"}}' in text
    assert metric(text, "specd_drafted_tokens_total") > 0
    assert "specd_accepted_tokens_total" in text
    assert re.search(r"^specd_queue_depth 0$", text, re.M)
    assert re.search(r'specd_http_requests_total{method="POST",route="/v1/completions",status="200"} [1-9]', text)


def test_prompt_text_never_reaches_the_log(daemon, sdk):
    sdk.completions.create(model="specd", prompt=SECRET_PROMPT, max_tokens=2)
    sdk.chat.completions.create(model="specd", messages=[{"role": "user", "content": SECRET_PROMPT}], max_tokens=2)
    log_text = daemon.log_text()
    assert "POST /v1/completions -> 200" in log_text  # the request was logged ...
    assert "leaked_secret_marker" not in log_text  # ... but not its prompt
    assert os.path.exists(f"/proc/{daemon.pid}")
