"""The daemon's HTTP app serving a real (tiny) engine on a background thread, for synchronous tests that send
many requests, such as property tests: no subprocess, one event loop for the whole module."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from specd.daemon.api.sigv4 import KeyPair
from specd.daemon.config.settings import Settings
from specd.daemon.engine.requests import CancelToken, GenerationRequest, RequestError
from specd.daemon.service.metrics import Metrics
from specd.daemon.service.scheduler import Scheduler

TOKEN = "edge-token-0123456789"
AWS_KEYS = KeyPair("SPECDSERVEDTEST0000", "served-test-secret-0123456789")  # the Bedrock door's SigV4 pair


@dataclass
class Answer:
    status: int
    body: dict  # the JSON answer; for a stream, its last event that is not [DONE]
    events: list[dict]  # the stream's events ([] when not streamed)


@dataclass
class Served:
    url: str

    def post(self, path: str, body: dict | bytes) -> Answer:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST", headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, raw, kind = e.code, e.read(), "application/json"
        if kind.startswith("text/event-stream"):
            events = [json.loads(line[6:]) for line in raw.decode().splitlines()
                      if line.startswith("data: ") and line != "data: [DONE]"]
            return Answer(status, events[-1] if events else {}, events)
        return Answer(status, json.loads(raw), [])


@contextlib.contextmanager
def serve(load_engine: Callable[[], object], **overrides) -> Iterator[Served]:
    """`load_engine()` is called once on the scheduler's worker; the app listens on a free loopback port."""
    from aiohttp import web

    from specd.daemon.api.app import create_app

    settings = replace(Settings(verifier="tiny"), **overrides)
    scheduler = Scheduler(lambda progress: load_engine(), CancelToken, Metrics(), queue_size=settings.queue_size,
                          request_timeout=settings.request_timeout, keep_alive=settings.keep_alive)
    app = create_app(settings, scheduler, token=TOKEN, new_request=GenerationRequest, request_error=RequestError,
                     aws_keys=AWS_KEYS)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, handler_cancellation=True)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    scheduler.start()
    scheduler.wait_loaded(timeout=300)
    try:
        yield Served(f"http://127.0.0.1:{port}")
    finally:
        scheduler.stop()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def answer_text(answer: Answer) -> str:
    """The completion's text from any route's answer, streamed (the deltas joined) or not."""
    def text_of(event: dict) -> str:
        if event.get("type") == "message":  # Anthropic's whole answer, and its stream's text deltas
            return "".join(block.get("text", "") for block in event["content"])
        if event.get("type") == "content_block_delta":
            return event["delta"].get("text", "")
        if "choices" not in event:
            return event.get("text", "")
        choice = event["choices"][0]
        if "message" in choice:
            return choice["message"]["content"]
        if "delta" in choice:
            return choice["delta"].get("content", "")
        return choice.get("text", "")

    return "".join(text_of(e) for e in answer.events) if answer.events else text_of(answer.body)
