"""Every file specd reads or writes lives under one of these folders.

`SPECD_HOME` moves all of them under one folder (tests use it so they never touch the real home);
otherwise the platform's usual places are used (platformdirs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "specd"


@dataclass(frozen=True)
class Paths:
    """The folders specd's files live in: `config_dir` (settings.json), `cache_dir` (converted models, embedded models'
    downloads) and `state_dir` (state file, lock, API token, AWS keys, log); the properties name each file."""

    config_dir: Path  # settings.json
    cache_dir: Path  # converted models, fetched embedded packages
    state_dir: Path  # pid, port, token, logs

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token"

    @property
    def aws_keys_file(self) -> Path:
        """The access key pair AWS SDKs sign with for the Bedrock door (JSON, mode 0600)."""
        return self.state_dir / "aws_keys.json"

    @property
    def state_file(self) -> Path:
        """JSON with pid, url and port of the running daemon."""
        return self.state_dir / "daemon.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "daemon.lock"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "daemon.log"


def get_paths() -> Paths:
    """This user's Paths: config/, cache/ and state/ under $SPECD_HOME when it is set, else platformdirs' user config,
    cache and state folders for "specd". Creates nothing."""
    home = os.environ.get("SPECD_HOME")
    if home:
        root = Path(home).expanduser()
        return Paths(root / "config", root / "cache", root / "state")
    return Paths(
        Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_state_dir(APP_NAME, appauthor=False)),
    )


def ensure_dir(path: Path, private: bool = False) -> Path:
    """Create `path` and its parents where missing and return it; `private`: chmod it 0700 (an existing one too)."""
    path.mkdir(parents=True, exist_ok=True)
    if private:
        os.chmod(path, 0o700)
    return path
