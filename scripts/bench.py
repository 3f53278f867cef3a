"""Decode speed of specd's speculative strategies against its own plain loop, HF `generate` and llama.cpp.

One process: the verifier (and drafter) load once; each strategy is a drafter object swapped onto the same
engine. Per prompt, every runner goes once from a cold cache, in an order that reverses on every other prompt
(ABBA), and every output is checked token for token against specd's plain greedy output.

    SPECD_HOME=/tmp/sh python scripts/bench.py --verifier smollm2-135m --limit 20 --json bench.json

Prompts: one seeded cursor per file, files shuffled with the seed; the rest of the cursor's line and up to two
more lines are removed (the suffix never holds the answer), the prefix and suffix cut to whole lines of about
--prefix-tokens / --suffix-tokens tokens. By default from the Python standard library (files over 8 kB, a cursor
in a line indented by four spaces at line 41 or later, not a comment or string). `--code-dir DIR` (repeatable)
cuts them from any source tree instead: .py .js .ts .go .rs .java .c files over 8 kB (language from the
extension; .d.ts and .min.js left out, and any file with a line over 400 characters: minified or generated),
the same rule at any indentation (two spaces, tabs), comments `#`/strings for Python and `//`, `/*`, `*`, `#`,
quotes and backticks for the others. `--stdlib` adds the standard library to code dirs, `--prompts FILE` reads
JSON lines. `--limit` prompts come from each source, interleaved source by source; each run records its
prompt's source and file, and with more than one source the headline ratios are reported per source and over
all (`per_source`). Drafters tuned on the standard library should also be measured on other code.

Decode tok/s = completion tokens / (total - prefill). HF `generate` has no separate prefill in its assisted
variants (the first round verifies the prompt and the first candidates together), so they subtract HF's
prefill time for the prompt's length, fitted over the plain HF `generate` runs (their time to a first token).
HF `generate` runs with transformers' own SDPA attention, as it ships. Against assisted HF variants only
end-to-end latency ratios are reported (`latency_vs_hf`): their decode time would be a total minus a fitted
prefill, a difference that load can drive to zero.

For a GGUF verifier with llama-cpp-python installed (`--backends auto`), the same prompts also run on specd's
llama.cpp backend (`llamacpp:plain`, its default drafter, and `-always`: every n-gram draft verified whole) and
through two peers of llama.cpp's own (bench_llamacpp.py), each given the token ids specd's engine builds:
plain decoding as llama-server does it (`llama.cpp:plain`) and llama-cpp-python's prompt-lookup speculation
(`llama.cpp:prompt-lookup`: `Llama(draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10))`, greedy, the
thread counts of specd's runner; its first token's time is taken from the binding's token generator, so it has
a decode time of its own; drafted and accepted tokens counted from its draft model's calls). Reported: specd's
default over each peer, decode tok/s and end-to-end latency, medians of paired per-prompt ratios
(`speedup_vs_llamacpp`, `latency_vs_llamacpp`, `speedup_vs_llamacpp_prompt_lookup`,
`latency_vs_llamacpp_prompt_lookup`, with bootstrap CIs and the ratio on prompts where drafts hit), and
`identical_rate` per backend (each against its own plain loop; the peers against specd's llama.cpp plain loop).

`--warm` times every specd completion as an editor's next keystroke: right after an untimed request for the same
prompt without its last 2 characters under the same cache key, so the verifier's KV, a model drafter's own
sequence and the document's previous completion are there, as they are while typing. llama.cpp's plain peer
does the same with llama-server's prompt cache (`cache_prompt`: the previous request's positions that the new
prompt starts with are kept, the rest fed), the prompt-lookup peer with the binding's own prefix match
(`Llama.generate`). HF `generate` is left out of warm runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import sysconfig
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from specd.daemon.engine.runners.attention import NAME as GROUPED_SDPA
from specd.daemon.engine.drafters.cascade import CascadeDrafter
from specd.daemon.engine.drafters.layer_skip import LayerSkipDrafter
from specd.daemon.engine.drafters.model import ModelDrafter
from specd.daemon.engine.drafters.ngram import NgramDrafter
from specd.daemon.engine.loop import Engine, EngineConfig, GenerationRequest
from specd.daemon.models.loading import load_engine
from specd.daemon.engine.kv_cache import common_prefix_length

PLAIN = "plain"
LLAMACPP_PLAIN = "llamacpp:plain"  # specd's loop on the llama.cpp backend, draft_tokens 0
LLAMACPP_PEER = "llama.cpp:plain"  # llama.cpp decoding by itself, as llama-server does (bench_llamacpp.py)
LLAMACPP_LOOKUP = "llama.cpp:prompt-lookup"  # llama-cpp-python's own prompt-lookup speculation (bench_llamacpp.py)
PEERS = {LLAMACPP_PEER: "llamacpp", LLAMACPP_LOOKUP: "llamacpp_prompt_lookup"}  # runner -> name in report keys
STDLIB = "python-stdlib"
# --code-dir: the files prompts are cut from (language from the extension), and those left out
CODE_EXTENSIONS = {".py": "python", ".js": "javascript", ".ts": "typescript", ".go": "go", ".rs": "rust",
                   ".java": "java", ".c": "c"}
SKIPPED_NAMES = (".d.ts", ".min.js")  # type declarations (no bodies), minified bundles
SKIPPED_DIRS = {".git", "__pycache__", ".hg", ".svn"}
MIN_FILE_BYTES = 8000  # as the standard library's: enough lines above a cursor at line 40 or later
MAX_LINE_CHARS = 400  # a longer line: generated or minified code, not what anyone types
COMMENT_STARTS = {"python": ("#", '"', "'")}  # a cursor line must not start with these (a comment or string)
C_LIKE_COMMENT_STARTS = ("//", "/*", "*", "#", '"', "'", "`")
HIT_SHARE = 0.25  # a prompt where drafts "hit": accepted draft tokens wrote at least this share of the output
KEYSTROKE_PROMPTS = 3  # the longest prompts, each: one cold prefill, then keystrokes on the same cache key
KEYSTROKES = 3
CHARS_PER_KEYSTROKE = 2
WARM_CHARS = 2  # --warm: the request before the timed one lacks the prompt's last characters


@dataclass
class Prompt:
    prefix: str
    suffix: str
    language: str = "python"
    source: str = ""  # the file (relative to its origin) or a prompt file's line
    origin: str = ""  # where it was cut: python-stdlib, a --code-dir, a --prompts file


@dataclass
class Run:
    prompt: int
    runner: str  # a specd strategy, "plain", "hf:<variant>", "llamacpp:<strategy>" or a llama.cpp peer
    tokens: list[int]
    prefill_s: float
    total_s: float
    drafted: int = 0
    accepted: int = 0
    rounds: int = 0
    identical: bool | None = None
    first_mismatch: int | None = None
    error: str | None = None
    source: str = ""  # where the prompt was cut (Prompt.origin: python-stdlib, a --code-dir, a --prompts file)
    file: str = ""  # and from which file (Prompt.source)

    @property
    def decode_s(self) -> float:
        return self.total_s - self.prefill_s

    @property
    def tokens_per_s(self) -> float | None:
        # A decode faster than the prefill estimate's noise still counts, as a very fast one.
        return len(self.tokens) / max(self.decode_s, 1e-3) if self.tokens else None


# -- prompts ---------------------------------------------------------------------------------------------------


def stdlib_prompts(tokenizer, count: int, seed: int, prefix_tokens: int, suffix_tokens: int) -> list[Prompt]:
    """One cursor per standard-library file, in files and at positions drawn from a seeded generator."""
    rng = random.Random(seed)
    files = sorted(p for p in Path(sysconfig.get_paths()["stdlib"]).glob("*.py") if p.stat().st_size > 8000)
    rng.shuffle(files)
    prompts = []
    for path in files:
        if len(prompts) == count:
            break
        cut = _cursor(path.read_text(encoding="utf-8", errors="replace"), rng)
        if cut is None:
            continue
        prefix, suffix = cut
        prompts.append(Prompt(_keep_tokens(tokenizer, prefix, prefix_tokens, tail=True),
                              _keep_tokens(tokenizer, suffix, suffix_tokens, tail=False), "python", path.name,
                              STDLIB))
    return prompts


def code_files(directory: Path) -> list[Path]:
    """Source files under `directory` (not following links) that prompts can be cut from, sorted by path."""
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in names:
            path = Path(root, name)
            if (path.suffix in CODE_EXTENSIONS and not name.endswith(SKIPPED_NAMES) and path.is_file()
                    and not path.is_symlink() and path.stat().st_size > MIN_FILE_BYTES):
                found.append(path)
    return sorted(found, key=lambda path: path.relative_to(directory).as_posix())


def code_prompts(tokenizer, directory: str, count: int, seed: int, prefix_tokens: int,
                 suffix_tokens: int) -> list[Prompt]:
    """One cursor per file of a source tree (.py .js .ts .go .rs .java .c), the files shuffled and the cursors
    drawn with the seed, as `stdlib_prompts` but at any indentation (two spaces, tabs); files with a line over
    MAX_LINE_CHARS characters (minified, generated) are skipped."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        sys.exit(f"--code-dir {directory}: not a directory")
    rng = random.Random(seed)
    files = code_files(root)
    rng.shuffle(files)
    prompts = []
    for path in files:
        if len(prompts) == count:
            break
        text = path.read_text(encoding="utf-8", errors="replace")
        if any(len(line) > MAX_LINE_CHARS for line in text.splitlines()):
            continue
        language = CODE_EXTENSIONS[path.suffix]
        cut = _cursor(text, rng, language, indents=(" ", "\t"))
        if cut is None:
            continue
        prefix, suffix = cut
        prompts.append(Prompt(_keep_tokens(tokenizer, prefix, prefix_tokens, tail=True),
                              _keep_tokens(tokenizer, suffix, suffix_tokens, tail=False), language,
                              path.relative_to(root).as_posix(), str(directory)))
    return prompts


def _cursor(text: str, rng: random.Random, language: str = "python",
            indents: tuple[str, ...] = ("    ",)) -> tuple[str, str] | None:
    """A cursor inside an indented code line (mid-body: the 41st line or later, starting with one of `indents`,
    8 or more characters, not a comment or string), after its indentation and before its last character;
    returns (prefix, suffix) around the hole the completion should fill. The standard library's prompts keep
    the four-space rule they were first drawn with, so their seeded cursors stay the same."""
    comments = COMMENT_STARTS.get(language, C_LIKE_COMMENT_STARTS)
    lines = text.splitlines(keepends=True)
    candidates = [i for i, line in enumerate(lines) if i >= 40 and line.startswith(indents)
                  and len(line.strip()) >= 8 and not line.strip().startswith(comments)]
    if not candidates:
        return None
    index = rng.choice(candidates)
    indent = len(lines[index]) - len(lines[index].lstrip())
    column = indent + rng.randrange(len(lines[index].strip()))
    position = sum(len(line) for line in lines[:index]) + column
    # The code to write is missing from the file: the rest of the cursor's line and up to two more lines.
    # Otherwise the suffix would hold the very text a completion should produce, free to copy.
    hole_end = sum(len(line) for line in lines[: index + 1 + rng.randrange(3)])
    return text[:position], text[hole_end:]


def _keep_tokens(tokenizer, text: str, limit: int, tail: bool) -> str:
    """Whole lines from the end (tail) or the start of `text`, about `limit` tokens (lines counted separately)."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    counts = [len(ids) for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]]
    order = range(len(lines) - 1, -1, -1) if tail else range(len(lines))
    kept, total = [], 0
    for i in order:
        if kept and total + counts[i] > limit:
            break
        kept.append(i)
        total += counts[i]
    return "".join(lines[i] for i in sorted(kept))


def file_prompts(path: str) -> list[Prompt]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Prompt(r["prefix"], r.get("suffix", ""), r.get("language", "unknown"), f"{path}:{i + 1}", path)
            for i, r in enumerate(rows)]


def gather_prompts(tokenizer, args) -> list[Prompt]:
    """Up to --limit prompts from each source (--stdlib, each --code-dir, --prompts; the standard library when
    none is named), interleaved source by source so that drift over the run touches every source alike."""
    sources = []
    if args.stdlib or not (args.code_dirs or args.prompts):
        sources.append((STDLIB, stdlib_prompts(tokenizer, args.limit, args.seed, args.prefix_tokens,
                                               args.suffix_tokens)))
    for directory in args.code_dirs:
        sources.append((directory, code_prompts(tokenizer, directory, args.limit, args.seed, args.prefix_tokens,
                                                args.suffix_tokens)))
    if args.prompts:
        sources.append((args.prompts, file_prompts(args.prompts)[: args.limit]))
    for name, found in sources:
        if not found:
            sys.exit(f"no prompts could be cut from {name}")
    prompts = []
    for row in range(max(len(found) for _, found in sources)):
        prompts += [found[row] for _, found in sources if row < len(found)]
    return prompts


# -- runners -----------------------------------------------------------------------------------------------------


def strategy_drafters(engine: Engine) -> dict[str, object]:
    """Every drafter that applies to the loaded models, built around the engine's own (the default first)."""
    default = engine.drafter
    drafters = {default.name: default} if default else {}
    model = default if isinstance(default, ModelDrafter) else None
    if isinstance(default, CascadeDrafter):
        model = next((d for d in default.drafters if isinstance(d, ModelDrafter)), None)
    drafters.setdefault("ngram", NgramDrafter())
    if engine.verifier.num_layers > 1:
        drafters.setdefault("layer_skip", LayerSkipDrafter(engine.verifier, engine.config.layer_skip_layers))
    if model is not None:
        drafters.setdefault("model", model)
        drafters.setdefault("ngram+model", CascadeDrafter([NgramDrafter(), model]))
    return drafters


def assistant_model(engine: Engine, drafters: dict[str, object]):
    """The drafter's HF model for `generate(assistant_model=...)`, or None without a drafter model."""
    for drafter in drafters.values():
        if isinstance(drafter, ModelDrafter):
            return drafter.runner.model
        if hasattr(drafter, "assistant"):
            return drafter.assistant
    return None


def run_specd(engine: Engine, drafter, prompt: Prompt, index: int, name: str, max_tokens: int,
              warm: bool = False) -> Run:
    """One completion from a cold cache; `warm`: timed after the request of the keystroke before (the prompt
    without its last WARM_CHARS characters, same cache key, untimed), as an editor sends them."""
    engine.drafter = drafter
    engine.pool.clear()  # every run starts cold
    # Token healing off: HF `generate` continues the prompt as it is, and every output is compared with it.
    def request(prefix):
        return GenerationRequest(prompt=prefix, suffix=prompt.suffix, max_tokens=max_tokens, token_healing=False,
                                 draft_tokens=0 if drafter is None else None, cache_key="bench" if warm else None)
    if warm:
        engine.generate(request(prompt.prefix[:-WARM_CHARS]))
    result = engine.generate(request(prompt.prefix))
    s = result.stats
    prefill_passes = -(-(s.prompt_tokens - s.cached_tokens) // 512)
    return Run(index, name, result.token_ids, s.prefill_s, s.total_s, s.drafted_tokens, s.accepted_tokens,
               s.verifier_passes - prefill_passes)


class _Clock:
    """A `generate` streamer that only timestamps each arrival (the first is the prompt itself)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def hf_variants(assistant) -> dict[str, dict]:
    """generate() keyword arguments; generation settings go into its GenerationConfig, models beside it."""
    variants = {"hf:plain": {}, "hf:prompt_lookup": {"prompt_lookup_num_tokens": 10}}
    if assistant is not None:
        variants["hf:assistant"] = {"assistant_model": assistant}
    return variants


@contextmanager
def stock_attention(*models):
    """HF `generate` is measured as transformers ships it: its own SDPA attention, not specd's grouped one."""
    switched = [m for m in models if m.config._attn_implementation == GROUPED_SDPA]
    for model in switched:
        model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        for model in switched:
            model.set_attn_implementation(GROUPED_SDPA)


def run_hf(engine: Engine, prompt_ids: list[int], index: int, name: str, extra: dict, max_tokens: int) -> Run:
    from transformers import GenerationConfig

    eos = sorted(engine.eos_ids)
    settings = {k: v for k, v in extra.items() if k != "assistant_model"}
    models = {k: v for k, v in extra.items() if k == "assistant_model"}
    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos[0],
                              **settings)
    input_ids = torch.tensor([prompt_ids], device=engine.verifier.device)
    clock = _Clock()
    model = engine.verifier.model
    started = time.perf_counter()
    try:
        with stock_attention(model, *models.values()):
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 generation_config=config, streamer=clock, **models)
    except Exception as exc:  # a variant these models do not support is reported, not fatal
        return Run(index, name, [], 0.0, 0.0, error=f"{type(exc).__name__}: {exc}")
    total = time.perf_counter() - started
    tokens = []
    for token in out[0, len(prompt_ids):].tolist():
        if token in engine.eos_ids:
            break
        tokens.append(token)
    first = clock.times[1] - started if len(clock.times) > 1 else total
    return Run(index, name, tokens, first, total)


@dataclass
class Other:
    """A runner beside the torch engine's: `run(prompt, index, max_tokens)` gives its Run, whose tokens are
    checked against the run named `reference` (another backend's own plain loop)."""

    run: object
    reference: str


def bench_prompt(engine, drafters, variants, prompt, index, max_tokens, others: dict | None = None,
                 warm: bool = False, turn: int | None = None) -> list[Run]:
    """Every runner once on `prompt`, in turn `turn`'s order (reversed on odd turns; the prompt's index when None)."""
    others = others or {}
    order = [(PLAIN, None)] + list(drafters.items()) + list(variants.items()) + list(others.items())
    if (index if turn is None else turn) % 2:
        order.reverse()
    prompt_ids = engine.prompt_ids(GenerationRequest(prompt=prompt.prefix, suffix=prompt.suffix))
    runs = {}
    for name, thing in order:
        if name in others:
            runs[name] = thing.run(prompt, index, max_tokens)
        elif name.startswith("hf:"):
            runs[name] = run_hf(engine, prompt_ids, index, name, thing, max_tokens)
        else:
            runs[name] = run_specd(engine, thing, prompt, index, name, max_tokens, warm)
    for name, run in runs.items():
        run.source, run.file = prompt.origin, prompt.source
        reference = others[name].reference if name in others else PLAIN
        if name != reference and run.error is None:
            expected = runs[reference].tokens
            run.identical = run.tokens == expected
            run.first_mismatch = None if run.identical else common_prefix_length(run.tokens, expected)
    return [runs[name] for name, _ in order]


def fastest_runs(repeats: list[list[Run]]) -> list[Run]:
    """Of a prompt's repeats (bench_prompt's lists), each runner's run with the shortest decode (total less prefill;
    an error only where every repeat failed): other programs only ever add time (timeit's advice), so the fastest
    repeat is the least disturbed one."""
    best: dict[str, Run] = {}
    for runs in repeats:
        for run in runs:
            kept = best.get(run.runner)
            if (kept is None or kept.error is not None and run.error is None
                    or run.error is None and run.total_s - run.prefill_s < kept.total_s - kept.prefill_s):
                best[run.runner] = run
    return [best[run.runner] for run in repeats[0]]


def assign_hf_prefill(runs: list[Run], lengths: list[int]) -> None:
    """Assisted `generate` runs verify their first draft in the prefill pass, so their prefill cannot be timed
    apart: give them HF's prefill time for the prompt's length, fitted over all plain `generate` runs (one run's
    own prefill is too noisy to subtract from a decode of a similar size)."""
    plain = [(lengths[r.prompt], r.prefill_s) for r in runs if r.runner == "hf:plain" and r.error is None]
    if not plain:
        return
    xs, ys = zip(*plain)
    try:
        slope, intercept = statistics.linear_regression(xs, ys)
    except statistics.StatisticsError:  # one prompt length only
        slope, intercept = 0.0, statistics.fmean(ys)
    for run in runs:
        if run.runner.startswith("hf:") and run.runner != "hf:plain":
            run.prefill_s = intercept + slope * lengths[run.prompt]


def keystroke_cost(engine: Engine, prompts: list[Prompt], texts: list[str]) -> dict:
    """Prefill time of a cold prompt vs. requests that each extend the previous one by a few typed characters."""
    engine.drafter = None
    longest = sorted(range(len(prompts)), key=lambda i: -len(engine.prompt_ids(
        GenerationRequest(prompt=prompts[i].prefix, suffix=prompts[i].suffix))))[:KEYSTROKE_PROMPTS]
    cold, warm, fed, cold_tokens = [], [], [], []
    for i in longest:
        # Typing within the cursor's line (an Enter can move the FIM prompt's middle part, once in 8 lines:
        # fim.py, and scripts/bench_typing.py times typing whole lines).
        prompt, typed = prompts[i], (texts[i].split("\n")[0] + "x" * KEYSTROKES * CHARS_PER_KEYSTROKE)
        engine.pool.clear()
        stats = _one_token(engine, prompt.prefix, prompt.suffix).stats
        cold.append(stats.prefill_s)
        cold_tokens.append(stats.prompt_tokens)
        for k in range(1, KEYSTROKES + 1):
            stats = _one_token(engine, prompt.prefix + typed[: k * CHARS_PER_KEYSTROKE], prompt.suffix).stats
            warm.append(stats.prefill_s)
            fed.append(stats.prompt_tokens - stats.cached_tokens)
    return {"keystroke_cost_ratio": statistics.median(warm) / statistics.median(cold),
            "cold_prefill_s": statistics.median(cold), "incremental_prefill_s": statistics.median(warm),
            "cold_prompt_tokens": cold_tokens, "incremental_tokens_fed": fed}


def _one_token(engine: Engine, prefix: str, suffix: str):
    return engine.generate(GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=1, cache_key="keystroke",
                                             token_healing=False))


def llamacpp_others(args, log, context: int) -> tuple[Engine, dict[str, Other]]:
    """specd on the llama.cpp backend (plain and its default drafter) and llama.cpp's own decoding of the same
    GGUF (plain, as llama-server does, and llama-cpp-python's prompt-lookup speculation), as runners beside the
    torch engine's. `context`: positions the prompt-lookup peer needs (prompt, output and one draft)."""
    from bench_llamacpp import LlamaCppPlain, LlamaCppPromptLookup

    extra = {"batch_threads": args.batch_threads} if args.batch_threads else {}
    engine = load_engine(EngineConfig(verifier=args.verifier, backend="llamacpp", threads=args.threads,
                                      cache_slots=2, **extra), progress=log)
    peer = LlamaCppPlain(engine.verifier)
    try:
        lookup = LlamaCppPromptLookup(engine.verifier, max_context=context)
    except (ImportError, AttributeError, ValueError, RuntimeError) as exc:  # a binding without it: left out
        log(f"{LLAMACPP_LOOKUP} left out: {type(exc).__name__}: {exc}")
        lookup = None

    def specd(drafter, name):
        return lambda prompt, index, max_tokens: run_specd(engine, drafter, prompt, index, name, max_tokens,
                                                           args.warm)

    def prompt_ids(prompt):  # the ids specd's engine feeds, BOS included: the peers add none
        return engine.prompt_ids(GenerationRequest(prompt=prompt.prefix, suffix=prompt.suffix))

    def plain_peer(prompt, index, max_tokens):
        if args.warm:  # the keystroke before, then only what it lacks, as llama-server's prompt cache feeds it
            before = Prompt(prompt.prefix[:-WARM_CHARS], prompt.suffix)
            peer.generate(prompt_ids(before), max_tokens, engine.eos_ids)
        tokens, first, total = peer.generate(prompt_ids(prompt), max_tokens, engine.eos_ids, reuse=args.warm)
        return Run(index, LLAMACPP_PEER, tokens, first, total)

    def lookup_peer(prompt, index, max_tokens):
        if args.warm:
            lookup.generate(prompt_ids(Prompt(prompt.prefix[:-WARM_CHARS], prompt.suffix)), max_tokens, engine.eos_ids)
        tokens, first, total, (drafted, accepted, rounds) = lookup.generate(prompt_ids(prompt), max_tokens,
                                                                            engine.eos_ids, reuse=args.warm)
        return Run(index, LLAMACPP_LOOKUP, tokens, first, total, drafted, accepted, rounds)

    default = "llamacpp:" + engine.drafter.name
    always = default + "-always"  # every n-gram draft verified whole, whatever the pass costs
    others = {LLAMACPP_PLAIN: Other(specd(None, LLAMACPP_PLAIN), LLAMACPP_PLAIN),
              default: Other(specd(engine.drafter, default), LLAMACPP_PLAIN),
              always: Other(specd(NgramDrafter(), always), LLAMACPP_PLAIN),
              LLAMACPP_PEER: Other(plain_peer, LLAMACPP_PLAIN)}
    if lookup is not None:
        others[LLAMACPP_LOOKUP] = Other(lookup_peer, LLAMACPP_PLAIN)
    return engine, others


def wants_llamacpp(args) -> bool:
    """--backends auto: the llama.cpp backend too when the verifier is a GGUF and the binding is installed."""
    from specd.daemon.engine.runners.llamacpp_runner import binding_available
    from specd.daemon.models.loading import gguf_file

    names = {b.strip() for b in args.backends.split(",")}
    if "llamacpp" in names:
        return True
    return "auto" in names and binding_available() and gguf_file(args.verifier, lambda m: None) is not None


def backend_summary(runs: list[Run], plain: str, default: str) -> dict:
    """One backend's default against its own plain loop and against llama.cpp's own decoding (each peer that ran:
    PEERS): decode tok/s and end-to-end latency, medians of paired per-prompt ratios."""
    mine = [r for r in runs if r.runner == default and r.error is None]
    hits = {r.prompt for r in mine if r.tokens and r.accepted >= HIT_SHARE * len(r.tokens)}
    hit_runs = [r for r in runs if r.prompt in hits]
    checked = [r for r in mine if r.identical is not None]
    summary = {
        "plain": plain, "default": default,
        "identical_rate": sum(r.identical for r in checked) / len(checked) if checked else None,
        "speedup_vs_plain": median_or_none(paired_ratios(runs, default, plain)),
        "latency_vs_plain": median_or_none(latency_ratios(runs, default, plain)),
        "hit_prompts": len(hits),
    }
    for peer, key in PEERS.items():
        ran = any(r.runner == peer for r in runs)
        vs_peer = paired_ratios(runs, default, peer) if ran else []
        summary[f"speedup_vs_{key}"] = median_or_none(vs_peer)
        summary[f"speedup_vs_{key}_ci95"] = bootstrap_median_ci(vs_peer)
        summary[f"speedup_vs_{key}_hits"] = median_or_none(paired_ratios(hit_runs, default, peer)) if ran else None
        summary[f"latency_vs_{key}"] = median_or_none(latency_ratios(runs, default, peer)) if ran else None
    return summary


def add_llamacpp_report(report: dict, runs: list[Run], others: dict, torch_default: str) -> None:
    """The llama.cpp rows and the headline comparisons: specd's default configuration (the llama.cpp backend
    with its drafter) over llama.cpp's own decoding (plain, and the binding's prompt lookup), per prompt, paired."""
    names = list(others)
    report["llamacpp"] = {n: runner_summary(runs, n, others[n].reference) for n in names}
    for peer in PEERS:
        if peer in report["llamacpp"]:  # its output against specd's llama.cpp plain loop
            checked = [r for r in runs if r.runner == peer and r.identical is not None]
            report["llamacpp"][peer]["identical_rate"] = (
                sum(r.identical for r in checked) / len(checked) if checked else None)
    default = names[1]  # llamacpp_others: plain, the engine's default drafter, then the others
    report["backends"] = {"torch": backend_summary(runs, PLAIN, torch_default),
                          "llamacpp": backend_summary(runs, LLAMACPP_PLAIN, default)}
    mine = report["backends"]["llamacpp"]
    report["default_backend"] = "llamacpp"
    for key in PEERS.values():
        for name in (f"speedup_vs_{key}", f"speedup_vs_{key}_ci95", f"speedup_vs_{key}_hits", f"latency_vs_{key}"):
            report[name] = mine[name]
    report["llamacpp_hit_prompts"] = mine["hit_prompts"]


def headline(runs: list[Run], default: str, strategies: list[str], variants: list[str],
             llamacpp_default: str | None = None) -> dict:
    """The headline ratios over `runs` (every prompt's, or one source's): specd's default over its plain loop and
    HF `generate`, and, when the llama.cpp backend ran, its default over its plain loop and llama.cpp's peers."""
    top = summarize(runs, default, strategies, variants)
    row = {"prompts": len({r.prompt for r in runs}), "identical_rate": top["identical_rate"],
           "speedup_vs_plain": top["speedup_vs_plain"], "speedup_vs_hf": top["speedup_vs_hf"],
           "latency_vs_hf_per_prompt_fastest": top["latency_vs_hf_per_prompt_fastest"]}
    if llamacpp_default:
        mine = backend_summary(runs, LLAMACPP_PLAIN, llamacpp_default)
        row["llamacpp_identical_rate"] = mine["identical_rate"]
        row["llamacpp_speedup_vs_plain"] = mine["speedup_vs_plain"]
        row["peer_identical_rate"] = {}  # each llama.cpp peer's output against specd's llama.cpp plain loop
        for peer, key in PEERS.items():
            row[f"speedup_vs_{key}"] = mine[f"speedup_vs_{key}"]
            row[f"latency_vs_{key}"] = mine[f"latency_vs_{key}"]
            checked = [r for r in runs if r.runner == peer and r.identical is not None]
            row["peer_identical_rate"][peer] = (sum(r.identical for r in checked) / len(checked)
                                                if checked else None)
    return row


def source_summaries(runs: list[Run], origins: list[str], default: str, strategies: list[str],
                     variants: list[str], llamacpp_default: str | None = None) -> dict:
    """`headline` per source (Run.source) and over all of them ("all")."""
    rows = {origin: headline([r for r in runs if r.source == origin], default, strategies, variants,
                             llamacpp_default) for origin in origins}
    rows["all"] = headline(runs, default, strategies, variants, llamacpp_default)
    return rows


# -- statistics --------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def paired_ratios(runs: list[Run], numerator: str, denominator) -> list[float]:
    """Per prompt: numerator's decode tok/s over the denominator's (a runner name, or a function of the prompt)."""
    by_key = {(r.prompt, r.runner): r for r in runs}
    ratios = []
    for prompt in sorted({r.prompt for r in runs}):
        top = by_key.get((prompt, numerator))
        bottom = by_key.get((prompt, denominator)) if isinstance(denominator, str) else denominator(prompt)
        if top and bottom and top.tokens_per_s and bottom.tokens_per_s:
            ratios.append(top.tokens_per_s / bottom.tokens_per_s)
    return ratios


def speed_ratios(per_token: dict[str, list[float]], pairs: list[tuple[str, str]], hits: set[int]) -> dict:
    """{"a / b": {"all": r, "hits": r or None}} for each pair: how many times runner a's decode speed is b's (> 1: a
    is faster), the median of paired per-prompt ratios of `per_token` (seconds per token, by runner, one per prompt
    in order), over all prompts and over the prompt indices in `hits` (None when there are none)."""
    def median_ratio(faster: str, slower: str, only=None) -> float:
        return statistics.median(slower_s / faster_s for i, (faster_s, slower_s)
                                 in enumerate(zip(per_token[faster], per_token[slower])) if only is None or i in only)

    return {f"{a} / {b}": {"all": median_ratio(a, b), "hits": median_ratio(a, b, hits) if hits else None}
            for a, b in pairs}


def bootstrap_median_ci(values: list[float], seed: int = 0, resamples: int = 2000) -> list[float] | None:
    if len(values) < 2:
        return None
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return [percentile(medians, 0.025), percentile(medians, 0.975)]


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def latency_ratios(runs: list[Run], numerator: str, denominator) -> list[float]:
    """Per prompt: the denominator's end-to-end seconds over the numerator's (> 1: the numerator answers sooner).
    Whole latencies only, nothing subtracted: no noise can drive a divisor to zero."""
    by_key = {(r.prompt, r.runner): r for r in runs}
    ratios = []
    for prompt in sorted({r.prompt for r in runs}):
        top = by_key.get((prompt, numerator))
        bottom = by_key.get((prompt, denominator)) if isinstance(denominator, str) else denominator(prompt)
        if top and bottom and top.error is None and bottom.error is None and top.total_s > 0:
            ratios.append(bottom.total_s / top.total_s)
    return ratios


def runner_summary(runs: list[Run], name: str, reference: str = PLAIN) -> dict:
    mine = [r for r in runs if r.runner == name and r.error is None]
    rounds = sum(r.rounds for r in mine)
    drafted = sum(r.drafted for r in mine)
    speeds = [r.tokens_per_s for r in mine if r.tokens_per_s]
    checked = [r for r in mine if r.identical is not None]
    errors = sorted({r.error for r in runs if r.runner == name and r.error})
    summary = {
        "prompts": len(mine),
        "tokens_per_s": median_or_none(speeds),
        "latency_p50_s": percentile([r.total_s for r in mine], 0.5),
        "latency_p95_s": percentile([r.total_s for r in mine], 0.95),
        "prefill_s_median": median_or_none([r.prefill_s for r in mine]),
        "completion_tokens_mean": statistics.fmean([len(r.tokens) for r in mine]) if mine else None,
        "identical_rate": sum(r.identical for r in checked) / len(checked) if checked else None,
    }
    if not name.startswith(("hf:", LLAMACPP_PEER)) and name != reference:
        summary["mean_accepted_length"] = 1 + sum(r.accepted for r in mine) / rounds if rounds else None
        summary["acceptance_rate"] = sum(r.accepted for r in mine) / drafted if drafted else None
    if name != reference:
        ratios = paired_ratios(runs, name, reference)
        summary["speedup_vs_plain"] = median_or_none(ratios)
        summary["latency_vs_plain"] = median_or_none(latency_ratios(runs, name, reference))
    if errors:
        summary["errors"] = errors
    return summary


def summarize(runs: list[Run], default: str, strategies: list[str], variants: list[str]) -> dict:
    per_runner = {name: runner_summary(runs, name) for name in [PLAIN] + strategies + variants}
    prompts = sorted({r.prompt for r in runs})
    spec = [r for r in runs if r.runner in strategies]
    identical = [all(r.identical for r in spec if r.prompt == p) for p in prompts]
    working = [v for v in variants if per_runner[v]["tokens_per_s"]]
    best = max(working, key=lambda v: per_runner[v]["tokens_per_s"]) if working else None
    by_key = {(r.prompt, r.runner): r for r in runs}

    def fastest_hf(prompt):
        found = [by_key[(prompt, v)] for v in working if by_key[(prompt, v)].total_s > 0]
        return min(found, key=lambda r: r.total_s) if found else None

    vs_plain = paired_ratios(runs, default, PLAIN)
    plain_speeds = [r.tokens_per_s for r in runs if r.runner == PLAIN and r.tokens_per_s]
    default_speeds = [r.tokens_per_s for r in runs if r.runner == default and r.tokens_per_s]
    return {
        "identical_rate": sum(identical) / len(identical) if identical else None,
        "default_strategy": default,
        "speedup_vs_plain": median_or_none(vs_plain),
        "speedup_vs_plain_ci95": bootstrap_median_ci(vs_plain),
        "speedup_vs_plain_ratio_of_means": (statistics.fmean(default_speeds) / statistics.fmean(plain_speeds)
                                            if default_speeds and plain_speeds else None),
        # Decode speed against HF plain `generate` (its prefill is timed: the first streamed token); against
        # assisted variants, whose decode would be a total minus a fitted prefill, end-to-end latency only.
        "speedup_vs_hf": median_or_none(paired_ratios(runs, default, "hf:plain")) if "hf:plain" in working else None,
        "speedup_vs_hf_variant": "hf:plain" if "hf:plain" in working else None,
        "latency_vs_hf": {v: median_or_none(latency_ratios(runs, default, v)) for v in working},
        "latency_vs_hf_per_prompt_fastest": median_or_none(latency_ratios(runs, default, fastest_hf)),
        "best_hf_variant_by_decode": best,
        "plain_vs_hf": median_or_none(paired_ratios(runs, PLAIN, "hf:plain")),
        "strategies": {name: per_runner[name] for name in [PLAIN] + strategies},
        "hf_generate": {name: per_runner[name] for name in variants},
    }


# -- report ------------------------------------------------------------------------------------------------------


def print_table(report: dict) -> None:
    def fmt(value, spec):
        if isinstance(value, (int, float)):
            return format(value, spec)
        return "-".rjust(int(spec.split(".")[0] or 0))

    print(f"\n{'runner':<25}{'tok/s':>8}{'x plain':>9}{'accept len':>12}{'accept %':>10}"
          f"{'p50 s':>8}{'p95 s':>8}{'identical':>11}")
    rows = {**report["strategies"], **report["hf_generate"], **report.get("llamacpp", {})}
    for name, row in rows.items():
        accept = row.get("acceptance_rate")
        print(f"{name:<25}{fmt(row['tokens_per_s'], '8.2f')}{fmt(row.get('speedup_vs_plain'), '9.2f')}"
              f"{fmt(row.get('mean_accepted_length'), '12.2f')}{fmt(accept and 100 * accept, '10.1f')}"
              f"{fmt(row['latency_p50_s'], '8.2f')}{fmt(row['latency_p95_s'], '8.2f')}"
              f"{fmt(row['identical_rate'], '11.2f')}" + (f"  ERROR {row['errors'][0][:60]}" if "errors" in row else ""))
    ks = report["keystroke"]
    print(f"\nidentical_rate {fmt(report['identical_rate'], '.2f')} over {report['prompts']['count']} prompts; "
          f"default strategy {report['default_strategy']}")
    print(f"speedup_vs_plain {fmt(report['speedup_vs_plain'], '.2f')} (median of paired ratios; bootstrap 95% CI "
          f"{_interval(report['speedup_vs_plain_ci95'])}); ratio of means {fmt(report['speedup_vs_plain_ratio_of_means'], '.2f')}")
    print(f"speedup_vs_hf {fmt(report['speedup_vs_hf'], '.2f')} (decode, vs {report['speedup_vs_hf_variant']}); "
          "end-to-end latency ratios " + ", ".join(f"{k} {fmt(v, '.2f')}" for k, v in report["latency_vs_hf"].items())
          + f", per-prompt fastest HF {fmt(report['latency_vs_hf_per_prompt_fastest'], '.2f')}")
    if "llamacpp" in report:
        print(f"llama.cpp backend: identical_rate {fmt(report['backends']['llamacpp']['identical_rate'], '.2f')}; "
              f"speedup_vs_llamacpp {fmt(report['speedup_vs_llamacpp'], '.2f')} (decode; 95% CI "
              f"{_interval(report['speedup_vs_llamacpp_ci95'])}), on {report['llamacpp_hit_prompts']} prompts where "
              f"drafts hit {fmt(report['speedup_vs_llamacpp_hits'], '.2f')}; end-to-end latency "
              f"{fmt(report['latency_vs_llamacpp'], '.2f')}; torch default vs llama.cpp plain "
              f"{fmt(report['backends']['torch']['speedup_vs_llamacpp'], '.2f')}")
        if LLAMACPP_LOOKUP in report["llamacpp"]:
            lookup = report["llamacpp"][LLAMACPP_LOOKUP]
            print(f"llama.cpp prompt lookup (llama-cpp-python): identical to specd's llama.cpp plain "
                  f"{fmt(lookup['identical_rate'], '.2f')}; specd's default over it: decode "
                  f"{fmt(report['speedup_vs_llamacpp_prompt_lookup'], '.2f')} (95% CI "
                  f"{_interval(report['speedup_vs_llamacpp_prompt_lookup_ci95'])}), end-to-end latency "
                  f"{fmt(report['latency_vs_llamacpp_prompt_lookup'], '.2f')}")
        lks = report["keystroke_llamacpp"]
        print(f"llama.cpp keystroke_cost_ratio {fmt(lks['keystroke_cost_ratio'], '.3f')} (incremental prefill "
              f"{fmt(lks['incremental_prefill_s'], '.3f')} s vs cold {fmt(lks['cold_prefill_s'], '.3f')} s)")
    print(f"plain_vs_hf {fmt(report['plain_vs_hf'], '.2f')} (specd plain over HF plain generate)")
    print(f"keystroke_cost_ratio {fmt(report['keystroke_cost_ratio'], '.3f')} (incremental prefill "
          f"{fmt(ks['incremental_prefill_s'], '.3f')} s vs cold {fmt(ks['cold_prefill_s'], '.3f')} s; "
          f"cold prompts {ks['cold_prompt_tokens']} tokens, keystrokes fed {ks['incremental_tokens_fed']} tokens)")
    if "per_source" in report:
        print_sources(report["per_source"])


SOURCE_COLUMNS = [("prompts", "prompts", "d"), ("identical", "identical_rate", ".2f"),
                  ("x plain", "speedup_vs_plain", ".2f"), ("lcpp x plain", "llamacpp_speedup_vs_plain", ".2f"),
                  ("lcpp identical", "llamacpp_identical_rate", ".2f"),
                  ("x llama.cpp", "speedup_vs_llamacpp", ".2f"), ("lat x llama.cpp", "latency_vs_llamacpp", ".2f"),
                  ("x lookup", "speedup_vs_llamacpp_prompt_lookup", ".2f"),
                  ("lat x lookup", "latency_vs_llamacpp_prompt_lookup", ".2f")]


def print_sources(rows: dict) -> None:
    """The headline ratios per prompt source and over all (columns as the JSON's per_source keys: x plain = the
    torch default over its plain loop, lcpp = the llama.cpp backend's default, lookup = llama.cpp's prompt lookup
    peer, lat = end-to-end latency)."""
    width = max(len(name) for name in rows) + 2
    print("\n" + "source".ljust(width) + "".join(f"{title:>{len(title) + 2}}" for title, _, _ in SOURCE_COLUMNS))
    for name, row in rows.items():
        cells = []
        for title, key, spec in SOURCE_COLUMNS:
            value = row.get(key)
            cells.append(format(value, spec).rjust(len(title) + 2) if isinstance(value, (int, float))
                         else "-".rjust(len(title) + 2))
        print(name.ljust(width) + "".join(cells))


def _interval(bounds) -> str:
    return f"{bounds[0]:.2f}..{bounds[1]:.2f}" if bounds else "-"


def environment(engine: Engine, args, threads: int) -> dict:
    import transformers

    commit = _git("rev-parse", "HEAD")
    # Uncommitted engine changes make the commit alone an incomplete record of what ran.
    changed = (_git("status", "--porcelain", "--", "daemon") or "").splitlines()
    info = engine.info()
    return {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor(), "threads": threads,
            "device": info["device"], "dtype": info["dtype"], "verifier": args.verifier, "drafter": args.drafter,
            "fim_template": info["fim_template"], "max_tokens": args.max_tokens, "warm": args.warm,
            "max_draft_tokens": engine.config.max_draft_tokens, "git_commit": commit,
            "git_uncommitted_daemon_files": [line[3:] for line in changed]}


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        return None


# -- main --------------------------------------------------------------------------------------------------------


def add_prompt_arguments(p: argparse.ArgumentParser) -> None:
    """The options that choose the prompts (`gather_prompts`), how long each completion is and how often each runner
    runs; scripts/bench_drafting.py shares them."""
    p.add_argument("--prompts", default=None, help="JSON lines with prefix, suffix, language")
    p.add_argument("--code-dir", dest="code_dirs", action="append", default=[], metavar="DIR",
                   help="cut prompts from the source files of DIR (.py .js .ts .go .rs .java .c; repeatable); "
                        "without --stdlib the standard library is then left out")
    p.add_argument("--stdlib", action="store_true",
                   help="the Python standard library as a source too (the default when no other is named)")
    p.add_argument("--limit", type=int, default=20, help="prompts per source")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=1, help="run every runner this many times per prompt (the order "
                   "reversed each time) and keep each one's fastest decode: per-prompt ratios of one run move by "
                   "about 10 %% on a shared machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prefix-tokens", type=int, default=1000)
    p.add_argument("--suffix-tokens", type=int, default=200)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--verifier", default=EngineConfig.verifier)
    p.add_argument("--drafter", default=None)
    p.add_argument("--draft-strategy", default=EngineConfig.draft_strategy,
                   help="the engine's own strategy, which is the default drafter compared (default: auto)")
    p.add_argument("--strategies", default=None, help="comma list; default: the default's plus all that apply")
    add_prompt_arguments(p)
    p.add_argument("--threads", type=int, default=0, help="specd's `threads` setting (0: its default, auto)")
    p.add_argument("--batch-threads", type=int, default=0,
                   help="llama.cpp: specd's threads for passes over several tokens; 0: the engine's default "
                        "(llama.cpp's own peers run on llama-server's default threads)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--skip-hf", action="store_true", help="leave HF generate out (its rows and ratios are empty)")
    p.add_argument("--warm", action="store_true",
                   help="time each specd completion after the keystroke before it (the prompt without its last "
                        f"{WARM_CHARS} characters, same cache key), as an editor sends them; llama.cpp's plain peer "
                        "reuses its cache as llama-server does; HF generate is left out")
    p.add_argument("--backends", default="auto",
                   help="torch, llamacpp or both (comma list); auto: torch, and llamacpp too for a GGUF verifier "
                        "when llama-cpp-python is installed (with llama.cpp's own plain decoding as a peer)")
    return p.parse_args(argv)


def choose_strategies(available: dict, wanted: str | None) -> dict:
    if not wanted:
        return available
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    missing = [n for n in names if n not in available]
    if missing:
        sys.exit(f"strategies {missing} do not apply to these models; available: {', '.join(available)}")
    return {n: available[n] for n in names}


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    config = EngineConfig(verifier=args.verifier, drafter=args.drafter, draft_strategy=args.draft_strategy,
                          device=args.device, dtype=args.dtype, threads=args.threads, backend="torch")
    engine = load_engine(config, progress=log)
    env = environment(engine, args, torch.get_num_threads())  # before the runs: the commit that ran
    available = strategy_drafters(engine)
    if not available:
        sys.exit("the engine has no drafter (draft strategy 'none'): nothing to compare")
    default = next(iter(available))
    drafters = choose_strategies(available, args.strategies)
    drafters = {default: available[default], **drafters}  # the headline ratios need the default
    variants = {} if args.skip_hf or args.warm else hf_variants(assistant_model(engine, available))
    prompts = gather_prompts(engine.tokenizer, args)
    lengths = [len(engine.prompt_ids(GenerationRequest(prompt=p.prefix, suffix=p.suffix))) for p in prompts]
    others = {}
    if wants_llamacpp(args):
        # the prompt-lookup peer's context: the longest prompt, the output, one draft and a margin
        context = -(-(max(lengths) + args.max_tokens + 64) // 256) * 256
        llama_engine, others = llamacpp_others(args, log, context)
        from bench_llamacpp import llama_server_threads

        runner = llama_engine.verifier
        env["llamacpp_threads"] = {"threads": runner.threads, "batch_threads": runner.batch_threads,
                                   "busy_batch_threads": runner.busy_batch_threads,
                                   "steps_follow_passes": runner.steps_follow_passes,
                                   "peers": llama_server_threads()}
    origins = list(dict.fromkeys(p.origin for p in prompts))
    log(f"{len(prompts)} prompts from {', '.join(origins)}, {min(lengths)}..{max(lengths)} tokens; runners: "
        f"{', '.join([PLAIN, *drafters, *variants, *others])}")

    started = time.perf_counter()
    bench_prompt(engine, drafters, variants, prompts[0], 0, min(8, args.max_tokens), others, args.warm)  # not counted
    warmup_s = time.perf_counter() - started
    if others:
        llama_engine.verifier.passes_on.clear()  # from here on: the timed runs' passes and steps
        llama_engine.verifier.steps_on.clear()

    runs: list[Run] = []
    for index, prompt in enumerate(prompts):
        runs += fastest_runs([bench_prompt(engine, drafters, variants, prompt, index, args.max_tokens, others,
                                           args.warm, turn=index * args.repeats + repeat)
                              for repeat in range(args.repeats)])
        plain = next(r for r in runs if r.prompt == index and r.runner == PLAIN)
        log(f"prompt {index + 1}/{len(prompts)} ({prompt.origin}: {prompt.source}, {lengths[index]} tokens): "
            + ", ".join(f"{r.runner} {r.tokens_per_s or 0:.1f}" + ("" if r.identical in (None, True) else " MISMATCH")
                        for r in runs if r.prompt == index) + f" tok/s; plain {len(plain.tokens)} tokens")

    texts = [engine.tokenizer.decode(next(r.tokens for r in runs if r.prompt == i and r.runner == PLAIN))
             for i in range(len(prompts))]
    assign_hf_prefill(runs, lengths)
    report = summarize(runs, default, list(drafters), list(variants))
    report["keystroke"] = keystroke_cost(engine, prompts, texts)
    report["keystroke_cost_ratio"] = report["keystroke"]["keystroke_cost_ratio"]
    if others:
        # specd's passes over several tokens in the timed runs (prompts, verifications) by thread count: how often
        # batch_threads auto found the other cores idle
        env["llamacpp_threads"]["passes_on"] = {str(k): v for k, v in sorted(runner.passes_on.items())}
        env["llamacpp_threads"]["steps_on"] = {str(k): v for k, v in sorted(runner.steps_on.items())}
        add_llamacpp_report(report, runs, others, default)
        report["keystroke_llamacpp"] = keystroke_cost(llama_engine, prompts, texts)
        env["llama_cpp_python"] = _version("llama_cpp_python")
    if len(origins) > 1:
        report["per_source"] = source_summaries(runs, origins, default, list(drafters), list(variants),
                                                list(others)[1] if others else None)
    report["prompts"] = {"count": len(prompts), "source": origins[0] if len(origins) == 1 else origins,
                         "seed": args.seed, "per_source_limit": args.limit, "tokens_min": min(lengths),
                         "tokens_median": statistics.median(lengths), "tokens_max": max(lengths),
                         "origins": [p.origin for p in prompts], "sources": [p.source for p in prompts],
                         "languages": [p.language for p in prompts]}
    report["warmup_s"] = warmup_s
    report["environment"] = env
    report["runs"] = [{**asdict(r), "tokens_per_s": r.tokens_per_s} for r in runs]
    print_table(report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
