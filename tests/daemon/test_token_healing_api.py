"""Token healing through the HTTP routes: on by default for completions (native route and /v1/completions, a
raw prompt too), off for chat, switchable per request, and reported in the `specd` accounting."""

from __future__ import annotations

import pytest

from specd.daemon.api.schema import parse_chat, parse_completion, parse_native
from specd.daemon.engine.loop import EngineConfig
from specd.daemon.models.loading import load_engine

from .served_engine import answer_text, serve

TYPED = "def f(n):\n    return n * f"  # the tiny tokenizer ends this in " f", which longer tokens extend


@pytest.fixture(scope="module")
def daemon(tiny_pair):
    config = EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


ROUTES = [
    ("/specd/v1/complete", {"prefix": TYPED, "suffix": "\n"}, lambda on: {"token_healing": on}),
    ("/v1/completions", {"prompt": TYPED, "suffix": "\n"}, lambda on: {"specd": {"token_healing": on}}),
    ("/v1/completions", {"prompt": TYPED}, lambda on: {"specd": {"token_healing": on}}),  # raw prompt, as Zed's
]


@pytest.mark.parametrize("route, body, switch", ROUTES)
def test_completions_heal_by_default_and_can_turn_it_off(daemon, route, body, switch):
    healed = daemon.post(route, {**body, "max_tokens": 4})
    assert healed.status == 200, healed.body
    assert healed.body["specd"]["healed_tokens"] == 1
    explicit = daemon.post(route, {**body, "max_tokens": 4, **switch(True)})
    assert explicit.body["specd"]["healed_tokens"] == 1 and answer_text(explicit) == answer_text(healed)
    whole = daemon.post(route, {**body, "max_tokens": 4, **switch(False)})
    assert whole.status == 200, whole.body
    assert whole.body["specd"]["healed_tokens"] == 0
    assert whole.body["specd"]["prompt_tokens"] == healed.body["specd"]["prompt_tokens"] + 1


def test_chat_is_not_healed_unless_asked():
    """A chat prompt ends in the chat template's own text (the assistant's turn), not in the user's typing."""
    chat = {"messages": [{"role": "user", "content": TYPED}]}
    assert parse_chat(chat)[1].token_healing is False
    assert parse_chat({**chat, "specd": {"token_healing": True}})[1].token_healing is True
    assert parse_completion({"prompt": TYPED}).token_healing is True
    assert parse_native({"prefix": TYPED}).token_healing is True


@pytest.mark.parametrize("route, body", [
    ("/specd/v1/complete", {"prefix": TYPED, "token_healing": "yes"}),
    ("/v1/completions", {"prompt": TYPED, "specd": {"token_healing": 1}}),
])
def test_a_token_healing_that_is_not_a_boolean_is_a_400_naming_it(daemon, route, body):
    answer = daemon.post(route, body)
    assert answer.status == 400
    assert "token_healing" in answer.body["error"]["message"]
