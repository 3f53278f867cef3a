"""Scheduling behaviour driven step by step with the fake engine, through the real aiohttp app:
a full queue, superseding, the deadline, client disconnects, keep_alive residency, load failure."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp

from .conftest import fake_daemon
from specd.daemon.engine.requests import GenerationRequest

from .fake_engine import FakeEngine


async def until(predicate) -> None:
    """Wait for state the test cannot observe through an event (no time limit is asserted)."""
    while not predicate():
        await asyncio.sleep(0.005)


async def wait_event(event) -> None:
    await asyncio.get_running_loop().run_in_executor(None, event.wait)


def native(prompt: str = "x", **fields) -> dict:
    return {"prefix": prompt, "suffix": "", "max_tokens": 3, **fields}


async def test_over_the_queue_bound_gives_503_with_retry_after_and_serving_continues():
    async with fake_daemon(hold=True, queue_size=1) as d, aiohttp.ClientSession(headers=d.auth) as s:
        route = d.url + "/specd/v1/complete"
        first = asyncio.create_task(s.post(route, json=native()))
        await until(lambda: d.engines)
        await wait_event(d.engine.entered)
        second = asyncio.create_task(s.post(route, json=native()))
        await until(lambda: d.scheduler.queue_depth == 1)
        async with s.post(route, json=native()) as refused:
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "1"
            assert "queue is full" in (await refused.json())["error"]["message"]
        d.engine.release.set()
        for task in (first, second):
            async with await task as response:
                assert response.status == 200
                assert (await response.json())["text"] == "t0 t1 t2 "
        async with s.post(route, json=native()) as after:
            assert after.status == 200


async def test_newer_request_for_the_same_document_supersedes_the_older():
    async with fake_daemon(hold=True) as d, aiohttp.ClientSession(headers=d.auth) as s:
        route = d.url + "/specd/v1/complete"
        older = asyncio.create_task(s.post(route, json=native(document_id="file:///a.py")))
        await until(lambda: d.engines)
        await wait_event(d.engine.entered)
        newer = asyncio.create_task(s.post(route, json=native(document_id="file:///a.py")))
        async with await older as response:
            body = await response.json()
        assert response.status == 200
        assert body["finish_reason"] == "cancelled"
        assert body["text"] == "t0 "  # what had been generated when it was superseded
        d.engine.release.set()
        async with await newer as response:
            assert (await response.json())["finish_reason"] == "length"
        assert d.engine.finished == ["cancelled", "length"]
        assert 'specd_cancelled_total{reason="superseded"} 1' in d.scheduler.metrics.render()


async def test_a_completion_for_any_document_goes_before_a_warm_up():
    """A warm-up (prefill_only) for one file held another file's completion in the queue until it ended (7.6 s in
    a user's trial): any completion now cancels it."""
    async with fake_daemon(hold=True) as d, aiohttp.ClientSession(headers=d.auth) as s:
        route = d.url + "/specd/v1/complete"
        warm_up = asyncio.create_task(s.post(route, json=native(document_id="file:///a.py", prefill_only=True)))
        await until(lambda: d.engines)
        await wait_event(d.engine.entered)
        completion = asyncio.create_task(s.post(route, json=native(document_id="file:///b.py")))
        async with await warm_up as response:
            assert (await response.json())["finish_reason"] == "cancelled"
        d.engine.release.set()
        async with await completion as response:
            assert (await response.json())["finish_reason"] == "length"
        assert [r.prefill_only for r in d.engine.requests] == [True, False]
        # A warm-up never cancels a completion.
        d.engine.release.clear()
        d.engine.entered.clear()
        running = asyncio.create_task(s.post(route, json=native(document_id="file:///b.py")))
        await wait_event(d.engine.entered)
        later = asyncio.create_task(s.post(route, json=native(document_id="file:///c.py", prefill_only=True)))
        await asyncio.sleep(0.2)
        d.engine.release.set()
        async with await running as response:
            assert (await response.json())["finish_reason"] == "length"
        async with await later as response:
            assert response.status == 200


async def test_other_documents_do_not_supersede_each_other():
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:
        route = d.url + "/specd/v1/complete"
        answers = await asyncio.gather(*(s.post(route, json=native(document_id=f"doc{i}")) for i in range(3)))
        for response in answers:
            assert (await response.json())["finish_reason"] == "length"
            response.release()


async def test_deadline_answers_the_text_so_far_as_cut_and_frees_the_worker():
    async with fake_daemon(hold=True, request_timeout=0.05) as d, aiohttp.ClientSession(headers=d.auth) as s:
        async with s.post(d.url + "/v1/completions", json={"prompt": "x", "max_tokens": 5}) as response:
            assert response.status == 200 and response.headers["x-specd-truncated"] == "deadline"
            answer = await response.json()
        assert answer["choices"][0]["text"] == "t0 " and answer["choices"][0]["finish_reason"] == "length"
        assert answer["specd"]["truncated"] == "deadline"
        await until(lambda: d.scheduler.idle)
        assert d.engine.finished == ["cancelled"]
        d.engine.release.set()
        async with s.post(d.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as response:
            assert (await response.json())["choices"][0]["text"] == "t0 t1 "


async def test_client_disconnect_cancels_a_streaming_request(caplog):
    caplog.set_level("INFO", logger="specd.server")
    async with fake_daemon(hold=True) as d, aiohttp.ClientSession(headers=d.auth) as s:
        body = {"prompt": "x", "max_tokens": 50, "stream": True}
        response = await s.post(d.url + "/v1/completions", json=body)
        assert (await response.content.readline()).startswith(b"data: ")
        response.close()  # drops the connection mid-flight
        await until(lambda: d.engine.finished)
        assert d.engine.finished == ["cancelled"]
        await until(lambda: d.scheduler.idle)
        assert 'specd_cancelled_total{reason="disconnect"} 1' in d.scheduler.metrics.render()
        # a line in `specd logs` (the handler logs it as the cancellation unwinds it)
        await asyncio.wait_for(until(lambda: "POST /v1/completions -> client went away" in caplog.text), 10)


async def test_client_disconnect_cancels_a_plain_request():
    async with fake_daemon(hold=True) as d, aiohttp.ClientSession(headers=d.auth) as s:
        pending = asyncio.create_task(s.post(d.url + "/v1/completions", json={"prompt": "x", "max_tokens": 50}))
        await until(lambda: d.engines)
        await wait_event(d.engine.entered)
        pending.cancel()  # the client gives up: its connection closes
        await until(lambda: d.engine.finished)
        assert d.engine.finished == ["cancelled"]


async def test_keep_alive_unloads_when_idle_and_reloads_without_ever_holding_two_engines():
    FakeEngine.most_alive = FakeEngine.alive = 0
    async with fake_daemon(keep_alive=0) as d, aiohttp.ClientSession(headers=d.auth) as s:
        for _ in range(3):
            async with s.post(d.url + "/v1/completions", json={"prompt": "x", "max_tokens": 1}) as response:
                assert response.status == 200
            await until(lambda: d.scheduler.engine is None)
        assert len(d.engines) >= 3  # reloaded for each request after an idle unload
        assert FakeEngine.most_alive == 1
        async with s.get(d.url + "/health") as response:
            assert (await response.json())["status"] == "ok"


async def test_model_load_failure_is_reported_and_requests_get_503():
    async with fake_daemon(load_error=ValueError("no model named 'nope'")) as d, \
            aiohttp.ClientSession(headers=d.auth) as s:
        await until(lambda: d.scheduler.state == "failed")
        async with s.get(d.url + "/health") as response:
            assert (await response.json())["status"] == "failed"
        async with s.post(d.url + "/v1/completions", json={"prompt": "x"}) as response:
            assert response.status == 503
            assert "no model named 'nope'" in (await response.json())["error"]["message"]


async def test_engine_request_error_is_400_and_stream_chunks_join_to_the_text():
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:
        async with s.post(d.url + "/v1/completions", json={"prompt": "too long"}) as response:
            assert response.status == 400
            assert "context window" in (await response.json())["error"]["message"]
        body = {"prompt": "x", "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
        async with s.post(d.url + "/v1/completions", json=body) as response:
            events = [line[6:] for line in (await response.text()).splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "t0 t1 t2 t3 "
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
        assert chunks[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5,
                                       "prompt_tokens_details": {"cached_tokens": 0}}


async def test_allowed_origin_gets_cors_and_preflight_others_are_refused():
    async with fake_daemon(allowed_origins=["http://localhost:3000"]) as d, aiohttp.ClientSession() as s:
        preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "x-api-key,anthropic-version,x-stainless-os"}
        async with s.options(d.url + "/v1/completions", headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
            # The browser SDKs' own headers are granted (the token still has to come with the request).
            allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
            assert {"authorization", "content-type", "x-api-key", "anthropic-version", "x-stainless-os"} <= allowed
        headers = {**d.auth, "Origin": "http://localhost:3000"}
        async with s.get(d.url + "/v1/models", headers=headers) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
            exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
            assert {"x-specd-prompt-tokens", "x-specd-healed-tokens", "x-specd-truncated", "retry-after"} <= exposed
        async with s.get(d.url + "/v1/models", headers={**d.auth, "Origin": "http://localhost:3001"}) as response:
            assert response.status == 403


async def test_allowed_hosts_extends_the_loopback_names():
    async with fake_daemon(allowed_hosts=["specd.internal"]) as d, aiohttp.ClientSession(headers=d.auth) as s:
        async with s.get(d.url + "/v1/models", headers={"Host": "specd.internal:7411"}) as response:
            assert response.status == 200
        async with s.get(d.url + "/v1/models", headers={"Host": "other.internal"}) as response:
            assert response.status == 403


async def test_a_stream_that_hits_the_deadline_ends_as_cut():
    # 0.5 s: the deadline must fall after the first piece (before it, the answer is a 504 status: test_stream_errors)
    async with fake_daemon(hold=True, request_timeout=0.5) as d, aiohttp.ClientSession(headers=d.auth) as s:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}
        async with s.post(d.url + "/v1/chat/completions", json=body) as response:
            assert response.status == 200
            events = [line[6:] for line in (await response.text()).splitlines() if line.startswith("data: ")]
        assert json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"
        end = json.loads(events[-2])
        assert end["choices"][0]["finish_reason"] == "length" and end["specd"]["truncated"] == "deadline"
        assert events[-1] == "[DONE]"


async def test_a_superseded_stream_ends_with_finish_reason_cancelled():
    async with fake_daemon(hold=True) as d, aiohttp.ClientSession(headers=d.auth) as s:
        route = d.url + "/specd/v1/complete"
        older = await s.post(route, json=native(document_id="doc", stream=True, max_tokens=5))
        await wait_event(d.engine.entered)
        newer = asyncio.create_task(s.post(route, json=native(document_id="doc")))
        events = [line[6:] for line in (await older.text()).splitlines() if line.startswith("data: ")]
        assert json.loads(events[-2])["finish_reason"] == "cancelled"
        assert events[-1] == "[DONE]"
        d.engine.release.set()
        async with await newer as response:
            assert (await response.json())["finish_reason"] == "length"


async def test_shutdown_cancels_the_running_request_and_refuses_new_ones():
    async with fake_daemon(hold=True) as d, aiohttp.ClientSession(headers=d.auth) as s:
        running = asyncio.create_task(s.post(d.url + "/v1/completions", json={"prompt": "x", "max_tokens": 9}))
        await wait_event(d.engine.entered)
        await asyncio.get_running_loop().run_in_executor(None, lambda: d.scheduler.stop(grace=0))
        async with await running as response:
            assert response.status == 503
            assert "shutdown" in (await response.json())["error"]["message"]
        async with s.post(d.url + "/v1/completions", json={"prompt": "x"}) as response:
            assert response.status == 503
            assert "shutting down" in (await response.json())["error"]["message"]
        assert d.scheduler.engine is None  # the models were released


class _IdleWorkEngine(FakeEngine):
    """A FakeEngine with idle work: each run records whether a request interrupted it, waiting `work_s` seconds
    for one; `waits` gives what each run returns (seconds until the next, None: done, an exception: raised)."""

    def __init__(self, waits, work_s=0.0):
        super().__init__()
        self.waits, self.work_s, self.runs = list(waits), work_s, []
        self.idle_work = [self._work]
        self.working = threading.Event()

    def _work(self, interrupted):
        return None

    def run_idle_work(self, interrupted):
        import time as clock

        self.working.set()
        started = clock.monotonic()
        while not interrupted() and clock.monotonic() - started < self.work_s:
            clock.sleep(0.005)
        self.runs.append(interrupted())
        wait = self.waits.pop(0)
        if isinstance(wait, Exception):
            raise wait
        return wait


def _scheduler(engine, monkeypatch, keep_alive=-1.0):
    from specd.daemon.engine.requests import CancelToken
    from specd.daemon.service import scheduler as module
    from specd.daemon.service.metrics import Metrics

    monkeypatch.setattr(module, "IDLE_WORK_AFTER", 0.05)
    scheduler = module.Scheduler(lambda progress: engine, CancelToken, Metrics(), queue_size=4, request_timeout=30,
                                 keep_alive=keep_alive)
    scheduler.start()
    assert scheduler.wait_loaded(10)
    return scheduler


async def test_idle_work_runs_while_nothing_is_asked_until_it_is_done(monkeypatch):
    """The engine's idle work (measuring llama.cpp's pass costs again) runs once no job came for a while, again
    when it asks to, and never after it says it is done."""
    engine = _IdleWorkEngine([0.0, None])
    scheduler = _scheduler(engine, monkeypatch)
    try:
        await until(lambda: len(engine.runs) == 2)
        await asyncio.sleep(0.3)
        assert engine.runs == [False, False]
        assert (await scheduler.run(GenerationRequest(prompt="x", max_tokens=2))).text == "t0 t1 "
    finally:
        scheduler.stop()


async def test_a_job_interrupts_idle_work_and_a_failing_one_stops_without_harm(monkeypatch):
    engine = _IdleWorkEngine([0.0, RuntimeError("probe failed"), 0.0], work_s=30.0)
    scheduler = _scheduler(engine, monkeypatch)
    try:
        await wait_event(engine.working)  # for 30 s unless interrupted
        result = await scheduler.run(GenerationRequest(prompt="x", max_tokens=1))
        assert result.text == "t0 " and engine.runs == [True]
        engine.work_s = 0.0
        await until(lambda: len(engine.runs) == 2)  # the next one fails: logged, never run again
        await asyncio.sleep(0.3)
        assert len(engine.runs) == 2 and scheduler._idle_work_due is None
        assert (await scheduler.run(GenerationRequest(prompt="x", max_tokens=1))).text == "t0 "
    finally:
        scheduler.stop()
