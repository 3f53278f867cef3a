"""What a generation request asks and what it returns: plain types without torch, shared by the engine, the
server and tests that stand in for the engine."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field


class RequestError(ValueError):
    """The request cannot be served as asked (bad argument, prompt beyond the context window)."""


class PromptTooLong(RequestError):
    """A prompt of `tokens` tokens for a context window of `window` tokens. The message starts as Anthropic's
    ("prompt is too long: N tokens > M maximum"), which Claude Code parses to compact its conversation (its
    matcher: /prompt is too long[^0-9]*(\\d+)\\s*tokens?\\s*>\\s*(\\d+)/i); the API doors also give OpenAI's code
    `context_length_exceeded`."""

    def __init__(self, tokens: int, window: int, whose: str = "the model") -> None:
        super().__init__(f"prompt is too long: {tokens} tokens > {window} maximum; the context window is {window} "
                         f"tokens (shorten the prompt, or raise max_context if {whose} allows)")
        self.tokens, self.window = tokens, window


class CancelToken:
    """A thread-safe cancellation flag (a threading.Event): the scheduler calls `cancel()`, the engine reads `cancelled`
    between decoding rounds and prefill chunks and ends with finish_reason "cancelled"."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class ContextFile:
    """Another file of the project shown to the model (repo_context.py); `path` as the editor names it, "" when
    unknown."""

    path: str
    text: str


@dataclass
class GenerationRequest:
    """One generation as every door asks it of the engine: `prompt` (the text before the cursor, or a chat template's
    output), `suffix` (the text after the cursor; None: no fill-in-the-middle), `max_tokens` (tokens), `temperature` (0:
    greedy) and `top_p`, `seed` (None: random), `stop` strings, `mode` (None, "line" or "block", stopping.py),
    `draft_tokens` (tokens per round; None: adaptive, 0: no drafting), `cache_key` (the document id whose cache slot it
    reuses), and the options commented below."""

    prompt: str = ""
    suffix: str | None = None
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    mode: str | None = None
    draft_tokens: int | None = None
    cache_key: str | None = None
    # Drop the far ends of prefix and suffix to fit the context instead of refusing (editors cannot count
    # tokens); room for min(max_tokens, a quarter of the context) completion tokens is kept.
    fit_context: bool = False
    # Back the prompt up to a token boundary and make the first tokens write the removed text again
    # (token_healing.py): a prompt cut inside a word or an indentation is continued as if it were not cut.
    token_healing: bool = True
    # Structured output (grammar.py): the answer is a JSON document of this JSON Schema (a dict; True: any JSON
    # value); token healing is then off (the healed prompt text is no part of the JSON). None: free text.
    json_schema: dict | bool | None = None
    # Or the answer is exactly one of these strings (grammar.compile_choices; Gemini's text/x.enum).
    text_choices: tuple[str, ...] | None = None
    # Tokens the schema forces (keys, quotes, braces, the rest of an enum value) enter each draft for free;
    # False drafts only what the drafter proposes (benchmarks compare both).
    forced_drafts: bool = True
    # Read the prompt into the cache slot of `cache_key` and generate nothing (llama-server's `n_predict: 0`
    # with `cache_prompt`): an editor warms the document's cache where the cursor rests, so the first completion
    # there only feeds what was typed since. `max_tokens` still sizes the prompt's layout, as for the completion.
    prefill_only: bool = False
    # Count the prompt's tokens and generate nothing (the doors' count_tokens routes): a prompt beyond the context
    # window is counted too, not refused, so that a client can ask whether it fits.
    count_only: bool = False
    # Other files of the project, put before the prompt in the model's repository layout (repo_context.py); `path`
    # and `language` name the current file (its path heads it there; the language picks the comment token).
    context_files: tuple[ContextFile, ...] = ()
    path: str | None = None
    language: str | None = None


@dataclass
class Stats:
    """One request's accounting (every door's `usage` and `specd` object, the `x-specd-*` headers). Token counts
    count each token once: `prompt_tokens` the tokens the verifier read, `completion_tokens` those it generated."""

    # The prompt as the verifier read it: after token healing backed it up, so `healed_tokens` fewer than the
    # tokenizer's count of the prompt; the cached part (read from a previous request's cache) included.
    prompt_tokens: int = 0
    cached_tokens: int = 0
    # Every token generated, `rewritten_tokens` included; the answer is their text less the backed-up text.
    completion_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    verifier_passes: int = 0
    forced_tokens: int = 0  # draft tokens a JSON schema forced (within drafted_tokens; no drafter work)
    # With a json_schema: whether the answer is a whole document of the schema (False: cut by max_tokens, a stop
    # string or a cancellation); None without a schema. In every door's accounting (`specd` in OpenAI's body).
    json_complete: bool | None = None
    # Token healing: prompt tokens backed up (in neither prompt_tokens nor completion_tokens), and the generated
    # tokens that wrote nothing but their text again (within completion_tokens, free of max_tokens: a completion
    # cut by max_tokens has completion_tokens = max_tokens + rewritten_tokens).
    healed_tokens: int = 0
    rewritten_tokens: int = 0
    queue_s: float = 0.0
    prefill_s: float = 0.0
    draft_s: float = 0.0
    verify_s: float = 0.0
    total_s: float = 0.0
    # Why the answer was cut short though the model had not finished: "deadline" (request_timeout ran out, the
    # text so far answered with finish_reason "length"); None otherwise. Set by the server, not the engine.
    truncated: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationResult:
    """What `Engine.generate` returns: the answer's `text`, the generated `token_ids` (EOS excluded), `finish_reason`
    ("stop", "length" or "cancelled"), its Stats, and `stop_sequence` (the stop string that ended it, if one did)."""

    text: str
    token_ids: list[int]
    finish_reason: str  # stop | length | cancelled
    stats: Stats
    stop_sequence: str | None = None  # with finish_reason "stop": the stop string that ended it, if one did
