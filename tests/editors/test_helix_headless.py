"""Helix reads editor-configs/helix/languages.toml as a user's ~/.config/helix/languages.toml, and its own
`hx --health <language>` must list specd as a language server whose binary it finds.

Helix is not packaged in Debian 12, nor on PyPI or npm, so CI has no `hx` and this test skips there; no test
runs Helix's completion menu against `specd lsp`. The file's TOML and settings keys are checked without
Helix by tests/editors/test_snippets.py.
"""

import os
import shutil
import subprocess
import tomllib

import pytest

from .conftest import EDITOR_CONFIGS
from .real_editors import specd_on_path

HX = shutil.which("hx")
LANGUAGES = EDITOR_CONFIGS / "helix" / "languages.toml"


@pytest.mark.skipif(HX is None, reason="hx is not installed: Helix is not packaged in Debian 12, on PyPI or on npm")
@pytest.mark.parametrize("language", [entry["name"] for entry in tomllib.loads(LANGUAGES.read_text())["language"]])
def test_helix_health_lists_specd_with_the_shipped_languages_toml(language, tmp_path):
    config = tmp_path / "config" / "helix"
    config.mkdir(parents=True)
    shutil.copy(LANGUAGES, config / "languages.toml")
    env = specd_on_path(tmp_path, {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                                   "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    done = subprocess.run([HX, "--health", language], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # A languages.toml Helix cannot parse is reported here, and Helix falls back to its defaults (no specd).
    assert "Error parsing user language config" not in done.stderr, done.stderr
    assert str(tmp_path / "bin" / "specd") in done.stdout, done.stdout
