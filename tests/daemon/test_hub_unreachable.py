"""A hub id on a machine whose model hub does not answer: a clear error within seconds (huggingface_hub alone retries
each file for about 50 s), or the cached copy. The hub is a closed local port, so the tests do not depend on the
machine's network."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

LOAD = """
import json, sys, time
from specd.daemon.models.loading import load_model
import torch
said, started = [], time.perf_counter()
try:
    load_model(sys.argv[1], torch.device("cpu"), torch.float32, progress=said.append)
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
print(json.dumps({"seconds": time.perf_counter() - started, "error": error, "said": said}))
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(tmp_path, spec: str, script: str = LOAD) -> dict:
    """`script` run on `spec` with the hub at a closed port and huggingface_hub's cache in tmp_path; its report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SPECD_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf"),
               SPECD_HOME=str(tmp_path / "specd"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script, spec], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_hub_id_the_hub_cannot_serve_fails_fast_and_says_what_to_do(tmp_path):
    result = load(tmp_path, "SomeOrg/not-cached-model")
    assert result["seconds"] < 15, result
    error = result["error"]
    assert error.startswith("HubUnreachableError: cannot load 'SomeOrg/not-cached-model'"), error
    assert "does not answer" in error and "Connection refused" in error
    assert "Connect to the network" in error and "HF_HUB_OFFLINE=1" in error and ".gguf" in error


def test_a_cached_hub_model_loads_while_the_hub_does_not_answer(tmp_path, tiny_pair):
    repo = tmp_path / "hf" / "hub" / "models--SomeOrg--tiny"
    commit = "0" * 40
    shutil.copytree(tiny_pair[0], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    result = load(tmp_path, "SomeOrg/tiny")
    assert result["error"] is None and result["seconds"] < 15, result
    assert any("does not answer" in line and "from the cache" in line for line in result["said"]), result
