"""Token healing on code cut where typing cuts it: how often the completion's first line is the file's own line,
with healing and without, and whether greedy speculative output stays identical to plain decoding.

Cursors are drawn (seeded) in Python standard-library files: inside a word of an indented code line
(`mid-word`), right after a line's indentation of spaces (`indent`), and after the same indentation written
with tabs (`tab`: the snippet's 4-space steps turned into tabs). The rest of the cursor's line and up to two
more lines are taken out of the file, so the suffix never holds the answer. Every prompt runs four times from a
cold cache, greedy, in `line` mode: healing on and off, each plain (`draft_tokens: 0`) and with the engine's
drafter.

    SPECD_HOME=/tmp/sh python scripts/bench_healing.py --verifier smollm2-135m --limit 15 --threads 2

`line match`: the typed part of the line plus the completion's first line is the file's line (trailing spaces
ignored). `first word`: the completion starts with the rest of the cut word (`mid-word`), or with the line's
first word (`indent`, `tab`) and no further whitespace.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from specd.daemon.engine.loop import EngineConfig, GenerationRequest
from specd.daemon.models.loading import load_engine

KINDS = ("mid-word", "indent", "tab")
WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


@dataclass
class Cut:
    kind: str
    source: str
    prefix: str
    suffix: str
    line_rest: str  # the file's text from the cursor to the end of its line
    word_rest: str  # mid-word: the rest of the cut word; indent/tab: the line's first word


@dataclass
class Outcome:
    kind: str
    source: str
    healing: bool
    text: str
    healed_tokens: int
    line_match: bool
    first_word: bool
    identical: bool  # speculative == plain, token for token
    total_s: float


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)


def _code_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if i >= 30 and line.startswith("    ") and len(line.strip()) >= 8
            and not line.strip().startswith(("#", '"', "'"))]


def _hole(lines: list[str], index: int, rng: random.Random, prefix_lines: int, tabs: bool) -> tuple[str, str]:
    """The text before the cursor's line (about `prefix_lines` lines) and after the hole (the cursor's line and
    0-2 more lines removed, then a few lines); with `tabs`, 4-space indentation steps become tabs."""
    before = "".join(lines[max(0, index - prefix_lines) : index])
    after = "".join(lines[index + 1 + rng.randrange(3) :][:12])
    if tabs:
        before, after = _tabbed(before), _tabbed(after)
    return before, after


def _tabbed(text: str) -> str:
    return "".join(re.sub(r"^((?:    )+)", lambda m: "\t" * (len(m.group(1)) // 4), line)
                   for line in text.splitlines(keepends=True))


def stdlib_cuts(count: int, seed: int, prefix_lines: int, kinds: tuple[str, ...] = KINDS) -> list[Cut]:
    """`count` cursors of each of `kinds`, one per file, files and places drawn from a seeded generator (every
    kind is drawn, so that leaving one out does not move the others' cursors)."""
    rng = random.Random(seed)
    files = sorted(p for p in Path(sysconfig.get_paths()["stdlib"]).glob("*.py") if p.stat().st_size > 8000)
    rng.shuffle(files)
    cuts: list[Cut] = []
    for kind in KINDS:
        made = 0
        for path in files:
            if made == count:
                break
            lines = _lines(path)
            candidates = _code_lines(lines)
            if not candidates:
                continue
            index = rng.choice(candidates)
            line = lines[index].rstrip("\n")
            body = line.lstrip(" ")
            indent = line[: len(line) - len(body)]
            before, after = _hole(lines, index, rng, prefix_lines, tabs=kind == "tab")
            first = WORD.match(body)
            if kind == "mid-word":
                words = [m for m in WORD.finditer(line) if len(m.group()) >= 3]
                if not words:
                    continue
                word = rng.choice(words)
                cursor = word.start() + 1 + rng.randrange(len(word.group()) - 1)
                cuts.append(Cut(kind, path.name, before + line[:cursor], after, line[cursor:],
                                line[cursor : word.end()]))
            elif first and not (kind == "tab" and len(indent) % 4):
                typed = indent if kind == "indent" else "\t" * (len(indent) // 4)
                cuts.append(Cut(kind, path.name, before + typed, after, body, first.group()))
            else:
                continue
            made += 1
    return [cut for cut in cuts if cut.kind in kinds]


def run_cut(engine, cut: Cut, healing: bool, max_tokens: int) -> Outcome:
    request = dict(prompt=cut.prefix, suffix=cut.suffix, max_tokens=max_tokens, mode="line", token_healing=healing)
    engine.pool.clear()
    plain = engine.generate(GenerationRequest(**request, draft_tokens=0))
    engine.pool.clear()
    speculative = engine.generate(GenerationRequest(**request))
    text = plain.text
    if cut.kind == "mid-word":
        first_word = text.startswith(cut.word_rest) and not WORD.match(text[len(cut.word_rest) :][:1] or " ")
    else:
        first_word = text.startswith(cut.word_rest)
    return Outcome(cut.kind, cut.source, healing, text, plain.stats.healed_tokens,
                   text.rstrip() == cut.line_rest.rstrip(), first_word, speculative.token_ids == plain.token_ids,
                   plain.stats.total_s)


def summarize(outcomes: list[Outcome]) -> dict:
    report: dict = {}
    for kind in (*KINDS, "all"):
        rows = [o for o in outcomes if kind in ("all", o.kind)]
        if not rows:
            continue
        entry = {}
        for healing in (True, False):
            side = [o for o in rows if o.healing is healing]
            entry["on" if healing else "off"] = {
                "prompts": len(side),
                "line_match": sum(o.line_match for o in side) / len(side),
                "first_word": sum(o.first_word for o in side) / len(side),
                "healed": sum(o.healed_tokens > 0 for o in side) / len(side),
                "identical": sum(o.identical for o in side) / len(side),
                "latency_p50_s": statistics.median(o.total_s for o in side),
            }
        pairs = list(zip([o for o in rows if o.healing], [o for o in rows if not o.healing]))
        entry["line_wins"] = sum(on.line_match and not off.line_match for on, off in pairs)
        entry["line_losses"] = sum(off.line_match and not on.line_match for on, off in pairs)
        report[kind] = entry
    return report


def print_table(report: dict) -> None:
    print(f"\n{'cut':<10}{'n':>4}{'line match on':>15}{'off':>7}{'wins/losses':>13}{'first word on':>15}{'off':>7}"
          f"{'healed':>8}{'identical':>11}")
    for kind, entry in report.items():
        on, off = entry["on"], entry["off"]
        print(f"{kind:<10}{on['prompts']:>4}{on['line_match']:>15.2f}{off['line_match']:>7.2f}"
              f"{entry['line_wins']:>7}/{entry['line_losses']:<5}{on['first_word']:>15.2f}{off['first_word']:>7.2f}"
              f"{on['healed']:>8.2f}{min(on['identical'], off['identical']):>11.2f}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--verifier", default=EngineConfig.verifier)
    p.add_argument("--drafter", default=None)
    p.add_argument("--draft-strategy", default=EngineConfig.draft_strategy)
    p.add_argument("--backend", default=EngineConfig.backend, help="auto | torch | llamacpp, as the daemon's setting")
    p.add_argument("--limit", type=int, default=15, help="cursors per kind")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma list of " + ", ".join(KINDS))
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--prefix-lines", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_out", default=None)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    engine = load_engine(EngineConfig(verifier=args.verifier, drafter=args.drafter,
                                      draft_strategy=args.draft_strategy, threads=args.threads,
                                      backend=args.backend), progress=log)
    cuts = stdlib_cuts(args.limit, args.seed, args.prefix_lines, tuple(args.kinds.split(",")))
    outcomes: list[Outcome] = []
    for i, cut in enumerate(cuts):
        on, off = run_cut(engine, cut, True, args.max_tokens), run_cut(engine, cut, False, args.max_tokens)
        outcomes += [on, off]
        log(f"{i + 1}/{len(cuts)} {cut.kind} {cut.source}: want {cut.line_rest.strip()[:40]!r}; "
            f"on {on.text[:40]!r}{'' if on.identical else ' MISMATCH'}; off {off.text[:40]!r}"
            f"{'' if off.identical else ' MISMATCH'}")
    report = summarize(outcomes)
    print_table(report)
    if args.json_out:
        info = engine.info()
        Path(args.json_out).write_text(json.dumps({
            "summary": report, "outcomes": [asdict(o) for o in outcomes], "cuts": [asdict(c) for c in cuts],
            "environment": {"verifier": args.verifier, "backend": args.backend, "drafter": info["drafter"],
                            "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "seed": args.seed, "max_tokens": args.max_tokens,
                            "fim_template": info["fim_template"]}}, indent=1))
    return report


if __name__ == "__main__":
    main()
