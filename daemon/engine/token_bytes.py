"""The UTF-8 bytes each token stands for, so that a completion is cut only between whole characters.

Byte-level BPE tokenizers (GPT-2's scheme: SmolLM2, Qwen, StarCoder, Llama 3) and SentencePiece tokenizers with
byte fallback (`<0xF0>`: Llama, CodeLlama, Gemma) write one character as several tokens, 😀 as up to four. A
decoded prefix of such a run ends in U+FFFD, which must never reach an editor. Joining the tokens' bytes and
decoding them keeps only whole characters: an incomplete last one is held back until its remaining bytes arrive
(and left out when the completion ends first), and bytes that form no character at all (which only a model
gone astray writes) are dropped.
"""

from __future__ import annotations

import re
import weakref
from typing import Callable

ByteReader = Callable[[int], bytes]

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# A reader is trusted only if it reproduces the tokenizer's own decoding of this text, which has characters
# split into several tokens, runs of spaces, a tab, and punctuation that decoders may "clean up" (" ." and " 's").
_CHECK_TEXT = "def f(x):\n\treturn 'é😀ß中' + \"it 's\" , x . y  # ok!\n  ▁Ġ ☺\n"
_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_NONE = object()


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte, inverted: stand-in character -> byte."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    alphabet, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[chr(byte)] = byte
        else:
            alphabet[chr(256 + extra)] = byte
            extra += 1
    return alphabet


_ALPHABET = _byte_level_alphabet()


def _byte_level_piece(token: str) -> bytes:
    # As the ByteLevel decoder does: a token with a character outside the alphabet (an added token such as
    # "<｜fim▁begin｜>") stands for its own UTF-8.
    if all(c in _ALPHABET for c in token):
        return bytes(_ALPHABET[c] for c in token)
    return token.encode("utf-8")


def _sentencepiece_piece(token: str) -> bytes:
    match = _BYTE_PIECE.fullmatch(token)
    if match:
        return bytes([int(match.group(1), 16)])
    return token.replace("▁", " ").encode("utf-8")


def _reader(tokenizer, piece: Callable[[str], bytes]) -> ByteReader:
    cache: dict[int, bytes] = {}

    def read(token_id: int) -> bytes:
        found = cache.get(token_id)
        if found is None:
            token = tokenizer.convert_ids_to_tokens(token_id)
            found = cache[token_id] = piece(token) if isinstance(token, str) else b""
        return found

    return read


def _find_reader(tokenizer, decode: Callable[[list[int]], str]) -> ByteReader | None:
    try:
        ids = tokenizer(_CHECK_TEXT, add_special_tokens=False)["input_ids"]
        expected = decode(ids)
        for piece in (_byte_level_piece, _sentencepiece_piece):
            read = _reader(tokenizer, piece)
            if b"".join(read(i) for i in ids).decode("utf-8", "replace") == expected:
                return read
    except (AttributeError, TypeError, ValueError, KeyError):  # not a Hugging Face tokenizer (test doubles)
        pass
    return None


def byte_reader(tokenizer, decode: Callable[[list[int]], str]) -> ByteReader | None:
    """A function from token id to the UTF-8 bytes the token stands for, or None when this tokenizer's decoding
    is more than joining such bytes (a WordPiece "##" or cleanup of spaces): its text is then used as decoded.

    `decode(ids) -> str` is how the caller turns ids into text; the reader must agree with it on a sample with
    split characters, spaces and punctuation. Found once per tokenizer."""
    try:
        cached = _READERS.get(tokenizer)
    except TypeError:  # not weakly referenceable
        return _find_reader(tokenizer, decode)
    if cached is None:
        cached = _READERS[tokenizer] = _find_reader(tokenizer, decode) or _NONE
    return None if cached is _NONE else cached


def whole_characters(data: bytes) -> str:
    """`data` as text, without an incomplete last character and without bytes that form no character."""
    return data.decode("utf-8", "ignore")
