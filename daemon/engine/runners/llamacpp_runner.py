"""A GGUF model on llama.cpp's CPU (or Metal) kernels, behind the engine's runner interface (`base.Runner`).

Uses llama-cpp-python's low-level API, which mirrors `llama.h` one to one: `llama_decode` over a batch whose
every row asks for logits (a verification pass) or only the last (prefill), and `llama_memory_seq_rm` to drop
rejected draft tokens, as llama.cpp's own speculative example (`examples/speculative-simple`) does.

Batch consistency: a token's logits must not depend on how many tokens share its batch, or a verification pass
(k tokens) could pick another token than a plain step (1 token) does. Measured on llama.cpp as llama-cpp-python
0.3.36 vendors it, three things break it. (1) Flash attention on the CPU splits a single query's keys across
threads and merges the partial softmaxes (from 512 attended cells: `use_split_kv_path` in ggml-cpu/ops.cpp), but gives
a batch's queries one thread each (other summation orders:
logits differed by up to 2.2, 2 of 40 argmaxes changed). On one thread it is consistent, and there it reads a
900-token prompt 15 % faster but makes each decoding step 10 % slower (4.0 s and 10.8 ms against 4.6 s and 9.8
ms, SmolLM2 Q4_1): decoding is what an editor's requests, which mostly extend a cached document, wait for, so
it stays off. (2) llamafile's sgemm (ggml-cpu/llamafile/sgemm.cpp: "only enable sgemm for prompt processing",
n >= 2) takes every product of two or more rows; it is compiled in by default, so the binding should be built
with `-DGGML_LLAMAFILE=OFF` (and `-DGGML_CPU_REPACK=OFF`: repacked Q4_0/Q4_K weights have separate one-row and
many-row kernels too). (3) K-quant
weights (Q4_K, Q6_K, ...: Gemma 3's Q4_K_M) take ggml's tiled matmul (ggml-cpu/tiled/tiled.cpp) from 8 rows on
("profitable at rows >= 8"), another summation order. The engine therefore measures at load which pass lengths
reproduce single steps bit for bit (`draft_policy.longest_consistent_pass`) and verifies no longer drafts; the
prompt still gets the fast many-row kernels (a plain decode prefills with them too).

Threads: llama.cpp runs a single-token step on `n_threads` and any pass over more tokens on `n_threads_batch`
(llama-context.cpp); specd sets both before each call. On 2 quiet cores (SmolLM2 Q4_1, ~700 cached tokens) a step
on both takes 6.6 ms against 7.3 on one (8.1 against 9.3 on an earlier machine), a pass over several tokens gains
more (a 9-token pass 34 ms against 60), and both lose while another program keeps a core busy (the same pass 80 ms
on two threads against 59 on one; each of a pass's hundreds of thread barriers waits for the thread that lost its
core). llama-server itself runs both on every physical core (`cpu_get_num_math`). So with `threads` and
`batch_threads` both 0 (auto, the defaults) every call runs on every usable core while other programs leave those
idle (`cpu_load.OtherProgramsLoad`: other programs' CPU time over the last 0.1-0.25 s, kept fresh by a sampling
thread) and on half the cores while they do not; a positive `threads` fixes the steps' count and a positive
`batch_threads` the passes'. The pass costs (draft_policy.PassCosts) keep steps on the fewest threads where more
made them no faster (hyperthreads). The drafter prices a draft by the count `pass_threads` gives and the call asks
again, so a new sample in between may change the count: the engine caps drafts by the longest consistent pass
over all counts (loading.py), which keeps that harmless.

Every cache slot is one llama.cpp sequence of one context, as llama-server's slots are: the context holds
`sequences` sequences with separate (non-unified) KV streams of `max_context` cells each, so a pass over one
document's sequence attends to its own cells only, and the model's weights and compute buffers are shared.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import weakref
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .cpu_load import OtherProgramsLoad, default_threads, usable_cpu_count, usable_cpus

CMAKE_ARGS = "-DGGML_LLAMAFILE=OFF -DGGML_CPU_REPACK=OFF"  # a batch-consistent build (above)
IDLE_SLACK = 0.25  # cores' worth of other programs' use still counted as idle (short bursts, tick granularity)
INSTALL_HINT = (
    "the llama.cpp backend needs llama-cpp-python (no Linux wheel on PyPI: pip builds it from source, about "
    f"15-25 minutes on 2 cores, with a C++ compiler and cmake): CMAKE_ARGS=\"{CMAKE_ARGS}\" pip install "
    "'specd[llamacpp]', or set \"backend\": \"torch\" in settings.json"
)


def binding_available() -> bool:
    """Whether llama-cpp-python (`llama_cpp`) is installed, without importing it."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _binding():
    try:
        import llama_cpp
    except ImportError as exc:
        raise RuntimeError(INSTALL_HINT) from exc
    # llama-cpp-python prints every llama.cpp log line unless its logger says otherwise.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


class LlamaSequence:
    """One llama.cpp sequence: its id in the runner's context and how many positions it holds."""

    def __init__(self, runner: "LlamaCppRunner", seq_id: int) -> None:
        self.runner = runner
        self.seq_id = seq_id
        self.length = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def truncate(self, length: int) -> None:
        length = max(0, length)
        if length < self.length:
            self.runner.remove(self.seq_id, length)
            self.length = length

    def nbytes(self) -> int:
        """The KV memory this sequence's stream holds allocated, in bytes (allocated at load, whole)."""
        return self.runner.kv_bytes_per_sequence


class LlamaCppRunner:
    """A GGUF model on llama.cpp through llama-cpp-python's low-level API, a `base.Runner`: one context of `sequences`
    sequences (cache slots, LlamaSequence) of `max_context` positions each, threads chosen per call (see the module
    docstring)."""

    backend = "llamacpp"
    device = "cpu"
    vocab_limit = None

    def __init__(self, gguf: Path, max_context: int = 4096, sequences: int = 4, threads: int = 0,
                 batch_threads: int = 0, batch: int = 512, flash_attention: bool = False) -> None:
        """Load `gguf` and make one context of `sequences` sequences of `max_context` positions each.

        threads: CPU threads for a single-token step (0 = auto: as passes while `batch_threads` is auto too, else
        half the cores, as the torch runner); batch_threads: for passes over several tokens (0 = auto: every usable
        core while other programs leave them idle, else `threads`; see `pass_threads`). flash_attention: off by
        default (batch consistency and decoding speed, above). Raises RuntimeError naming the file when llama.cpp
        cannot load it or make the context, and `INSTALL_HINT` when the binding is missing."""
        lc = self.lc = _binding()
        lc.llama_backend_init()
        self.path = Path(gguf)
        model_params = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(self.path).encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {self.path}")
        self.threads = threads or default_threads()
        # the most threads a pass over several tokens runs on, and the fewest (while other programs are busy)
        self.batch_threads = batch_threads or max(self.threads, usable_cpu_count())
        self.busy_batch_threads = batch_threads or self.threads
        cpus = usable_cpus()
        self.load = (OtherProgramsLoad(cpus) if self.busy_batch_threads < self.batch_threads
                     and OtherProgramsLoad.available(cpus) else None)
        if self.load is None:
            self.batch_threads = self.busy_batch_threads
        else:
            self.load.keep_fresh()
        # steps run on the passes' count (auto) only while both counts are auto and may differ, and only while
        # measured no slower there (draft_policy.PassCosts, which may change its mind when it measures again)
        self.steps_may_follow_passes = self.steps_follow_passes = not threads and self.load is not None
        self._pinned: int | None = None
        self.passes_on = Counter()  # passes over several tokens run, by thread count (benchmarks report it)
        self.steps_on = Counter()  # single-token steps run, by thread count
        self.flash_attention = flash_attention
        self.batch_size = batch
        self.sequences = sequences
        self.max_context = max_context
        params = lc.llama_context_default_params()
        params.n_ctx = max_context * sequences  # non-unified: each sequence gets n_ctx / n_seq_max cells
        params.n_batch = params.n_ubatch = batch
        params.n_seq_max = sequences
        params.kv_unified = False
        params.n_threads, params.n_threads_batch = self.threads, self.busy_batch_threads
        self._threads_set = (self.threads, self.busy_batch_threads)
        params.flash_attn_type = 1 if flash_attention else 0
        self.ctx = lc.llama_init_from_model(self.model, params)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise RuntimeError(f"llama.cpp could not make a context of {params.n_ctx} tokens for {self.path}")
        self.memory = lc.llama_get_memory(self.ctx)
        features = lc.llama_print_system_info().decode(errors="replace").replace(" ", "")
        # build options whose many-row products use other kernels than single rows (named in the load warning)
        self.many_row_kernels = [name for name in ("LLAMAFILE", "REPACK") if f"{name}=1" in features]
        self._batch = lc.llama_batch_init(batch, 0, 1)
        vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(vocab)
        layers = lc.llama_model_n_layer(self.model)
        eos = [t for t in (lc.llama_vocab_eos(vocab), lc.llama_vocab_eot(vocab)) if t >= 0]
        bos = lc.llama_vocab_bos(vocab)
        self.config = SimpleNamespace(num_hidden_layers=layers, eos_token_id=eos,
                                      bos_token_id=bos if bos >= 0 else None,
                                      max_position_embeddings=lc.llama_model_n_ctx_train(self.model) or None)
        self.num_layers = layers
        head_dim = lc.llama_model_n_embd(self.model) // max(1, lc.llama_model_n_head(self.model))
        # f16 keys and values (llama.cpp's default cache type) for every layer
        self.kv_bytes_per_sequence = 2 * 2 * layers * lc.llama_model_n_head_kv(self.model) * head_dim * max_context
        self._free = list(range(sequences))
        self._finalizer = weakref.finalize(self, _free_native, lc, self.model, self.ctx, self._batch, self.load)

    # -- the runner interface -----------------------------------------------------------------------------------

    @property
    def config_sources(self) -> tuple:
        return (self.config,)

    @property
    def dtype_name(self) -> str:
        """The GGUF's type as llama.cpp describes the model ("llama 135M Q4_1" -> "Q4_1")."""
        buffer = ctypes.create_string_buffer(128)
        self.lc.llama_model_desc(self.model, buffer, len(buffer))
        return buffer.value.decode(errors="replace").split()[-1] if buffer.value else "gguf"

    def parameter_bytes(self) -> int:
        return int(self.lc.llama_model_size(self.model))

    def new_cache(self) -> LlamaSequence:
        """A free sequence; one whose cache object is gone is freed (and its KV cells cleared) first."""
        if not self._free:
            gc.collect()  # a dropped slot caught in a reference cycle
        if not self._free:
            raise RuntimeError(f"all {self.sequences} llama.cpp sequences are in use (raise cache_slots)")
        seq = LlamaSequence(self, self._free.pop(0))
        weakref.finalize(seq, self._release, seq.seq_id)
        return seq

    def forward(self, token_ids: list[int], cache: LlamaSequence, last_only: bool = False) -> torch.Tensor:
        """float32 logits, (len(token_ids), V) or (1, V) with `last_only`, for `token_ids` fed after the cache's
        positions (in batches of at most `batch` tokens). Raises RuntimeError when llama.cpp refuses the batch
        (the sequence is full); the cache then holds what it held before the failed batch."""
        rows = []
        for start in range(0, len(token_ids), self.batch_size):
            chunk = token_ids[start : start + self.batch_size]
            last_chunk = start + self.batch_size >= len(token_ids)
            logits = self._decode(chunk, cache, want_all=not last_only, want_last=last_chunk)
            if logits is not None:
                rows.append(logits)
        return rows[0] if len(rows) == 1 else torch.cat(rows)

    def pass_threads(self) -> int:
        """The threads the next pass over several tokens runs on: `batch_threads` (every usable core, in auto)
        while other programs took at most IDLE_SLACK cores lately, else `busy_batch_threads` (the same when the
        count is fixed or pinned)."""
        if self._pinned is not None:
            return self._pinned
        if self.load is None:
            return self.batch_threads
        try:
            idle = self.load.cores_busy() <= IDLE_SLACK
        except (OSError, ValueError):  # /proc/stat gone or changed: keep to the safe count from now on
            self.fix_pass_threads(self.busy_batch_threads)
            return self.busy_batch_threads
        return self.batch_threads if idle else self.busy_batch_threads

    @property
    def pass_thread_choices(self) -> tuple[int, ...]:
        """The thread counts `pass_threads` chooses from: (busy_batch_threads, batch_threads), or one."""
        return tuple(sorted({self.busy_batch_threads, self.batch_threads}))

    def pin_pass_threads(self, threads: int | None) -> None:
        """Run every pass over several tokens, and every step where steps may follow passes, on `threads`
        (measurements); None: choose again per call."""
        self._pinned = threads

    def step_threads(self) -> int:
        """The threads the next single-token step runs on: `pass_threads()` while steps follow passes (auto),
        else `threads`; the pinned count where steps may follow passes (measuring whether they should)."""
        if self._pinned is not None and self.steps_may_follow_passes:
            return self._pinned
        return self.pass_threads() if self.steps_follow_passes else self.threads

    def describe_threads(self) -> str:
        """What runs on how many threads, for `specd status` ("steps and passes on 2 threads while other programs
        leave the cores idle, else 1")."""
        passes = f"{self.batch_threads} thread(s)"
        if self.batch_threads != self.busy_batch_threads:
            passes = (f"{self.batch_threads} threads while other programs leave the cores idle, "
                      f"else {self.busy_batch_threads}")
        if self.steps_follow_passes:
            return f"steps and passes on {passes}"
        return f"steps on {self.threads} thread(s), passes over several tokens on {passes}"

    def fix_pass_threads(self, threads: int) -> None:
        """From now on run every pass over several tokens on `threads`, and every step on `threads` (the
        constructor's) (auto found no gain in more)."""
        self.batch_threads = self.busy_batch_threads = threads
        self.steps_may_follow_passes = self.steps_follow_passes = False
        if self.load is not None:
            self.load.stop()
        self.load = None

    def fix_step_threads(self) -> None:
        """Run every single-token step on `threads` (auto found steps no faster on more), until
        `let_steps_follow_passes`."""
        self.steps_follow_passes = False

    def let_steps_follow_passes(self) -> None:
        """Steps follow passes again where they may (auto found them faster on more threads after all)."""
        self.steps_follow_passes = self.steps_may_follow_passes

    # -- llama.cpp ------------------------------------------------------------------------------------------------

    def _decode(self, tokens: list[int], cache: LlamaSequence, want_all: bool, want_last: bool):
        batch, n, start = self._batch, len(tokens), cache.length
        threads = self.pass_threads() if n > 1 else self.step_threads()
        wanted = (self._threads_set[0], threads) if n > 1 else (threads, self._threads_set[1])
        if wanted != self._threads_set:
            self.lc.llama_set_n_threads(self.ctx, *wanted)
            self._threads_set = wanted
        (self.passes_on if n > 1 else self.steps_on)[threads] += 1
        batch.n_tokens = n
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = cache.seq_id
            batch.logits[i] = want_all or (want_last and i == n - 1)
        code = self.lc.llama_decode(self.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode failed with code {code} at position {start} of sequence "
                               f"{cache.seq_id} ({n} tokens; a sequence holds at most {self.max_context} positions)")
        cache.length = start + n
        outputs = n if want_all else (1 if want_last else 0)
        if not outputs:
            return None
        logits = np.ctypeslib.as_array(self.lc.llama_get_logits(self.ctx), shape=(outputs, self.n_vocab))
        return torch.from_numpy(logits.copy())

    def remove(self, seq_id: int, start: int) -> None:
        """Drop positions start.. of a sequence from llama.cpp's KV memory."""
        if not self.lc.llama_memory_seq_rm(self.memory, seq_id, start, -1):
            raise RuntimeError(f"llama.cpp could not remove positions {start}.. of sequence {seq_id}")

    def _release(self, seq_id: int) -> None:
        if self._finalizer.alive:
            self.lc.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
            self._free.append(seq_id)


def _free_native(lc, model, ctx, batch, load) -> None:
    if load is not None:
        load.stop()
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    lc.llama_model_free(model)
