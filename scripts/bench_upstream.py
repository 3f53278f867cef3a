"""Latency specd adds in front of an upstream server (`upstream` in settings), per request.

Starts `specd serve` in a temporary SPECD_HOME (or uses --home) with its `upstream` pointed at the server, then
sends the same completions two ways, interleaved in one client process over kept-alive connections, in random
order per pair:

- direct: POST {upstream}/v1/completions with the raw FIM prompt specd would send (built here by specd's own
  RemoteEngine.wire_prompt), streamed and read to `data: [DONE]`, as specd reads it;
- through specd: POST /specd/v1/complete (the language server's route: prefix, suffix, mode none), whole answer.

Prints p50/p95 of both, of the paired difference (what specd adds: goal <= 5 ms p50), and their ratio. Without
--upstream it starts a stand-in server (a subprocess of this script) that streams --tokens pieces of text at once,
so the numbers are specd's own cost rather than a model's noise; with --upstream URL (vLLM, SGLang, llama-server,
llama-cpp-python) the model's time is in both sides.

    python scripts/bench_upstream.py [--requests 200] [--tokens 32] [--upstream URL --model NAME] [--tokenizer T]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the stand-in upstream ------------------------------------------------------------------------------------

def serve_stand_in(port: int, tokens: int) -> None:
    """An OpenAI-compatible completions stream of `tokens` pieces, sent as fast as the socket takes them."""
    from aiohttp import web

    pieces = [f" word{i}" for i in range(tokens)]

    async def completions(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            event = {"object": "text_completion", "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        last = {"object": "text_completion", "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}}
        await response.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stand-in", "owned_by": "bench"}]})

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def wait_http(url: str, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


# ---- prompts --------------------------------------------------------------------------------------------------

def code_windows(count: int, seed: int) -> list[tuple[str, str]]:
    """(prefix, suffix) cut at seeded places in standard-library sources: up to 1,500 characters before the cursor
    and 400 after."""
    import argparse as argparse_module
    import json.decoder
    import textwrap

    sources = [inspect.getsource(m) for m in (argparse_module, json.decoder, textwrap)]
    rng = random.Random(seed)
    windows = []
    for _ in range(count):
        source = rng.choice(sources)
        cut = rng.randrange(1500, len(source) - 400)
        windows.append((source[cut - 1500:cut], source[cut:cut + 400]))
    return windows


def wire_prompts(tokenizer_spec: str, windows: list[tuple[str, str]], max_tokens: int) -> list:
    """What specd sends upstream for each window: its own RemoteEngine builds it."""
    from specd.daemon.engine.loop import EngineConfig
    from specd.daemon.engine.remote import RemoteEngine
    from specd.daemon.engine.requests import GenerationRequest
    from specd.daemon.models.upstream import load_tokenizer

    class NoClient:
        url, model = "", ""

    engine = RemoteEngine(NoClient(), load_tokenizer(tokenizer_spec, lambda m: None), EngineConfig())
    prompts = []
    for prefix, suffix in windows:
        request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=max_tokens, fit_context=True)
        prompts.append(engine.wire_prompt(request, engine.prompt_ids(request)))
    return prompts


# ---- measuring ------------------------------------------------------------------------------------------------

async def direct(session: aiohttp.ClientSession, upstream: str, body: dict) -> float:
    started = time.perf_counter()
    async with session.post(upstream + "/v1/completions", json=body) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"data: [DONE]"):
                break
    return time.perf_counter() - started


async def through_specd(session: aiohttp.ClientSession, daemon: str, token: str, body: dict) -> float:
    started = time.perf_counter()
    async with session.post(daemon + "/specd/v1/complete", json=body,
                            headers={"Authorization": f"Bearer {token}"}) as response:
        answer = await response.json()
        assert response.status == 200, answer
    return time.perf_counter() - started


async def measure(args, upstream: str, daemon: str, token: str, windows, prompts) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"direct": [], "specd": [], "added": []}
    rng = random.Random(args.seed + 1)
    async with aiohttp.ClientSession() as session:
        for i, ((prefix, suffix), prompt) in enumerate(zip(windows, prompts)):
            direct_body = {"prompt": prompt, "max_tokens": args.tokens, "temperature": 0, "stream": True,
                           "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
            if args.model:
                direct_body["model"] = args.model
            specd_body = {"prefix": prefix, "suffix": suffix, "max_tokens": args.tokens, "mode": None,
                          "temperature": 0}
            runs = [("direct", lambda: direct(session, upstream, direct_body)),
                    ("specd", lambda: through_specd(session, daemon, token, specd_body))]
            rng.shuffle(runs)
            took = {name: await run() for name, run in runs}
            if i < args.warmup:
                continue
            samples["direct"].append(took["direct"])
            samples["specd"].append(took["specd"])
            samples["added"].append(took["specd"] - took["direct"])
    return samples


def report(samples: dict[str, list[float]]) -> None:
    ms = {name: [v * 1000 for v in values] for name, values in samples.items()}
    print(f"{len(ms['added'])} paired requests")
    for name in ("direct", "specd", "added"):
        label = {"direct": "direct to upstream", "specd": "through specd", "added": "added by specd (paired)"}[name]
        print(f"  {label:<26} p50 {percentile(ms[name], 0.5):7.2f} ms   p95 {percentile(ms[name], 0.95):7.2f} ms"
              f"   mean {statistics.mean(ms[name]):7.2f} ms")
    print(f"  through specd / direct     p50 {percentile(ms['specd'], 0.5) / percentile(ms['direct'], 0.5):.2f}x"
          f"   p95 {percentile(ms['specd'], 0.95) / percentile(ms['direct'], 0.95):.2f}x")
    print(f"  goal: <= 5 ms added at p50: {'met' if percentile(ms['added'], 0.5) <= 5 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=32, help="completion tokens per request")
    parser.add_argument("--upstream", help="an existing OpenAI-compatible server (default: a stand-in)")
    parser.add_argument("--model", help="the upstream's model name")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="the tokenizer specd builds prompts with")
    parser.add_argument("--home", help="SPECD_HOME for the daemon (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve-stand-in", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stand_in:
        serve_stand_in(args.serve_stand_in, args.tokens)
        return 0

    children = []
    try:
        upstream = args.upstream
        if upstream is None:
            port = free_port()
            children.append(subprocess.Popen([sys.executable, __file__, "--serve-stand-in", str(port),
                                              "--tokens", str(args.tokens)]))
            upstream = f"http://127.0.0.1:{port}"
        wait_http(upstream + "/v1/models")
        home = Path(args.home or tempfile.mkdtemp(prefix="specd-bench-upstream-"))
        (home / "config").mkdir(parents=True, exist_ok=True)
        settings = {"port": free_port(), "request_timeout": 300,
                    "upstream": {"url": upstream, "tokenizer": args.tokenizer, "timeout": 120,
                                 **({"model": args.model} if args.model else {})}}
        (home / "config" / "settings.json").write_text(json.dumps(settings))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPECD_")}
        env["SPECD_HOME"] = str(home)
        children.append(subprocess.Popen([sys.executable, "-m", "specd.daemon.cli", "serve"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        daemon = f"http://127.0.0.1:{settings['port']}"
        wait_http(daemon + "/health")
        token = (home / "state" / "token").read_text().strip()
        windows = code_windows(args.requests + args.warmup, args.seed)
        os.environ["SPECD_HOME"] = str(home)  # the tokenizer cache is the daemon's
        prompts = wire_prompts(args.tokenizer, windows, args.tokens)
        report(asyncio.run(measure(args, upstream, daemon, token, windows, prompts)))
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
