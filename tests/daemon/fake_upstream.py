"""A fake OpenAI-compatible completions server for the upstream tests: it records what it receives, streams what it
is told (pieces, a finish reason, usage, llama-server timings, SGLang's sglext), and misbehaves on request: an HTTP
error, a page that is not a stream, silence, a connection dropped mid-stream. It notes when its client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeUpstream:
    pieces: list[str] = field(default_factory=lambda: ["    return ", "a + b\n", "\n", "def other():\n", "    pass\n"])
    finish_reason: str = "stop"
    usage: dict | None = None
    timings: dict | None = None
    sglext: dict | None = None
    behaviour: str = "ok"  # ok | status | html | slow | drop | stall
    status: int = 500
    delay: float = 0.0  # seconds before each piece
    models: list[dict] = field(default_factory=lambda: [{"id": "fake-coder", "object": "model",
                                                          "owned_by": "llamacpp"}])
    metrics_text: str | None = None
    requests: list[dict] = field(default_factory=list)  # every /v1/completions body received
    headers: list[dict] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)  # requests whose client went away before the stream ended
    finished: list[int] = field(default_factory=list)  # requests streamed to their end
    url: str = ""
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        index = len(self.requests)
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        if self.behaviour == "status":
            return web.json_response({"error": {"message": "the model fell over", "type": "server_error"}},
                                     status=self.status)
        if self.behaviour == "html":
            return web.Response(text="<html><body>502 Bad Gateway (a proxy)</body></html>", content_type="text/html")
        if self.behaviour == "slow":
            await asyncio.sleep(30)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i, piece in enumerate(self.pieces):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.behaviour == "drop" and i == 2:
                    request.transport.close()
                    return response
                await self._send(response, {"id": "cmpl-1", "object": "text_completion", "model": "fake-coder",
                                            "choices": [{"index": 0, "text": piece, "finish_reason": None}]})
            if self.behaviour == "stall":
                await asyncio.sleep(30)
            last = {"id": "cmpl-1", "object": "text_completion", "model": "fake-coder",
                    "choices": [{"index": 0, "text": "", "finish_reason": self.finish_reason}]}
            for key in ("usage", "timings", "sglext"):
                if getattr(self, key) is not None:
                    last[key] = getattr(self, key)
            await self._send(response, last)
            await response.write(b"data: [DONE]\n\n")
            self.finished.append(index)
        except (asyncio.CancelledError, ConnectionResetError):
            self.closed.append(index)
            self.client_gone.set()
            raise
        return response

    async def _send(self, response: web.StreamResponse, event: dict) -> None:
        await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": self.models})

    async def metrics(self, request: web.Request) -> web.Response:
        if self.metrics_text is None:
            raise web.HTTPNotFound()
        return web.Response(text=self.metrics_text)


@contextlib.asynccontextmanager
async def serve_fake_upstream(fake: FakeUpstream | None = None, port: int = 0):
    fake = fake or FakeUpstream()
    app = web.Application()
    app.router.add_post("/v1/completions", fake.completions)
    app.router.add_get("/v1/models", fake.list_models)
    app.router.add_get("/metrics", fake.metrics)
    runner = web.AppRunner(app, handler_cancellation=True)  # a client that goes away cancels the handler
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()
