import inspect
import textwrap

import pytest

from fixtures.tiny_models import build_tokenizer, write_tiny_llama, write_tiny_pair
from specd.daemon.engine.loop import Engine, EngineConfig
from specd.daemon.models.loading import load_engine


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    return write_tiny_pair(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def foreign_drafter(tmp_path_factory):
    """A tiny model whose tokenizer was trained differently: it must not draft for the tiny verifier."""
    import difflib

    other_text = [inspect.getsource(difflib)]
    tokenizer = build_tokenizer(vocab_size=512, texts=other_text)
    return write_tiny_llama(tmp_path_factory.mktemp("foreign"), tokenizer=tokenizer, layers=1)


@pytest.fixture(scope="session")
def make_engine(tiny_pair):
    verifier, drafter = tiny_pair
    engines = {}

    def make(strategy: str = "ngram", **overrides) -> Engine:
        key = (strategy, tuple(sorted(overrides.items())))
        if key not in engines:
            config = EngineConfig(verifier=str(verifier), drafter=str(drafter) if "model" in strategy or strategy == "auto" else None,
                                  draft_strategy=strategy, **overrides)
            engines[key] = load_engine(config, progress=lambda message: None)
        engine = engines[key]
        engine.pool.clear()
        return engine

    return make


@pytest.fixture(scope="session")
def code_prompts():
    """(prefix, suffix) pairs cut from standard-library source at several places."""
    source = inspect.getsource(textwrap)
    cuts = range(900, len(source) - 400, (len(source) - 1300) // 4)
    return [(source[c - 400 : c], source[c : c + 150]) for c in cuts]
