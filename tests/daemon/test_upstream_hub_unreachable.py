"""An upstream's tokenizer named by a hub id on a machine whose model hub does not answer: a clear error within
seconds (huggingface_hub alone retries each file for about 50 s), or the cached copy, as for a local model
(test_hub_unreachable.py). The hub is a closed local port, so the tests do not depend on the machine's network."""

from __future__ import annotations

import shutil

from .test_hub_unreachable import load as load_with

LOAD = """
import json, sys, time
from specd.daemon.models.upstream import load_tokenizer
said, started = [], time.perf_counter()
try:
    tokenizer = load_tokenizer(sys.argv[1], progress=said.append)
    error, size = None, len(tokenizer)
except Exception as e:
    error, size = f"{type(e).__name__}: {e}", None
print(json.dumps({"seconds": time.perf_counter() - started, "error": error, "said": said, "size": size}))
"""


def load(tmp_path, spec: str) -> dict:
    return load_with(tmp_path, spec, LOAD)


def cache(tmp_path, repo_id: str, files) -> None:
    repo = tmp_path / "hf" / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "snapshots" / commit).mkdir(parents=True)
    for file in files:
        shutil.copy(file, repo / "snapshots" / commit / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_an_upstream_tokenizer_the_hub_cannot_serve_fails_fast_and_says_what_to_do(tmp_path):
    result = load(tmp_path, "SomeOrg/not-cached-model")
    assert result["seconds"] < 15, result
    error = result["error"]
    assert error.startswith("HubUnreachableError: cannot load 'SomeOrg/not-cached-model'"), error
    assert "does not answer" in error and "Connection refused" in error and "HF_HUB_OFFLINE=1" in error


def test_a_cached_upstream_tokenizer_loads_while_the_hub_does_not_answer(tmp_path, tiny_pair):
    cache(tmp_path, "SomeOrg/tiny", tiny_pair[0].iterdir())  # a model's snapshot
    result = load(tmp_path, "SomeOrg/tiny")
    assert result["error"] is None and result["seconds"] < 15 and result["size"] == 512, result
    assert any("does not answer" in line and "from the cache" in line for line in result["said"]), result
    # its tokenizer's files alone (AutoTokenizer on a tokenizer repo without a config.json)
    cache(tmp_path, "SomeOrg/tokenizer-only", tiny_pair[0].glob("tokenizer*"))
    result = load(tmp_path, "SomeOrg/tokenizer-only")
    assert result["error"] is None and result["seconds"] < 15 and result["size"] == 512, result
    assert any("does not answer" in line and "SomeOrg/tokenizer-only from the cache" in line
               for line in result["said"]), result
