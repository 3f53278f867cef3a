"""Structured output: the answer follows a JSON schema (or is one of a few strings: `compile_choices`), as a logits
constraint (constraints.LogitsConstraint).

The grammar engine is llguidance (github.com/guidance-ai/llguidance, the backend vLLM and llama.cpp ship): a
schema compiles into a grammar in about a millisecond, and its matcher answers, per position, which tokens may
come next (about 10 us on a 49k vocabulary), which tokens are forced, how many tokens of a draft fit, and rolls
consumed tokens back. How it is combined with drafts follows vLLM's structured-output scheduler: the draft is
trimmed to its grammar-valid prefix, every verified row gets the mask of the state after the draft tokens before
it (consumed one by one, rolled back afterwards), and only the tokens the loop keeps advance the matcher. For
greedy decoding a row's mask is built only when its unmasked argmax is not allowed (llama.cpp's check-first
trick: the argmax, if allowed, is the masked argmax too).

JSON is written compactly with `", "` and `": "` separators and no other whitespace, so a weak model cannot
spend its tokens on blank space and an answer ends once its last brace closes (`finished`).
"""

from __future__ import annotations

import json
import weakref

import torch

from .constraints import LogitsConstraint
from .json_schema import closed_objects, map_schema
from .requests import RequestError

# Separators as most JSON in training text writes them; no free whitespace (see the module docstring).
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT = {"type": "object"}  # OpenAI's json_object / Gemini's bare application/json: any JSON object
BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# llguidance reads bounds as 64-bit floats: beyond 2^53 they stop being exact integers, integer bounds are clamped
# to 64 bits (an answer then breaks the schema), and two bounds at or below -2^63 crash it (llguidance 1.9.1:
# the process dies, no Python exception). Bounds within JSON's exact integers (RFC 8259, section 6) are safe.
LARGEST_BOUND = 2**53 - 1

_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _llguidance():
    try:
        import llguidance
        import llguidance.hf
    except ImportError as error:  # pragma: no cover - an install without the extra
        raise RequestError("structured output (a JSON schema) needs llguidance: pip install 'specd[structured]'") \
            from error
    return llguidance


def grammar_tokenizer(tokenizer):
    """llguidance's view of a Hugging Face tokenizer (its token bytes and EOS), built once per tokenizer (about
    0.5 s for SmolLM2's 49k tokens)."""
    llg = _llguidance()
    try:
        cached = _TOKENIZERS.get(tokenizer)
    except TypeError:  # not weakly referenceable (a test double): built each time
        return llg.hf.from_tokenizer(tokenizer)
    if cached is None:
        cached = _TOKENIZERS[tokenizer] = llg.hf.from_tokenizer(tokenizer)
    return cached


def schema_grammar(schema) -> str:
    """llguidance's grammar for JSON documents of `schema` (a JSON Schema as a dict, or True for any JSON value),
    checked without a tokenizer (the API doors call it before queueing a request). Raises RequestError naming
    the problem when the schema is not a JSON object, uses a keyword or format llguidance does not implement,
    points nowhere ($ref) or cannot be satisfied. Objects that list `properties` hold only those
    (json_schema.closed_objects), and integers without bounds stay within +-(2^53 - 1) (`_bound_integers`)."""
    llg = _llguidance()
    if schema is True:
        schema = {}
    if not isinstance(schema, dict):
        raise RequestError(f"json_schema must be a JSON object (a JSON Schema), got {type(schema).__name__}")
    map_schema(schema, _refuse_large_bounds)
    schema = map_schema(schema, _bound_integers)
    try:
        grammar = llg.LLMatcher.grammar_from_json_schema(json.dumps(closed_objects(schema)), overrides=JSON_OPTIONS)
    except (ValueError, TypeError) as error:
        raise RequestError(f"json_schema is not usable: {error}") from error
    problem = llg.LLMatcher.validate_grammar(grammar)
    if problem:
        raise RequestError(f"json_schema is not supported: {_for_users(problem)}")
    return grammar


def _for_users(problem: str) -> str:
    """llguidance's message, with advice a request can follow where llguidance names an option of its own."""
    if "coerce_one_of" in problem:
        return ("`oneOf` whose branches may both match a document cannot be enforced (exactly one must match); "
                "write `anyOf` where any matching branch will do, or make the branches exclusive (a `const` or "
                "`enum` property that tells them apart)")
    return problem


def _refuse_large_bounds(node: dict, path: str) -> dict:
    """A json_schema.map_schema visitor: RequestError naming a numeric bound (`minimum` ...) of the schema object
    `node` (at JSON pointer `path`) beyond +-LARGEST_BOUND; else `node`."""
    for key in BOUND_KEYWORDS:
        value = node.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not -LARGEST_BOUND <= value <= LARGEST_BOUND:
            raise RequestError(f"json_schema's {path}/{key} is {value}, beyond the bounds structured output takes: "
                               f"-{LARGEST_BOUND} to {LARGEST_BOUND} (2^53 - 1, the largest integer a JSON number "
                               "holds exactly)")
    return node


def _bound_integers(node: dict, path: str) -> dict:
    """A json_schema.map_schema visitor: an integer schema without a lower or upper bound gets +-LARGEST_BOUND
    there, so its numbers have at most 16 digits. Unbounded, a weak model wrote digits until max_tokens (the Gemini
    CLI's forced `read_file` call: "end_line": 1000000000..., cut and never run); no integer beyond JSON's exact
    ones (RFC 8259, section 6) was ever a usable answer."""
    kinds = node.get("type")
    if not (kinds == "integer" or isinstance(kinds, list) and "integer" in kinds):
        return node
    bounded = dict(node)
    if "minimum" not in node and "exclusiveMinimum" not in node:
        bounded["minimum"] = -LARGEST_BOUND
    if "maximum" not in node and "exclusiveMaximum" not in node:
        bounded["maximum"] = LARGEST_BOUND
    return bounded


def compile_schema(schema, tokenizer) -> "GrammarConstraint":
    """A constraint for answers that are JSON documents of `schema` (see schema_grammar; RequestError the same
    way, also for a schema this tokenizer cannot write)."""
    return _constraint(schema_grammar(schema), tokenizer, "json_schema")


def choices_grammar(choices) -> str:
    """llguidance's grammar (Lark syntax) for an answer that is exactly one of the strings `choices`, as written
    (Gemini's `text/x.enum`, vLLM's `choice`). Raises RequestError for no choices or an empty one."""
    if not choices or not all(isinstance(choice, str) and choice for choice in choices):
        raise RequestError("text choices must be one or more non-empty strings")
    return _llguidance().LLMatcher.grammar_from_lark(
        "start: " + " | ".join(json.dumps(choice) for choice in dict.fromkeys(choices)))


def compile_choices(choices, tokenizer) -> "GrammarConstraint":
    """A constraint for answers that are one of `choices` (choices_grammar)."""
    return _constraint(choices_grammar(choices), tokenizer, "the text choices")


def _constraint(grammar: str, tokenizer, what: str) -> "GrammarConstraint":
    llg = _llguidance()
    llg_tokenizer = grammar_tokenizer(tokenizer)
    problem = llg.LLMatcher.validate_grammar(grammar, llg_tokenizer)
    if problem:
        raise RequestError(f"{what} is not supported: {problem}")
    matcher = llg.LLMatcher(llg_tokenizer, grammar, log_level=0)
    if matcher.is_error():
        raise RequestError(f"{what} is not supported: {matcher.get_error()}")
    constraint = GrammarConstraint(matcher, llg_tokenizer.vocab_size, what)
    constraint.allowed(llg_tokenizer.vocab_size, "cpu")  # a schema no document satisfies fails here ({"$ref": "#"})
    constraint.masks_built = 0
    return constraint


class GrammarConstraint(LogitsConstraint):
    """An llguidance matcher advanced by the tokens the loop keeps. `vocab_size`: the ids the matcher knows;
    logits columns at or beyond it (padding rows of a model's head) are never allowed. `what` names the constraint
    in errors ("json_schema").

    A matcher that fails on the way (a schema whose only documents nest without end, such as a required property
    that refers back to its own object, ends in llguidance's ParserTooComplex; one that refers only to itself
    allows no first token) raises RequestError: the request, not the daemon, is at fault."""

    def __init__(self, matcher, vocab_size: int, what: str = "json_schema") -> None:
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.what = what
        self.masks_built = 0  # full masks computed (the rest of the rows only checked their argmax)

    def _refuse_if_failed(self) -> None:
        if self.matcher.is_error():
            reason = (self.matcher.get_error().strip().splitlines() or [""])[0]  # the rest dumps the parser's state
            raise RequestError(f"{self.what} cannot be followed: no finite document satisfies it, or the grammar "
                               f"engine gave up on it ({reason}); a property that is required and refers back to "
                               "its own object, or a schema that is only a reference to itself, has no answer")

    def allows(self, token: int) -> bool:
        return 0 <= token < self.vocab_size and self.matcher.validate_tokens([token]) == 1

    def allowed(self, width: int, device) -> torch.Tensor:
        """Bool mask (width,) of the tokens allowed next."""
        self.masks_built += 1
        bias = torch.frombuffer(bytearray(self.matcher.compute_logit_bias()), dtype=torch.uint8)
        self._refuse_if_failed()
        mask = torch.zeros(width, dtype=torch.bool)
        size = min(width, bias.numel())
        mask[:size] = bias[:size] != 0
        return mask.to(device)

    def mask_logits(self, logits, draft=(), argmax_only=False):
        masked = None
        consumed = 0
        try:
            for row in range(logits.shape[0]):
                current = logits if masked is None else masked
                if not (argmax_only and self.allows(int(current[row].argmax()))):
                    if masked is None:
                        masked = logits.clone()
                    masked[row].masked_fill_(~self.allowed(logits.shape[-1], logits.device), float("-inf"))
                if row >= len(draft) or self.matcher.try_consume_tokens([draft[row]]) != 1:
                    break  # later rows follow a forbidden draft token: verification never reaches them
                consumed += 1
        finally:
            if consumed:
                self.matcher.rollback(consumed)
        return logits if masked is None else masked

    def trim_draft(self, draft, sampled):
        return draft if sampled or not draft else draft[: self.matcher.validate_tokens(list(draft))]

    def forced_tokens(self, after=()):
        consumed = self.matcher.try_consume_tokens(list(after)) if after else 0
        try:
            if consumed < len(after) or self.matcher.is_stopped():
                return []
            return list(self.matcher.compute_ff_tokens())
        finally:
            if consumed:
                self.matcher.rollback(consumed)

    def advance(self, token):
        allowed = self.allows(token)
        if not self.matcher.consume_token(token):
            if allowed:  # the grammar engine gave up on what may follow the token (ParserTooComplex)
                self._refuse_if_failed()
            # the first line only: the rest dumps the parser's state, the answer's text included (logs hold none)
            reason = (self.matcher.get_error().strip().splitlines() or [""])[0]
            raise ValueError(f"token {token} breaks the JSON schema: {reason}")

    @property
    def finished(self):
        return self.matcher.is_stopped()

    @property
    def complete(self) -> bool:
        """Whether the text so far is a whole document of the schema."""
        return self.matcher.is_accepting()
