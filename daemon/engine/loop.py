"""The speculative-decoding engine: a verifier, a drafter, prefix-reusing caches, and the generation loop.

One round: the drafter proposes up to k tokens after the sequence; the verifier runs once over the pending
token plus the draft, which yields its own choice at every position; the longest agreeing prefix is kept, plus
the verifier's own next token. The output is token for token what the verifier alone would produce
(`draft_tokens=0` runs exactly that: the same loop with empty drafts).

The engine does no I/O and holds no locks: one worker thread calls `generate` at a time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .constraints import AllOf
from .drafters.base import DraftContext, Drafter
from .fim import (build_fim_ids, decode_anchor, detect_file_separator, detect_template, encode_text, single_token_id,
                  stop_token_ids)
from .grammar import compile_choices, compile_schema
from .kv_cache import SlabCache, common_prefix_length, reuse_prefix
from .repo_context import commented, separated_ids
from .requests import CancelToken, GenerationRequest, GenerationResult, PromptTooLong, RequestError, Stats
from .runners.base import Runner
from .sampling import PositionNoise, SamplingParams, pick_token, verify_coupled, verify_greedy, verify_sampling
from .stopping import StopRules, StopState, indent_width
from .token_healing import Constraint, Healing, heal_prompt, vocabulary

PREFILL_CHUNK = 512  # tokens per prefill forward: bounds cancellation latency on long prompts
# A warm-up (prefill_only) is cancelled whenever the user types or moves on before it ends, and the request that
# cancels it waits for the chunk in flight: smaller chunks bound that wait (~0.3 s for 128 tokens on 2 CPU cores).
WARM_UP_CHUNK = 128
HISTORY_PER_DOCUMENT = 8  # previous completions the n-gram drafter may copy from


@dataclass
class EngineConfig:
    """The engine's settings (settings.json's, by `Settings.engine_kwargs`, which leaves `layer_skip_layers` at its
    default): model names, `draft_strategy`, `max_draft_tokens` (tokens per round), `device`/`dtype` ("auto" or a torch
    name), `max_context` (tokens, capped by the model's own limit), `cache_slots` (documents whose KV stays cached),
    `layer_skip_layers` (None: half), thread counts (0 = auto) and `backend`."""

    verifier: str = "smollm2-135m"
    drafter: str | None = None
    draft_strategy: str = "auto"  # auto | ngram | model | layer_skip | assistant | none
    max_draft_tokens: int = 8
    device: str = "auto"
    dtype: str = "auto"
    max_context: int = 4096
    cache_slots: int = 4
    layer_skip_layers: int | None = None
    threads: int = 0  # CPU threads for torch or llama.cpp steps; 0 = half the cores (llama.cpp: auto, as batch_threads)
    batch_threads: int = 0  # llama.cpp: threads for passes over several tokens (prompt, verification); 0 = auto
    backend: str = "auto"  # auto | torch | llamacpp (daemon/models/loading.py: choose_backend)


@dataclass
class CacheSlot:
    """One cached sequence: the verifier's KV, each drafter's state, and the document's recent completions."""

    key: str | None
    cache: SlabCache
    drafter_state: object
    ids: list[int] = field(default_factory=list)  # exactly the tokens held in `cache`
    history: list[list[int]] = field(default_factory=list)
    draft_length: int = 0  # adaptive: grows while drafts are accepted, shrinks when they are not
    last_used: float = 0.0


class SlotPool:
    """A small LRU of cache slots: a request reuses its document's slot, else the one sharing most tokens."""

    def __init__(self, capacity: int, new_slot) -> None:
        self.capacity = max(1, capacity)
        self.new_slot = new_slot
        self.slots: list[CacheSlot] = []

    def acquire(self, key: str | None, prompt_ids: list[int]) -> CacheSlot:
        candidates = [s for s in self.slots if s.key == key] if key is not None else []
        if not candidates:
            candidates = [s for s in self.slots if common_prefix_length(s.ids, prompt_ids) > 0]
            if key is not None:  # another document's slot may be reused only when the pool is full
                candidates = [] if len(self.slots) < self.capacity else candidates
        if candidates:
            slot = max(candidates, key=lambda s: common_prefix_length(s.ids, prompt_ids))
        elif len(self.slots) < self.capacity:
            slot = self.new_slot(key)
            self.slots.append(slot)
        else:
            slot = min(self.slots, key=lambda s: s.last_used)
        if slot.key != key:
            slot.key, slot.history = key, []
        slot.last_used = time.monotonic()
        return slot

    def nbytes(self) -> int:
        return sum(s.cache.nbytes() for s in self.slots)

    def clear(self) -> None:
        self.slots.clear()


def next_draft_length(current: int, accepted: int, drafted: int, maximum: int) -> int:
    """Grow while whole drafts are accepted; after a rejection, a little past what was accepted."""
    if accepted == drafted:
        return min(maximum, current + 2)
    return max(2, min(current - 1, accepted + 2))


class Engine:
    """Speculative decoding over one verifier Runner and an optional Drafter: `generate` serves one GenerationRequest
    (prompt layout, token healing, constraints, draft-and-verify rounds, stops) with the output the verifier alone would
    give, reusing the KV of up to `config.cache_slots` documents (SlotPool). No I/O, no locks: one worker thread calls
    it at a time. `generate` raises RequestError for bad arguments, an empty prompt with no start token, or a prompt of
    `max_context` tokens or more (unless `count_only`); `info()` is the dict `specd status` and the doors show."""

    def __init__(self, verifier: Runner, tokenizer, drafter: Drafter | None, config: EngineConfig,
                 verifier_name: str = "", drafter_name: str | None = None,
                 idle_work: list[Callable[[Callable[[], bool]], float | None]] = (),
                 draft_limit: int | None = None) -> None:
        """`idle_work`: jobs for moments without requests (`run_idle_work`), e.g. PassCosts.remeasure.
        `draft_limit`: the most tokens one verification pass may check after the pending token, whatever proposed
        them (the drafter, a grammar's forced tokens): the verifier's passes over more give other logits than its
        single steps (llama.cpp's many-row kernels, loading.py); None for no limit."""
        self.verifier = verifier
        self.tokenizer = tokenizer
        self.drafter = drafter
        self.config = config
        self.verifier_name = verifier_name or config.verifier
        self.drafter_name = drafter_name
        self.fim_template = detect_template(tokenizer)
        # Other files go in the repository layout where the model has one and no FIM prefix part to sit in; a
        # completion that writes the separator has ended the file.
        self.file_separator = detect_file_separator(tokenizer) if self.fim_template is None else None
        self.decode_anchor = tuple(decode_anchor(tokenizer))
        separator_ids = {single_token_id(tokenizer, self.file_separator)} if self.file_separator else set()
        self.eos_ids = frozenset(_eos_ids(verifier.config_sources, tokenizer)
                                 | stop_token_ids(tokenizer, self.fim_template) | separator_ids)
        self.start_ids = _start_ids(verifier.config_sources, tokenizer)
        model_limit = getattr(verifier.config, "max_position_embeddings", None) or config.max_context
        self.max_context = min(config.max_context, model_limit)
        self.pool = SlotPool(config.cache_slots, self._new_slot)
        self.vocabulary = vocabulary(tokenizer)  # token healing's index, built once: every keystroke uses it
        self.idle_work = list(idle_work)
        self.draft_limit = draft_limit

    def _new_slot(self, key: str | None) -> CacheSlot:
        state = self.drafter.new_state() if self.drafter else None
        return CacheSlot(key, self.verifier.new_cache(), state, draft_length=self.config.max_draft_tokens)

    # -- requests ---------------------------------------------------------------------------------------------

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        budget = None
        if request.fit_context:
            budget = self.max_context - max(1, min(request.max_tokens, self.max_context // 4))
        prompt, context_ids = request.prompt, []
        if request.context_files and self.file_separator:
            context_ids = separated_ids(self.tokenizer, self.file_separator, request.context_files, request.path)
        elif request.context_files:
            prompt = commented(request.context_files, request.language) + prompt
        if request.suffix is not None or budget is not None or context_ids:
            return build_fim_ids(self.tokenizer, self.fim_template, prompt, request.suffix or "", budget, context_ids)
        bos = self.tokenizer.bos_token
        # A prompt that already starts with BOS (a chat template's output) must not get a second one.
        add_special = not (bos and prompt.startswith(bos))
        return self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]

    def suffix_source(self, request: GenerationRequest) -> list[list[int]]:
        """The suffix as a sequence for the drafter to copy from, when the prompt cannot hold it (no FIM)."""
        if request.suffix and self.fim_template is None:
            return [encode_text(self.tokenizer, request.suffix, continuation=True)]
        return []

    def validate(self, request: GenerationRequest) -> None:
        if not isinstance(request.max_tokens, int) or isinstance(request.max_tokens, bool) or request.max_tokens < 0:
            raise RequestError(f"max_tokens must be a non-negative integer, got {request.max_tokens!r}")
        if isinstance(request.temperature, bool) or not isinstance(request.temperature, (int, float)) \
                or request.temperature < 0:
            raise RequestError(f"temperature must be >= 0, got {request.temperature!r}")
        if isinstance(request.top_p, bool) or not isinstance(request.top_p, (int, float)) or not 0 < request.top_p <= 1:
            raise RequestError(f"top_p must be in (0, 1], got {request.top_p!r}")
        if request.draft_tokens is not None and (isinstance(request.draft_tokens, bool)
                                                 or not isinstance(request.draft_tokens, int) or request.draft_tokens < 0):
            raise RequestError(f"draft_tokens must be a non-negative integer, got {request.draft_tokens!r}")
        if request.mode not in (None, "line", "block"):
            raise RequestError(f"mode must be 'line', 'block' or null, got {request.mode!r}")
        if not all(isinstance(s, str) for s in request.stop):
            raise RequestError("stop must be a list of strings")

    def generate(self, request: GenerationRequest, cancel: CancelToken | None = None, on_text=None) -> GenerationResult:
        started = time.perf_counter()
        self.validate(request)
        prompt_ids = self.prompt_ids(request)
        if not prompt_ids:  # a cursor at the very start of a file (no FIM markers): the model starts a document
            prompt_ids = list(self.start_ids)
        if not prompt_ids:
            raise RequestError("the prompt is empty and the model has no start token (BOS or EOS) to begin from")
        if len(prompt_ids) >= self.max_context and not request.count_only:
            raise PromptTooLong(len(prompt_ids), self.max_context)
        # Token healing: the prompt loses its last token(s); the first tokens must write their text again, and
        # that text is not part of the answer. Those tokens do not count against max_tokens.
        # A JSON schema constrains the answer alone: the healed prompt text is no part of the JSON.
        if request.text_choices is not None:
            grammar = compile_choices(request.text_choices, self.tokenizer)
        else:
            grammar = compile_schema(request.json_schema, self.tokenizer) if request.json_schema is not None else None
        heal = request.token_healing and request.max_tokens and grammar is None
        healing = heal_prompt(self.vocabulary, prompt_ids) if heal else Healing(prompt_ids)
        prompt_ids = healing.prompt_ids
        healer = Constraint(self.vocabulary, healing.removed)
        constraint = AllOf([healer] + ([grammar] if grammar else []))
        # Counted once each: prompt_tokens are the tokens the verifier reads (the backed-up ones are not), and
        # completion_tokens every token it generates, those that write the backed-up text again included.
        stats = Stats(prompt_tokens=len(prompt_ids), healed_tokens=len(healing.removed_ids))
        cursor_line = request.prompt[request.prompt.rfind("\n") + 1 :]
        after_prompt = self.max_context - len(prompt_ids)  # most tokens the context holds after the prompt
        rules = StopRules(
            eos_ids=self.eos_ids, stop=tuple(request.stop), mode=request.mode,
            cursor_indent=indent_width(cursor_line),
            max_tokens=min(request.max_tokens, after_prompt),  # grows by the rewritten tokens: _rewrite_is_free
        )
        output = StopState(rules, self.tokenizer, self.decode_anchor, skip=len(healing.removed))
        cancel = cancel or CancelToken()
        if request.count_only:
            return self._finish(output, "length", stats, started, on_text, grammar=grammar)
        if request.prefill_only:
            slot = self.pool.acquire(request.cache_key, prompt_ids)
            read = self._prefill(slot, prompt_ids, stats, cancel, WARM_UP_CHUNK) is not None
            return self._finish(output, "length" if read else "cancelled", stats, started, on_text, grammar=grammar)
        if rules.max_tokens == 0:
            return self._finish(output, "length", stats, started, on_text, grammar=grammar)

        sampling = SamplingParams(float(request.temperature), float(request.top_p))
        generator = noise = None
        if not sampling.greedy:
            seed = request.seed if request.seed is not None else torch.seed()
            generator = torch.Generator()  # a drafter model's sampling and rejection sampling of its drafts
            generator.manual_seed(seed)
            noise = PositionNoise(seed)  # every other sampled token (sampling.py)
        slot = self.pool.acquire(request.cache_key, prompt_ids)
        sources = self.suffix_source(request) + list(reversed(slot.history))

        logits = self._prefill(slot, prompt_ids, stats, cancel)
        if logits is None or cancel.cancelled:  # also when it came during the last chunk: no token after it
            return self._finish(output, "cancelled", stats, started, on_text, grammar=grammar)
        token = pick_token(constraint.mask_logits(logits[None], argmax_only=sampling.greedy)[0], sampling, noise,
                           len(slot.ids))
        _rewrite_is_free(healer, token, rules, stats, after_prompt)
        constraint.advance(token)
        drafting = self.drafter is not None and request.draft_tokens != 0
        forcing = request.forced_drafts and request.draft_tokens != 0
        max_draft = request.draft_tokens if request.draft_tokens is not None else slot.draft_length
        if output.add(token) or constraint.finished:
            return self._finish(output, "stop" if constraint.finished else output.finish_reason, stats, started,
                                on_text, slot, grammar)

        while True:
            if cancel.cancelled:
                return self._finish(output, "cancelled", stats, started, on_text, slot, grammar)
            sequence = slot.ids + [token]
            # Tokens still to rewrite the backed-up text (one byte each at most) lengthen the room of this draft.
            room = min(rules.max_tokens + len(healer.remaining) - len(output.tokens),
                       self.max_context - len(sequence) - 1,
                       self.draft_limit if self.draft_limit is not None else self.max_context)
            # Tokens the constraint forces are drafted for free; verified like any draft, since the model may
            # spell the forced text with other tokens.
            forced = constraint.forced_tokens()[: max(room, 0)] if forcing else []
            stats.forced_tokens += len(forced)
            budget = min(max_draft, room - len(forced))
            draft_tokens, draft_probs = list(forced), None
            if drafting and budget > 0 and (not forced or self.drafter.drafts_after_any_ids):
                t = time.perf_counter()
                draft = self.drafter.propose(
                    DraftContext(sequence + forced, budget, sampling, generator, slot, sources), slot.drafter_state)
                draft_tokens += constraint.trim_draft(forced + draft.tokens[:budget],
                                                      sampled=draft.probs is not None)[len(forced):]
                draft_probs = _with_forced_rows(draft.probs, forced)
                if forcing and draft_probs is None and len(draft_tokens) > len(forced):  # forced after the draft too
                    after = constraint.forced_tokens(draft_tokens)[: max(room - len(draft_tokens), 0)]
                    draft_tokens += after
                    stats.forced_tokens += len(after)
                stats.draft_s += time.perf_counter() - t

            accepted, token = self._verify(slot, token, draft_tokens, draft_probs, sampling, (generator, noise),
                                           stats, constraint)
            if len(draft_tokens) > len(forced) and request.draft_tokens is None:  # adapts to the drafter's part
                max_draft = slot.draft_length = next_draft_length(
                    slot.draft_length, max(0, accepted - len(forced)), len(draft_tokens) - len(forced),
                    self.config.max_draft_tokens)

            for accepted_token in draft_tokens[:accepted] + [token]:
                _rewrite_is_free(healer, accepted_token, rules, stats, after_prompt)
                constraint.advance(accepted_token)
                if output.add(accepted_token) or constraint.finished:
                    return self._finish(output, "stop" if constraint.finished else output.finish_reason, stats,
                                        started, on_text, slot, grammar)
            _stream(output, on_text)

    def _verify(self, slot: CacheSlot, token: int, draft: list[int], draft_probs, sampling: SamplingParams,
                randomness, stats: Stats, constraint: Constraint) -> tuple[int, int]:
        """One verifier pass over the pending token and the draft; returns (draft tokens accepted, next token).
        Every row is masked by the constraints (token healing, a JSON schema) first, as the plain step's is."""
        t = time.perf_counter()
        slot.cache.truncate(len(slot.ids))  # drop what a drafter wrote into the verifier's cache (layer skip)
        target_logits = constraint.mask_logits(self.verifier.forward([token] + draft, slot.cache), draft,
                                               argmax_only=sampling.greedy)
        generator, noise = randomness
        if sampling.greedy:
            accepted, next_token = verify_greedy(target_logits, draft)
        elif draft_probs is None:  # rows are positions len(slot.ids) + 1 ...: the pending token is at len(slot.ids)
            accepted, next_token = verify_coupled(sampling.probs(target_logits), draft, noise, len(slot.ids) + 1)
        else:
            accepted, next_token = verify_sampling(sampling.probs(target_logits), draft, draft_probs, generator)
        # Keep the cache on the accepted path: everything but the newest token, which is fed next round.
        slot.ids.extend([token] + draft[:accepted])
        slot.cache.truncate(len(slot.ids))
        stats.verify_s += time.perf_counter() - t
        stats.verifier_passes += 1
        stats.drafted_tokens += len(draft)
        stats.accepted_tokens += accepted
        return accepted, next_token

    def _prefill(self, slot: CacheSlot, prompt_ids: list[int], stats: Stats, cancel: CancelToken,
                 chunk_tokens: int = PREFILL_CHUNK):
        """Feed what the slot's cache lacks of the prompt, `chunk_tokens` per forward; returns the last position's
        logits (None if cancelled: the chunks fed so far stay cached)."""
        t = time.perf_counter()
        keep = stats.cached_tokens = reuse_prefix(slot.cache, slot.ids, prompt_ids)
        logits = None
        for start in range(keep, len(prompt_ids), chunk_tokens):
            if cancel.cancelled:
                stats.prefill_s += time.perf_counter() - t
                return None
            chunk = prompt_ids[start : start + chunk_tokens]
            logits = self.verifier.forward(chunk, slot.cache, last_only=True)[-1]
            slot.ids.extend(chunk)
            stats.verifier_passes += 1
        stats.prefill_s += time.perf_counter() - t
        return logits

    def _finish(self, output: StopState, reason: str, stats: Stats, started: float, on_text,
                slot: CacheSlot | None = None, grammar=None) -> GenerationResult:
        output.finish_reason = reason
        _stream(output, on_text)
        if slot is not None and output.tokens:
            slot.history = (slot.history + [list(output.tokens)])[-HISTORY_PER_DOCUMENT:]
        stats.completion_tokens = len(output.tokens)
        stats.json_complete = grammar.complete if grammar is not None else None
        stats.total_s = time.perf_counter() - started
        return GenerationResult(output.text, list(output.tokens), output.finish_reason, stats, output.stop_sequence)

    def run_idle_work(self, interrupted: Callable[[], bool]) -> float | None:
        """Run each idle job once, each stopping as soon as `interrupted()` (a request is waiting). Returns the
        seconds before the next is due, or None when none is left (a job returning None is done)."""
        waits = {}
        for work in self.idle_work:
            if not interrupted():
                waits[work] = work(interrupted)
        self.idle_work = [work for work in self.idle_work if waits.get(work, 0.0) is not None]
        return min((wait for wait in waits.values() if wait is not None), default=0.0) if self.idle_work else None

    # -- information ----------------------------------------------------------------------------------------------

    def info(self) -> dict:
        drafter_bytes = self.drafter.memory_bytes() if self.drafter else 0
        return {
            "verifier": self.verifier_name,
            "drafter": self.drafter.describe() if self.drafter else None,
            "drafter_model": self.drafter_name,
            "draft_strategy": self.config.draft_strategy,
            "max_draft_tokens": self.config.max_draft_tokens,
            "backend": self.verifier.backend,
            "device": str(self.verifier.device),
            "dtype": self.verifier.dtype_name,
            "memory_bytes": self.verifier.parameter_bytes() + drafter_bytes + self.pool.nbytes(),
            "max_context": self.max_context,
            "fim_template": self.fim_template.family if self.fim_template else None,
            # {threads: c(1..n) or None while not measured}, what the cost-aware drafter prices drafts by
            # (draft_policy.PassCosts), or None
            "pass_costs": getattr(getattr(self.drafter, "costs", None), "measured_tables", None),
            "threads": self.verifier.describe_threads() if hasattr(self.verifier, "describe_threads") else None,
        }

    def apply_chat_template(self, messages: list[dict], tools: list[dict] | None = None,
                            continue_final: bool = False) -> str:
        """`tools` (OpenAI's function form) reach templates that render them; others ignore them.

        `continue_final`: the last message (an assistant's partial answer, a "prefill") is left open for the model
        to continue: the prompt ends with its text, with neither the end of turn a finished message gets nor a new
        turn's header (transformers' `continue_final_message`). A template that cannot render it so (it drops or
        rewrites the message's text) is a RequestError (a 400), never a prompt that silently closes the turn."""
        final = str(messages[-1].get("content") or "") if continue_final and messages else ""
        if getattr(self.tokenizer, "chat_template", None):
            if not continue_final:
                return self.tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                          add_generation_prompt=True)
            from jinja2 import TemplateError

            try:
                prompt = self.tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                            add_generation_prompt=False, continue_final_message=True)
            except (ValueError, TemplateError) as e:  # transformers' message ends with the whole rendered chat
                why = str(e).split("\nRendered chat:")[0]
                raise RequestError(f"the model's chat template cannot continue the final assistant message: {why}") \
                    from None
            # Templates that trim a message's text (Llama 3's `| trim`) render a prefill without its outer
            # whitespace: the prompt then ends with the trimmed text, which is the model's view of that message.
            if not prompt.endswith(final) and not prompt.endswith(final.strip()):
                raise RequestError("the model's chat template does not end the prompt with the final assistant "
                                   "message's text, so that message cannot be continued")
            return prompt
        # Models without a chat template get a plain transcript to continue, earlier turns' calls as JSON lines.
        lines = ["\n".join([f"{m.get('role', 'user')}: {m.get('content') or ''}",
                            *(json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                                         ensure_ascii=False) for c in m.get("tool_calls") or ())])
                 for m in messages]
        if continue_final:
            return "\n".join(lines)
        return "\n".join(lines) + "\nassistant:"

    def close(self) -> None:
        self.pool.clear()
        self.drafter = None
        self.verifier = None


def _rewrite_is_free(healer: Constraint, token: int, rules: StopRules, stats: Stats, after_prompt: int) -> None:
    """Token healing, before `healer` advances over `token`: a token that writes backed-up prompt text only (no
    byte of the answer) is counted in `stats.rewritten_tokens` and is free of max_tokens (`rules.max_tokens` grows
    by one, up to `after_prompt`, the tokens the context holds after the prompt). The token that ends the
    backed-up text and goes on with the answer counts against max_tokens like any other."""
    if not healer.remaining:  # every token after the backed-up text: nothing to look up
        return
    piece = healer.vocab.piece(token)
    if piece is not None and len(piece) <= len(healer.remaining):
        stats.rewritten_tokens += 1
        rules.max_tokens = min(rules.max_tokens + 1, after_prompt)


def _stream(output: StopState, on_text) -> None:
    """Hand the caller the text that can no longer change."""
    if on_text is not None:
        delta = output.stable_delta()
        if delta:
            on_text(delta)


def _with_forced_rows(draft_probs, forced: list[int]):
    """A sampled draft's q rows (len(draft), V), or None, with one-hot rows in front for the forced tokens (a
    deterministic proposal is a one-hot q to rejection sampling)."""
    if draft_probs is None or not forced:
        return draft_probs
    one_hot = draft_probs.new_zeros(len(forced), draft_probs.shape[-1])
    one_hot[torch.arange(len(forced)), torch.tensor(forced)] = 1.0
    return torch.cat([one_hot, draft_probs])


def _start_ids(sources, tokenizer) -> list[int]:
    """The token a document starts from: BOS (the tokenizer's, else the model's `sources`), else EOS, which
    separates documents in GPT-2-style training; [] when the model names neither."""
    model_bos = [getattr(source, "bos_token_id", None) for source in sources]
    for token_id in (tokenizer.bos_token_id, *model_bos, tokenizer.eos_token_id):
        if isinstance(token_id, int):
            return [token_id]
    return []


def _eos_ids(sources, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in sources:
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
