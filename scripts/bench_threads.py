"""A/B of the llama.cpp backend's step threads: steps on every idle core (`threads` 0, the default, which follows the
passes' auto count) against steps always on half the cores (`threads` = half, the earlier default), each with plain
decoding and with its default drafter, beside llama.cpp's own plain decoding on llama-server's default threads
(every physical core) and on half the cores. One process, the same prompts as scripts/bench.py, every runner once
per prompt, the order reversed on every other prompt. Prints medians of paired per-prompt ratios of decode time per
token (prefill excluded), over all prompts and over those where the half-cores default's drafts wrote >= 25 % of
the output, and how many outputs equal the half-cores plain decode.

    SPECD_HOME=/tmp/sh python scripts/bench_threads.py --verifier smollm2-135m --stdlib \\
        --code-dir .../site-packages/aiohttp --code-dir editor-configs/vscode/node_modules --limit 8
"""

from __future__ import annotations

import sys

from bench import HIT_SHARE, gather_prompts, parse_args, run_specd, speed_ratios
from bench_llamacpp import LlamaCppPlain, llama_server_threads

from specd.daemon.engine.loop import EngineConfig
from specd.daemon.engine.requests import GenerationRequest
from specd.daemon.engine.runners.cpu_load import default_threads
from specd.daemon.models.loading import load_engine


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    half = default_threads()
    engines = {name: load_engine(EngineConfig(verifier=args.verifier, backend="llamacpp", threads=threads,
                                              cache_slots=2), progress=log)
               for name, threads in (("half", half), ("idle", 0))}
    drafters = {name: engine.drafter for name, engine in engines.items()}
    some = engines["half"]
    peers = {"llama.cpp server threads": LlamaCppPlain(some.verifier), "llama.cpp half": LlamaCppPlain(some.verifier)}
    halved = peers["llama.cpp half"]
    halved.lc.llama_set_n_threads(halved.ctx, half, llama_server_threads())  # steps on half, the prompt as before
    prompts = gather_prompts(some.tokenizer, args)

    def specd(name, drafted, prompt, index):
        run = run_specd(engines[name], drafters[name] if drafted else None, prompt, index, name, args.max_tokens)
        return run.total_s - run.prefill_s, run.tokens, run.accepted

    def peer(name, prompt):
        ids = some.prompt_ids(GenerationRequest(prompt=prompt.prefix, suffix=prompt.suffix))
        tokens, first, total = peers[name].generate(ids, args.max_tokens, some.eos_ids)
        return total - first, tokens, 0

    runners = {f"specd {name} {kind}": (lambda p, i, n=name, d=drafted: specd(n, d, p, i))
               for name in engines for kind, drafted in (("plain", False), ("default", True))}
    runners.update({name: (lambda p, i, n=name: peer(n, p)) for name in peers})
    for name in engines:  # warm-up, not counted
        specd(name, True, prompts[0], 0)
    per_token: dict[str, list[float]] = {name: [] for name in runners}
    identical = {name: 0 for name in runners}
    hits = set()
    for index, prompt in enumerate(prompts):
        order = list(runners) if index % 2 == 0 else list(reversed(runners))
        got = {name: runners[name](prompt, index) for name in order}
        reference = got["specd half plain"][1]
        for name, (seconds, tokens, accepted) in got.items():
            per_token[name].append(seconds / max(1, len(tokens)))
            identical[name] += tokens == reference
        if got["specd half default"][2] >= HIT_SHARE * len(got["specd half default"][1]):
            hits.add(index)
        log(f"prompt {index + 1}/{len(prompts)}: " + ", ".join(
            f"{name} {1000 * seconds / max(1, len(tokens)):.2f}" for name, (seconds, tokens, _) in got.items())
            + " ms/token")

    pairs = [("specd idle plain", "specd half plain"), ("specd idle default", "specd half default"),
             ("specd half default", "specd half plain"), ("specd idle default", "specd idle plain"),
             ("specd idle default", "llama.cpp server threads"), ("specd half default", "llama.cpp half"),
             ("specd idle default", "llama.cpp half"), ("llama.cpp server threads", "llama.cpp half")]
    report = {"threads": {"half": half, "llama_server": llama_server_threads(),
                          "idle_steps_on": dict(engines["idle"].verifier.steps_on)},
              "hit_prompts": len(hits), "prompts": len(prompts), "identical": identical,
              "ratios": speed_ratios(per_token, pairs, hits)}
    print(f"{len(prompts)} prompts, {len(hits)} where drafts hit; half the cores = {half}, llama-server's default "
          f"= {llama_server_threads()} threads; steps of 'idle' by thread count: {report['threads']['idle_steps_on']}")
    for pair, value in report["ratios"].items():
        hit = "-" if value["hits"] is None else f"{value['hits']:.3f}"
        print(f"{pair:55s} all {value['all']:.3f}  hits {hit}")
    print("identical to specd half plain: " + ", ".join(f"{name} {count}/{len(prompts)}"
                                                        for name, count in identical.items()))
    return report


if __name__ == "__main__":
    main()
