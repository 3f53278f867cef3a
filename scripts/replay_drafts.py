"""Replay n-gram drafter settings against the verifier's own greedy outputs, without decoding again.

Greedy verification accepts exactly the longest draft prefix that equals what the verifier says next, so once
the verifier's plain output for a prompt is known, every round of any deterministic drafter can be replayed
offline: tokens per pass come out exact, and the speed estimate weighs each pass by this machine's measured
cost of a k-token verification pass. One decode per prompt, then any number of settings in seconds.

`cost-aware` replays the llama.cpp backend's policy (drafters/cost_aware.py: verify only the part of a draft that
pays by the cost table, learning in hindsight how often each class of proposal is right) with the table of each
thread count the backend's passes may run on (`--backend llamacpp`; draft_policy.measure_pass_costs, as at
load). Tune it on one set of prompts and check it on another (`--seed`, `--code-dir`): the per-prompt estimates
are printed. `n-gram ceiling` is what a length policy over the n-gram drafter's proposals could reach at best (each
round verifies the length that knowing the outcome would pick): the distance to it is what better estimates of
s_i could still gain, the rest only cheaper passes or better proposals.

    SPECD_HOME=/tmp/sh python scripts/replay_drafts.py --verifier smollm2-135m --limit 40 --threads 2
    SPECD_HOME=/tmp/sh python scripts/replay_drafts.py --backend llamacpp --threads 1 --stdlib \
        --code-dir editor-configs/vscode/node_modules --limit 8 --seed 7
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from bench import gather_prompts
from bench_verify_cost import cost_curve

from specd.daemon.engine.draft_policy import PROBE_CONTEXT, filled_cache
from specd.daemon.engine.drafters.base import DraftContext
from specd.daemon.engine.drafters.cost_aware import CostAwareDrafter
from specd.daemon.engine.drafters.ngram import NgramDrafter
from specd.daemon.engine.loop import Engine, EngineConfig, next_draft_length
from specd.daemon.models.loading import load_engine, pass_cost_tables
from specd.daemon.engine.requests import GenerationRequest
from specd.daemon.engine.sampling import SamplingParams

# name -> (NgramDrafter options, max_draft_tokens)
SETTINGS = {
    "default": ({}, 8),
    "min 2-gram": ({"min_ngram": 2}, 8),
    "1-gram drafts long": ({"unigram_tokens": 16}, 8),
    "up to 6-grams": ({"max_ngram": 6}, 8),
    "max draft 4": ({}, 4),
    "max draft 16": ({}, 16),
}


@dataclass
class Case:
    prompt_ids: list[int]
    sources: list[list[int]]
    output: list[int]


def greedy_cases(engine: Engine, prompts, max_tokens: int) -> list[Case]:
    cases = []
    for prompt in prompts:
        request = GenerationRequest(prompt=prompt.prefix, suffix=prompt.suffix, max_tokens=max_tokens, draft_tokens=0,
                                    token_healing=False)  # the case's prompt is engine.prompt_ids, unhealed
        engine.pool.clear()
        output = engine.generate(request).token_ids
        # A cold request's drafter sources: no history yet, so only the suffix the prompt may lack.
        cases.append(Case(engine.prompt_ids(request), engine.suffix_source(request), output))
    return cases


def pass_costs(engine: Engine, context: int, max_k: int, repeats: int, log=print) -> dict[int, list[float]]:
    """{threads: costs}, costs[k] a verification pass over k tokens relative to a 1-token step (costs[0] unused):
    on llama.cpp one table per thread count its passes may run on, measured as at load (`pass_cost_tables`, after
    PROBE_CONTEXT cached tokens), else one after `context` cached tokens, `repeats` timed passes per k and round."""
    runner = engine.verifier
    if not hasattr(runner, "pass_thread_choices"):
        seconds = cost_curve(engine, context, list(range(1, max_k + 1)), repeats)
        return {runner_threads(engine): [0.0] + [seconds[k] / seconds[1] for k in range(1, max_k + 1)]}
    tables = pass_cost_tables(runner, max_k, filled_cache(runner, PROBE_CONTEXT, max_k), log)
    return {threads: [0.0] + costs for threads, costs in tables.tables.items()}


def runner_threads(engine: Engine) -> int:
    import torch

    return getattr(engine.verifier, "threads", None) or torch.get_num_threads()


def replay(cases: list[Case], drafter, max_draft: int, costs: list[float]) -> dict:
    """Tokens per pass and the estimated speedup over plain decoding (tokens over summed pass costs), over all
    `cases` and per case. `drafter`: an NgramDrafter or a CostAwareDrafter."""
    greedy = SamplingParams(0.0, 1.0)
    tokens = passes = 0
    cost = 0.0
    per_case = []
    for case in cases:
        # The prefill pass yields the first token; each later pass verifies [pending token] + draft.
        sequence, done, draft_length = case.prompt_ids + case.output[:1], 1, max_draft
        state = drafter.new_state()  # per case, as per document
        case_cost = 0.0
        while done < len(case.output):
            budget = min(draft_length, len(case.output) - done)
            draft = drafter.propose(DraftContext(sequence, budget, greedy, None, None, case.sources),
                                    state).tokens[:budget]
            expected = case.output[done:]
            accepted = next((i for i, t in enumerate(draft) if t != expected[i]), len(draft))
            if draft:
                draft_length = next_draft_length(draft_length, accepted, len(draft), max_draft)
            new = min(accepted + 1, len(expected))
            sequence += expected[:new]
            done += new
            tokens += new
            passes += 1
            case_cost += costs[min(1 + len(draft), len(costs) - 1)]
        cost += case_cost
        per_case.append((len(case.output) - 1) / case_cost if case_cost else None)
    return {"tokens_per_pass": tokens / passes, "estimated_speedup": tokens / cost if cost else None,
            "per_prompt": per_case}


def replay_oracle(cases: list[Case], drafter: NgramDrafter, max_draft: int, costs: list[float]) -> dict:
    """The ceiling of a length policy over `drafter`'s proposals: each round verifies the length of the proposal
    that knows the outcome would pick (its first L tokens, all right, maximizing (L + 1) / cost(L + 1); 0 when no
    length beats a plain step). No policy that decides before the pass can do better in a round; returned as
    `replay` returns it."""
    greedy = SamplingParams(0.0, 1.0)
    tokens = passes = 0
    cost = 0.0
    per_case = []
    for case in cases:
        sequence, done = case.prompt_ids + case.output[:1], 1
        case_cost = 0.0
        while done < len(case.output):
            budget = min(max_draft, len(case.output) - done, len(costs) - 2)
            draft = drafter.propose(DraftContext(sequence, budget, greedy, None, None, case.sources),
                                    drafter.new_state()).tokens[:budget]
            expected = case.output[done:]
            right = next((i for i, t in enumerate(draft) if t != expected[i]), len(draft))
            keep = max(range(right + 1), key=lambda n: (n + 1) / costs[n + 1])
            new = min(keep + 1, len(expected))
            sequence += expected[:new]
            done += new
            tokens += new
            passes += 1
            case_cost += costs[keep + 1]
        cost += case_cost
        per_case.append((len(case.output) - 1) / case_cost if case_cost else None)
    return {"tokens_per_pass": tokens / passes, "estimated_speedup": tokens / cost if cost else None,
            "per_prompt": per_case}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifier", default=EngineConfig.verifier)
    parser.add_argument("--backend", default="auto", help="auto, torch or llamacpp (as the setting)")
    parser.add_argument("--stdlib", action="store_true", help="the Python standard library as a source (the "
                        "default when no --code-dir is named)")
    parser.add_argument("--code-dir", dest="code_dirs", action="append", default=[], metavar="DIR",
                        help="cut prompts from the source files of DIR too (as scripts/bench.py; repeatable)")
    parser.add_argument("--limit", type=int, default=40, help="prompts per source")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prefix-tokens", type=int, default=1000)
    parser.add_argument("--suffix-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per k and round for the torch cost "
                        "curve (llama.cpp's tables are measured as at load)")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)
    args.prompts = None
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    engine = load_engine(EngineConfig(verifier=args.verifier, draft_strategy="none", threads=args.threads,
                                      backend=args.backend, cache_slots=2), progress=log)
    prompts = gather_prompts(engine.tokenizer, args)
    log(f"decoding {len(prompts)} prompts once ...")
    cases = greedy_cases(engine, prompts, args.max_tokens)
    longest = max(max_draft for _, max_draft in SETTINGS.values()) + 1
    context = sorted(len(c.prompt_ids) for c in cases)[len(cases) // 2]
    engine.pool.clear()  # the measurement takes a cache of its own
    tables = pass_costs(engine, context, longest, args.repeats, log)
    report = {"pass_cost": {}, "settings": {}}
    for threads, costs in tables.items():
        report["pass_cost"][threads] = {k: round(c, 3) for k, c in enumerate(costs) if k}
        print(f"k-token pass cost on {threads} thread(s): "
              + "  ".join(f"{k}:{c:.2f}" for k, c in report["pass_cost"][threads].items()))
        settings = {**{name: (NgramDrafter(**options), max_draft) for name, (options, max_draft) in SETTINGS.items()},
                    "cost-aware": (CostAwareDrafter(NgramDrafter(), lambda costs=costs: costs[1:]), 8)}
        rows = {name: replay(cases, drafter, max_draft, costs) for name, (drafter, max_draft) in settings.items()}
        rows["n-gram ceiling"] = replay_oracle(cases, NgramDrafter(), 8, costs)
        for name, row in rows.items():
            report["settings"][f"{name} ({threads} thread(s))"] = row
            print(f"{name:20s} {threads} thread(s)  tokens/pass {row['tokens_per_pass']:.2f}  estimated speedup "
                  f"{row['estimated_speedup']:.2f}  per prompt "
                  + " ".join("-" if x is None else f"{x:.2f}" for x in row["per_prompt"]))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1)
    return report

if __name__ == "__main__":
    main()
