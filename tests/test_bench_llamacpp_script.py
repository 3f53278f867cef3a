"""scripts/bench.py's llama.cpp comparisons, on made-up runs: paired per prompt, whole latencies, hit prompts."""

import importlib
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _bench():
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module("bench")


def test_backend_summary_pairs_each_prompt_with_llamacpp_plain():
    bench = _bench()
    Run = bench.Run
    runs = []
    for prompt, (mine_s, peer_s, accepted) in enumerate([(1.0, 2.0, 20), (2.0, 2.0, 0), (1.5, 1.0, 2)]):
        # 40 tokens each; prefill 0.5 s everywhere: decode seconds are total - 0.5
        runs += [Run(prompt, "llamacpp:plain", [1] * 40, 0.5, peer_s + 0.1),
                 Run(prompt, "llamacpp:ngram", [1] * 40, 0.5, mine_s + 0.5, drafted=30, accepted=accepted,
                     identical=True),
                 Run(prompt, bench.LLAMACPP_PEER, [1] * 40, 0.5, peer_s + 0.5, identical=prompt != 2)]
    summary = bench.backend_summary(runs, "llamacpp:plain", "llamacpp:ngram")
    assert summary["speedup_vs_llamacpp"] == 1.0  # ratios 2.0, 1.0, 0.667: the median
    assert summary["hit_prompts"] == 1 and summary["speedup_vs_llamacpp_hits"] == 2.0  # 20 of 40 tokens drafted
    assert summary["latency_vs_llamacpp"] == 1.0  # 2.5/1.5, 2.5/2.5, 1.5/2.0
    assert summary["identical_rate"] == 1.0


def test_latency_ratios_use_whole_latencies_only():
    bench = _bench()
    fast = bench.Run(0, "a", [1] * 10, prefill_s=0.9, total_s=1.0)  # a decode of 0.1 s
    slow = bench.Run(0, "b", [1] * 10, prefill_s=0.1, total_s=2.0)
    assert bench.latency_ratios([fast, slow], "a", "b") == [2.0]
