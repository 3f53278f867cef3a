"""Fill-in-the-middle prompt templates, detected from the verifier's tokenizer.

The prompt is laid out so that typing only changes its tail (llama.vim's layout): the lines before the cursor
line go in the prefix part, the rest of the cursor line and what follows go in the suffix part, and the cursor
line up to the cursor goes after the middle marker, as the start of the text the model continues. Each
keystroke then leaves every earlier token, and its KV cache, untouched.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass


@dataclass(frozen=True)
class FimTemplate:
    family: str
    prefix: str
    suffix: str
    middle: str | None  # None: the model continues the prefix part directly (Codestral)
    stop_tokens: tuple[str, ...] = ()  # tokens that end a middle besides EOS
    suffix_first: bool = False  # SPM order (Codestral): suffix part before prefix part
    requires: tuple[str, ...] = ()  # tokens that tell this family from one with the same markers

    @property
    def markers(self) -> tuple[str, ...]:
        return tuple(m for m in (self.prefix, self.suffix, self.middle) if m is not None)


TEMPLATES = (
    # CodeGemma shares Qwen's markers; its file separator tells them apart, so it is tried first.
    FimTemplate("codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", ("<|file_separator|>",),
                requires=("<|file_separator|>",)),
    FimTemplate("qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                ("<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|endoftext|>", "<|im_end|>")),
    FimTemplate("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", ("<file_sep>", "<|endoftext|>")),
    FimTemplate("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", ("<|EOT|>",)),
    FimTemplate("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", ("▁<EOT>",)),
    # mistral-common's FIM request: <s>[SUFFIX]suffix[PREFIX]prefix, with no middle marker.
    FimTemplate("codestral", "[PREFIX]", "[SUFFIX]", None, ("[MIDDLE]",), suffix_first=True),
)


def _single_token_id(tokenizer, text: str) -> int | None:
    token_id = tokenizer.convert_tokens_to_ids(text)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None
    return token_id


def detect_template(tokenizer) -> FimTemplate | None:
    """The first template whose markers (and distinguishing tokens) are single tokens of this tokenizer, or
    None (plain completion)."""
    for template in TEMPLATES:
        if all(_single_token_id(tokenizer, t) is not None for t in template.markers + template.requires):
            return template
    return None


def template_by_family(family: str) -> FimTemplate:
    for template in TEMPLATES:
        if template.family == family:
            return template
    raise KeyError(f"unknown FIM family {family!r}; known: {', '.join(t.family for t in TEMPLATES)}")


def stop_token_ids(tokenizer, template: FimTemplate | None) -> set[int]:
    ids = {i for i in (_single_token_id(tokenizer, t) for t in (template.stop_tokens if template else ())) if i is not None}
    if template is not None:  # a marker in the output means the model left the middle
        ids |= {_single_token_id(tokenizer, t) for t in template.markers}
    return ids


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


@dataclass(frozen=True)
class _Habits:
    bos: tuple[int, ...]  # the BOS id if the tokenizer adds one to plain text
    sentinel: tuple[int, ...] | None  # ids of "☺" when every text gets a leading space (SentencePiece), else None


_HABITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _habits(tokenizer) -> _Habits:
    """What this tokenizer adds around any text, probed once: prompts are built on every keystroke."""
    habits = _HABITS.get(tokenizer)
    if habits is None:
        bos = tokenizer.bos_token_id
        probe = tokenizer("a", add_special_tokens=True)["input_ids"] if bos is not None else []
        # Llama/Mistral-style SentencePiece tokenizers put a space before the first word of every text.
        plain = _encode(tokenizer, "a")
        spaced = bool(plain) and tokenizer.convert_ids_to_tokens(plain[0]).startswith("▁")
        habits = _HABITS[tokenizer] = _Habits(
            bos=(bos,) if probe and probe[0] == bos else (),
            sentinel=tuple(_encode(tokenizer, "☺")) if spaced else None)
    return habits


def encode_text(tokenizer, text: str, continuation: bool = False) -> list[int]:
    """Token ids of user text; special-token names inside it stay plain text. A `continuation` (text that
    follows other text: the suffix, the cursor's line) gets no leading space from the tokenizer, as in
    CodeLlama's and mistral-common's FIM encoders."""
    if not text:
        return []
    sentinel = _habits(tokenizer).sentinel if continuation else None
    if sentinel is None:
        return _encode(tokenizer, text)
    # The space goes to a character put in front that merges with nothing, as CodeLlama's and mistral-common's
    # `encode_infilling` do.
    ids = _encode(tokenizer, "☺" + text)
    if tuple(ids[: len(sentinel)]) == sentinel:
        return ids[len(sentinel):]
    return _encode(tokenizer, text)


def decode_anchor(tokenizer) -> list[int]:
    """Tokens to decode a completion after, so that a tokenizer which drops the leading space of a text's first
    token (SentencePiece of the Llama/Mistral kind) keeps the completion's; [] when none is needed."""
    return _encode(tokenizer, "\n") if _habits(tokenizer).sentinel is not None else []


def bos_ids(tokenizer) -> list[int]:
    """The BOS id if this tokenizer adds one to plain text."""
    return list(_habits(tokenizer).bos)


TRIM_STEP = 128  # trim in steps, so consecutive keystrokes cut at the same token and keep their cache


def _fit(head: list[int], suffix: list[int], fixed: int, budget: int | None) -> tuple[list[int], list[int]]:
    """Fit `budget` by dropping the farthest suffix tokens (the suffix keeps at least a quarter of the room),
    then the oldest prefix tokens."""
    room = None if budget is None else budget - fixed
    if room is None or len(head) + len(suffix) <= room:
        return head, suffix
    suffix = suffix[: max(0, room // 4, room - len(head))]
    excess = len(head) + len(suffix) - room
    if excess > 0:
        head = head[min(len(head), -(-excess // TRIM_STEP) * TRIM_STEP) :]
    return head, suffix


def build_fim_ids(tokenizer, template: FimTemplate | None, prefix: str, suffix: str,
                  budget: int | None = None) -> list[int]:
    """Token ids for completing at the cursor between `prefix` and `suffix`; with a `budget`, the far ends of
    the prefix and suffix are dropped to fit it (the cursor's line stays, all of it that fits: an editor's line
    can be longer than the context)."""
    if template is None:
        head, _ = _fit(encode_text(tokenizer, prefix), [], len(bos_ids(tokenizer)), budget)
        return bos_ids(tokenizer) + head
    line_start = prefix.rfind("\n") + 1
    head_text, cursor_line = prefix[:line_start], prefix[line_start:]
    marker = lambda token: [_single_token_id(tokenizer, token)]  # noqa: E731
    line_ids = encode_text(tokenizer, cursor_line, continuation=bool(head_text))
    if budget is not None:  # a line beyond the room loses its start, in steps (see TRIM_STEP)
        excess = len(line_ids) - max(0, budget - len(bos_ids(tokenizer)) - len(template.markers))
        if excess > 0:
            line_ids = line_ids[min(len(line_ids), -(-excess // TRIM_STEP) * TRIM_STEP) :]
    head, tail = encode_text(tokenizer, head_text), encode_text(tokenizer, suffix, continuation=True)
    head, tail = _fit(head, tail, len(bos_ids(tokenizer)) + len(template.markers) + len(line_ids), budget)
    prefix_part = marker(template.prefix) + head
    suffix_part = marker(template.suffix) + tail
    parts = suffix_part + prefix_part if template.suffix_first else prefix_part + suffix_part
    middle = marker(template.middle) if template.middle else []
    return bos_ids(tokenizer) + parts + middle + line_ids
