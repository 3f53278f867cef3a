"""Typing in a long file: what the language server's prompt window costs the daemon's cache.

The daemon reuses a document's cache up to the first token that differs from its previous prompt. The language
server's prefix window (`prefix_chars` before the cursor, whole lines) used to start at the farthest line that
fit, so in a file longer than the window every few characters typed pushed its first line out and the next
request prefilled the whole prompt again. Now the window starts at a line that stays put for dozens of lines
(`Document.prefix`). This script types lines back into files where the window is cut and, at every
`--every`-th keystroke and after every Enter, asks for a completion the way `specd lsp` does (its windows, `line` mode, the document's
cache key, fitted to the context), once with each window, interleaved, on one engine. It prints, per window:
requests, prompt tokens prefilled again, how many requests prefilled more than half their prompt, and latency
(median, p95, max, total; the median after an Enter apart), and the ratios of the two.

    SPECD_HOME=/tmp/sh python scripts/bench_typing.py --verifier smollm2-135m --threads 1 --files 3 --lines 3

Files are seeded picks of Python standard-library modules long enough for the window to be cut; the cursor is a
seeded line past the window; the typed text is the file's own next lines (taken out first, typed back).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import sysconfig
import time
from pathlib import Path

from lsprotocol import types

from specd.daemon.engine.loop import EngineConfig, GenerationRequest
from specd.daemon.models.loading import load_engine
from specd.lsp.postprocess import choose_mode
from specd.lsp.config import Settings
from specd.lsp.documents import Document, split_lines

WINDOWS = ("start at the farthest line (before)", "anchored start (now)")


def farthest_line_prefix(doc: Document, line: int, column: int, budget: int) -> str:
    """The window as it was: every line that fits, back from the cursor."""
    parts = [doc.lines[line][:column]]
    used, row = len(parts[0]), line - 1
    while row >= 0 and used + len(doc.lines[row]) <= budget:
        parts.append(doc.lines[row])
        used += len(doc.lines[row])
        row -= 1
    return "".join(reversed(parts))[-budget:]


def window(name: str, doc: Document, line: int, column: int, budget: int) -> str:
    return farthest_line_prefix(doc, line, column, budget) if name == WINDOWS[0] else doc.prefix(line, column, budget)


def pick_sessions(count: int, lines: int, seed: int, budget: int) -> list[tuple[str, list[str], int]]:
    """(file name, its lines with `lines` lines taken out at the cursor, the cursor's line) per file."""
    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 4 * budget)
    sessions = []
    for path in rng.sample(files, len(files)):
        text = path.read_text(encoding="utf-8", errors="replace")
        all_lines = split_lines(text)
        offsets = [0]
        for item in all_lines:
            offsets.append(offsets[-1] + len(item))
        candidates = [i for i in range(len(all_lines) - lines - 1)
                      if offsets[i] > 2 * budget and all_lines[i].strip() and all_lines[i + 1].strip()]
        if not candidates:
            continue
        cursor = rng.choice(candidates)
        sessions.append((path.name, all_lines, cursor))
        if len(sessions) == count:
            break
    return sessions


def type_session(engine, name: str, all_lines: list[str], cursor: int, lines: int, every: int,
                 settings: Settings, max_tokens: int, log) -> dict[str, list[dict]]:
    """Type `lines` lines back at `cursor`; every `every`-th keystroke and after each Enter, one request per
    window, interleaved."""
    typed = "".join(all_lines[cursor : cursor + lines])
    docs = {w: Document(f"file:///{w[:6]}/{name}", "python", 1, all_lines[:cursor] + ["\n"] + all_lines[cursor + lines:])
            for w in WINDOWS}
    records: dict[str, list[dict]] = {w: [] for w in WINDOWS}
    line, column = cursor, 0
    for count, char in enumerate(typed, 1):
        here = types.Position(line, column)
        for doc in docs.values():  # as an editor's didChange sends a keystroke
            doc.apply(types.TextDocumentContentChangePartial(range=types.Range(here, here), text=char),
                      types.PositionEncodingKind.Utf32)
        line, column = (line + 1, 0) if char == "\n" else (line, column + 1)
        if count % every and char != "\n":
            continue
        order = WINDOWS if (count // every) % 2 else WINDOWS[::-1]
        for w in order:
            doc = docs[w]
            text = doc.line_text(line)
            request = GenerationRequest(
                prompt=window(w, doc, line, column, settings.prefix_chars),
                suffix=doc.suffix(line, column, settings.suffix_chars), max_tokens=max_tokens,
                mode=choose_mode(settings.mode, text[:column], text[column:]),
                cache_key=doc.uri, fit_context=True)
            started = time.perf_counter()
            result = engine.generate(request)
            s = result.stats
            records[w].append({"new_line": char == "\n", "wall_s": time.perf_counter() - started,
                               "prompt_tokens": s.prompt_tokens,
                               "prefilled": s.prompt_tokens - s.cached_tokens, "prefill_s": s.prefill_s})
    log(f"{name}: " + "; ".join(f"{w}: {sum(r['prefilled'] for r in records[w])} tokens prefilled"
                                for w in WINDOWS))
    return records


def summarize(records: list[dict]) -> dict:
    walls = sorted(r["wall_s"] for r in records)
    new_lines = [r["wall_s"] for r in records if r["new_line"]]
    return {
        "requests": len(records),
        "prefilled_tokens": sum(r["prefilled"] for r in records),
        "prompt_tokens": sum(r["prompt_tokens"] for r in records),
        "full_prefills": sum(r["prefilled"] > r["prompt_tokens"] / 2 for r in records),
        "latency_median_s": statistics.median(walls),
        "latency_p95_s": walls[min(len(walls) - 1, round(0.95 * (len(walls) - 1)))],
        "latency_max_s": walls[-1],
        "total_s": sum(walls),
        "new_line_latency_median_s": statistics.median(new_lines) if new_lines else None,
    }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verifier", default="smollm2-135m")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--files", type=int, default=3)
    p.add_argument("--lines", type=int, default=3, help="lines typed per file")
    p.add_argument("--every", type=int, default=4, help="a completion request every this many keystrokes")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the report here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    settings = Settings()
    engine = load_engine(EngineConfig(verifier=args.verifier, threads=args.threads, backend=args.backend),
                         progress=log)
    records: dict[str, list[dict]] = {w: [] for w in WINDOWS}
    for name, all_lines, cursor in pick_sessions(args.files, args.lines, args.seed, settings.prefix_chars):
        for w, items in type_session(engine, name, all_lines, cursor, args.lines, args.every, settings,
                                     args.max_tokens, log).items():
            records[w] += items
    before, now = (summarize(records[w]) for w in WINDOWS)
    report = {"windows": {w: summarize(records[w]) for w in WINDOWS}, "requests": records,
              "ratios_before_over_now": {k: before[k] / now[k] for k in ("prefilled_tokens", "latency_median_s",
                                                                         "latency_p95_s", "total_s") if now[k]},
              "settings": {"prefix_chars": settings.prefix_chars, "suffix_chars": settings.suffix_chars,
                           "files": args.files, "lines": args.lines, "every": args.every,
                           "max_tokens": args.max_tokens, "verifier": args.verifier, "threads": args.threads,
                           "backend": engine.info().get("backend"), "seed": args.seed}}
    for w, row in report["windows"].items():
        print(f"{w:38} requests {row['requests']:4}  prefilled {row['prefilled_tokens']:7} of "
              f"{row['prompt_tokens']:7} tokens  full prefills {row['full_prefills']:3}  latency median "
              f"{row['latency_median_s']:.3f} s  p95 {row['latency_p95_s']:.3f} s  max {row['latency_max_s']:.3f} s"
              f"  total {row['total_s']:.1f} s  after Enter (median) {row['new_line_latency_median_s'] or 0:.3f} s")
    print("before / now: " + ", ".join(f"{k} {v:.2f}" for k, v in report["ratios_before_over_now"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    engine.close()
    return report


if __name__ == "__main__":
    main()
