"""Property tests of every HTTP route against a real tiny engine (byte-level BPE, so characters split over
tokens), with random Unicode in every text field: never a 5xx, text that is not Unicode is a 400 naming its
field, an answer is whole characters with no U+FFFD the input did not have, and streaming changes nothing."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specd.daemon.engine.loop import EngineConfig
from specd.daemon.models.loading import load_engine
from tests.daemon.served_engine import answer_text, serve

SURROGATE = re.compile("[\ud800-\udfff]")
PROPERTY = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

pieces = st.sampled_from(["def f(x):", "\n", "\r\n", "\r", "    ", "\t", " ", "return", "'", "é", "中", "😀",
                          "👩‍💻", "\ufeff", "\ufffd", "\x00", "\u200b", "<fim_prefix>", "<|endoftext|>", "\ud83d",
                          "\udc00"])
texts = st.lists(pieces, max_size=10).map("".join)


@st.composite
def requests(draw) -> tuple[str, dict, dict[str, str]]:
    """(route, body, {field path: text}) with random text in the route's text fields."""
    route = draw(st.sampled_from(["/specd/v1/complete", "/v1/completions", "/v1/chat/completions", "/v1/messages"]))
    fields: dict[str, str] = {}

    def text(path: str) -> str:
        fields[path] = draw(texts)
        return fields[path]

    body: dict = {"max_tokens": draw(st.integers(0, 6)), "stream": draw(st.booleans()),
                  # Sampling settings at the edges of float32 and 64 bits.
                  "temperature": draw(st.sampled_from([None, 0.0, 1e-300, 0.7, 2.0])),
                  "top_p": draw(st.sampled_from([None, 1e-300, 0.5, 1.0])),
                  "seed": draw(st.sampled_from([None, 0, -(2**63), 2**64 - 1]))}
    if draw(st.booleans()):
        stops = [s for s in (draw(texts) for _ in range(draw(st.integers(1, 2)))) if s]  # "" is refused
        fields.update((f"stop[{i}]", stop) for i, stop in enumerate(stops))  # the paths the body has
        body["stop"] = stops or None
    if route == "/specd/v1/complete":
        body.update(prefix=text("prefix"), suffix=text("suffix"), mode=draw(st.sampled_from([None, "line", "block"])),
                    language=draw(st.sampled_from([None, "python", "rust"])))
        if draw(st.booleans()):
            body["extra_context"] = [{"path": text("extra_context[0].path"), "text": text("extra_context[0].text")}]
    elif route == "/v1/completions":
        body["prompt"] = text("prompt")
        if draw(st.booleans()):
            body["suffix"] = text("suffix")
    elif route == "/v1/chat/completions":
        body["messages"] = [{"role": "user", "content": text("messages[0].content")}]
    else:  # Anthropic: max_tokens >= 1, temperature <= 1, stop_sequences, a system prompt
        body.update(model="specd", max_tokens=max(1, body["max_tokens"]), system=text("system"),
                    messages=[{"role": "user", "content": text("messages[0].content")}],
                    temperature=min(body["temperature"], 1.0) if body["temperature"] is not None else None,
                    stop_sequences=body.pop("stop", None))
        fields = {path.replace("stop[", "stop_sequences["): value for path, value in fields.items()}
    return route, body, fields


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from tests.fixtures.tiny_models import write_tiny_pair

    verifier, _ = write_tiny_pair(tmp_path_factory.mktemp("tiny"))
    config = EngineConfig(verifier=str(verifier), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


@PROPERTY
@given(request=requests())
def test_any_text_on_any_route(daemon, request):
    route, body, fields = request
    answer = daemon.post(route, body)
    assert answer.status < 500, answer.body
    # As JSON sends them: a high surrogate followed by a low one is a pair, one character.
    received = {path: json.loads(json.dumps(value)) for path, value in fields.items()}
    stops = body.get("stop") or body.get("stop_sequences") or []
    broken = [path for path, value in received.items() if SURROGATE.search(value) and
              (not path.startswith("stop") or fields[path] in stops)]
    if broken:
        assert answer.status == 400, answer.body
        message = answer.body["error"]["message"]
        assert re.match(r"'([^']+)' is not valid Unicode: an unpaired UTF-16 surrogate", message), message
        assert message.split("'")[1] in broken
        return
    if route == "/v1/messages" and not fields["messages[0].content"]:  # Anthropic's rule: a user turn says something
        assert answer.status == 400 and "must have non-empty content" in answer.body["error"]["message"], answer.body
        return
    assert answer.status == 200, answer.body
    assert not any("error" in event for event in answer.events), answer.events  # a stream fails in-band
    text = answer_text(answer)
    assert "\ufffd" not in text or any("\ufffd" in value for value in fields.values())
    assert not any(stop in text for stop in stops)
    if body.get("mode") == "line":
        assert "\n" not in text
    greedy = body["temperature"] == 0.0 or (body["temperature"] is None and route != "/v1/messages")  # Anthropic: 1
    if body["stream"] and greedy:  # the same answer either way
        assert answer_text(daemon.post(route, {**body, "stream": False})) == text
