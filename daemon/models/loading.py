"""From a model name in settings to loaded weights: resolution, GGUF conversion, device, dtype, drafter choice.

A model is an embedded name (`smollm2-135m`), a local folder, a `.gguf` file, or a hub id. GGUF files are
converted once into a safetensors folder in specd's cache, so later loads take seconds instead of a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch

from specd.daemon.engine.runners.attention import use_grouped_sdpa
from specd.daemon.engine.runners.cpu_load import default_threads
from .embedded import EMBEDDED, fetch_embedded
from specd.daemon.engine.runners.fast_head import use_fast_head
from specd.daemon.config.paths import get_paths
from specd.daemon.engine.runners.torch_runner import ModelRunner
from specd.daemon.config.settings import DRAFT_STRATEGIES
from .backend import choose_backend
from .tokenizer_compat import check_compatible, shared_vocab_size

# A hub that answers does so well within this; one that does not would cost huggingface_hub's five retries per
# file (about 50 s) before the load fails.
HUB_PROBE_TIMEOUT_S = 3.0


class HubUnreachableError(ValueError):
    """A hub id that cannot be loaded here: the hub does not answer and the model is not in huggingface_hub's cache.
    A ValueError like a wrong setting: the user has to act (the message says how), and a traceback would not help."""


def resolve_device(device: str) -> torch.device:
    """The torch device a `device` setting names: "auto" picks CUDA, else MPS, else the CPU; any other string goes to
    torch.device as is (which raises RuntimeError for an unknown name)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype a `dtype` setting names: "auto" is bfloat16 on CUDA, float16 on MPS, float32 elsewhere; else
    float32/fp32, bfloat16/bf16 or float16/fp16. Raises ValueError for any other name."""
    if dtype == "auto":
        return {"cuda": torch.bfloat16, "mps": torch.float16}.get(device.type, torch.float32)
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(names)}")
    return names[dtype]


def _gguf_cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return get_paths().models_dir / f"{gguf.stem}-{key}"


def convert_gguf(gguf: Path, progress=print) -> Path:
    """A safetensors folder with the GGUF's dequantized weights and tokenizer, made once."""
    folder = _gguf_cache_folder(gguf)
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"converting {gguf.name} to safetensors once (about a minute on a CPU; later loads take seconds) ...")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it still looks quantized; its weights are plain now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "specd-source.json").write_text(json.dumps({"gguf": str(gguf.resolve())}))
    os.replace(partial, folder)
    progress(f"converted {gguf.name} in {time.perf_counter() - started:.0f} s -> {folder}")
    return folder


def gguf_file(spec: str, progress=print) -> Path | None:
    """The GGUF file a model name stands for (an embedded default, fetched once, or a `.gguf` path), else None."""
    if spec in EMBEDDED:
        return fetch_embedded(EMBEDDED[spec], get_paths().cache_dir, progress)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return path
    return None


def gguf_tokenizer(gguf: Path, progress=print):
    """The GGUF's tokenizer as a transformers tokenizer, from the converted folder when there is one, else from
    a tokenizer-only folder made once (reading a GGUF's vocabulary takes seconds; its weights are not needed)."""
    from transformers import AutoTokenizer

    converted = _gguf_cache_folder(gguf)
    if (converted / "config.json").exists():
        return AutoTokenizer.from_pretrained(converted)
    folder = converted.with_name(converted.name + "-tokenizer")
    if not (folder / "tokenizer_config.json").exists():
        progress(f"reading {gguf.name}'s tokenizer once ...")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        tokenizer.save_pretrained(partial)
        os.replace(partial, folder)
    return AutoTokenizer.from_pretrained(folder)


def resolve_model(spec: str, progress=print) -> str:
    """A local folder (or hub id) that `from_pretrained` can load."""
    gguf = gguf_file(spec, progress)
    if gguf is not None:
        return str(convert_gguf(gguf, progress))
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_absolute() or spec.startswith((".", "~")):
        raise FileNotFoundError(f"model folder not found: {path}")
    if spec.count("/") != 1:
        known = ", ".join(EMBEDDED)
        raise ValueError(f"unknown model {spec!r}: use an embedded name ({known}), a folder, a .gguf file or a hub id")
    return hub_model(spec, progress)


def hub_model(spec: str, progress=print, marker: str = "config.json") -> str:
    """A hub id as `from_pretrained` should get it: the id itself (huggingface_hub downloads it, or checks its cached
    copy, with its own progress bars), or its cached snapshot folder (one holding `marker`) when the hub does not
    answer. Raises
    HubUnreachableError, after at most HUB_PROBE_TIMEOUT_S, when the hub does not answer and nothing is cached.
    With HF_HUB_OFFLINE set, the id itself: huggingface_hub then reads only its cache."""
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        return spec
    reason = _unreachable(constants.ENDPOINT)
    if reason is None:
        return spec
    cached = try_to_load_from_cache(spec, marker)
    if isinstance(cached, str):
        progress(f"the model hub at {constants.ENDPOINT} does not answer ({reason}); loading {spec} from the cache")
        return str(Path(cached).parent)
    raise HubUnreachableError(
        f"cannot load {spec!r}: the model hub at {constants.ENDPOINT} does not answer ({reason}) and the model is not "
        f"in huggingface_hub's cache ({constants.HF_HUB_CACHE}). Connect to the network and try again; or, where "
        f"it is cached (HF_HOME), set HF_HUB_OFFLINE=1; or name a local model folder or a .gguf file instead (or an "
        f"embedded model: {', '.join(EMBEDDED)})")


def _unreachable(endpoint: str) -> str | None:
    """Why nothing answers at `endpoint` (a URL; proxies from the environment apply) within HUB_PROBE_TIMEOUT_S, or
    None when something does: any HTTP status, or a TLS failure (huggingface_hub reports that one better)."""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as e:
        return None if isinstance(e.reason, ssl.SSLError) else str(e.reason)
    except (OSError, ValueError) as e:  # a timeout while reading the answer; an HF_ENDPOINT that is not a URL
        return str(e) or type(e).__name__
    return None


def load_model(spec: str, device: torch.device, dtype: torch.dtype, progress=print):
    """(model, tokenizer) for a model name (`resolve_model`: embedded, folder, .gguf or hub id), loaded with
    transformers on `device` in `dtype`, in eval mode, with the CPU speed-ups where they apply (fast_head, grouped
    SDPA). Raises what `resolve_model` and `from_pretrained` raise (FileNotFoundError, ValueError, HubUnreachableError,
    OSError)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(spec, progress)
    progress(f"loading {spec} on {device} ({str(dtype).replace('torch.', '')}) ...")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device)
    model.eval()
    use_fast_head(model)
    use_grouped_sdpa(model)
    return model, tokenizer


def load_engine(config, progress=print):
    """The Engine an EngineConfig describes: the llama.cpp backend (n-gram drafting priced by measured pass costs) or
    the torch one with the drafter `draft_strategy` picks ("auto": `auto_strategy`). Raises ValueError for an unknown
    draft_strategy or dtype, a model drafter strategy without `drafter` or with the verifier as drafter,
    IncompatibleModels for tokenizers that differ, RuntimeError where llama-cpp-python is needed and missing, and what
    loading a model raises."""
    from specd.daemon.engine.drafters.cascade import CascadeDrafter
    from specd.daemon.engine.drafters.layer_skip import LayerSkipDrafter
    from specd.daemon.engine.drafters.model import ModelDrafter
    from specd.daemon.engine.drafters.ngram import NgramDrafter
    from specd.daemon.engine.loop import Engine

    if config.draft_strategy not in DRAFT_STRATEGIES:
        raise ValueError(f"unknown draft_strategy {config.draft_strategy!r}; use one of {', '.join(DRAFT_STRATEGIES)}")
    device = resolve_device(config.device)
    if device.type == "cpu":
        # Half the cores by default: the editor and the rest of the desktop share the machine, and a torch
        # thread that has to wait for a busy core stalls every step (OpenMP threads wait for each other).
        torch.set_num_threads(config.threads or default_threads())
    gguf = gguf_file(config.verifier, progress)
    if choose_backend(config, gguf is not None, device.type) == "llamacpp":
        return _load_llamacpp_engine(config, gguf, progress)
    strategy = auto_strategy(config) if config.draft_strategy == "auto" else config.draft_strategy
    if strategy == "quantized":
        check_quantized(config, gguf, device)  # before the verifier loads: a wrong setting fails at once
    dtype = resolve_dtype(config.dtype, device)
    model, tokenizer = load_model(config.verifier, device, dtype, progress)
    verifier = ModelRunner(model)

    drafter = None
    drafter_model = None
    if "model" in strategy or strategy == "assistant":
        if not config.drafter:
            raise ValueError(f"draft_strategy {config.draft_strategy!r} needs a `drafter` model in settings")
        if resolve_model(config.drafter, progress) == resolve_model(config.verifier, progress):
            raise ValueError(
                f"drafter {config.drafter!r} is the verifier itself: it would be loaded twice and each draft token "
                "would cost a full verifier step. Choose a smaller model of the same family, or draft_strategy "
                "'ngram' or 'layer_skip'."
            )
        drafter_model, drafter_tokenizer = load_model(config.drafter, device, dtype, progress)
        check_compatible(tokenizer, drafter_tokenizer, config.verifier, config.drafter)
        vocab = shared_vocab_size(model, drafter_model)
        verifier.vocab_limit = vocab
    if strategy == "assistant":
        from specd.daemon.engine.drafters.gemma4_assistant import Gemma4AssistantDrafter

        drafter = Gemma4AssistantDrafter(verifier, drafter_model)
    elif strategy in ("model", "ngram+model"):
        model_drafter = ModelDrafter(ModelRunner(drafter_model, vocab_limit=verifier.vocab_limit), config.drafter)
        drafter = model_drafter if strategy == "model" else CascadeDrafter([NgramDrafter(), model_drafter])
    elif strategy == "ngram":
        drafter = NgramDrafter()
    elif strategy == "layer_skip":
        drafter = LayerSkipDrafter(verifier, config.layer_skip_layers)
    elif strategy == "quantized":
        drafter = quantized_drafter(config, gguf, verifier, progress)
    progress(f"ready: verifier {config.verifier}, drafter {drafter.describe() if drafter else 'none'}")
    return Engine(verifier, tokenizer, drafter, config, config.verifier, config.drafter)


def auto_strategy(config) -> str:
    """What `draft_strategy: auto` drafts with on the torch backend: n-gram lookup, then a configured `drafter`.

    Not `quantized`, even for a GGUF verifier on the CPU with llama-cpp-python installed: its drafter first feeds
    the whole prompt to llama.cpp, which from a cold cache costs more than the drafts save (scripts/bench.py, 10
    cold 48-token completions, one thread: 0.43x plain decoding, n-gram 1.12x). Only where the document's drafter
    sequence is already warm, as on an editor's next keystroke, does it win (1.79x plain, 1.83x n-gram; README,
    Drafters), so it is an option, not the default."""
    return "ngram+model" if config.drafter else "ngram"


def check_quantized(config, gguf: Path | None, device: torch.device) -> None:
    """Raise ValueError (RuntimeError for a missing binding) unless `draft_strategy: quantized` can run: a GGUF
    verifier, the torch verifier on the CPU, llama-cpp-python installed."""
    from specd.daemon.engine.runners.llamacpp_runner import INSTALL_HINT, binding_available

    if gguf is None:
        raise ValueError(f"draft_strategy 'quantized' drafts with the verifier's own GGUF file on llama.cpp; verifier "
                         f"{config.verifier!r} is not one (name an embedded default or a .gguf file, or use "
                         "draft_strategy 'ngram')")
    if device.type != "cpu":
        raise ValueError(f"draft_strategy 'quantized' drafts on llama.cpp's CPU kernels, for a verifier on the CPU; "
                         f"on device {device.type!r} use draft_strategy 'ngram' (or set device 'cpu')")
    if not binding_available():
        raise RuntimeError(f"draft_strategy 'quantized' needs llama-cpp-python: {INSTALL_HINT}; or use "
                           "draft_strategy 'ngram'")


def quantized_drafter(config, gguf: Path, verifier: ModelRunner, progress=print):
    """The verifier's GGUF on llama.cpp, drafting for the torch verifier of the same weights: one llama.cpp
    sequence per cache slot, greedy, proposals limited to the logit columns both have."""
    from specd.daemon.engine.drafters.quantized import QuantizedDrafter
    from specd.daemon.engine.runners.llamacpp_runner import LlamaCppRunner

    progress(f"loading {gguf.name} on llama.cpp as the drafter ...")
    # The drafter's catch-up passes (1-3 tokens after a verification) stay on the step's threads, not on idle cores
    # (auto): the probe subtracts this process's own CPU time, so torch's threads, still spinning after the
    # verifier's pass, would look idle to it. On 2 shared cores with another process on one of them, a 2-token
    # pass on both took 1.7-3.4 s, on one ~15 ms.
    threads = config.threads or default_threads()
    runner = LlamaCppRunner(gguf, max_context=config.max_context, sequences=config.cache_slots,
                            threads=threads, batch_threads=config.batch_threads or threads)
    columns = verifier.model.get_output_embeddings().weight.shape[0]
    shared = min(columns, runner.n_vocab)
    if shared < columns:
        verifier.vocab_limit = shared
    return QuantizedDrafter(runner, config.verifier, vocab_limit=shared if shared < runner.n_vocab else None)


def pass_cost_tables(verifier, passes: int, filled, progress=print):
    """The PassCosts (draft_policy.py) of passes over 1..`passes` tokens for each thread count `verifier` (a
    LlamaCppRunner) may run them on, measured now as far as other programs let (PassCosts.measure_now)."""
    from specd.daemon.engine.draft_policy import PassCosts

    costs = PassCosts(verifier, passes, report=progress)
    costs.measure_now(filled)
    for threads in costs.fastest:
        if costs.measured(threads):
            progress(f"llama.cpp pass costs on {threads} thread(s), relative to one token: "
                     + " ".join(f"{c:.2f}" for c in costs.table(threads)))
        else:
            progress(f"note: other programs keep the cores busy: passes on {threads} threads are priced as on "
                     f"{min(costs.fastest)} until measured while specd is idle")
    return costs


def _load_llamacpp_engine(config, gguf: Path, progress=print):
    """An Engine whose verifier is the GGUF on llama.cpp, one sequence per cache slot, n-gram drafting."""
    from specd.daemon.engine.draft_policy import PROBE_CONTEXT, filled_cache, longest_consistent_pass
    from specd.daemon.engine.drafters.cost_aware import CostAwareDrafter
    from specd.daemon.engine.drafters.ngram import NgramDrafter
    from specd.daemon.engine.loop import Engine
    from specd.daemon.engine.runners.llamacpp_runner import CMAKE_ARGS, LlamaCppRunner

    tokenizer = gguf_tokenizer(gguf, progress)
    progress(f"loading {config.verifier} on llama.cpp (cpu, {gguf.name}) ...")
    verifier = LlamaCppRunner(gguf, max_context=config.max_context, sequences=config.cache_slots,
                              threads=config.threads, batch_threads=config.batch_threads)
    # no drafter: no measurement of which passes reproduce single steps, so not even a grammar's forced tokens are
    # verified in passes of several tokens
    drafter, idle_work, draft_limit = None, [], 0
    if config.draft_strategy != "none":
        passes = config.max_draft_tokens + 1
        filled = filled_cache(verifier, PROBE_CONTEXT, passes)  # one prefill for all the measurements
        # Only passes that reproduce single steps bit for bit keep greedy speculation lossless (llamacpp_runner.py),
        # on every thread count a pass may run on: the least of them, since the count may change between pricing a
        # draft and verifying it.
        consistent = passes
        for threads in verifier.pass_thread_choices:
            verifier.pin_pass_threads(threads)
            consistent = min(consistent, longest_consistent_pass(verifier, passes, filled=filled))
        verifier.pin_pass_threads(None)
        draft_limit = consistent - 1  # a grammar's forced tokens too (the engine holds every draft to it)
        if consistent < passes:
            cause = (f"this build's {' and '.join(verifier.many_row_kernels)} kernels" if verifier.many_row_kernels
                     else "llama.cpp's kernels for many rows")
            fix = (f"; for full-length drafts reinstall llama-cpp-python with CMAKE_ARGS=\"{CMAKE_ARGS}\""
                   if verifier.many_row_kernels else "")
            progress(f"note: passes over more than {consistent} token(s) give other logits than single steps "
                     f"({cause}), so drafts are capped at {consistent - 1} token(s) to stay lossless{fix}")
        if consistent > 1:
            # A k-token pass costs several steps on a few cores: verify only the part of a draft that pays, by
            # this machine's pass costs, measured now (a second or two per thread count).
            costs = pass_cost_tables(verifier, consistent, filled, progress)
            drafter = CostAwareDrafter(NgramDrafter(), costs)
            idle_work.append(costs.remeasure)
    progress(f"ready: verifier {config.verifier} on llama.cpp, drafter {drafter.describe() if drafter else 'none'}")
    return Engine(verifier, tokenizer, drafter, config, config.verifier, None, idle_work=idle_work,
                  draft_limit=draft_limit)
