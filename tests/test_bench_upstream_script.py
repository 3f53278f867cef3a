"""scripts/bench_upstream.py end to end with a tiny tokenizer: it starts its stand-in upstream and a daemon in front
of it, and prints what it promises."""

import re
import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import build_tokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_upstream.py"


def test_bench_upstream_prints_paired_latencies(tmp_path):
    build_tokenizer().save_pretrained(tmp_path / "tokenizer")
    done = subprocess.run([sys.executable, str(SCRIPT), "--requests", "4", "--warmup", "1", "--tokens", "4",
                           "--tokenizer", str(tmp_path / "tokenizer"), "--home", str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4 paired requests" in done.stdout
    for label in ("direct to upstream", "through specd", "added by specd (paired)"):
        assert re.search(re.escape(label) + r" +p50 +-?[0-9.]+ ms +p95 +-?[0-9.]+ ms", done.stdout), done.stdout
    assert re.search(r"through specd / direct +p50 [0-9.]+x", done.stdout)
