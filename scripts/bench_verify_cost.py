"""How much a verification pass over k tokens costs relative to one decode step, on this machine.

Speculative decoding pays off only when this ratio stays well below the tokens a round accepts: on a GPU it
is close to 1 up to large k, on a CPU small-row matrix products make it grow fast. Prints one line per k.

    python scripts/bench_verify_cost.py --verifier smollm2-135m --context 800 --threads 2
    python scripts/bench_verify_cost.py --verifier smollm2-135m --context 700 --threads 1 --batch-threads 1 \\
        --ks 1,2,3,4,5,8   # the embedded GGUF on llama.cpp, one thread for steps and passes alike
"""

from __future__ import annotations

import argparse
import statistics
import time

from specd.daemon.engine.loop import Engine, EngineConfig

from specd.daemon.models.loading import load_engine


def median_forward_s(engine: Engine, cache, context: int, k: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        engine.verifier.forward(list(range(5, 5 + k)), cache)
        times.append(time.perf_counter() - started)
        cache.truncate(context)
    return statistics.median(times)


def cost_curve(engine: Engine, context: int, ks: list[int], repeats: int) -> dict[int, float]:
    """Median seconds of a k-token pass after `context` cached tokens, for each k."""
    cache = engine.verifier.new_cache()
    engine.verifier.forward(list(range(100, 100 + context)), cache, last_only=True)
    # Interleave the sizes round by round so drift on a shared machine hits them all alike.
    samples = {k: [] for k in ks}
    for _ in range(3):
        for k in ks:
            samples[k].append(median_forward_s(engine, cache, context, k, repeats))
    return {k: statistics.median(values) for k, values in samples.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifier", default="smollm2-135m")
    parser.add_argument("--context", type=int, default=800, help="tokens already in the KV cache")
    parser.add_argument("--ks", default="1,2,3,5,9,17")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="the `threads` setting (0: auto)")
    parser.add_argument("--batch-threads", type=int, default=0,
                        help="llama.cpp's `batch_threads` setting, for passes over several tokens (0: auto)")
    args = parser.parse_args(argv)
    engine = load_engine(EngineConfig(verifier=args.verifier, draft_strategy="none", threads=args.threads,
                                      batch_threads=args.batch_threads),
                         progress=lambda message: None)
    ks = [int(k) for k in args.ks.split(",")]
    curve = cost_curve(engine, args.context, ks, args.repeats)
    single = curve[ks[0]] if ks[0] == 1 else None
    for k, seconds in curve.items():
        ratio = f"{seconds / single:5.2f}x a 1-token step" if single else ""
        print(f"k={k:3d}  {seconds * 1000:7.1f} ms  {ratio}")


if __name__ == "__main__":
    main()
