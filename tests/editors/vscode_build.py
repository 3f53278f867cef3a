"""The VS Code extension built once per source state: `npm ci` and `npm run package` on a clean copy of
editor-configs/vscode, cached under .test-cache/ by a hash of the sources (node_modules, dist and .vsix left
out), so the tests that need the .vsix or the compiled sources do not build it again."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import EDITOR_CONFIGS, REPO

NPM = shutil.which("npm")
NODE = shutil.which("node")
SOURCE = EDITOR_CONFIGS / "vscode"
IGNORED = ("node_modules", "dist", "out", "*.vsix")


def source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCE.rglob("*")):
        relative = path.relative_to(SOURCE)
        if path.is_file() and relative.parts[0] not in ("node_modules", "dist", "out") and path.suffix != ".vsix":
            digest.update(str(relative).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def built_extension() -> Path:
    """The folder of a built copy (node_modules, dist/extension.js, specd.vsix). Skips the test when Node
    or npm is missing or the npm registry cannot be reached."""
    if not (NPM and NODE):
        pytest.skip("node/npm not installed")
    work = REPO / ".test-cache" / f"vscode-{source_hash()}"
    if (work / "specd.vsix").exists():
        return work
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(SOURCE, work, ignore=shutil.ignore_patterns(*IGNORED))
    install = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=work, capture_output=True, text=True,
                             timeout=900)
    if install.returncode != 0 and any(s in install.stderr for s in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED",
                                                                      "ETIMEDOUT", "network")):
        pytest.skip(f"npm registry unreachable: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr
    package = subprocess.run([NPM, "run", "package"], cwd=work, capture_output=True, text=True, timeout=900)
    assert package.returncode == 0 and "DONE  Packaged" in package.stdout, package.stdout + package.stderr
    return work
