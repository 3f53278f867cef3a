"""What the API doors' tests share: the real daemon they run against (tiny verifier + drafter, a 256-token context),
a client that hangs up mid-stream (it must free the worker), and a full queue (the fake engine holds one request,
a second waits), which each door refuses in its own shape."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from .conftest import fake_daemon, specd_env, start_real_daemon, stop_real_daemon


@pytest.fixture(scope="module")
def daemon(tiny_pair, tmp_path_factory):
    home = tmp_path_factory.mktemp("specd-home")
    verifier, drafter = tiny_pair
    args = ["--port", "0", "--verifier", str(verifier), "--drafter", str(drafter), "--draft-strategy", "model",
            "--max-draft-tokens", "4", "--device", "cpu", "--max-context", "256"]
    started = start_real_daemon(home, specd_env(home), args)
    yield started
    stop_real_daemon(started)


def hang_up_mid_stream(daemon, url: str, body: dict, headers: dict) -> None:
    """POSTs a long streamed generation, drops the connection after the first bytes, and checks that the
    daemon counted one more disconnect cancellation and went idle."""

    async def cancelled(s: aiohttp.ClientSession) -> float:
        text = await (await s.get(daemon.url + "/metrics")).text()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('specd_cancelled_total{reason="disconnect"}'))

    async def run() -> None:
        async with aiohttp.ClientSession(headers=daemon.auth) as s:
            before = await cancelled(s)
            response = await s.post(url, json=body, headers=headers)
            assert response.status == 200
            assert await response.content.readany()  # the stream has begun
            response.close()
            for _ in range(500):
                status = await (await s.get(daemon.url + "/specd/v1/status")).json()
                if status["idle"]:
                    break
                await asyncio.sleep(0.02)
            assert status["idle"] and await cancelled(s) == before + 1

    asyncio.run(run())


@contextlib.asynccontextmanager
async def full_queue(**daemon_options):
    """A fake daemon whose one queue place is taken; yields it, then lets both held requests finish."""
    async with fake_daemon(hold=True, queue_size=1, **daemon_options) as d, aiohttp.ClientSession(headers=d.auth) as s:
        body = {"prompt": "a", "max_tokens": 5}
        running = asyncio.ensure_future(s.post(d.url + "/v1/completions", json=body))
        await asyncio.get_running_loop().run_in_executor(None, d.engine.entered.wait, 10)
        queued = asyncio.ensure_future(s.post(d.url + "/v1/completions", json=body))
        while d.scheduler.queue_depth < 1:
            await asyncio.sleep(0.01)
        yield d
        d.engine.release.set()
        for pending in (running, queued):
            assert (await pending).status == 200


def run_example(daemon, name: str) -> str:
    """Runs scripts/examples/<name> against the daemon (it finds it with `specd status --json`); returns stdout."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "examples" / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, str(script)], env={**env, "SPECD_HOME": str(daemon.home)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("text: ")  # the tiny random model's text, whatever it is
    return done.stdout
