"""LSP + HTTP overhead of `specd lsp`: time from request to answer minus the engine's own time.

Starts a daemon with tiny random models in a temporary SPECD_HOME (or uses the one at --home), starts
`specd lsp` over stdio, and sends inline-completion requests one keystroke apart (debounce 0, so the
wait is not counted). For each request: wall time at the client, the LSP's HTTP round trip and the
engine's `total_s` (both from `specd.status`). Prints p50/p95 of
  overhead  = wall - engine total   (goal: <= 15 ms p50)
  http      = round trip - engine total   (aiohttp + daemon routing + queue)
  lsp       = wall - round trip   (JSON-RPC, document windows, cleaning)
for a small document and for a 5 MB one.

    python scripts/bench_lsp.py [--requests 100] [--home DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lsp.real_daemon import run_cli, start_daemon  # noqa: E402

SERVER = [sys.executable, "-c", "import sys; from specd.lsp.server import main; main(sys.argv[1:])"]
URI = "file:///bench/main.py"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(client: LanguageClient, text: str, line: int, requests: int) -> dict[str, list[float]]:
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(URI, "python", 1, text)))
    samples: dict[str, list[float]] = {"overhead": [], "http": [], "lsp": []}
    column = 0
    for i in range(requests + 3):  # the first few warm the engine's caches
        change = types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(line, column), types.Position(line, column)), text="q")
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=URI, version=i + 2), [change]))
        column += 1
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
            text_document=types.TextDocumentIdentifier(URI), position=types.Position(line, column))
        before = (await status(client))["decodes"]
        started = time.perf_counter()
        await client.text_document_inline_completion_async(params)
        wall = time.perf_counter() - started
        report = await status(client)
        if i < 3 or report["decodes"] != before + 1:
            continue  # warm-up, or served from the typed-ahead rest (no engine time to subtract)
        last = report["last"]
        samples["overhead"].append(wall - last["engine_total_s"])
        samples["http"].append(last["round_trip_s"] - last["engine_total_s"])
        samples["lsp"].append(wall - last["round_trip_s"])
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(URI)))
    return samples


async def status(client: LanguageClient) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="specd.status"))


async def run(requests: int) -> None:
    client = LanguageClient("bench", "0")
    await client.start_io(*SERVER)
    await client.initialize_async(types.InitializeParams(
        capabilities=types.ClientCapabilities(),
        initialization_options={"debounceMs": 0, "maxTokens": 4, "mode": "line",
                                "prefixChars": 1500, "suffixChars": 500}))
    client.initialized(types.InitializedParams())
    small = "def add(a, b):\n    return a + b\n\nvalue = \n"
    large = "".join(f"value_{i} = compute({i})  # a line of some length\n" for i in range(110_000))
    for name, text, line in (("small document", small, 3), (f"{len(large) / 1e6:.1f} MB document", large, 55_000)):
        samples = await measure(client, text, line, requests)
        print(f"{name}: {len(samples['overhead'])} requests")
        for key, values in samples.items():
            ms = [v * 1000 for v in values]
            print(f"  {key:9s} p50 {statistics.median(ms):6.2f} ms   p95 {percentile(ms, 0.95):6.2f} ms")
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--home", type=Path, help="SPECD_HOME of a configured daemon (default: a temporary one)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="specd-bench-"))
    os.environ["SPECD_HOME"] = str(home)
    if args.home is None:
        print("starting a daemon with tiny random models ...", flush=True)
        start_daemon(home)
    try:
        asyncio.run(run(args.requests))
    finally:
        if args.home is None:
            run_cli(home, "stop")


if __name__ == "__main__":
    main()
