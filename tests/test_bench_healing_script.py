"""scripts/bench_healing.py end to end on a tiny random model: it runs, cuts where it says, writes the promised
keys, and greedy speculative output stays identical to plain decoding with healing on and off."""

import json
import os
import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import write_tiny_pair

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_healing.py"


def test_bench_healing_on_a_tiny_model(tmp_path):
    verifier, _ = write_tiny_pair(tmp_path / "models")
    out = tmp_path / "healing.json"
    env = {**os.environ, "SPECD_HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, str(SCRIPT), "--verifier", str(verifier), "--limit", "1", "--max-tokens", "8",
                    "--threads", "1", "--json", str(out)], check=True, env=env, timeout=600)
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"mid-word", "indent", "tab", "all"}
    for entry in report["summary"].values():
        for side in ("on", "off"):
            assert {"prompts", "line_match", "first_word", "healed", "identical"} <= set(entry[side])
            assert entry[side]["identical"] == 1.0
    assert report["summary"]["all"]["off"]["healed"] == 0.0
    for cut in report["cuts"]:
        if cut["kind"] == "mid-word":  # the cursor is inside a word: typed part and rest are both word characters
            assert (cut["prefix"][-1].isalnum() or cut["prefix"][-1] == "_") and cut["word_rest"] and cut["line_rest"].startswith(cut["word_rest"])
        else:  # right after the indentation, spaces or tabs
            assert cut["prefix"].endswith("\t" if cut["kind"] == "tab" else "    ")
            assert cut["line_rest"].startswith(cut["word_rest"]) and not cut["line_rest"][0].isspace()
