"""Finding the running daemon (URL, token, pid) and starting it when needed, for the language server
and other tools. Light on purpose: no torch, no aiohttp; starting runs `specd serve` detached, exactly
as `specd start` does. `pid_alive` (process/state.py) is here for them too: the language server watches its
editor's process with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .process.state import live_state, pid_alive, read_token
from .config.paths import Paths, get_paths

__all__ = ["DaemonInfo", "ensure_daemon_running", "find_daemon", "pid_alive", "settings_stamp"]


@dataclass(frozen=True)
class DaemonInfo:
    """A running daemon as its state file tells it: base `url` (no trailing slash), the API bearer `token`, its `pid`,
    `ready` (False while the models still load; requests then wait in its queue) and its `request_timeout` (s)."""

    url: str
    token: str
    pid: int
    ready: bool = True  # False while the models are still loading (requests then wait in the queue)
    request_timeout: float | None = None  # seconds its settings give a request, queue included (None: not told)


def find_daemon(paths: Paths | None = None) -> DaemonInfo | None:
    """The running daemon (`live_state`: the state file of a daemon that holds the lock, a stale one removed), or None
    when none runs, it has not written its state yet, or its token file is unreadable or empty. `paths`: get_paths()
    when None."""
    paths = paths or get_paths()
    state = live_state(paths)
    if state is None:
        return None
    token = read_token(paths.token_file)
    if token is None:
        return None
    limit = (state.get("settings") or {}).get("request_timeout")
    limit = float(limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0 else None
    return DaemonInfo(state["url"].rstrip("/"), token, state["pid"], state.get("status") == "ready", limit)


def ensure_daemon_running(progress: Callable[[str], None] = lambda message: None,
                          paths: Paths | None = None) -> DaemonInfo:
    """The running daemon, started first if needed; returns once it answers. Raises DaemonError
    (from specd.daemon.process.lifecycle) with the reason when it cannot be started."""
    paths = paths or get_paths()
    info = find_daemon(paths)
    if info is not None and info.ready:
        return info
    from .process.lifecycle import DaemonError, start_background

    start_background(paths, [], progress)
    info = find_daemon(paths)
    if info is None:
        raise DaemonError("specd started but then exited; see `specd logs`")
    return info


def settings_stamp(paths: Paths | None = None) -> tuple[int, int] | None:
    """settings.json's modification time and size, None while it does not exist. A start that failed would
    likely fail the same way until this changes, so tools that start the daemon on demand compare it."""
    try:
        stat = (paths or get_paths()).settings_file.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
