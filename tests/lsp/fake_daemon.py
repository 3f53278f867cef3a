"""A stand-in for the daemon's native route, for behaviour the real daemon cannot be made to show on
demand: a decode slow enough to cancel mid-way, or a reply chosen by the test.

It speaks the contract (`POST /specd/v1/complete` with a bearer token, state file under SPECD_HOME)
and, like the real daemon, treats a closed connection as a cancel.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from typing import Callable

from aiohttp import web

from specd.daemon.process.state import DaemonLock
from specd.daemon.config.paths import get_paths


class FakeDaemon:
    def __init__(self, reply: Callable[[dict], str] = lambda body: "x", delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self.cancelled = 0
        self.token = secrets.token_hex(8)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._lock: DaemonLock | None = None

    async def start(self) -> "FakeDaemon":
        """Listen on a fresh port with a fresh token; the lock is held like the real daemon holds it."""
        self.token = secrets.token_hex(8)
        if self._lock is None:
            self._lock = DaemonLock(get_paths().lock_file)
            assert self._lock.acquire(), "another daemon holds the lock"
        app = web.Application()
        app.router.add_post("/specd/v1/complete", self._complete)
        app.router.add_get("/specd/v1/status", self._status)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        paths = get_paths()
        paths.token_file.write_text(self.token)
        paths.state_file.write_text(json.dumps({
            "pid": os.getpid(), "url": self.url, "host": "127.0.0.1", "port": port, "status": "ready",
            "token_file": str(paths.token_file), "version": "fake", "started_at": 0,
        }))
        return self

    async def stop(self, release_lock: bool = True) -> None:
        """With `release_lock=False` the process looks alive but does not answer (a hung daemon)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if release_lock and self._lock is not None:
            self._lock.release()
            self._lock = None

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "fake", "requests_served": len(self.requests)})

    async def _complete(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": {"message": "bad token", "type": "auth", "code": 401}}, status=401)
        body = await request.json()
        self.requests.append(body)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        text = self.reply(body)
        if isinstance(text, web.Response):  # a test's own answer (an error)
            return text
        return web.json_response({
            "id": f"cmpl-{len(self.requests)}", "text": text, "finish_reason": "stop",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            "specd": {"total_s": 0.0, "queue_s": 0.0},
        })
