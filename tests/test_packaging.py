"""`pip install .` ships everything under the `specd` name, nothing bare, and the editor snippets with it."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_only_under_specd(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("specd-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"specd", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "specd/__init__.py" not in names  # a namespace: nothing else may claim `specd`
    for module in ("specd/daemon/engine/loop.py", "specd/daemon/cli/main.py", "specd/daemon/api/openai.py", "specd/lsp/server.py",
                   "specd/editor_configs/zed/settings.json", "specd/editor_configs/neovim/specd.lua",
                   # what `specd config vscode` says to copy and build (editor_config.vscode_install_note)
                   "specd/editor_configs/vscode/README.md", "specd/editor_configs/vscode/package.json",
                   "specd/editor_configs/vscode/package-lock.json", "specd/editor_configs/vscode/src/extension.ts",
                   "specd/editor_configs/vscode/.vscodeignore"):
        assert module in names
    assert not any("node_modules" in n for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "specd = specd.daemon.cli.main:main" in entry_points
