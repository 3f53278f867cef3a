"""scripts/bench.py's llama.cpp comparisons, on made-up runs (paired per prompt, whole latencies, hit prompts,
per prompt source), and llama-cpp-python's prompt-lookup peer on the embedded GGUF."""

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fixtures.embedded import CACHE_HOME

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
GGUF = CACHE_HOME / "cache" / "embedded" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _bench():
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module("bench")


def _embedded_gguf():
    """llama-cpp-python, after skipping the test where it or the embedded GGUF is missing."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    if not GGUF.exists():
        pytest.skip(f"the embedded GGUF is not cached at {GGUF}")
    return llama_cpp


def test_backend_summary_pairs_each_prompt_with_llamacpp_plain():
    bench = _bench()
    Run = bench.Run
    runs = []
    for prompt, (mine_s, peer_s, accepted) in enumerate([(1.0, 2.0, 20), (2.0, 2.0, 0), (1.5, 1.0, 2)]):
        # 40 tokens each; prefill 0.5 s everywhere: decode seconds are total - 0.5
        runs += [Run(prompt, "llamacpp:plain", [1] * 40, 0.5, peer_s + 0.1),
                 Run(prompt, "llamacpp:ngram", [1] * 40, 0.5, mine_s + 0.5, drafted=30, accepted=accepted,
                     identical=True),
                 Run(prompt, bench.LLAMACPP_PEER, [1] * 40, 0.5, peer_s + 0.5, identical=prompt != 2),
                 # the prompt-lookup peer: prefill 1.0 s, decode 1.0 s everywhere
                 Run(prompt, bench.LLAMACPP_LOOKUP, [1] * 40, 1.0, 2.0, drafted=10, accepted=5, rounds=30)]
    summary = bench.backend_summary(runs, "llamacpp:plain", "llamacpp:ngram")
    assert summary["speedup_vs_llamacpp"] == 1.0  # ratios 2.0, 1.0, 0.667: the median
    assert summary["hit_prompts"] == 1 and summary["speedup_vs_llamacpp_hits"] == 2.0  # 20 of 40 tokens drafted
    assert summary["latency_vs_llamacpp"] == 1.0  # 2.5/1.5, 2.5/2.5, 1.5/2.0
    assert summary["identical_rate"] == 1.0
    assert summary["speedup_vs_llamacpp_prompt_lookup"] == pytest.approx(1.0 / 1.5)  # decode 1.0/1.0, 1.0/2.0, 1.0/1.5
    assert summary["latency_vs_llamacpp_prompt_lookup"] == 2.0 / 2.0  # 2.0/1.5, 2.0/2.5, 2.0/2.0
    assert summary["speedup_vs_llamacpp_prompt_lookup_hits"] == 1.0


def test_the_prompt_lookup_peer_is_reported_against_specd_llamacpp_plain():
    bench = _bench()
    Run = bench.Run

    class Other:  # bench.Other's shape
        def __init__(self, reference):
            self.reference = reference

    runs = []
    for prompt in range(2):
        runs += [Run(prompt, "llamacpp:plain", [1] * 40, 0.5, 1.5),
                 Run(prompt, "llamacpp:ngram", [1] * 40, 0.5, 1.5, identical=True),
                 Run(prompt, bench.LLAMACPP_PEER, [1] * 40, 0.5, 1.5, identical=True),
                 Run(prompt, bench.LLAMACPP_LOOKUP, [1] * 40, 0.5, 1.0, drafted=20, accepted=10, rounds=29,
                     identical=prompt == 0)]
    report = {}
    others = {name: Other("llamacpp:plain") for name in ("llamacpp:plain", "llamacpp:ngram", bench.LLAMACPP_PEER,
                                                         bench.LLAMACPP_LOOKUP)}
    bench.add_llamacpp_report(report, runs, others, "ngram")
    row = report["llamacpp"][bench.LLAMACPP_LOOKUP]
    assert row["identical_rate"] == 0.5
    assert row["speedup_vs_plain"] == 2.0  # 40 tokens in 0.5 s against 40 in 1.0 s
    assert row["acceptance_rate"] == 0.5 and row["mean_accepted_length"] == 1 + 20 / 58
    assert report["speedup_vs_llamacpp_prompt_lookup"] == 0.5
    assert report["latency_vs_llamacpp_prompt_lookup"] == 1.0 / 1.5


def test_headline_ratios_per_source_come_from_that_source_alone(capsys):
    bench = _bench()
    Run = bench.Run
    runs = []
    for prompt, (source, plain_s, lookup_s) in enumerate([("a", 2.0, 1.0), ("b", 1.0, 4.0), ("a", 2.0, 1.0)]):
        for run in [Run(prompt, "plain", [1] * 10, 0.0, 1.0), Run(prompt, "ngram", [1] * 10, 0.0, 0.5, identical=True),
                    Run(prompt, "llamacpp:plain", [1] * 10, 0.0, plain_s),
                    Run(prompt, "llamacpp:ngram", [1] * 10, 0.0, 1.0, identical=source == "a"),
                    Run(prompt, bench.LLAMACPP_LOOKUP, [1] * 10, 0.0, lookup_s, identical=True)]:
            run.source = source
            runs.append(run)
    rows = bench.source_summaries(runs, ["a", "b"], "ngram", ["ngram"], [], "llamacpp:ngram")
    assert list(rows) == ["a", "b", "all"]
    assert [rows[k]["prompts"] for k in rows] == [2, 1, 3]
    assert [rows[k]["speedup_vs_plain"] for k in rows] == [2.0, 2.0, 2.0]
    assert [rows[k]["llamacpp_speedup_vs_plain"] for k in rows] == [2.0, 1.0, 2.0]
    assert [rows[k]["llamacpp_identical_rate"] for k in rows] == [1.0, 0.0, 2 / 3]
    assert [rows[k]["latency_vs_llamacpp_prompt_lookup"] for k in rows] == [1.0, 4.0, 1.0]
    assert rows["a"]["speedup_vs_llamacpp"] is None  # no plain peer ran
    assert rows["b"]["peer_identical_rate"] == {bench.LLAMACPP_PEER: None, bench.LLAMACPP_LOOKUP: 1.0}
    bench.print_sources(rows)
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert printed[0][0] == "source" and [row[0] for row in printed[1:]] == ["a", "b", "all"]
    # b: 1 prompt, torch identical 1 and 2x plain, llama.cpp 1x plain and identical 0, then 2 ratios of no peer
    assert printed[2][1:8] == ["1", "1.00", "2.00", "1.00", "0.00", "-", "-"]


def test_latency_ratios_use_whole_latencies_only():
    bench = _bench()
    fast = bench.Run(0, "a", [1] * 10, prefill_s=0.9, total_s=1.0)  # a decode of 0.1 s
    slow = bench.Run(0, "b", [1] * 10, prefill_s=0.1, total_s=2.0)
    assert bench.latency_ratios([fast, slow], "a", "b") == [2.0]


def test_the_prompt_lookup_peer_writes_llamacpp_greedy_tokens_and_counts_its_drafts():
    llama_cpp = _embedded_gguf()
    features = llama_cpp.llama_print_system_info().decode(errors="replace").replace(" ", "")
    if "LLAMAFILE=1" in features:
        pytest.skip("a build with llamafile's sgemm: a verified batch is not bitwise single steps")
    _bench()
    from bench_llamacpp import LlamaCppPromptLookup

    # specd's runner's shape; a batch shorter than the sequence: the prompt in two batches, the output beyond
    runner = SimpleNamespace(path=GGUF, threads=1, batch_threads=1, batch_size=16)
    peer = LlamaCppPromptLookup(runner, max_context=512)
    reference = llama_cpp.Llama(model_path=str(GGUF), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False)
    vocab = reference._model.vocab
    prompt = peer.llm.tokenize(b"alpha beta gamma delta epsilon zeta eta theta\n" * 2 + b"alpha beta", add_bos=False)
    greedy = []  # llama.cpp's greedy decoding, one token per pass, no draft model
    for token in reference.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0):
        if llama_cpp.llama_vocab_is_eog(vocab, token) or len(greedy) == 24:
            break
        greedy.append(token)
    tokens, first, total, (drafted, accepted, rounds) = peer.generate(prompt, 24, set())
    assert tokens == greedy and len(tokens) == 24
    assert 0 < first < total
    assert drafted >= accepted >= 8  # the repeated line was drafted and taken in multi-token passes
    # one token from the prompt's pass, then per pass the accepted draft tokens and one more (the last pass may
    # be cut at the limit before its extra token)
    assert 1 + rounds + accepted in (len(tokens), len(tokens) + 1)
    assert peer.generate(prompt, 24, set())[::3] == (tokens, (drafted, accepted, rounds))  # cold every time
    assert peer.generate(prompt, 5, {tokens[3]})[0] == tokens[:3]  # a stop id ends it, not written
    peer.close()
    reference.close()


def test_the_plain_peer_reuses_its_cache_as_llama_server_does_when_warm():
    _embedded_gguf()
    _bench()
    from bench_llamacpp import LlamaCppPlain
    from specd.daemon.engine.runners.llamacpp_runner import LlamaCppRunner

    runner = LlamaCppRunner(GGUF, max_context=512, sequences=1, threads=1)
    peer = LlamaCppPlain(runner, max_context=512)
    prompt = [1] + [(i * 37) % 3000 + 100 for i in range(120)]
    cold, _, _ = peer.generate(prompt, 12, set())
    peer.generate(prompt[:-2], 12, set())  # the keystroke before
    fed = []
    decode = peer._decode
    peer._decode = lambda tokens: fed.append(list(tokens)) or decode(tokens)
    warm, _, _ = peer.generate(prompt, 12, set(), reuse=True)
    # (not always `cold`: the peer keeps llama.cpp's flash attention, whose 64+-row prompt passes are tiled)
    assert len(warm) == len(cold) == 12
    assert fed[0] == prompt[-2:]  # only what the cached prompt lacks, then one token per pass
    assert all(len(tokens) == 1 for tokens in fed[1:])
    peer.close()


def test_the_thread_ab_runs_both_step_policies_losslessly(monkeypatch):
    """scripts/bench_threads.py: steps on idle cores and on half the cores, plain and drafted, all write the half-cores
    plain decode's tokens (a step's count changes no result on this build), and the peers run on llama-server's
    default threads and on half the cores."""
    _embedded_gguf()
    monkeypatch.setenv("SPECD_HOME", str(CACHE_HOME))
    _bench()
    import bench_threads
    from bench_llamacpp import llama_server_threads

    report = bench_threads.main(["--verifier", "smollm2-135m", "--stdlib", "--limit", "2", "--max-tokens", "10",
                                 "--prefix-tokens", "200", "--suffix-tokens", "20"])
    assert report["prompts"] == 2 and report["threads"]["llama_server"] == llama_server_threads()
    specd_runners = {name: count for name, count in report["identical"].items() if name.startswith("specd")}
    assert specd_runners == {f"specd {policy} {kind}": 2
                             for policy in ("half", "idle") for kind in ("plain", "default")}
    assert all(value["all"] > 0 for value in report["ratios"].values())


def test_the_warm_drafting_benchmark_writes_the_plain_decode_and_compares_with_llamacpp(monkeypatch):
    """scripts/bench_drafting.py: from a warm cache the default drafter writes specd's plain tokens (lossless), and
    every ratio pairs it with plain decoding or llama.cpp's own."""
    _embedded_gguf()
    monkeypatch.setenv("SPECD_HOME", str(CACHE_HOME))
    _bench()
    import bench_drafting

    report = bench_drafting.main(["--verifier", "smollm2-135m", "--stdlib", "--limit", "2", "--max-tokens", "10",
                                  "--prefix-tokens", "200", "--suffix-tokens", "20"])
    assert report["prompts"] == 2 and report["identical"]["plain"] == report["identical"]["default"] == 2
    assert set(report["ratios"]) == {"default / plain", "default / llama.cpp plain", "plain / llama.cpp plain"}
    assert all(value["all"] > 0 for value in report["ratios"].values())
    assert sum(report["steps_on"].values()) > 0 and report["pass_costs"]


def test_repeats_keep_each_runners_fastest_decode():
    bench = _bench()
    Run = bench.Run
    first = [Run(0, "plain", [1] * 8, 0.5, 1.5), Run(0, "ngram", [1] * 8, 0.5, 1.0),
             Run(0, "peer", [], 0.0, 0.0, error="boom")]
    second = [Run(0, "peer", [1] * 8, 0.1, 0.9), Run(0, "ngram", [1] * 8, 0.1, 0.8),  # decode 0.8 s, not 0.5 s
              Run(0, "plain", [1] * 8, 0.9, 1.6)]  # decode 0.7 s: faster, though its total is longer
    kept = bench.fastest_runs([first, second])
    assert [run.runner for run in kept] == ["plain", "ngram", "peer"]  # the first repeat's order
    assert kept[0] is second[2] and kept[1] is first[1] and kept[2] is second[0]
