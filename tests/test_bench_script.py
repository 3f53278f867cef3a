"""scripts/bench.py end to end on tiny random models: it runs, writes the promised keys, and stays lossless."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import write_tiny_pair

from specd.daemon.engine.drafters.base import Draft, Drafter

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
TOP_LEVEL = ["identical_rate", "speedup_vs_plain", "speedup_vs_hf", "plain_vs_hf", "keystroke_cost_ratio",
             "strategies", "hf_generate", "environment"]
PER_STRATEGY = ["tokens_per_s", "mean_accepted_length", "latency_p50_s", "latency_p95_s"]


def run_bench(tmp_path, *extra):
    verifier, drafter = write_tiny_pair(tmp_path / "models")
    out = tmp_path / "bench.json"
    env = {**os.environ, "SPECD_HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, str(SCRIPT), "--verifier", str(verifier), "--drafter", str(drafter),
                    "--limit", "2", "--max-tokens", "12", "--threads", "1", "--prefix-tokens", "300",
                    "--json", str(out), *extra], check=True, env=env, timeout=600)
    return json.loads(out.read_text())


def test_bench_on_tiny_models(tmp_path):
    report = run_bench(tmp_path)
    for key in TOP_LEVEL:
        assert key in report, key
    assert report["identical_rate"] == 1.0
    assert report["prompts"]["count"] == 2
    strategies = report["strategies"]
    assert {"plain", "ngram", "layer_skip", "model", "ngram+model"} <= set(strategies)
    for name, row in strategies.items():
        if name != "plain":
            for key in PER_STRATEGY:
                assert key in row, (name, key)
            assert row["identical_rate"] == 1.0
    assert set(report["hf_generate"]) == {"hf:plain", "hf:prompt_lookup", "hf:assistant"}
    assert all(row["identical_rate"] == 1.0 for row in report["hf_generate"].values())
    assert 0 < report["keystroke_cost_ratio"] < 1
    assert {"torch", "transformers", "threads", "device", "dtype", "verifier"} <= set(report["environment"])


def test_bench_reads_prompt_file(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prefix": "def add(a, b):\n    return a", "suffix": "\n\nprint(add(1, 2))\n", "language": "python"},
            {"prefix": "import json\n\ndef load(path):\n    with open(path) as f:\n        ", "suffix": "",
             "language": "python"}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run_bench(tmp_path, "--prompts", str(prompts), "--strategies", "ngram")
    assert report["identical_rate"] == 1.0
    assert list(report["strategies"]) == ["plain", "ngram+model", "ngram"]
    assert report["prompts"]["source"] == str(prompts)


def _script(name: str):
    """A script of scripts/ as a module (they import each other by plain name)."""
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))
    return importlib.import_module(name)


def test_assisted_hf_runs_get_the_fitted_prefill_and_a_too_fast_decode_still_counts():
    bench = _script("bench")
    lengths = [100, 200, 300]
    runs = [bench.Run(i, "hf:plain", [1] * 10, prefill_s=0.1 * (i + 1), total_s=2.0) for i in range(3)]
    # The assisted run finished before HF's prefill for its prompt length would have: an HF win, kept.
    lookup = bench.Run(2, "hf:prompt_lookup", [1] * 10, prefill_s=0.01, total_s=0.25)
    bench.assign_hf_prefill(runs + [lookup], lengths)
    assert abs(lookup.prefill_s - 0.3) < 1e-9
    assert [r.prefill_s for r in runs] == [0.1 * (i + 1) for i in range(3)]  # their own, untouched
    assert lookup.tokens_per_s == 10 / 1e-3
    single = bench.Run(0, "hf:prompt_lookup", [1] * 10, prefill_s=0.0, total_s=1.0)
    bench.assign_hf_prefill(runs[:1] + [single], lengths)  # one prompt: nothing to fit a slope on
    assert single.prefill_s == 0.1


class _PartlyRightDrafter(Drafter):
    """Proposes the verifier's known output with one token spoiled at a place that moves with the length."""

    def __init__(self, cases):
        self.cases = cases

    def propose(self, ctx, state):
        case = next(c for c in self.cases if ctx.ids[: len(c.prompt_ids)] == c.prompt_ids)
        done = len(ctx.ids) - len(case.prompt_ids)
        tokens = case.output[done : done + ctx.max_tokens]
        spoil = len(ctx.ids) % 5
        if spoil < len(tokens):
            tokens[spoil] += 1
        return Draft(tokens)


def test_replay_counts_the_passes_a_real_speculative_run_makes(tmp_path):
    from specd.daemon.engine.loop import Engine, EngineConfig, GenerationRequest
    from specd.daemon.models.loading import load_engine

    replay = _script("replay_drafts")
    Prompt = _script("bench").Prompt

    verifier, _ = write_tiny_pair(tmp_path / "models")
    engine = load_engine(EngineConfig(verifier=str(verifier), draft_strategy="none", threads=1),
                         progress=lambda message: None)
    prompts = [Prompt("x = 1\ny = x + 1\n" * 6, "", "python", "a"), Prompt("def f(a):\n", "\nf(2)\n", "python", "b")]
    cases = replay.greedy_cases(engine, prompts, max_tokens=40)
    drafter = _PartlyRightDrafter(cases)
    row = replay.replay(cases, drafter, 8, [1.0] * 20)

    engine.drafter = drafter
    tokens = passes = 0
    for prompt in prompts:
        engine.pool.clear()
        result = engine.generate(GenerationRequest(prompt=prompt.prefix, suffix=prompt.suffix, max_tokens=40))
        tokens += len(result.token_ids) - 1  # the first token comes from the prefill
        passes += result.stats.verifier_passes - 1
    assert row["tokens_per_pass"] == tokens / passes > 1.5  # drafts were accepted, and counted alike
    assert row["estimated_speedup"] == row["tokens_per_pass"]  # with every pass costing one step
