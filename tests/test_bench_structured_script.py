"""scripts/bench_structured.py end to end on a tiny random model: it runs every side, writes the promised keys, every
answer validates, and speculative answers (with and without forced-token drafts) are plain's token for token."""

import json
import os
import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import write_tiny_pair

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_structured.py"


def bench_report(folder: Path, *args: str) -> dict:
    """The script's --json report, run on a tiny random model in its own SPECD_HOME."""
    command = [sys.executable, str(SCRIPT), "--verifier", str(write_tiny_pair(folder / "models")[0]), *args,
               "--json", str(folder / "structured.json")]
    subprocess.run(command, check=True, env={**os.environ, "SPECD_HOME": str(folder / "home")}, timeout=600)
    return json.loads((folder / "structured.json").read_text())


def test_bench_structured_on_a_tiny_model(tmp_path):
    report = bench_report(tmp_path, "--backend", "torch", "--limit", "3", "--repeats", "1", "--threads", "1")
    assert set(report["summary"]) == {"plain", "drafter", "forced"}
    for side, entry in report["summary"].items():
        assert entry["valid_rate"] == 1.0 and entry["tokens_per_pass"] > 0
        if side != "plain":
            assert entry["identical_rate"] == 1.0
            assert entry["speedup_vs_constrained_plain"] > 0 and entry["end_to_end_speedup"] > 0
    assert report["summary"]["forced"]["forced_tokens"] > 0 == report["summary"]["drafter"]["forced_tokens"]
    assert report["summary"]["forced"]["tokens_per_pass"] > report["summary"]["drafter"]["tokens_per_pass"]
    assert len(report["cases"]) == 3 and report["environment"]["backend"] == "torch"
