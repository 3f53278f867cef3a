"""Where the VS Code extension looks for `specd` when `specd.serverPath` does not name a file (issue 10, fault
4): src/serverPath.ts bundled with the extension's own esbuild and run under Node."""

from __future__ import annotations

import json
import subprocess

from .vscode_build import NODE, built_extension

PROBE = r"""
const { findServer, candidateFolders } = require(process.argv[1]);
const cases = JSON.parse(process.argv[2]);
const out = cases.map(({ configured, env, platform, home, workspaceFolders, executables }) => {
  const e = { env, platform, home, workspaceFolders, isExecutable: (f) => executables.includes(f) };
  return { found: findServer(configured, e) ?? null, folders: candidateFolders(e) };
});
console.log(JSON.stringify(out));
"""


def find(cases: list[dict], tmp_path) -> list[dict]:
    work = built_extension()
    bundle = tmp_path / "serverPath.js"
    esbuild = work / "node_modules" / ".bin" / "esbuild"
    subprocess.run([str(esbuild), str(work / "src" / "serverPath.ts"), "--bundle", "--platform=node", "--format=cjs",
                    f"--outfile={bundle}"], check=True, capture_output=True, timeout=120)
    defaults = {"configured": "specd", "env": {"PATH": "/usr/bin:/bin"}, "platform": "linux", "home": "/home/u",
                "workspaceFolders": [], "executables": []}
    done = subprocess.run([NODE, "-e", PROBE, str(bundle), json.dumps([{**defaults, **c} for c in cases])],
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_specd_is_found_where_installers_put_it_when_vscode_has_no_shell_path(tmp_path):
    results = find([
        {"executables": ["/usr/bin/specd", "/home/u/.local/bin/specd"]},          # on PATH wins
        {"executables": ["/home/u/.local/bin/specd"]},                              # pipx / pip --user
        {"executables": ["/home/u/.local/share/pipx/venvs/specd/bin/specd"]},       # pipx's venv
        {"env": {"PATH": "/usr/bin", "VIRTUAL_ENV": "/work/env"}, "executables": ["/work/env/bin/specd"]},
        {"workspaceFolders": ["/work/proj"], "executables": ["/work/proj/.venv/bin/specd"]},
        {"executables": []},                                                        # nowhere
        {"configured": "/opt/specd/bin/specd", "executables": ["/opt/specd/bin/specd"]},
        {"configured": "/opt/specd/bin/specd", "executables": ["/usr/bin/specd"]},  # a wrong full path is wrong
        {"configured": "~/bin/specd", "executables": ["/home/u/bin/specd"]},
        {"platform": "win32", "env": {"Path": "C:\\Python\\Scripts"}, "home": "C:\\Users\\u",
         "executables": ["C:\\Python\\Scripts\\specd.exe"]},
    ], tmp_path)
    assert [r["found"] for r in results] == [
        "/usr/bin/specd", "/home/u/.local/bin/specd", "/home/u/.local/share/pipx/venvs/specd/bin/specd",
        "/work/env/bin/specd", "/work/proj/.venv/bin/specd", None, "/opt/specd/bin/specd", None,
        "/home/u/bin/specd", "C:\\Python\\Scripts\\specd.exe",
    ]
    assert results[0]["folders"][:2] == ["/usr/bin", "/bin"]  # PATH first, in its order
