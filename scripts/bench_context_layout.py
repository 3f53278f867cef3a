"""Other open files in the prompt: the commented layout against the model's repository layout, in new files.

The language server sends snippets of other open files with each completion. They used to go before the prefix
as commented-out lines headed by their path; with a new or short current file the prompt then ends in those
comments, and a small model continues them: the first completion in a new file was a commented copy of another
file. A model pretrained on repositories with a file separator token (SmolLM2 on StarCoder2's vocabulary:
`<file_sep>`) now gets `<file_sep>path\\ncode` per file and the current file last (daemon/engine/repo_context.py).

For seeded standard-library files (the other open file: its first `--context-chars` characters) and a few starts
of a current file (empty, an indented line after `def main():`, ...), greedy completions in `block` mode with each
layout and with no other file: prints how many start with a comment (`#`) and how many have a first line copied
from the other file, per start and layout.

    SPECD_HOME=/tmp/sh python scripts/bench_context_layout.py --verifier smollm2-135m --threads 1 --files 10
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import sysconfig
from pathlib import Path

from specd.daemon.engine.loop import EngineConfig, GenerationRequest
from specd.daemon.engine.requests import ContextFile
from specd.daemon.models.loading import load_engine

STARTS = ("", "def main():\n    ", "import os\n\n\ndef ", "class Config:\n    ")
LAYOUTS = ("commented", "repository", "no other file")


def complete(engine, layout: str, start: str, other: ContextFile, max_tokens: int) -> str:
    separator = engine.file_separator
    if layout == "commented":
        engine.file_separator = None  # what every model got before
    try:
        files = () if layout == "no other file" else (other,)
        request = GenerationRequest(prompt=start, suffix="", max_tokens=max_tokens, mode="block", fit_context=True,
                                    context_files=files, path="/project/new.py", language="python")
        return engine.generate(request).text
    finally:
        engine.file_separator = separator


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verifier", default="smollm2-135m")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--context-chars", type=int, default=1500)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the report here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    engine = load_engine(EngineConfig(verifier=args.verifier, threads=args.threads, backend=args.backend),
                         progress=log)
    if engine.file_separator is None:
        log(f"{args.verifier} has no file separator token (or has FIM tokens): both layouts are the commented one")
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    picks = random.Random(args.seed).sample(files, args.files)
    counts = {start: {layout: {"comment_first": 0, "copied_line": 0} for layout in LAYOUTS} for start in STARTS}
    for path in picks:
        text = path.read_text(encoding="utf-8", errors="replace")[: args.context_chars]
        other = ContextFile(str(path), text)
        other_lines = {line.strip() for line in text.splitlines() if len(line.strip()) > 8}
        for start in STARTS:
            for layout in LAYOUTS:
                first = complete(engine, layout, start, other, args.max_tokens).strip().split("\n")[0].strip()
                counts[start][layout]["comment_first"] += first.startswith("#")
                counts[start][layout]["copied_line"] += first.lstrip("# ") in other_lines
    for start, row in counts.items():
        print(f"start {start!r:24} " + "  ".join(
            f"{layout}: {c['comment_first']}/{args.files} comment first, {c['copied_line']} copied"
            for layout, c in row.items()))
    report = {"counts": counts, "settings": {**vars(args), "file_separator": engine.file_separator,
                                              "backend": engine.info().get("backend")}}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    engine.close()
    return report


if __name__ == "__main__":
    main()
