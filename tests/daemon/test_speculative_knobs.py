"""What every door shares (generation.py, speculative.py), through the real aiohttp app on the fake engine: the
speculative knobs a request carries reach the engine and are reported back, the accounting travels in `x-specd-*`
headers, and /metrics counts requests per door."""

from __future__ import annotations

import re

import aiohttp

from .conftest import fake_daemon


async def post(s: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, dict, dict]:
    async with s.post(url, json=body) as response:
        return response.status, dict(response.headers), await response.json()


async def test_whole_answers_carry_the_accounting_in_headers():
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:
        for route, body in (("/v1/completions", {"prompt": "a b c", "max_tokens": 3}),
                            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
                            ("/specd/v1/complete", {"prefix": "x", "max_tokens": 4})):
            status, headers, answer = await post(s, d.url + route, body)
            assert status == 200, answer
            stats = answer["specd"]
            for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "drafted_tokens", "accepted_tokens",
                         "verifier_passes"):
                assert headers["x-specd-" + name.replace("_", "-")] == str(stats[name]), (route, name)
            assert int(headers["x-specd-completion-tokens"]) == body["max_tokens"]
            assert headers["x-specd-speculative"] == ("on" if stats["speculative"]["enabled"] else "off")


def with_drafter(engine, name: str) -> None:
    info = engine.info()
    engine.info = lambda: {**info, "drafter": name, "draft_strategy": name}


async def test_knobs_reach_the_engine_and_are_reported_back():
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:
        with_drafter(d.engine, "ngram")
        base = {"prompt": "a", "max_tokens": 1}
        cases = [({}, None, {"enabled": True, "max_draft_tokens": 8, "drafting_model": "ngram"}),
                 ({"maxDraftTokens": 3}, 3, {"enabled": True, "max_draft_tokens": 3, "drafting_model": "ngram"}),
                 ({"speculativeDecoding": {"enabled": True, "maxDraftTokens": 5}}, 5,
                  {"enabled": True, "max_draft_tokens": 5, "drafting_model": "ngram"}),
                 ({"speculativeDecoding": {"enabled": False}}, 0,
                  {"enabled": False, "max_draft_tokens": 0, "drafting_model": None}),
                 ({"draftingModel": "NGRAM", "maxDraftTokens": 0}, 0,
                  {"enabled": False, "max_draft_tokens": 0, "drafting_model": None})]
        for knobs, draft_tokens, report in cases:
            status, headers, answer = await post(s, d.url + "/v1/completions", {**base, **knobs})
            assert status == 200, answer
            assert d.engine.requests[-1].draft_tokens == draft_tokens, knobs
            assert answer["specd"]["speculative"] == report, knobs
            assert headers["x-specd-max-draft-tokens"] == str(report["max_draft_tokens"])
        # a stream reports the knobs in its headers (the accounting comes in its last event)
        async with s.post(d.url + "/specd/v1/complete", json={"prefix": "x", "max_tokens": 2, "stream": True,
                                                              "maxDraftTokens": 2}) as response:
            assert response.headers["x-specd-max-draft-tokens"] == "2"
            assert response.headers["x-specd-drafting-model"] == "ngram"
            await response.read()


async def test_wrong_knobs_are_400_naming_the_field_or_the_loaded_drafter():
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:
        with_drafter(d.engine, "ngram")
        status, _, answer = await post(s, d.url + "/v1/completions",
                                       {"prompt": "a", "draftingModel": "Qwen/Qwen2.5-Coder-0.5B"})
        assert status == 400
        assert "'Qwen/Qwen2.5-Coder-0.5B' is not loaded here: the loaded drafter is 'ngram'" in answer["error"]["message"]
        for knobs, field in (({"maxDraftTokens": "8"}, "'maxDraftTokens' must be an integer"),
                             ({"maxDraftTokens": 999}, "'maxDraftTokens' must be between 0 and 256"),
                             ({"speculativeDecoding": True}, "'speculativeDecoding' must be an object"),
                             ({"speculativeDecoding": {"enabled": "yes"}}, "'speculativeDecoding.enabled' must be a boolean"),
                             ({"draftingModel": 3}, "'draftingModel' must be a string")):
            status, _, answer = await post(s, d.url + "/specd/v1/complete", {"prefix": "x", **knobs})
            assert status == 400 and field in answer["error"]["message"], (knobs, answer)
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:  # the fake has no drafter
        status, _, answer = await post(s, d.url + "/v1/completions", {"prompt": "a", "draftingModel": "ngram"})
        assert status == 400 and "no drafter is loaded" in answer["error"]["message"]


async def test_metrics_count_requests_per_door():
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:
        await post(s, d.url + "/v1/completions", {"prompt": "a", "max_tokens": 1})
        await post(s, d.url + "/v1/completions", {"prompt": 1})
        await post(s, d.url + "/specd/v1/complete", {"prefix": "x", "max_tokens": 1})
        async with s.get(d.url + "/metrics") as response:
            text = await response.text()
    counts = {m[0:2]: int(m[2]) for m in re.findall(r'specd_door_requests_total\{door="(\w+)",status="(\d+)"\} (\d+)', text)}
    assert counts[("openai", "200")] == 1 and counts[("openai", "400")] == 1
    assert counts[("native", "200")] == 1
