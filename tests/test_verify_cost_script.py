import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import write_tiny_llama

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_verify_cost.py"


def test_verify_cost_script_prints_a_ratio_per_k(tmp_path):
    model = write_tiny_llama(tmp_path / "model")
    done = subprocess.run([sys.executable, str(SCRIPT), "--verifier", str(model), "--context", "64",
                           "--ks", "1,3", "--repeats", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("k=")]
    assert len(lines) == 2
    assert "1.00x a 1-token step" in lines[0]
    assert "x a 1-token step" in lines[1]
