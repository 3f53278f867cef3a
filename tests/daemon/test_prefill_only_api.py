"""`prefill_only` on the native route: the prompt is read into the document's cache and nothing is written, so
the editor's next completion there feeds only what was typed since (llama-server's `n_predict: 0`)."""

from __future__ import annotations

import inspect
import re
import textwrap
import urllib.request

import pytest

from specd.daemon.engine.loop import EngineConfig
from specd.daemon.models.loading import load_engine

from .served_engine import TOKEN, serve

SOURCE = inspect.getsource(textwrap)
PREFIX, SUFFIX = SOURCE[2000:3200], SOURCE[3200:3500]


@pytest.fixture(scope="module")
def daemon(tiny_pair):
    config = EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


def test_a_warm_up_writes_nothing_and_the_next_keystroke_reuses_it(daemon):
    body = {"prefix": PREFIX, "suffix": SUFFIX, "document_id": "file:///a.py", "max_tokens": 8}
    warm_up = daemon.post("/specd/v1/complete", {**body, "prefill_only": True})
    assert warm_up.status == 200, warm_up.body
    assert (warm_up.body["text"], warm_up.body["finish_reason"]) == ("", "length")
    assert warm_up.body["usage"]["completion_tokens"] == 0
    assert warm_up.body["specd"]["prompt_tokens"] > 200 and warm_up.body["specd"]["cached_tokens"] == 0
    typed = daemon.post("/specd/v1/complete", {**body, "prefix": PREFIX + "x"})
    assert typed.status == 200, typed.body
    assert typed.body["specd"]["prompt_tokens"] - typed.body["specd"]["cached_tokens"] <= 4
    other = daemon.post("/specd/v1/complete", {**body, "prefix": PREFIX + "x", "document_id": "file:///b.py"})
    assert other.body["specd"]["cached_tokens"] == 0 and other.body["text"] == typed.body["text"]
    counted = metrics(daemon)
    assert (counted["specd_prefill_only_total"], counted["specd_completions_total"]) == (1, 2)


def metrics(daemon) -> dict[str, float]:
    request = urllib.request.Request(daemon.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in re.findall(r"^(specd_\w+) ([\d.e+-]+)$", text, re.M)}


def test_a_prefill_only_that_is_not_a_boolean_is_a_400_naming_it(daemon):
    answer = daemon.post("/specd/v1/complete", {"prefix": PREFIX, "prefill_only": "yes"})
    assert answer.status == 400
    assert "prefill_only" in answer.body["error"]["message"]


def test_logged_prompts_name_the_other_files_sent(tiny_pair, caplog):
    """With `log_prompts`, the native route's log line names the other files (their text goes into the prompt)."""
    config = EngineConfig(verifier=str(tiny_pair[0]), draft_strategy="ngram")
    body = {"prefix": "x = ", "max_tokens": 2, "path": "/p/new.py", "language": "python",
            "extra_context": [{"path": "/p/util.py", "text": "import os\n"}]}
    with caplog.at_level("INFO", logger="specd.server"):
        with serve(lambda: load_engine(config, progress=lambda m: None), log_prompts=True) as served:
            assert served.post("/specd/v1/complete", body).status == 200
    assert "other_files=['/p/util.py (10 chars)']" in caplog.text and "path='/p/new.py'" in caplog.text
