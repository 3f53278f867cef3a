"""Fill-in-the-middle prompt templates, detected from the verifier's tokenizer.

The prompt is laid out so that typing only changes its tail (llama.vim's layout, extended to a few lines): the
rest of the cursor line and what follows go in the suffix part, the cursor line up to the cursor goes after the
middle marker, as the start of the text the model continues, and so do up to MIDDLE_LINES lines before it; the
lines before those go in the prefix part. Each keystroke then leaves every earlier token, and its KV cache,
untouched, and so does Enter: the line it ends stays after the middle marker, where llama.vim's layout would move
it into the prefix part and make the whole suffix part be read again. FIM training cuts the middle at random
points (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the Middle"), so a middle that
starts with whole lines is what the models were trained on.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass


@dataclass(frozen=True)
class FimTemplate:
    """A model family's fill-in-the-middle markers (special-token strings): `prefix`, `suffix` and `middle` (None: the
    model continues the prefix part, Codestral), `stop_tokens` that end a middle besides EOS, `suffix_first` for SPM
    order (suffix part first), and `requires`: tokens that must also be in the vocabulary to tell this family from
    another with the same markers. `markers` gives the non-None markers in prefix, suffix, middle order."""

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


# The token between files in the repository-level layout of pretraining: StarCoder2 (and SmolLM2, on its
# vocabulary) `<file_sep>`, Qwen2.5-Coder `<|file_sep|>`, CodeGemma `<|file_separator|>`.
FILE_SEPARATORS = ("<file_sep>", "<|file_sep|>", "<|file_separator|>")


def detect_file_separator(tokenizer) -> str | None:
    """The file separator token of this tokenizer (FILE_SEPARATORS), or None."""
    return next((token for token in FILE_SEPARATORS if single_token_id(tokenizer, token) is not None), None)


def single_token_id(tokenizer, text: str) -> int | None:
    """The id of `text` when it is one token of the tokenizer's vocabulary (a special token), else None."""
    token_id = tokenizer.convert_tokens_to_ids(text)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None
    return token_id


def detect_template(tokenizer) -> FimTemplate | None:
    """The first template whose markers (and distinguishing tokens) are single tokens of this tokenizer, or
    None (plain completion)."""
    for template in TEMPLATES:
        if all(single_token_id(tokenizer, t) is not None for t in template.markers + template.requires):
            return template
    return None


def template_by_family(family: str) -> FimTemplate:
    """The TEMPLATES entry named `family` ("qwen2.5-coder", "codestral", ...). Raises KeyError naming the known families
    when none is."""
    for template in TEMPLATES:
        if template.family == family:
            return template
    raise KeyError(f"unknown FIM family {family!r}; known: {', '.join(t.family for t in TEMPLATES)}")


def stop_token_ids(tokenizer, template: FimTemplate | None) -> set[int]:
    """Token ids that end a completion besides EOS: the template's stop tokens that are single tokens of `tokenizer`,
    and its markers (a marker in the output means the model left the middle); empty set without a template."""
    ids = {i for i in (single_token_id(tokenizer, t) for t in (template.stop_tokens if template else ())) if i is not None}
    if template is not None:  # a marker in the output means the model left the middle
        ids |= {single_token_id(tokenizer, t) for t in template.markers}
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


TRIM_STEP = 128  # a middle part longer than the context loses its start in steps, so keystrokes keep the cache


def _stable_ceiling(count: int, slack: int) -> int:
    """`count` rounded up to a multiple of the largest power of two that is at most `slack` + 1 (0 for a `count`
    below 1): at most `slack` above it, and the same while `count` grows one by one, until `count` passes it."""
    if count < 1:
        return 0
    step = 1 << ((max(slack, 0) + 1).bit_length() - 1)
    return -(-count // step) * step


def _fit(head: list[int], suffix: list[int], fixed: int, budget: int | None) -> tuple[list[int], list[int]]:
    """Fit `budget`. The suffix keeps at least a quarter of the room. The oldest prefix tokens go first, up to a
    quarter of the room more than needed, at a cut that stays put while the prompt grows (a moved cut makes the
    whole prompt be read again); the suffix takes what is left, so its far end moves instead, which in the
    prefix-suffix-middle order costs only reading the middle part again (in suffix-first order, the prefix
    part too)."""
    room = None if budget is None else max(budget - fixed, 0)
    if room is None or len(head) + len(suffix) <= room:
        return head, suffix
    excess = len(head) + min(len(suffix), room // 4) - room
    if excess > 0:
        head = head[min(len(head), _stable_ceiling(excess, room // 4)) :]
    return head, suffix[: room - len(head)]


MIDDLE_LINES = 8  # whole lines before the cursor's that may go after the middle marker


def _middle_start(prefix: str) -> int:
    """Where the middle part begins in `prefix`: at the start of the cursor's line or of one of the
    MIDDLE_LINES lines before it (never line 0, so that the prefix part holds what comes first), at a line
    number rounded up as `_stable_ceiling` does: it stays chosen while lines are added, so Enter changes no
    earlier token."""
    cursor_line = prefix.count("\n")
    first = max(1, cursor_line - MIDDLE_LINES)
    chosen = _stable_ceiling(first, cursor_line - first) if first <= cursor_line else cursor_line
    start = prefix.rfind("\n") + 1
    for _ in range(cursor_line - chosen):
        start = prefix.rfind("\n", 0, start - 1) + 1
    return start


def build_fim_ids(tokenizer, template: FimTemplate | None, prefix: str, suffix: str,
                  budget: int | None = None, context_ids: list[int] = ()) -> list[int]:
    """Token ids for completing at the cursor between `prefix` and `suffix`; with a `budget`, the far ends of
    the prefix and suffix are dropped to fit it (the middle part, or Codestral's cursor line, stays, all of it
    that fits: an editor's line can be longer than the context). `context_ids` (without a template only: other
    files in the repository layout, repo_context.py) go before the prefix, and are dropped first."""
    if template is None:
        head, _ = _fit(list(context_ids) + encode_text(tokenizer, prefix), [], len(bos_ids(tokenizer)), budget)
        return bos_ids(tokenizer) + head
    fixed = len(bos_ids(tokenizer)) + len(template.markers)
    line_start = prefix.rfind("\n") + 1
    split = _middle_start(prefix) if template.middle is not None else line_start
    middle_ids = encode_text(tokenizer, prefix[split:], continuation=split > 0)
    if budget is not None and split < line_start and len(middle_ids) > (budget - fixed) // 4:
        split = line_start  # a context this small is better spent on the prefix part
        middle_ids = encode_text(tokenizer, prefix[split:], continuation=split > 0)
    if budget is not None:  # text beyond the room loses its start, in steps (see TRIM_STEP)
        excess = len(middle_ids) - max(0, budget - fixed)
        if excess > 0:
            middle_ids = middle_ids[min(len(middle_ids), -(-excess // TRIM_STEP) * TRIM_STEP) :]
    head, tail = encode_text(tokenizer, prefix[:split]), encode_text(tokenizer, suffix, continuation=True)
    # Fitted as if the middle part were up to a sixteenth of the room longer, so that while it grows the far ends
    # are cut where they were and keep their cache.
    reserve = len(middle_ids) if budget is None else \
        min(_stable_ceiling(max(1, len(middle_ids)), (budget - fixed) // 16), max(0, budget - fixed))
    head, tail = _fit(head, tail, fixed + reserve, budget)
    marker = lambda token: [single_token_id(tokenizer, token)]  # noqa: E731
    prefix_part = marker(template.prefix) + head
    suffix_part = marker(template.suffix) + tail
    parts = suffix_part + prefix_part if template.suffix_first else prefix_part + suffix_part
    middle = marker(template.middle) if template.middle else []
    return bos_ids(tokenizer) + parts + middle + middle_ids
