"""The VS Code/Cursor extension builds from a clean checkout into a .vsix, and vsce accepts its manifest."""

import json
import shutil
import subprocess
import zipfile

import pytest

from .conftest import EDITOR_CONFIGS

NPM = shutil.which("npm")
NODE = shutil.which("node")


def node_major() -> int:
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout
    return int(out.strip().lstrip("v").split(".")[0])


@pytest.mark.skipif(not (NPM and NODE), reason="node/npm not installed")
def test_vsix_builds_from_a_clean_copy(tmp_path):
    if node_major() < 20:
        pytest.skip("@vscode/vsce 3 needs Node 20 or later")
    source = EDITOR_CONFIGS / "vscode"
    work = tmp_path / "vscode"
    # Only what git would check out: no node_modules, dist or old .vsix from a local build.
    shutil.copytree(source, work, ignore=shutil.ignore_patterns("node_modules", "dist", "out", "*.vsix"))
    install = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=work, capture_output=True, text=True,
                             timeout=600)
    if install.returncode != 0 and any(s in install.stderr for s in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED",
                                                                      "ETIMEDOUT", "network")):
        pytest.skip(f"npm registry unreachable: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr
    package = subprocess.run([NPM, "run", "package"], cwd=work, capture_output=True, text=True, timeout=600)
    assert package.returncode == 0, package.stdout + package.stderr
    assert "DONE  Packaged" in package.stdout

    with zipfile.ZipFile(work / "specd.vsix") as vsix:
        names = set(vsix.namelist())
        assert {"extension.vsixmanifest", "extension/package.json", "extension/dist/extension.js",
                "extension/readme.md"} <= names
        assert not any("node_modules" in n or n.endswith(".ts") for n in names)
        manifest = json.loads(vsix.read("extension/package.json"))
        bundle = vsix.read("extension/dist/extension.js").decode()
    assert manifest["contributes"] == json.loads((source / "package.json").read_text())["contributes"]
    # The bundle really contains the language client and the commands it wires.
    assert "textDocument/inlineCompletion" in bundle and "specd.showLog" in bundle
