"""The llama.cpp backend's decode speed with its default drafter against its plain decoding and llama.cpp's own (on
llama-server's default threads), fast enough to A/B a change to the drafting policy: add the variant's drafter to
`drafters` (commit 614761d compared two this way).

One process, one engine: each prompt is read once into a warm cache that every runner then continues from (decode
speed only: scripts/bench.py also times cold prompts, end-to-end latency and keystrokes, and takes ~20 minutes where
this takes ~3 on 24 prompts; the drafter's per-document state starts afresh for every run and its completions are
not offered to the next), every runner `--repeats` times per prompt in an order reversed each time, the fastest
decode of each kept. Prints how many times one runner's decode speed (tokens/s) is another's, the median of
paired per-prompt ratios (> 1: the first is faster), over all prompts and over the hit prompts, where the
default's accepted drafts wrote >= 25 % of the output ("-" when there is none); how many outputs equal specd's plain
decode; the threads specd's steps and passes ran on after load (the prompts' reads included: fewer while other
programs kept the cores busy); and the pass costs the drafter priced drafts by (c(1..n), relative to a step).

    SPECD_HOME=/tmp/sh python scripts/bench_drafting.py --verifier smollm2-135m --stdlib \\
        --code-dir .../site-packages/aiohttp --code-dir editor-configs/vscode/node_modules --limit 8 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import HIT_SHARE, add_prompt_arguments, gather_prompts, speed_ratios
from bench_llamacpp import LlamaCppPlain

from specd.daemon.engine.loop import EngineConfig
from specd.daemon.engine.requests import GenerationRequest
from specd.daemon.models.loading import load_engine

PEER = "llama.cpp plain"


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--verifier", default=EngineConfig.verifier, help="a GGUF model (default: the embedded one)")
    add_prompt_arguments(p)
    p.add_argument("--threads", type=int, default=0, help="specd's `threads` setting (0: its default, auto)")
    p.add_argument("--batch-threads", type=int, default=0, help="specd's `batch_threads` setting (0: auto)")
    p.add_argument("--json", dest="json_out", default=None, help="also write the report to this file")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    engine = load_engine(EngineConfig(verifier=args.verifier, backend="llamacpp", cache_slots=2, threads=args.threads,
                                      batch_threads=args.batch_threads), progress=log)
    if engine.drafter is None or not hasattr(engine.drafter, "costs"):
        raise SystemExit("the llama.cpp engine loaded without its cost-aware drafter: nothing to compare")
    runner = engine.verifier
    runner.steps_on.clear()  # the load's measurements are not the runs'
    runner.passes_on.clear()
    drafters = {"plain": None, "default": engine.drafter}
    peer = LlamaCppPlain(runner)
    prompts = gather_prompts(engine.tokenizer, args)

    def specd(name: str, index: int, prompt) -> tuple[float, list[int], int]:
        drafter = engine.drafter = drafters[name]
        for slot in engine.pool.slots:  # as a cold run's: no earlier completion to copy, no learned rates
            slot.history = []
            slot.drafter_state = drafter.new_state() if drafter else None
            slot.draft_length = engine.config.max_draft_tokens
        result = engine.generate(GenerationRequest(
            prompt=prompt.prefix, suffix=prompt.suffix, max_tokens=args.max_tokens, token_healing=False,
            draft_tokens=0 if drafter is None else None, cache_key=f"prompt {index}"))
        stats = result.stats
        # the first token comes from the prompt's pass, which the warm cache shortens to a token or two
        return (stats.total_s - stats.prefill_s) / max(1, len(result.token_ids) - 1), result.token_ids, \
            stats.accepted_tokens

    def llama(index: int, prompt) -> tuple[float, list[int], int]:
        ids = engine.prompt_ids(GenerationRequest(prompt=prompt.prefix, suffix=prompt.suffix))
        tokens, first, total = peer.generate(ids, args.max_tokens, engine.eos_ids, reuse=True)
        return (total - first) / max(1, len(tokens) - 1), tokens, 0

    runners = {name: (lambda index, prompt, name=name: specd(name, index, prompt)) for name in drafters}
    runners[PEER] = llama
    per_token: dict[str, list[float]] = {name: [] for name in runners}
    identical = {name: 0 for name in runners}
    hits = set()
    for index, prompt in enumerate(prompts):
        engine.pool.clear()
        specd("plain", index, prompt)  # reads the prompt into both caches, untimed
        llama(index, prompt)
        fastest: dict[str, tuple[float, list[int], int]] = {}
        for repeat in range(max(1, args.repeats)):
            order = list(runners) if (index + repeat) % 2 == 0 else list(reversed(runners))
            for name in order:
                got = runners[name](index, prompt)
                if name not in fastest or got[0] < fastest[name][0]:
                    fastest[name] = got
        for name, (seconds, tokens, _) in fastest.items():
            per_token[name].append(seconds)
            identical[name] += tokens == fastest["plain"][1]
        _, tokens, accepted = fastest["default"]
        if accepted >= HIT_SHARE * len(tokens):
            hits.add(index)
        log(f"prompt {index + 1}/{len(prompts)}: " + ", ".join(
            f"{name} {1000 * seconds:.2f}" for name, (seconds, _, _) in fastest.items()) + " ms/token")

    pairs = [(name, other) for name in drafters if name != "plain" for other in ("plain", PEER)] + [("plain", PEER)]
    report = {"prompts": len(prompts), "hit_prompts": len(hits), "identical": identical,
              "steps_on": dict(runner.steps_on), "passes_on": dict(runner.passes_on),
              "pass_costs": drafters["default"].costs.tables,
              "ratios": speed_ratios(per_token, pairs, hits)}
    print(f"{len(prompts)} prompts, {len(hits)} where drafts hit; specd's steps by thread count "
          f"{report['steps_on']}, passes {report['passes_on']}")
    tables = report["pass_costs"].items()
    print("pass costs c(1..n), relative to a step: "
          + "; ".join(f"{threads} thread(s): " + " ".join(f"{c:.2f}" for c in table) for threads, table in tables))
    print("decode speed ratio (> 1: the first is faster), median of per-prompt ratios:")
    for pair, value in report["ratios"].items():
        hit = "-" if value["hits"] is None else f"{value['hits']:.3f}"
        print(f"  {pair:35s} all {value['all']:.3f}  hit prompts {hit}")
    print("identical to specd plain: "
          + ", ".join(f"{name} {count}/{len(prompts)}" for name, count in identical.items() if name != "plain"))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
