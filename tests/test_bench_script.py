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
    return bench_process(tmp_path, *extra)[0]


def bench_process(tmp_path, *extra):
    """The JSON report and the printed output of one run (later options override the ones here)."""
    verifier, drafter = write_tiny_pair(tmp_path / "models")
    out = tmp_path / "bench.json"
    env = {**os.environ, "SPECD_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, str(SCRIPT), "--verifier", str(verifier), "--drafter", str(drafter),
                           "--limit", "2", "--max-tokens", "12", "--threads", "1", "--prefix-tokens", "300",
                           "--json", str(out), *extra], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


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
    assert "per_source" not in report  # one source: the headline is the source's


def write_code_tree(root: Path, language: str, files: int) -> Path:
    """Source files whose every line is unique, indented as the language's authors do (JS: two spaces, Go:
    tabs, Python: four spaces), plus files a prompt must not come from (minified, declarations, too small)."""
    root.mkdir(parents=True)
    body = {"js": ("function f{f}_{i}(a) {{", "  const v{f}_{i} = compute{f}_{i}(a, {i});", "  return v{f}_{i};",
                   "}}"),
            "go": ("func f{f}_{i}(a int) int {{", "\tv{f}_{i} := compute{f}_{i}(a, {i})", "\treturn v{f}_{i}", "}}"),
            "py": ("def f{f}_{i}(a):", "    v{f}_{i} = compute{f}_{i}(a, {i})", "    return v{f}_{i}", "")}[language]
    for f in range(files):
        lines = [line.format(f=f, i=i) for i in range(150) for line in body]
        (root / f"m{f}.{language}").write_text("\n".join(lines) + "\n")
    (root / "lib.min.js").write_text("\n".join("  x" + "y" * 500 for _ in range(60)))
    (root / "long.js").write_text("\n".join(["  const a = 1;" * 40] * 60 + ["  let b = 2;"] * 60))
    (root / "small.py").write_text("    x = 1\n" * 60)
    return root


class WordTokenizer:
    def __call__(self, lines, add_special_tokens=False):
        return {"input_ids": [line.split() for line in lines]}


def test_code_dirs_cut_one_prompt_per_file_at_any_indentation_without_the_answer_in_the_suffix(tmp_path):
    bench = _script("bench")
    trees = {language: write_code_tree(tmp_path / language, language, 4) for language in ("js", "go", "py")}
    names = {"js": "javascript", "go": "go", "py": "python"}
    for language, root in trees.items():
        prompts = bench.code_prompts(WordTokenizer(), str(root), 10, 0, 100_000, 100_000)
        assert sorted(p.source for p in prompts) == [f"m{f}.{language}" for f in range(4)]  # one per file
        for prompt in prompts:
            assert (prompt.language, prompt.origin) == (names[language], str(root))
            text = (root / prompt.source).read_text()
            assert text.startswith(prompt.prefix) and text.endswith(prompt.suffix)
            hole = text[len(prompt.prefix) : len(text) - len(prompt.suffix)]
            line = prompt.prefix.rsplit("\n", 1)[-1] + hole.split("\n", 1)[0]
            assert line in text.splitlines() and line.startswith((" ", "\t")) and line.strip()
            assert line.lstrip() not in prompt.suffix  # the cursor's line is gone, not just moved
            assert prompt.prefix.count("\n") >= 40 and hole.endswith("\n")
        again = bench.code_prompts(WordTokenizer(), str(root), 10, 0, 100_000, 100_000)
        assert [(p.source, p.prefix) for p in again] == [(p.source, p.prefix) for p in prompts]  # seeded
        other = bench.code_prompts(WordTokenizer(), str(root), 10, 1, 100_000, 100_000)
        assert [(p.source, p.prefix) for p in other] != [(p.source, p.prefix) for p in prompts]


def test_prompts_from_two_code_dirs_are_interleaved_and_summarized_per_source(tmp_path):
    js = write_code_tree(tmp_path / "web", "js", 3)
    py = write_code_tree(tmp_path / "service", "py", 3)
    report, printed = bench_process(tmp_path, "--code-dir", str(js), "--code-dir", str(py), "--strategies", "ngram",
                                    "--skip-hf", "--limit", "2", "--max-tokens", "8")
    assert report["prompts"]["origins"] == [str(js), str(py), str(js), str(py)]
    assert report["prompts"]["languages"] == ["javascript", "python"] * 2
    assert report["prompts"]["source"] == [str(js), str(py)]
    assert {(r["source"], r["file"].split(".")[-1]) for r in report["runs"]} == {(str(js), "js"), (str(py), "py")}
    per_source = report["per_source"]
    assert list(per_source) == [str(js), str(py), "all"]
    assert [per_source[k]["prompts"] for k in per_source] == [2, 2, 4]
    assert all(per_source[k]["identical_rate"] == 1.0 for k in per_source)
    assert per_source["all"]["speedup_vs_plain"] == report["speedup_vs_plain"]
    assert all(per_source[k]["speedup_vs_plain"] > 0 for k in per_source)
    rows = [line.split() for line in printed.splitlines()]
    assert [row[:2] for row in rows if row and row[0] in per_source] == [[str(js), "2"], [str(py), "2"], ["all", "4"]]


def test_the_standard_library_joins_code_dirs_only_when_asked(tmp_path):
    bench = _script("bench")
    js = write_code_tree(tmp_path / "web", "js", 2)
    args = bench.parse_args(["--code-dir", str(js), "--limit", "1", "--prefix-tokens", "50"])
    assert {p.origin for p in bench.gather_prompts(WordTokenizer(), args)} == {str(js)}
    args = bench.parse_args(["--code-dir", str(js), "--stdlib", "--limit", "1", "--prefix-tokens", "50"])
    assert [p.origin for p in bench.gather_prompts(WordTokenizer(), args)] == [bench.STDLIB, str(js)]
    args = bench.parse_args(["--limit", "2", "--prefix-tokens", "50"])
    stdlib = bench.gather_prompts(WordTokenizer(), args)
    assert [p.origin for p in stdlib] == [bench.STDLIB] * 2
    assert stdlib == bench.stdlib_prompts(WordTokenizer(), 2, 0, 50, 200)  # the default, as before


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


def _plain_tiny_engine(tmp_path):
    from specd.daemon.engine.loop import EngineConfig
    from specd.daemon.models.loading import load_engine

    verifier, _ = write_tiny_pair(tmp_path / "models")
    return load_engine(EngineConfig(verifier=str(verifier), draft_strategy="none", threads=1),
                       progress=lambda message: None)


def test_replay_counts_the_passes_a_real_speculative_run_makes(tmp_path):
    from specd.daemon.engine.loop import GenerationRequest

    replay = _script("replay_drafts")
    Prompt = _script("bench").Prompt
    engine = _plain_tiny_engine(tmp_path)
    prompts = [Prompt("x = 1\ny = x + 1\n" * 6, "", "python", "a"), Prompt("def f(a):\n", "\nf(2)\n", "python", "b")]
    cases = replay.greedy_cases(engine, prompts, max_tokens=40)
    drafter = _PartlyRightDrafter(cases)
    row = replay.replay(cases, drafter, 8, [1.0] * 20)

    engine.drafter = drafter
    tokens = passes = 0
    for prompt in prompts:
        engine.pool.clear()
        result = engine.generate(GenerationRequest(prompt=prompt.prefix, suffix=prompt.suffix, max_tokens=40,
                                                   token_healing=False))  # as the replay's cases
        tokens += len(result.token_ids) - 1  # the first token comes from the prefill
        passes += result.stats.verifier_passes - 1
    assert row["tokens_per_pass"] == tokens / passes > 1.5  # drafts were accepted, and counted alike
    assert row["estimated_speedup"] == row["tokens_per_pass"]  # with every pass costing one step


def test_the_cost_aware_replay_drafts_only_where_its_table_says_drafts_pay(tmp_path):
    from specd.daemon.engine.drafters.cost_aware import CostAwareDrafter

    replay = _script("replay_drafts")
    Prompt = _script("bench").Prompt
    cases = replay.greedy_cases(_plain_tiny_engine(tmp_path), [Prompt("x = 1\ny = x + 1\n" * 6, "", "python", "a")], max_tokens=40)
    dear = [0.0] + [float(k) for k in range(1, 10)]  # a k-token pass costs k steps: no draft ever pays
    row = replay.replay(cases, CostAwareDrafter(_PartlyRightDrafter(cases), lambda: dear[1:]), 8, dear)
    assert row["tokens_per_pass"] == 1.0 and row["per_prompt"] == [1.0]
    cheap = [0.0] + [1.0] * 9  # every pass costs one step: drafts pay once hindsight trusts them
    row = replay.replay(cases, CostAwareDrafter(_PartlyRightDrafter(cases), lambda: cheap[1:]), 8, cheap)
    assert row["tokens_per_pass"] > 1.0 and row["per_prompt"][0] == row["estimated_speedup"] > 1.0


def test_warm_runs_follow_the_keystroke_before_on_the_same_cache(tmp_path):
    from specd.daemon.engine.drafters.ngram import NgramDrafter
    from specd.daemon.engine.loop import EngineConfig
    from specd.daemon.models.loading import load_engine

    bench = _script("bench")
    verifier, _ = write_tiny_pair(tmp_path / "models")
    engine = load_engine(EngineConfig(verifier=str(verifier), draft_strategy="none", threads=1),
                         progress=lambda message: None)
    prompt = bench.Prompt("def total(items):\n    result = 0\n    for item in items:\n        result", "\n", "python", "a")
    results = []
    generate = engine.generate
    engine.generate = lambda request: results.append((request, generate(request))) or results[-1][1]
    cold = bench.run_specd(engine, NgramDrafter(), prompt, 0, "ngram", 8)
    warm = bench.run_specd(engine, NgramDrafter(), prompt, 0, "ngram", 8, warm=True)
    assert warm.tokens == cold.tokens
    (cold_request, cold_result), (before, _), (timed, timed_result) = results
    assert cold_result.stats.cached_tokens == 0
    assert before.prompt == prompt.prefix[: -bench.WARM_CHARS] and before.cache_key == timed.cache_key is not None
    prompt_tokens = timed_result.stats.prompt_tokens
    assert prompt_tokens - 4 <= timed_result.stats.cached_tokens < prompt_tokens  # only the last keystroke is fed


def test_warm_runs_leave_out_the_runners_without_a_document_cache(tmp_path):
    report = run_bench(tmp_path, "--warm", "--strategies", "ngram")
    assert report["identical_rate"] == 1.0
    assert report["hf_generate"] == {} and report["environment"]["warm"] is True


def test_the_typing_benchmark_counts_what_each_window_prefills_again(tmp_path):
    verifier, _ = write_tiny_pair(tmp_path / "models")
    report = _script("bench_typing").main(["--verifier", str(verifier), "--files", "1", "--lines", "2",
                                           "--every", "8", "--json", str(tmp_path / "typing.json")])
    before, now = (report["windows"][w] for w in _script("bench_typing").WINDOWS)
    assert before["requests"] == now["requests"] > 5
    assert now["full_prefills"] <= before["full_prefills"] and now["prefilled_tokens"] < before["prefilled_tokens"]
    assert json.loads((tmp_path / "typing.json").read_text())["settings"]["lines"] == 2


def test_the_warm_up_benchmark_times_the_keystroke_after_each_rest(tmp_path):
    verifier, _ = write_tiny_pair(tmp_path / "models")
    script = _script("bench_warm_up")
    report = script.main(["--verifier", str(verifier), "--cursors", "3", "--rests", "0,inf", "--max-tokens", "4",
                          "--json", str(tmp_path / "warm.json")])
    sides = report["sides"]
    assert set(sides) == {script.NO_HINT, "rest 0 s", "rest ∞ s"}
    for side, row in sides.items():
        assert row["cursors"] == 3 and row["identical_to_no_hint"] == 3, side
    assert sides["rest ∞ s"]["warm_ups_finished"] == 3 and sides["rest ∞ s"]["prefilled_mean"] <= 4
    assert sides[script.NO_HINT]["prefilled_mean"] == sides[script.NO_HINT]["prompt_tokens_mean"]
    assert json.loads((tmp_path / "warm.json").read_text())["settings"]["cursors"] == 3
