"""Token healing in the engine: the first tokens are the verifier's best among those that spell the removed text
again, the answer continues exactly what was typed, and speculative output stays identical to plain decoding."""

import inspect
import textwrap

import pytest

from fixtures.tiny_models import build_sentencepiece_tokenizer, build_tokenizer, write_tiny_llama
from specd.daemon.engine import loop as engine_module
from specd.daemon.engine.drafters.base import Draft, Drafter
from specd.daemon.engine.drafters.ngram import NgramDrafter
from specd.daemon.engine.loop import Engine, EngineConfig, GenerationRequest
from specd.daemon.engine.token_healing import Healing, heal_prompt
from specd.daemon.models.loading import load_engine

CODELLAMA = ("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>")
CODESTRAL = ("[PREFIX]", "[SUFFIX]", "[MIDDLE]")
KINDS = ["byte-level-fim", "byte-level-plain", "sentencepiece-codellama", "sentencepiece-legacy-codestral",
         "sentencepiece-plain"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    made = {}

    def make(kind: str) -> Engine:
        if kind not in made:
            if kind.startswith("byte-level"):
                tokenizer = build_tokenizer(fim=kind.endswith("fim"))
            else:
                specials = CODELLAMA if "codellama" in kind else CODESTRAL if "codestral" in kind else ()
                tokenizer = build_sentencepiece_tokenizer(specials, legacy="legacy" in kind)
            folder = write_tiny_llama(tmp_path_factory.mktemp(kind), tokenizer=tokenizer, layers=2)
            made[kind] = load_engine(EngineConfig(verifier=str(folder), draft_strategy="ngram"),
                                     progress=lambda message: None)
        made[kind].pool.clear()
        return made[kind]

    return make


def cursor_prompts() -> list[tuple[str, str, str]]:
    """(what, prefix, suffix): cursors inside words, after an indentation of spaces, after a tab, after CRLF."""
    source = inspect.getsource(textwrap)
    lines = source[source.find("    def _munge_whitespace") :].splitlines(keepends=True)[:60]
    prompts = []
    for number, line in enumerate(lines[5:40], start=5):
        before = "".join(lines[max(0, number - 12) : number])
        body = line.lstrip(" ")
        indent = line[: len(line) - len(body)]
        word = next((w for w in body.replace("(", " ").replace(".", " ").split() if len(w) >= 4 and w.isidentifier()),
                    None)
        if word and len(prompts) < 40:
            cut = len(indent) + body.find(word) + len(word) // 2
            prompts.append(("mid-word", before + line[:cut], line[cut:] + "".join(lines[number + 1 : number + 4])))
        if indent and number % 3 == 0:
            prompts.append(("indent", before + indent, body))
            tabbed = before.replace("    ", "\t")
            prompts.append(("tab", tabbed + indent.replace("    ", "\t"), body))
            prompts.append(("crlf", before.replace("\n", "\r\n") + indent, body))
    prompts.append(("non-ascii", "    label = 'caf\u00e9 na\u00ef", "ve'\n"))
    prompts.append(("issue-11", "def factorial(n):\n    if n <= 1:\n        return 1\n    return n * f", "\n"))
    prompts.append(("issue-11", "def area(width, height):\n    ", "\n"))
    return prompts


def written_bytes(engine, token: int) -> bytes:
    """What a generated token writes: its piece, or for a special token such as <s> its name."""
    return engine.vocabulary.pieces[token] or engine.tokenizer.convert_ids_to_tokens(token).replace("▁", " ").encode()


def allowed_ids(engine, removed: bytes) -> list[int]:
    """Tokens that write the removed text (or part of it), and add no space or tab to typed ones."""
    blanks = (b" ", b"\t")
    return [i for i, p in enumerate(engine.vocabulary.pieces) if p and (removed.startswith(p) or (
        p.startswith(removed) and not (removed[-1:] in blanks and p[len(removed) : len(removed) + 1] in blanks)))]


@pytest.mark.parametrize("kind", KINDS)
def test_the_first_token_is_the_verifiers_best_that_spells_the_removed_text(engines, kind):
    engine = engines(kind)
    healed = changed = 0
    for what, prefix, suffix in cursor_prompts():
        request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=6, draft_tokens=0)
        full = engine.prompt_ids(request)
        healing = heal_prompt(engine.vocabulary, full)
        result = engine.generate(request)
        assert result.stats.healed_tokens == len(healing.removed_ids)
        assert result.stats.prompt_tokens == len(healing.prompt_ids)
        if not healing.removed:
            continue
        healed += 1
        logits = engine.verifier.forward(healing.prompt_ids, engine.verifier.new_cache(), last_only=True)[-1]
        candidates = allowed_ids(engine, healing.removed)
        best = candidates[int(logits[candidates].argmax())]
        assert result.token_ids[0] == best, what
        changed += best != healing.removed_ids[0]
        # The answer continues the typed text exactly: the generated tokens write the removed text, then the
        # answer (whole characters: token_bytes).
        written = b"".join(written_bytes(engine, t) for t in result.token_ids)
        if written.startswith(healing.removed):
            assert result.text == written[len(healing.removed):].decode("utf-8", "ignore"), what
        else:  # max_tokens ran out inside the removed text
            assert healing.removed.startswith(written) and result.text == "", what
    assert healed >= 10 and changed >= 1  # the cases the test is about happened


@pytest.mark.parametrize("kind", KINDS)
def test_a_completion_after_typed_indentation_adds_no_space_nor_tab(engines, kind):
    """Issue 11, item 2: the spaces or tabs typed at the cursor are all the indentation the line gets."""
    engine = engines(kind)
    healed = 0
    for what, prefix, suffix in cursor_prompts():
        if prefix[-1:] not in (" ", "\t"):
            continue
        request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=6, draft_tokens=0)
        result = engine.generate(request)
        if result.stats.healed_tokens:
            healed += 1
            # The first byte after the typed text (the text may start later: bytes that form no character, which
            # a random model writes, are dropped from it)
            removed = heal_prompt(engine.vocabulary, engine.prompt_ids(request)).removed
            written = b"".join(written_bytes(engine, t) for t in result.token_ids)
            assert written[len(removed) : len(removed) + 1] not in (b" ", b"\t"), what
    assert healed >= 5


@pytest.mark.parametrize("kind", ["byte-level-fim", "byte-level-plain"])
def test_cursor_inside_a_word_and_after_indentation_are_healed(engines, kind):
    """Issue 11, items 1 and 2, on a tokenizer where both cursors end inside a token."""
    engine = engines(kind)
    for prefix, removed in [("def f(n):\n    return n * f", b" f"), ("def area(width, height):\n    ", b"    ")]:
        full = engine.prompt_ids(GenerationRequest(prompt=prefix, suffix="\n"))
        assert heal_prompt(engine.vocabulary, full).removed.endswith(removed)
        result = engine.generate(GenerationRequest(prompt=prefix, suffix="\n", max_tokens=4))
        assert result.stats.healed_tokens >= 1
        off = engine.generate(GenerationRequest(prompt=prefix, suffix="\n", max_tokens=4, token_healing=False))
        assert off.stats.healed_tokens == 0 and off.stats.prompt_tokens == len(full)


def test_a_prompt_ending_in_a_marker_or_asking_nothing_is_not_healed(engines):
    engine = engines("byte-level-fim")
    request = GenerationRequest(prompt="def f(n):\n", suffix="    return n\n", max_tokens=4)  # empty cursor line
    assert engine.generate(request).stats.healed_tokens == 0  # the prompt ends in <fim_middle>
    raw = engine.tokenizer.decode(engine.prompt_ids(request), skip_special_tokens=False)
    assert raw.endswith("<fim_middle>")
    assert engine.generate(GenerationRequest(prompt=raw, max_tokens=4)).stats.healed_tokens == 0
    nothing = engine.generate(GenerationRequest(prompt="x = compu", max_tokens=0))
    assert nothing.token_ids == [] and nothing.stats.healed_tokens == 0


# -- lossless ---------------------------------------------------------------------------------------------------


def roll_back_four(vocab, prompt_ids):
    """Back up four tokens (fewer before a special token): the removed text is then often longer than any
    token, and several constrained steps follow, some of them inside speculative verification passes."""
    keep = len(prompt_ids)
    while keep > max(1, len(prompt_ids) - 4) and vocab.pieces[prompt_ids[keep - 1]] is not None:
        keep -= 1
    removed = b"".join(vocab.pieces[t] for t in prompt_ids[keep:])
    return Healing(list(prompt_ids[:keep]), list(prompt_ids[keep:]), removed)


class Replay(Drafter):
    """Proposes the plain run's own tokens (all accepted), or each of them plus one (none accepted)."""

    name = "replay"

    def __init__(self, answer, prompt_length, shift, vocab):
        self.answer, self.prompt_length, self.shift, self.vocab = answer, prompt_length, shift, vocab

    def propose(self, ctx, state):
        done = len(ctx.ids) - self.prompt_length
        return Draft([(t + self.shift) % self.vocab for t in self.answer[done : done + ctx.max_tokens]])


def constrained_steps(engine, removed: bytes, tokens: list[int]) -> int:
    written, steps = b"", 0
    while len(written) < len(removed) and steps < len(tokens):
        written += engine.vocabulary.pieces[tokens[steps]]
        steps += 1
    return steps


@pytest.mark.parametrize("roll_back", ["dynamic", "four tokens"])
@pytest.mark.parametrize("drafter", ["ngram", "model", "oracle", "wrong"])
def test_greedy_speculative_equals_plain_with_healing(make_engine, monkeypatch, roll_back, drafter):
    engine = make_engine("model" if drafter == "model" else "ngram")
    if roll_back == "four tokens":
        monkeypatch.setattr(engine_module, "heal_prompt", roll_back_four)
    saved = engine.drafter
    multi_step = drafted = healed = 0
    try:
        for what, prefix, suffix in cursor_prompts()[::2]:
            request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=24)
            engine.drafter = saved if drafter != "ngram" else NgramDrafter(min_ngram=1, unigram_tokens=16)
            engine.pool.clear()
            plain = engine.generate(GenerationRequest(**{**request.__dict__, "draft_tokens": 0}))
            if drafter in ("oracle", "wrong"):
                engine.drafter = Replay(plain.token_ids, plain.stats.prompt_tokens, 0 if drafter == "oracle" else 1,
                                        len(engine.tokenizer))
            engine.pool.clear()
            speculative = engine.generate(request)
            assert speculative.token_ids == plain.token_ids, what
            assert speculative.text == plain.text, what
            if drafter == "oracle":
                assert speculative.stats.accepted_tokens == speculative.stats.drafted_tokens
            healed += plain.stats.healed_tokens > 0
            drafted += speculative.stats.drafted_tokens
            removed = heal_prompt_of(engine, request)
            multi_step += constrained_steps(engine, removed, plain.token_ids) >= 2
    finally:
        engine.drafter = saved
    assert healed >= 5 and (drafted > 0 or drafter == "wrong")
    if roll_back == "four tokens":
        assert multi_step >= 5  # the constraint ran inside verification passes


def heal_prompt_of(engine, request) -> bytes:
    return engine_module.heal_prompt(engine.vocabulary, engine.prompt_ids(request)).removed


class BreakingDrafter(Drafter):
    """While the healed text is being written, proposes only a token that cannot continue it."""

    name = "breaking"

    def propose(self, ctx, state):
        return Draft([0] * ctx.max_tokens)  # <|endoftext|> never spells text


def test_draft_tokens_that_break_the_constraint_are_cut_before_verification(make_engine, monkeypatch):
    engine = make_engine("ngram")
    monkeypatch.setattr(engine_module, "heal_prompt", roll_back_four)
    verified = []  # (healed text still to write, tokens drafted) per verification pass
    original = Engine._verify

    def spy(self, slot, token, draft, *args):
        healing = args[-1].parts[0]  # constraints.AllOf: token healing first, then a JSON schema if any
        verified.append((healing.remaining, len(draft)))
        return original(self, slot, token, draft, *args)

    monkeypatch.setattr(Engine, "_verify", spy)
    saved, engine.drafter = engine.drafter, BreakingDrafter()
    try:
        _, prefix, suffix = cursor_prompts()[0]
        request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=8)
        plain = engine.generate(GenerationRequest(**{**request.__dict__, "draft_tokens": 0}))
        assert constrained_steps(engine, heal_prompt_of(engine, request), plain.token_ids) >= 3
        verified.clear()
        speculative = engine.generate(request)
        assert speculative.token_ids == plain.token_ids
        constrained = [drafted for remaining, drafted in verified if remaining]
        assert len(constrained) >= 2 and not any(constrained)  # cut, never sent to the verifier
        assert any(drafted for remaining, drafted in verified if not remaining)  # the drafter did propose
    finally:
        engine.drafter = saved


def test_masked_verification_is_needed(make_engine, monkeypatch):
    """Negative control: verification passes that ignore the constraint change greedy output."""
    engine = make_engine("ngram")
    monkeypatch.setattr(engine_module, "heal_prompt", roll_back_four)
    differs = 0
    for what, prefix, suffix in cursor_prompts()[::2]:
        request = GenerationRequest(prompt=prefix, suffix=suffix, max_tokens=12)
        engine.pool.clear()
        plain = engine.generate(GenerationRequest(**{**request.__dict__, "draft_tokens": 0}))
        engine.pool.clear()
        with monkeypatch.context() as patch:
            patch.setattr(engine_module.Constraint, "mask_logits",
                          lambda self, logits, draft=(), argmax_only=False:
                          logits if len(draft) else _masked_first(self, logits))
            patch.setattr(engine_module.Constraint, "agreeing_prefix", lambda self, draft: len(draft))
            try:
                broken = engine.generate(request)
            except ValueError:  # the constraint saw a token it forbids
                differs += 1
                continue
        differs += broken.token_ids != plain.token_ids
    assert differs > 0


def _masked_first(constraint, logits):
    mask = constraint.vocab.allowed(constraint.remaining, logits.shape[-1], logits.device)
    return logits.masked_fill(~mask, float("-inf"))


def test_accounting_reports_the_healed_tokens(engines):
    engine = engines("byte-level-plain")
    result = engine.generate(GenerationRequest(prompt="def f(n):\n    return n * f", max_tokens=4))
    assert result.stats.to_dict()["healed_tokens"] == result.stats.healed_tokens >= 1
