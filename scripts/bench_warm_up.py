"""The first completion where the cursor lands: with and without the cursor hint's warm-up.

An editor asks for a completion only once the user types, so the first completion at a new spot (a file just
opened, a jump) used to prefill its whole prompt while the user waited: seconds on a CPU. specd's editor configs
now tell the language server where the cursor rests (`specd/didMoveCursor`), and it has the daemon read that
spot's prompt ahead (`prefill_only`); the keystroke's completion then feeds only what was typed. If the user types
before the warm-up ends, the completion cancels it and goes on from the chunks it read.

For each seeded cursor (standard-library files, a point inside a line whose rest is removed, as the user is writing
it), the same keystroke (the file's next character) is completed by the engine with the language server's prompt
(its windows, mode, the document's cache key, fitted to the context) from an empty cache:

- `no hint`: the completion alone;
- `rest R s`: a warm-up of the spot before the keystroke, the keystroke R seconds after the warm-up started
  (cancelling it if it still runs); `rest ∞`: the warm-up ends first.

The latency is counted from the keystroke: the time left of a warm-up still in its chunk (the completion waits for
it) plus the completion. Sides are interleaved per cursor, each on its own document (cache slot). Prints per side
latency (median, p95), prompt tokens the completion prefilled, and whether its tokens equal the `no hint` side's,
and the ratios of median latencies.

    SPECD_HOME=/tmp/sh python scripts/bench_warm_up.py --verifier smollm2-135m --threads 1 --cursors 12
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import sysconfig
import threading
import time
from pathlib import Path

from specd.daemon.engine.loop import CancelToken, EngineConfig, GenerationRequest
from specd.daemon.models.loading import load_engine
from specd.lsp.postprocess import choose_mode
from specd.lsp.config import Settings
from specd.lsp.documents import Document, split_lines

NO_HINT = "no hint"


def pick_cursors(count: int, seed: int) -> list[tuple[str, list[str], int, int]]:
    """(file name, its lines with the cursor line's rest removed, cursor line, cursor column) per cursor; the
    character typed is the removed rest's first."""
    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 3000)
    cursors = []
    for path in rng.sample(files, len(files)):
        lines = split_lines(path.read_text(encoding="utf-8", errors="replace"))
        candidates = [i for i in range(20, len(lines)) if len(lines[i].strip()) > 8]
        if not candidates:
            continue
        line = rng.choice(candidates)
        text = lines[line].rstrip("\r\n")
        indent = len(text) - len(text.lstrip())
        column = rng.randrange(indent, len(text) - 1)
        cursors.append((path.name, lines[:line] + [text[: column + 1] + "\n"] + lines[line + 1 :], line, column))
        if len(cursors) == count:
            break
    return cursors


def request_at(doc: Document, line: int, column: int, settings: Settings, max_tokens: int,
               prefill_only: bool = False) -> GenerationRequest:
    """What `specd lsp` sends for this spot (Completer._decode), as the engine's request."""
    text = doc.line_text(line)
    return GenerationRequest(
        prompt=doc.prefix(line, column, settings.prefix_chars), suffix=doc.suffix(line, column, settings.suffix_chars),
        max_tokens=max_tokens, mode=choose_mode(settings.mode, text[:column], text[column:]), cache_key=doc.uri,
        fit_context=True, prefill_only=prefill_only)


def run_side(engine, side: str, rest_s: float | None, name: str, lines: list[str], line: int, column: int,
             settings: Settings, max_tokens: int) -> dict:
    """One cursor on one side: the warm-up (unless `rest_s` is None), then the keystroke's completion."""
    doc = Document(f"file:///{side.replace(' ', '-')}/{name}", "python", 1, lines)
    waited = 0.0
    warm_up = None
    if rest_s is not None:
        # The document as it is before the keystroke: the typed character not yet in its line.
        before = Document(doc.uri, "python", 1, lines[:line] + [lines[line][:column] + "\n"] + lines[line + 1 :])
        cancel = CancelToken()
        timer = threading.Timer(rest_s, cancel.cancel) if math.isfinite(rest_s) else None
        if timer:
            timer.start()
        started = time.perf_counter()
        warm_up = engine.generate(request_at(before, line, column, settings, max_tokens, prefill_only=True), cancel)
        if timer:
            timer.cancel()
        waited = max(0.0, time.perf_counter() - started - rest_s) if math.isfinite(rest_s) else 0.0
    started = time.perf_counter()
    result = engine.generate(request_at(doc, line, column + 1, settings, max_tokens))
    latency = waited + time.perf_counter() - started
    s = result.stats
    return {"cursor": f"{name}:{line + 1}:{column + 1}", "latency_s": latency, "waited_for_warm_up_s": waited,
            "warm_up_finished": warm_up is not None and warm_up.finish_reason != "cancelled",
            "prompt_tokens": s.prompt_tokens, "prefilled": s.prompt_tokens - s.cached_tokens,
            "token_ids": result.token_ids}


def summarize(rows: list[dict], reference: list[dict]) -> dict:
    latencies = sorted(r["latency_s"] for r in rows)
    return {
        "cursors": len(rows),
        "latency_median_s": statistics.median(latencies),
        "latency_p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        "prefilled_mean": statistics.mean(r["prefilled"] for r in rows),
        "prompt_tokens_mean": statistics.mean(r["prompt_tokens"] for r in rows),
        "warm_ups_finished": sum(r["warm_up_finished"] for r in rows),
        "identical_to_no_hint": sum(r["token_ids"] == ref["token_ids"] for r, ref in zip(rows, reference)),
    }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verifier", default="smollm2-135m")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cursors", type=int, default=12)
    p.add_argument("--rests", default="0.5,1,inf", help="seconds from warm-up start to keystroke, comma-separated")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the report here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    settings = Settings()
    rests = [float(r) for r in args.rests.split(",")]
    sides = {NO_HINT: None, **{f"rest {'∞' if math.isinf(r) else f'{r:g}'} s": r for r in rests}}
    engine = load_engine(EngineConfig(verifier=args.verifier, threads=args.threads, backend=args.backend,
                                      cache_slots=len(sides)), progress=log)
    rows: dict[str, list[dict]] = {side: [] for side in sides}
    for i, (name, lines, line, column) in enumerate(pick_cursors(args.cursors, args.seed)):
        engine.pool.clear()
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        for side in order:
            rows[side].append(run_side(engine, side, sides[side], name, lines, line, column, settings,
                                       args.max_tokens))
        log(f"{name}:{line + 1}: " + ", ".join(f"{side} {rows[side][-1]['latency_s']:.2f} s" for side in sides))
    table = {side: summarize(rows[side], rows[NO_HINT]) for side in sides}
    report = {
        "sides": table,
        "no_hint_over_side_median_latency": {side: table[NO_HINT]["latency_median_s"] / row["latency_median_s"]
                                             for side, row in table.items() if side != NO_HINT},
        "rows": {side: [{k: v for k, v in r.items() if k != "token_ids"} for r in items] for side, items in rows.items()},
        "settings": {"verifier": args.verifier, "backend": engine.info().get("backend"), "threads": args.threads,
                     "cursors": args.cursors, "max_tokens": args.max_tokens, "seed": args.seed,
                     "prefix_chars": settings.prefix_chars, "suffix_chars": settings.suffix_chars},
    }
    for side, row in table.items():
        print(f"{side:10} latency median {row['latency_median_s']:.3f} s  p95 {row['latency_p95_s']:.3f} s  "
              f"prefilled {row['prefilled_mean']:7.1f} of {row['prompt_tokens_mean']:7.1f} tokens (mean)  "
              f"warm-ups finished {row['warm_ups_finished']}/{row['cursors']}  "
              f"identical to no hint {row['identical_to_no_hint']}/{row['cursors']}")
    print("no hint / side, median latency: " + ", ".join(
        f"{side} {ratio:.2f}" for side, ratio in report["no_hint_over_side_median_latency"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    engine.close()
    return report


if __name__ == "__main__":
    main()
