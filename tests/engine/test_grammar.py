"""Structured output: a JSON schema constrains the answer, and speculative decoding stays lossless under it.

The reference is an independent decoder: the verifier alone, one token per step, every step masked with
llguidance's full mask (no argmax shortcut, no drafts, no forced tokens)."""

import json

import jsonschema
import llguidance
import pytest
import torch

from specd.daemon.engine import grammar as grammar_module
from specd.daemon.engine import loop as engine_module
from specd.daemon.engine.constraints import AllOf
from specd.daemon.engine.drafters.base import Draft, Drafter
from specd.daemon.engine.drafters.ngram import NgramDrafter
from specd.daemon.engine.loop import Engine, GenerationRequest
from specd.daemon.engine.requests import RequestError
from specd.daemon.engine.token_healing import Constraint

SCHEMAS = {
    "nested objects": {
        "type": "object", "additionalProperties": False, "required": ["user", "active"],
        "properties": {
            "user": {"type": "object", "additionalProperties": False, "required": ["name", "age"],
                     "properties": {"name": {"type": "string", "maxLength": 8},
                                    "age": {"type": "integer", "minimum": 0, "maximum": 120}}},
            "active": {"type": "boolean"}}},
    "arrays with min/max items": {
        "type": "object", "additionalProperties": False, "required": ["scores", "tags"],
        "properties": {"scores": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9},
                                  "minItems": 2, "maxItems": 4},
                       "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2}}},
    "enums and anyOf": {
        "type": "object", "additionalProperties": False, "required": ["color", "value"],
        "properties": {"color": {"enum": ["red", "green", "light blue"]},
                       "value": {"anyOf": [{"type": "integer", "minimum": -5, "maximum": 5},
                                           {"type": "string", "maxLength": 4}, {"type": "null"}]}}},
    "bounded numbers, patterns, optional fields": {
        "type": "object", "additionalProperties": False, "required": ["price", "sku"],
        "properties": {"price": {"type": "integer", "minimum": 10, "maximum": 500},
                       "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
                       "note": {"type": "string", "maxLength": 6}}},
}
PROMPTS = ["Return the record as JSON:\n", "def parse(text):\n    return json.loads(", "{\"a\": 1}\n{\"b\": 2}\n"]
STRATEGIES = ["ngram", "model", "layer_skip"]


@pytest.fixture
def engine_for(make_engine):
    def make(strategy):
        engine = make_engine(strategy)
        if strategy == "ngram":  # drafts after single-token matches too: a random model's text rarely repeats
            engine.drafter = NgramDrafter(min_ngram=1, unigram_tokens=16)
        return engine

    return make


def reference_decode(engine, prompt: str, schema, max_tokens: int) -> list[int]:
    """The verifier's greedy decoding with every step masked by llguidance's full mask."""
    tokenizer = grammar_module.grammar_tokenizer(engine.tokenizer)
    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=grammar_module.JSON_OPTIONS)
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    cache = engine.verifier.new_cache()
    ids = engine.prompt_ids(GenerationRequest(prompt=prompt))
    logits = engine.verifier.forward(ids, cache, last_only=True)[-1]
    out = []
    while len(out) < max_tokens and not matcher.is_stopped():
        bias = torch.frombuffer(bytearray(matcher.compute_logit_bias()), dtype=torch.uint8)
        allowed = torch.zeros(logits.shape[-1], dtype=torch.bool)
        allowed[: bias.numel()] = bias[: logits.shape[-1]] != 0
        token = int(logits.masked_fill(~allowed, float("-inf")).argmax())
        assert matcher.consume_token(token)
        if token in engine.eos_ids:
            break
        out.append(token)
        logits = engine.verifier.forward([token], cache)[-1]
    return out


def run(engine, prompt, schema, **kwargs):
    engine.pool.clear()
    return engine.generate(GenerationRequest(prompt=prompt, json_schema=schema, **kwargs))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_speculative_equals_plain_under_the_schema_for_every_drafter(engine_for, strategy):
    engine = engine_for(strategy)
    drafted = forced = 0
    for name, schema in SCHEMAS.items():
        for prompt in PROMPTS[:2]:
            plain = run(engine, prompt, schema, max_tokens=160, draft_tokens=0)
            assert plain.token_ids == reference_decode(engine, prompt, schema, 160), name
            assert plain.stats.drafted_tokens == 0 and plain.stats.forced_tokens == 0
            for forced_drafts in (True, False):
                speculative = run(engine, prompt, schema, max_tokens=160, forced_drafts=forced_drafts)
                assert speculative.token_ids == plain.token_ids, (name, forced_drafts)
                assert speculative.text == plain.text
                drafted += speculative.stats.drafted_tokens - speculative.stats.forced_tokens
                forced += speculative.stats.forced_tokens
            assert plain.finish_reason == "stop" and plain.stats.json_complete, name
            jsonschema.validate(json.loads(plain.text), schema)
    assert drafted > 0 and forced > 0  # both the drafter and the grammar put tokens into verification passes


def test_forced_tokens_are_free_drafts_that_save_passes(engine_for):
    engine = engine_for("ngram")
    schema = SCHEMAS["nested objects"]
    plain = run(engine, PROMPTS[0], schema, max_tokens=160, draft_tokens=0)
    without = run(engine, PROMPTS[0], schema, max_tokens=160, forced_drafts=False)
    with_forced = run(engine, PROMPTS[0], schema, max_tokens=160)
    assert with_forced.token_ids == without.token_ids == plain.token_ids
    # `{"user": {"name": "` and the other keys are forced: far fewer passes than one per token
    assert with_forced.stats.forced_tokens >= 10
    assert with_forced.stats.verifier_passes < without.stats.verifier_passes <= plain.stats.verifier_passes


def test_no_pass_checks_more_tokens_than_the_engines_draft_limit_forced_ones_included(engine_for):
    """A verifier whose passes over more than 3 tokens give other logits than its steps (llama.cpp's tiled K-quant
    matmul from 8 rows: Gemma 3's GGUF) must never verify more, though a grammar forces long runs of tokens."""
    engine = engine_for("ngram")
    schema = SCHEMAS["nested objects"]
    plain = run(engine, PROMPTS[0], schema, max_tokens=160, draft_tokens=0)
    lengths = []
    forward = engine.verifier.forward

    def counted(ids, cache, last_only=False):
        if not last_only:
            lengths.append(len(ids))
        return forward(ids, cache, last_only=last_only)

    engine.verifier.forward = counted
    try:
        unlimited = run(engine, PROMPTS[0], schema, max_tokens=160)
        assert max(lengths) > 3  # the grammar forces longer runs than that
        lengths.clear()
        engine.draft_limit = 2
        limited = run(engine, PROMPTS[0], schema, max_tokens=160, draft_tokens=16)
    finally:
        engine.verifier.forward = forward
        engine.draft_limit = None
    assert max(lengths) == 3 and limited.stats.forced_tokens > 0
    assert limited.token_ids == unlimited.token_ids == plain.token_ids


class Replay(Drafter):
    """Proposes the plain answer's next tokens (`shift` 0: always right), or those tokens shifted by one id (wrong,
    and mostly outside the grammar)."""

    name = "replay"

    def __init__(self, answer, prompt_length, shift):
        self.answer, self.prompt_length, self.shift = answer, prompt_length, shift

    def propose(self, ctx, state):
        done = len(ctx.ids) - self.prompt_length
        return Draft([t + self.shift for t in self.answer[done: done + ctx.max_tokens]])


@pytest.mark.parametrize("shift", [0, 1])
def test_oracle_and_wrong_drafts_give_the_masked_verifiers_answer(make_engine, shift):
    engine = make_engine("ngram")
    saved = engine.drafter
    try:
        for schema in SCHEMAS.values():
            plain = run(engine, PROMPTS[0], schema, max_tokens=160, draft_tokens=0)
            engine.drafter = Replay(plain.token_ids, plain.stats.prompt_tokens, shift)
            speculative = run(engine, PROMPTS[0], schema, max_tokens=160, forced_drafts=False)
            engine.drafter = saved
            assert speculative.token_ids == plain.token_ids
            if shift == 0:
                assert speculative.stats.accepted_tokens == speculative.stats.drafted_tokens > 0
    finally:
        engine.drafter = saved


def test_masked_verification_is_needed(make_engine, monkeypatch):
    """Negative control: verification passes that mask only their first row (as the plain step) and drafts that
    are not trimmed let a drafter's tokens through where the grammar forbids them: here a drafter proposing what
    the verifier writes without the schema."""
    engine = make_engine("ngram")
    saved = engine.drafter
    broken_runs = 0
    original = grammar_module.GrammarConstraint.mask_logits
    monkeypatch.setattr(grammar_module.GrammarConstraint, "trim_draft", lambda self, draft, sampled: draft)
    monkeypatch.setattr(grammar_module.GrammarConstraint, "mask_logits",
                        lambda self, logits, draft=(), argmax_only=False:
                        torch.cat([original(self, logits[:1], (), argmax_only), logits[1:]]))
    try:
        for schema in SCHEMAS.values():
            plain = run(engine, PROMPTS[0], schema, max_tokens=160, draft_tokens=0)
            free = run(engine, PROMPTS[0], None, max_tokens=160, draft_tokens=0, token_healing=False)
            engine.drafter = Replay(free.token_ids, free.stats.prompt_tokens, 0)
            try:
                broken = run(engine, PROMPTS[0], schema, max_tokens=160, forced_drafts=False)
                broken_runs += broken.token_ids != plain.token_ids
            except ValueError:  # the matcher was handed a token the schema forbids
                broken_runs += 1
            engine.drafter = saved
    finally:
        engine.drafter = saved
    assert broken_runs > 0


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_random_weight_models_still_write_valid_json(engine_for, temperature):
    engine = engine_for("model")
    for name, schema in SCHEMAS.items():
        for seed, prompt in enumerate(PROMPTS):
            result = run(engine, prompt, schema, max_tokens=400, temperature=temperature, seed=seed)
            assert result.finish_reason == "stop" and result.stats.json_complete, (name, result.text)
            jsonschema.validate(json.loads(result.text), schema)


def test_an_answer_cut_by_max_tokens_ends_with_length_and_is_marked_incomplete(engine_for):
    engine = engine_for("ngram")
    for draft_tokens in (0, None):
        result = run(engine, PROMPTS[0], SCHEMAS["nested objects"], max_tokens=5, draft_tokens=draft_tokens)
        assert result.finish_reason == "length" and result.stats.json_complete is False
        assert len(result.token_ids) == 5
        with pytest.raises(json.JSONDecodeError):
            json.loads(result.text)
    free = run(engine, PROMPTS[0], None, max_tokens=5)
    assert free.stats.json_complete is None


def test_json_object_and_any_json(engine_for):
    engine = engine_for("ngram")
    obj = run(engine, PROMPTS[0], grammar_module.ANY_OBJECT, max_tokens=300)
    assert obj.stats.json_complete and isinstance(json.loads(obj.text), dict)


@pytest.mark.parametrize("schema, problem", [
    ({"type": "strang"}, "strang"),
    ({"type": "string", "format": "weird-format"}, "weird-format"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]}, "missing"),
    ({"type": "integer", "minimum": -1e20, "maximum": -1e19}, "/minimum is -1e+20, beyond"),
    ({"anyOf": [{"type": "string"}, {"type": "integer", "maximum": 2**60}]}, "/anyOf/1/maximum"),
    # a property named like a data keyword is a schema all the same
    ({"type": "object", "properties": {"default": {"type": "integer", "minimum": -1e20, "maximum": -1e19}}},
     "/properties/default/minimum"),
    ({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}, "write `anyOf`"),  # not llguidance's option
    ([1, 2], "must be a JSON object"),
    ("{}", "must be a JSON object"),
])
def test_an_invalid_or_unsupported_schema_is_a_request_error_naming_it(engine_for, schema, problem):
    engine = engine_for("ngram")
    with pytest.raises(RequestError, match="json_schema") as error:
        run(engine, PROMPTS[0], schema, max_tokens=8)
    assert problem in str(error.value)


def test_objects_hold_only_their_declared_properties_unless_the_schema_opens_them(matcher_for):
    """As vLLM's, SGLang's and llama.cpp's grammars: a random or weak model invented keys (a forced call's extra
    arguments broke the functions they were passed to)."""
    point = {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}
    schemas = {"top level": point, "in $defs and items": {"type": "array", "items": {"$ref": "#/$defs/P"},
                                                            "$defs": {"P": point}}}
    for name, schema in schemas.items():
        constraint, engine = matcher_for(schema)
        prefix = "[" if schema.get("type") == "array" else ""
        fits = lambda text: constraint.matcher.validate_tokens(engine.tokenizer.encode(prefix + text))  # noqa: E731
        assert fits('{"x": 1, "y": 2}') == len(engine.tokenizer.encode(prefix + '{"x": 1, "y": 2}')), name
        assert fits('{"x": 1, "zz": 2}') < len(engine.tokenizer.encode(prefix + '{"x": 1, "zz"')), name
    for opened in ({**point, "additionalProperties": {"type": "integer"}}, {"type": "object"},
                   {**point, "patternProperties": {"^z": {"type": "integer"}}}):
        constraint, engine = matcher_for(opened)
        text = '{"x": 1, "zz": 2}'
        assert constraint.matcher.validate_tokens(engine.tokenizer.encode(text)) == len(engine.tokenizer.encode(text))


def test_integers_without_bounds_have_at_most_16_digits(matcher_for):
    """A weak model forced to call read_file(start_line, end_line) wrote "end_line": 1000000000... until max_tokens:
    an integer schema without bounds gets JSON's exact-integer bounds, so the digits end."""
    for schema in ({"type": "integer"}, {"type": ["integer", "null"], "minimum": 1}):
        constraint, engine = matcher_for(schema)
        fits = lambda text: constraint.matcher.validate_tokens(engine.tokenizer.encode(text))  # noqa: E731
        for text in ("9007199254740991", "12"):
            assert fits(text) == len(engine.tokenizer.encode(text)), (schema, text)
        assert fits("90071992547409910") < len(engine.tokenizer.encode("90071992547409910")), schema
    constraint, engine = matcher_for({"type": "integer", "minimum": -5})  # its own lower bound stays
    assert constraint.matcher.validate_tokens(engine.tokenizer.encode("-6")) < len(engine.tokenizer.encode("-6"))


def test_closing_objects_leaves_allof_combinations_and_data_alone():
    from specd.daemon.engine.json_schema import closed_objects

    combined = {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}
    assert closed_objects(combined) == combined  # closing each part would forbid the other's property
    named = {"type": "object", "properties": {"properties": {"type": "object", "properties": {"x": {}}}},
             "default": {"properties": {}}}
    assert closed_objects(named) == {
        "type": "object", "additionalProperties": False, "default": {"properties": {}},
        "properties": {"properties": {"type": "object", "properties": {"x": {}}, "additionalProperties": False}}}


def test_a_schema_turns_token_healing_off(engine_for):
    engine = engine_for("ngram")
    result = run(engine, "def f(n):\n    return n * f", {"type": "integer"}, max_tokens=8)
    assert result.stats.healed_tokens == 0 and result.stats.json_complete
    int(result.text)


# -- the constraint itself -------------------------------------------------------------------------------------

@pytest.fixture
def matcher_for(make_engine):
    engine = make_engine("ngram")

    def make(schema=None):
        return grammar_module.compile_schema(schema or SCHEMAS["nested objects"], engine.tokenizer), engine

    return make


def test_a_full_mask_is_built_only_when_the_argmax_is_forbidden(matcher_for):
    constraint, engine = matcher_for({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    width = len(engine.tokenizer)
    brace = engine.tokenizer.encode("{")[0]
    logits = torch.zeros(1, width)
    logits[0, brace] = 5.0
    assert constraint.mask_logits(logits, argmax_only=True) is logits and constraint.masks_built == 0
    logits[0, brace + 1] = 9.0  # the argmax is now a token the grammar forbids
    masked = constraint.mask_logits(logits, argmax_only=True)
    assert constraint.masks_built == 1 and int(masked[0].argmax()) == brace
    full = constraint.mask_logits(logits)  # sampling needs the whole masked distribution
    assert constraint.masks_built == 2 and torch.isinf(full[0]).sum() == width - int(torch.isfinite(full[0]).sum())
    assert set(torch.isfinite(full[0]).nonzero().flatten().tolist()) == {
        t for t in range(width) if constraint.allows(t)}


def test_draft_rows_get_the_mask_after_the_tokens_before_them_and_the_matcher_rolls_back(matcher_for):
    constraint, engine = matcher_for()
    draft = engine.tokenizer.encode('{"user": {"name": "')
    forced_before = constraint.forced_tokens()
    width = len(engine.tokenizer)
    masked = constraint.mask_logits(torch.zeros(len(draft) + 1, width), draft)
    for row, token in enumerate(draft):
        assert torch.isfinite(masked[row, token])  # every draft token is allowed in its row
    assert constraint.forced_tokens() == forced_before  # the rows' states were rolled back
    bad = draft[:3] + [engine.tokenizer.encode("]")[0]] + draft[3:]
    assert constraint.trim_draft(bad, sampled=False) == draft[:3]
    assert constraint.trim_draft(bad, sampled=True) == bad  # a sampled draft is verified whole (see test_sampling)
    masked = constraint.mask_logits(torch.zeros(len(bad) + 1, width), bad)
    assert torch.isinf(masked[3, bad[3]]) and torch.isfinite(masked[4:]).all()  # rows past it never used


def test_forced_tokens_and_the_end_of_the_document(matcher_for):
    constraint, engine = matcher_for({"type": "object", "properties": {"color": {"enum": ["light blue"]}},
                                      "required": ["color"], "additionalProperties": False})
    forced = constraint.forced_tokens()
    text = engine.tokenizer.decode(forced)
    assert text.startswith('{"color": "') or '{"color": "light blue"}'.startswith(text)
    for token in engine.tokenizer.encode('{"color": "light blue"}'):
        assert not constraint.finished
        constraint.advance(token)
    assert constraint.finished and constraint.complete and constraint.forced_tokens() == []
    with pytest.raises(ValueError, match="breaks the JSON schema"):
        constraint.advance(engine.tokenizer.encode("x")[0])


def test_masks_combine(matcher_for):
    """Token healing and a grammar at once: a token is allowed when both allow it."""
    constraint, engine = matcher_for({"type": "string", "maxLength": 12})
    constraint.advance(engine.tokenizer.encode('"')[0])  # inside the string: most tokens fit
    healing = Constraint(engine.vocabulary, b"se")
    width = len(engine.tokenizer)
    both = AllOf([healing, constraint]).mask_logits(torch.zeros(1, width))[0]
    expected = {t for t in range(width) if torch.isfinite(healing.mask_logits(torch.zeros(1, width))[0, t])
                and constraint.allows(t)}
    assert set(torch.isfinite(both).nonzero().flatten().tolist()) == expected
    assert 1 < len(expected) < sum(constraint.allows(t) for t in range(width))


def test_forced_tokens_after_a_draft_and_the_state_rolled_back(matcher_for):
    constraint, engine = matcher_for({"type": "object", "properties": {"color": {"enum": ["light blue", "red"]},
                                                                       "n": {"type": "integer"}},
                                      "required": ["color", "n"], "additionalProperties": False})
    before = constraint.forced_tokens()
    draft = engine.tokenizer.encode('{"color": "light')
    after = constraint.forced_tokens(draft)  # the rest of the enum value and the next key are forced
    assert '{"color": "light blue", "n": '.startswith(engine.tokenizer.decode(draft + after))
    assert len(engine.tokenizer.decode(after)) >= len(' blue", "n')
    assert constraint.forced_tokens() == before  # rolled back
    assert constraint.forced_tokens(engine.tokenizer.encode('{"colour')) == []  # a draft the grammar forbids
    assert constraint.forced_tokens() == before


class FirstTokenOracle(Replay):
    """Proposes only the plain answer's next token: a longer draft can come only from forced tokens."""

    def propose(self, ctx, state):
        return Draft(super().propose(ctx, state).tokens[:1])


def test_tokens_forced_after_the_drafters_tokens_join_the_draft(make_engine, monkeypatch):
    engine = make_engine("ngram")
    saved = engine.drafter
    appended = []
    original = grammar_module.GrammarConstraint.forced_tokens

    def spy(self, after=()):
        forced = original(self, after)
        if after:
            appended.append(len(forced))
        return forced

    monkeypatch.setattr(grammar_module.GrammarConstraint, "forced_tokens", spy)
    try:
        schema = SCHEMAS["enums and anyOf"]
        plain = run(engine, PROMPTS[0], schema, max_tokens=160, draft_tokens=0)
        engine.drafter = FirstTokenOracle(plain.token_ids, plain.stats.prompt_tokens, 0)
        speculative = run(engine, PROMPTS[0], schema, max_tokens=160)
    finally:
        engine.drafter = saved
    assert speculative.token_ids == plain.token_ids
    assert sum(appended) > 0  # e.g. the rest of "light blue" and the next key after its first token
    assert speculative.stats.accepted_tokens == speculative.stats.drafted_tokens  # all of it was right


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_text_choices_answer_one_of_them_and_speculation_keeps_the_plain_answer(engine_for, strategy):
    """An answer that must be one of a few strings (Gemini's text/x.enum), one a prefix of another: greedy
    speculative output is the plain output, which is a whole choice; a cut one is marked incomplete."""
    engine = engine_for(strategy)
    choices = ("yes", "yes, but", "no", "not sure (hard to say)")
    for prompt in PROMPTS[:3]:
        plain = engine.generate(GenerationRequest(prompt=prompt, text_choices=choices, max_tokens=30, draft_tokens=0))
        engine.pool.clear()
        speculative = engine.generate(GenerationRequest(prompt=prompt, text_choices=choices, max_tokens=30))
        engine.pool.clear()
        assert speculative.token_ids == plain.token_ids and plain.text in choices and plain.stats.json_complete
    cut = engine.generate(GenerationRequest(prompt=PROMPTS[0], text_choices=("a" * 40,), max_tokens=2))
    assert cut.finish_reason == "length" and cut.stats.json_complete is False
    with pytest.raises(RequestError, match="non-empty strings"):
        engine.generate(GenerationRequest(prompt=PROMPTS[0], text_choices=("",), max_tokens=4))
