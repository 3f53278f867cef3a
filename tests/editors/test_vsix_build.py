"""The VS Code/Cursor extension builds from a clean copy into a .vsix, and vsce accepts its manifest."""

import json
import subprocess
import zipfile

import pytest

from .vscode_build import NODE, SOURCE, built_extension


def node_major() -> int:
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout
    return int(out.strip().lstrip("v").split(".")[0])


def test_vsix_builds_from_a_clean_copy():
    if NODE and node_major() < 20:
        pytest.skip("@vscode/vsce 3 needs Node 20 or later")
    work = built_extension()  # npm ci + npm run package (typecheck, esbuild, vsce) on a copy git would check out
    with zipfile.ZipFile(work / "specd.vsix") as vsix:
        names = set(vsix.namelist())
        assert {"extension.vsixmanifest", "extension/package.json", "extension/dist/extension.js",
                "extension/readme.md"} <= names
        assert not any("node_modules" in n or n.endswith(".ts") for n in names)
        manifest = json.loads(vsix.read("extension/package.json"))
        bundle = vsix.read("extension/dist/extension.js").decode()
    assert manifest["contributes"] == json.loads((SOURCE / "package.json").read_text())["contributes"]
    # The bundle really contains the language client and the commands it wires.
    assert "textDocument/inlineCompletion" in bundle and "specd.showLog" in bundle
