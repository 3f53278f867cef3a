"""Token healing: a prompt that ends inside a word or inside a run of whitespace is backed up to an earlier
token boundary, and the first generated tokens are constrained to write the removed text again.

A prompt cut at the cursor often ends in a token the model rarely saw there: `return n * f` ends in ` f`,
which in training text is seldom followed by `actorial` because ` factorial` is one token; `):\\n    ` ends in
`\\n    `, after which the model expects a fifth space. Healing removes the last token(s) and lets the model
choose, among the tokens that agree with the removed text, the one it likes best. The idea is Guidance's
("prompt boundaries and token healing"); the roll-back rule and the multi-step constraint are llama.cpp PR
#7187's strategy `d` (dynamic roll back, several constrained decoding steps).

Text is compared as bytes, as each token stands for them (token_bytes): a byte-level BPE token may hold half a
UTF-8 character. The constraint is a mask on the verifier's logits, applied alike to the step after the prefill
and to every row of a speculative verification pass, so greedy output is exactly the verifier's choice under the
constraint and sampling draws from the verifier's distribution restricted to the tokens that agree.
"""

from __future__ import annotations

import bisect
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from .constraints import LogitsConstraint
from .fim import decode_anchor
from .token_bytes import byte_reader

BLANKS = (b" ", b"\t")  # whitespace within a line: what the user typed of it is final
MASK_CACHE = 64  # masks kept per vocabulary, one per text still to write (a keystroke reuses the last ones)


def _decoder(tokenizer):
    """How a completion's tokens become text (stopping.StopState): decoded after fim.decode_anchor."""
    anchor = list(decode_anchor(tokenizer))
    anchor_text = tokenizer.decode(anchor, skip_special_tokens=False) if anchor else ""

    def decode(ids: list[int]) -> str:
        text = tokenizer.decode([*anchor, *ids], skip_special_tokens=False)
        return text[len(anchor_text):] if anchor and text.startswith(anchor_text) else \
            tokenizer.decode(ids, skip_special_tokens=False)

    return decode


def token_pieces(tokenizer) -> list[bytes | None]:
    """The bytes each token id stands for (index = id); None for special tokens (BOS, EOS, FIM markers, unknown),
    which healing never removes nor writes. All None for a tokenizer whose decoding is more than joining bytes
    (token_bytes.byte_reader finds no reader): such a tokenizer is not healed."""
    read = byte_reader(tokenizer, _decoder(tokenizer))
    size = len(tokenizer)
    if read is None:
        return [None] * size
    special = set(tokenizer.all_special_ids)
    special |= {i for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items() if token.special}
    return [None if i in special else read(i) or None for i in range(size)]


class Vocabulary:
    """A tokenizer's pieces, indexed for the questions healing asks on every keystroke: which tokens start with
    some bytes (a range of the sorted pieces), and which tokens are exactly some bytes."""

    def __init__(self, pieces: list[bytes | None]) -> None:
        self.size = len(pieces)
        self.pieces = pieces
        order = sorted((piece, i) for i, piece in enumerate(pieces) if piece)
        self._sorted = [piece for piece, _ in order]
        self._sorted_ids = torch.tensor([i for _, i in order], dtype=torch.long)
        self._by_piece: dict[bytes, list[int]] = {}
        for piece, token_id in order:
            self._by_piece.setdefault(piece, []).append(token_id)
        self.longest = max((len(piece) for piece in self._sorted), default=0)
        self._masks: OrderedDict = OrderedDict()

    def piece(self, token_id: int) -> bytes | None:
        """The bytes of `token_id`; None for a special token or an id outside the tokenizer."""
        return self.pieces[token_id] if 0 <= token_id < self.size else None

    def starting_with(self, prefix: bytes) -> torch.Tensor:
        """Ids (LongTensor) of the tokens whose piece starts with `prefix`, `prefix` itself included."""
        low = bisect.bisect_left(self._sorted, prefix)
        # They are the pieces from `prefix` up to the first string after all of them: `prefix` with its last byte
        # below 0xff raised by one and what follows dropped (none exists for a prefix of 0xff bytes only).
        head = prefix.rstrip(b"\xff")
        after = head[:-1] + bytes([head[-1] + 1]) if head else None
        high = bisect.bisect_left(self._sorted, after, low) if after is not None else len(self._sorted)
        return self._sorted_ids[low:high]

    def any_starting_with(self, prefix: bytes) -> bool:
        """Whether some token's piece starts with `prefix` (or is it)."""
        low = bisect.bisect_left(self._sorted, prefix)
        return low < len(self._sorted) and self._sorted[low].startswith(prefix)

    def allowed(self, remaining: bytes, width: int, device) -> torch.Tensor:
        """Bool mask (width,) of the tokens that may come next while `remaining` is still to be written: a token
        whose piece starts with all of it, or one whose piece is a shorter prefix of it. Spaces and tabs typed at
        the cursor are final: after a `remaining` that ends in one, a token may not go on with another
        (`):\n    ` is not continued with a fifth space, nor a tab with a second); `remaining` empty asks for the
        mask after such text was written to the end: every token but those that begin with a space or a tab. Ids
        at or beyond the tokenizer's size (padding rows of a model's head) are never allowed. Cached."""
        key = (remaining, width, str(device))
        mask = self._masks.get(key)
        if mask is not None:
            self._masks.move_to_end(key)
            return mask
        mask = torch.zeros(max(width, self.size), dtype=torch.bool)
        if not remaining:  # the guard after typed indentation: any token (special ones too) but a blank's
            mask[: self.size] = True
        mask[self.starting_with(remaining)] = True
        if remaining[-1:] in BLANKS or not remaining:
            for blank in BLANKS:
                mask[self.starting_with(remaining + blank)] = False
        for end in range(1, len(remaining)):
            mask[self._by_piece.get(remaining[:end], [])] = True
        mask = self._masks[key] = mask[:width].to(device)
        if len(self._masks) > MASK_CACHE:
            self._masks.popitem(last=False)
        return mask


_VOCABULARIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def vocabulary(tokenizer) -> Vocabulary:
    """The tokenizer's healing index, built once per tokenizer (0.2 s for SmolLM2's 49k tokens on a 2-core CPU)."""
    try:
        vocab = _VOCABULARIES.get(tokenizer)
    except TypeError:  # not weakly referenceable (a test double): built each time
        return Vocabulary(token_pieces(tokenizer))
    if vocab is None:
        vocab = _VOCABULARIES[tokenizer] = Vocabulary(token_pieces(tokenizer))
    return vocab


@dataclass
class Healing:
    """A prompt backed up for healing: `prompt_ids` without the `removed_ids`, whose bytes are `removed`."""

    prompt_ids: list[int]
    removed_ids: list[int] = field(default_factory=list)
    removed: bytes = b""


def cut_mid_token(text_end: bytes) -> bool:
    """Whether a prompt ending in `text_end` (its last token's bytes) may end inside a token: in a word (ASCII
    letters, digits, `_`, or any non-ASCII character) or in whitespace (a line break followed by indentation is
    one token in most code vocabularies). After other punctuation (`(`, `):`,
    `.`) the cursor is almost always at a natural token boundary, and healing only invites the model to rewrite
    what was typed: SmolLM2 after `def fib(n` constrained to write `):` picks `):**` and writes prose."""
    last = text_end[-1:]
    return bool(last) and (last.isalnum() or last in (b"_", b" ", b"\t", b"\n", b"\r") or last >= b"\x80")


def heal_prompt(vocab: Vocabulary, prompt_ids: list[int]) -> Healing:
    """Back the prompt up over its last tokens by llama.cpp's dynamic rule: as many trailing tokens as fit in the
    longest token's bytes, then fewer until some token of the vocabulary starts with the removed bytes. Never
    backs over a special token (BOS, a FIM marker) and never empties the prompt; the removed bytes start at a
    character boundary. The prompt stays whole when there is nothing to heal: it does not end in a word or in
    spaces (cut_mid_token), it ends in a special token, or a single removed token is the only one that starts
    with its own bytes (the model would have to write it again)."""
    if not prompt_ids or not cut_mid_token(vocab.piece(prompt_ids[-1]) or b""):
        return Healing(list(prompt_ids))
    count, length = 0, 0
    while count < len(prompt_ids) - 1:
        piece = vocab.piece(prompt_ids[-1 - count])
        if piece is None or length + len(piece) > vocab.longest:
            break
        count, length = count + 1, length + len(piece)
    removed = b""
    while count > 0:
        removed = b"".join(vocab.piece(t) for t in prompt_ids[len(prompt_ids) - count :])
        if not 0x80 <= removed[0] < 0xC0 and vocab.any_starting_with(removed):  # not inside a character
            break
        count -= 1
    if count == 0 or (count == 1 and len(vocab.starting_with(removed)) == 1):
        return Healing(list(prompt_ids))
    keep = len(prompt_ids) - count
    return Healing(list(prompt_ids[:keep]), list(prompt_ids[keep:]), removed)


class Constraint(LogitsConstraint):
    """The part of the removed text that the generated tokens have still to write, and the logit masks that make
    them write it. `remaining` is what is left after the tokens generated so far, the pending one included.
    `guard`: the removed text ends in a space or tab, and the byte after it must be none (typed indentation is
    final); it lasts until a byte follows the removed text. Once `remaining` is empty and `guard` off, every
    method leaves logits and drafts as they are. A state is the pair (remaining, guard)."""

    def __init__(self, vocab: Vocabulary, remaining: bytes) -> None:
        self.vocab = vocab
        self.remaining = remaining
        self.guard = remaining[-1:] in BLANKS

    def after(self, state: tuple[bytes, bool], token: int) -> tuple[bytes, bool] | None:
        """The state after `token`; None if the token does not agree with it."""
        remaining, guard = state
        piece = self.vocab.piece(token)
        if not remaining:  # only the guard, if any: the first byte after the removed text is not a blank
            return None if guard and piece and piece[:1] in BLANKS else (b"", False)
        if not piece:
            return None
        if piece.startswith(remaining):
            rest = piece[len(remaining) :]
            return None if guard and rest[:1] in BLANKS else (b"", guard and not rest)
        return (remaining[len(piece) :], guard) if remaining.startswith(piece) else None

    def advance(self, token: int) -> None:
        """Record a generated token; ValueError if the constraint forbids it (the loop never lets that happen)."""
        state = self.after((self.remaining, self.guard), token)
        if state is None:
            raise ValueError(f"token {token} does not continue the healed text {self.remaining!r}")
        self.remaining, self.guard = state

    def mask_logits(self, logits: torch.Tensor, draft: list[int] = (), argmax_only: bool = False) -> torch.Tensor:
        """logits: (len(draft) + 1, V), row i scoring the token after the pending one and draft[:i]. Returns a
        copy in which each row's forbidden tokens are -inf (the input itself when no row is constrained). Rows
        after a draft token that breaks the constraint are left as they are: verification rejects that token
        (its probability under the mask is 0), so those rows are never used. Every constrained row is masked
        whatever `argmax_only` says: these masks are cached and cheap."""
        state = (self.remaining, self.guard)
        if state == (b"", False):
            return logits
        masked = logits.clone()
        for row in range(logits.shape[0]):
            allowed = self.vocab.allowed(state[0], logits.shape[-1], logits.device)
            masked[row].masked_fill_(~allowed, float("-inf"))
            state = self.after(state, draft[row]) if row < len(draft) else None
            if state is None or state == (b"", False):
                break
        return masked

    def trim_draft(self, draft: list[int], sampled: bool) -> list[int]:
        """The draft up to its first token that breaks the constraint, which verification would reject anyway, so
        that a pass does not score what cannot be accepted. A `sampled` draft (drawn from a drafter's q, verified
        by rejection sampling) stays whole: the token that replaces a rejected one comes from max(p - q, 0), and
        cutting the draft before it would draw it from p, which is not the verifier's distribution."""
        return draft if sampled else draft[: self.agreeing_prefix(draft)]

    def agreeing_prefix(self, draft: list[int]) -> int:
        """How many leading draft tokens agree with the constraint."""
        state = (self.remaining, self.guard)
        for i, token in enumerate(draft):
            state = self.after(state, token)
            if state is None:
                return i
        return len(draft)
